"""Precomputed embeddings into `langchain_pg_embedding` by PostgreSQL's binary COPY, one transaction per batch,
in whichever layout the table has (vector_layout.py); rows whose key is already stored are skipped."""
from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import psycopg2
from psycopg2 import sql as pgsql

from chalicelib import errors
from chalicelib.pipeline import vector_layout
from chalicelib.pipeline.vector_layout import EMBEDDING_TABLE, VectorLayout

DEFAULT_WRITE_BATCH_SIZE = 1000
_STAGE_TABLE = "_data_pipeline_embedding_stage"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def as_matrix(vectors: Any, count: int, dimension: int) -> np.ndarray:
    """The vectors as a (count, dimension) big-endian float32 matrix (pgvector's binary wire format)."""
    try:
        matrix = np.asarray(vectors, dtype=">f4")
    except ValueError as exc:  # ragged input: some vector has another length
        lengths = sorted({len(v) for v in vectors})
        raise errors.EmbeddingError(f"embeddings have {lengths} dimensions, expected {dimension}") from exc
    if count == 0:
        return matrix.reshape(0, dimension)
    if matrix.ndim != 2 or matrix.shape[0] != count:
        raise errors.EmbeddingError(f"embedder returned {len(matrix)} vectors for {count} texts")
    if matrix.shape[1] != dimension:
        raise errors.EmbeddingError(f"embedding has {matrix.shape[1]} dimensions, expected {dimension}")
    if not np.isfinite(matrix).all():
        raise errors.EmbeddingError("embedding contains NaN or infinite values")
    return matrix


def _encode_copy(rows: Sequence[tuple[str, str, str]], matrix: np.ndarray, layout: VectorLayout,
                 metadata: Sequence[Mapping[str, Any] | None] | None) -> bytes:
    """PostgreSQL binary COPY data for the layout's columns: (id, collection_id, embedding, document, cmetadata
    jsonb) or (uuid, collection_id, embedding, document, cmetadata jsonb, custom_id).

    cmetadata is {"id": <training id>, **metadata[i]}; the JSON of a metadata mapping shared by many rows is
    encoded once.
    """
    dimension = matrix.shape[1]
    vec_head = struct.pack(">ihh", 4 + 4 * dimension, dimension, 0)
    pack_len = struct.Struct(">i").pack
    community = layout.key == "uuid"
    field_count = struct.pack(">h", len(layout.columns))
    uuid_field: dict[str, bytes] = {}
    tails: dict[int, bytes] = {}
    parts: list[bytes] = [_COPY_HEADER]
    for i, ((row_id, collection_id, document), vec) in enumerate(zip(rows, matrix, strict=True)):
        rid = row_id.encode("utf-8")
        doc = document.encode("utf-8")
        extra = metadata[i] if metadata is not None else None
        tail = b"}"
        if extra:
            tail = tails.get(id(extra))
            if tail is None:
                tail = tails[id(extra)] = b", " + json.dumps(dict(extra), ensure_ascii=False)[1:].encode("utf-8")
        meta = b'\x01{"id": ' + json.dumps(row_id, ensure_ascii=False).encode("utf-8") + tail
        coll = uuid_field.get(collection_id)
        if coll is None:
            coll = uuid_field[collection_id] = pack_len(16) + uuid.UUID(collection_id).bytes
        if community:
            parts += (field_count, pack_len(16), uuid.UUID(layout.key_value(row_id)).bytes, coll, vec_head,
                      vec.tobytes(), pack_len(len(doc)), doc, pack_len(len(meta)), meta, pack_len(len(rid)), rid)
        else:
            parts += (field_count, pack_len(len(rid)), rid, coll, vec_head, vec.tobytes(),
                      pack_len(len(doc)), doc, pack_len(len(meta)), meta)
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def write_embeddings(
    conn: Any,
    rows: Sequence[tuple[str, str, str]],
    vectors: Any,
    *,
    dimension: int,
    batch_size: int = DEFAULT_WRITE_BATCH_SIZE,
    metadata: Sequence[Mapping[str, Any] | None] | None = None,
) -> set[str]:
    """Write precomputed embeddings; returns the training ids actually inserted (ids already stored are skipped).

    `rows` are (training id, collection uuid, document), `vectors` the matching embeddings (lists or an array),
    `metadata` optional cmetadata keys per row (besides `id`). The layout is the one of the existing table.
    Each batch is one transaction with one binary COPY: straight into the table when the types match
    (inside a savepoint), or, when a key already exists (a concurrent or repeated load) or the table has
    other column types, into a temporary staging table followed by `INSERT … SELECT … ON CONFLICT (<primary
    key>) DO NOTHING`. Either way loading the same rows twice adds nothing.
    """
    batch_size = max(1, int(batch_size))
    matrix = as_matrix(vectors, len(rows), int(dimension))
    if metadata is not None and len(metadata) != len(rows):
        raise ValueError(f"{len(metadata)} metadata entries for {len(rows)} rows")
    inserted: set[str] = set()
    if not rows:
        return inserted
    autocommit = conn.autocommit
    if autocommit:
        conn.autocommit = False  # savepoints and `with conn` transactions need it
    try:
        with conn, conn.cursor() as cur:
            layout = vector_layout.detect_layout(cur)
            if layout is None:
                raise errors.StepFailed(f"{EMBEDDING_TABLE} does not exist; create it with ensure_vector_tables")
            direct = vector_layout.direct_copy_ok(cur, layout)
        _write_batches(conn, rows, matrix, metadata, layout, direct, batch_size, inserted)
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True
    return inserted


def _write_batches(conn: Any, rows: Sequence[tuple[str, str, str]], matrix: np.ndarray,
                   metadata: Sequence[Mapping[str, Any] | None] | None, layout: VectorLayout, direct: bool,
                   batch_size: int, inserted: set[str]) -> None:
    columns = pgsql.SQL(", ").join(map(pgsql.Identifier, layout.columns))
    stage = pgsql.Identifier(_STAGE_TABLE)
    stage_columns = pgsql.SQL(", ").join(
        pgsql.SQL("{} {}").format(pgsql.Identifier(c), pgsql.SQL(vector_layout.STAGE_TYPES[c])) for c in layout.columns)
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        data = _encode_copy(batch, matrix[start:start + batch_size], layout,
                            metadata[start:start + batch_size] if metadata is not None else None)
        with conn, conn.cursor() as cur:
            if direct and _copy_direct(cur, columns, data):
                inserted.update(row_id for row_id, _, _ in batch)
                continue
            cur.execute(pgsql.SQL("CREATE TEMP TABLE {stage} ({cols}) ON COMMIT DROP").format(
                stage=stage, cols=stage_columns))
            cur.copy_expert(pgsql.SQL("COPY {stage} ({cols}) FROM STDIN WITH (FORMAT binary)").format(
                stage=stage, cols=columns), io.BytesIO(data))
            cur.execute(vector_layout.sql(
                "INSERT INTO {emb} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT ({key}) DO NOTHING "
                "RETURNING {tid}", cols=columns, stage=stage, key=pgsql.Identifier(layout.key),
                tid=pgsql.Identifier(layout.training_id_column)))
            inserted.update(r[0] for r in cur.fetchall())


def _copy_direct(cur: Any, columns: pgsql.Composable, data: bytes) -> bool:
    """Binary COPY straight into the table inside a savepoint; False (rolled back) on a duplicate key."""
    cur.execute("SAVEPOINT data_pipeline_copy")
    try:
        cur.copy_expert(vector_layout.sql("COPY {emb} ({cols}) FROM STDIN WITH (FORMAT binary)", cols=columns),
                        io.BytesIO(data))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT data_pipeline_copy")
        return False
    cur.execute("RELEASE SAVEPOINT data_pipeline_copy")
    return True
