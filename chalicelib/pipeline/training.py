"""training_load: DDL, documentation sections and Q/A pairs into pgvector, in the layout LangChain's PGVector
(and so Vanna's pgvector store) reads: `langchain_pg_collection` + `langchain_pg_embedding`.

Ids are deterministic (uuid5 of collection + content, with Vanna's `-ddl`/`-doc`/`-sql` suffix), so loading
the same data twice adds no rows, and already stored ids are not embedded again.
"""
from __future__ import annotations

import io
import json
import logging
import re
import struct
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg2
from psycopg2 import sql as pgsql

from chalicelib import errors
from chalicelib.config import get_settings
from chalicelib.pipeline.db import connect
from chalicelib.pipeline.models import QAPair

logger = logging.getLogger(__name__)

COLLECTION_TABLE = "langchain_pg_collection"
EMBEDDING_TABLE = "langchain_pg_embedding"
# Fixed forever: changing it would give every stored row a new id and duplicate the whole store.
ID_NAMESPACE = uuid.UUID("6f1c3a52-2d7e-5b8e-9a41-0c4d8e2f7b13")
SUFFIXES = {"ddl": "-ddl", "documentation": "-doc", "sql": "-sql"}
HNSW_INDEX = "ix_langchain_pg_embedding_hnsw_cosine"
_SCHEMA_LOCK_KEY = 1573678846307946496  # the advisory lock LangChain takes around its own DDL

# Rows written per transaction: one binary COPY per batch (embedding requests have their own batch size).
DEFAULT_WRITE_BATCH_SIZE = 1000
_WRITE_COLUMNS = ("id", "collection_id", "embedding", "document", "cmetadata")
# The column types binary COPY encodes; a table with other types (e.g. json cmetadata) goes through staging.
_DIRECT_TYPES = {
    "id": {"character varying", "text"},
    "collection_id": {"uuid"},
    "document": {"character varying", "text"},
    "cmetadata": {"jsonb"},
}
_STAGE_TABLE = "_data_pipeline_embedding_stage"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)

_HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _sql(text: str, **extra: pgsql.Composable) -> pgsql.Composed:
    """`text` with {emb} / {coll} bound to the (quoted) vector table names."""
    return pgsql.SQL(text).format(emb=pgsql.Identifier(EMBEDDING_TABLE), coll=pgsql.Identifier(COLLECTION_TABLE),
                                  **extra)


def split_markdown_sections(md: str) -> list[str]:
    """Split Markdown at ATX headings (not inside fenced code), each heading kept with its body.

    Text before the first heading is its own section; whitespace-only parts are dropped.
    """
    sections: list[list[str]] = [[]]
    in_fence = False
    for line in (md or "").splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and _HEADING.match(line):
            sections.append([])
        sections[-1].append(line)
    return [text for text in ("\n".join(lines).strip() for lines in sections) if text]


def training_id(collection: str, content: str) -> str:
    """Deterministic row id: uuid5 of collection + content, plus Vanna's type suffix."""
    return str(uuid.uuid5(ID_NAMESPACE, collection + content)) + SUFFIXES[collection]


def _items(ddl: list[str], documentation: list[str], pairs: list[QAPair]) -> list[tuple[str, str, str]]:
    """(collection, id, document) for every non-blank input, duplicates removed, order kept."""
    raw: list[tuple[str, str]] = [("ddl", d) for d in ddl]
    raw += [("documentation", d) for d in documentation]
    raw += [("sql", json.dumps({"question": p.question, "sql": p.sql}, ensure_ascii=False)) for p in pairs]
    seen: set[str] = set()
    items: list[tuple[str, str, str]] = []
    for collection, document in raw:
        if not document or not document.strip():
            continue
        row_id = training_id(collection, document)
        if row_id not in seen:
            seen.add(row_id)
            items.append((collection, row_id, document))
    return items


def _embedding_type(cur: Any) -> str | None:
    """format_type of langchain_pg_embedding.embedding ("vector(384)", "vector"), None when the table is absent."""
    cur.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped",
        (EMBEDDING_TABLE,),
    )
    row = cur.fetchone()
    if row is not None:
        return row[0]
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (EMBEDDING_TABLE,))
    if cur.fetchone()[0]:
        raise errors.StepFailed(f"{EMBEDDING_TABLE} exists but has no embedding column")
    return None


def ensure_vector_tables(conn: Any, dimension: int, model_name: str = "") -> bool:
    """Create the LangChain PGVector tables when absent; check the stored dimension when present.

    Returns True when the embedding column has a fixed dimension (needed for an HNSW index).
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        if cur.fetchone() is None:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        existing = _embedding_type(cur)
        if existing is not None:
            match = re.fullmatch(r"vector\((\d+)\)", existing)
            if match and int(match.group(1)) != dimension:
                raise errors.EmbeddingError(
                    f"{EMBEDDING_TABLE}.embedding is vector({match.group(1)}) but the embedding model "
                    f"{model_name or 'configured'} produces {dimension} dimensions; use a model with "
                    f"{match.group(1)} dimensions or back up and drop the vector tables first"
                )
            if not existing.startswith("vector"):
                raise errors.StepFailed(f"{EMBEDDING_TABLE}.embedding has type {existing}, expected vector")
            return match is not None
        cur.execute(_sql("CREATE TABLE IF NOT EXISTS {coll} (uuid uuid PRIMARY KEY, name varchar NOT NULL UNIQUE, "
                         "cmetadata json)"))
        cur.execute(_sql(
            "CREATE TABLE IF NOT EXISTS {emb} (id varchar PRIMARY KEY, "
            "collection_id uuid REFERENCES {coll} (uuid) ON DELETE CASCADE, "
            "embedding vector({dim}), document varchar, cmetadata jsonb)",
            dim=pgsql.Literal(int(dimension)),
        ))
        cur.execute(_sql("CREATE INDEX IF NOT EXISTS ix_cmetadata_gin ON {emb} USING gin (cmetadata jsonb_path_ops)"))
    return True


def _collection_ids(conn: Any, names: list[str]) -> dict[str, str]:
    """uuid of each collection, created (deterministically) when absent."""
    ids: dict[str, str] = {}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        for name in names:
            cur.execute(_sql("SELECT uuid::text FROM {coll} WHERE name = %s ORDER BY uuid LIMIT 1"), (name,))
            row = cur.fetchone()
            if row is None:
                new_id = str(uuid.uuid5(ID_NAMESPACE, "collection:" + name))
                cur.execute(_sql("INSERT INTO {coll} (uuid, name, cmetadata) VALUES (%s, %s, NULL)"), (new_id, name))
                ids[name] = new_id
            else:
                ids[name] = row[0]
    return ids


def _existing_ids(conn: Any, ids: list[str]) -> set[str]:
    found: set[str] = set()
    with conn, conn.cursor() as cur:
        for start in range(0, len(ids), 5000):
            cur.execute(_sql("SELECT id FROM {emb} WHERE id = ANY(%s)"), (ids[start:start + 5000],))
            found.update(r[0] for r in cur.fetchall())
    return found


def _as_matrix(vectors: Any, count: int, dimension: int) -> np.ndarray:
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


def _encode_copy(rows: Sequence[tuple[str, str, str]], matrix: np.ndarray) -> bytes:
    """PostgreSQL binary COPY data for (id, collection_id, embedding, document, cmetadata jsonb)."""
    dimension = matrix.shape[1]
    vec_head = struct.pack(">ihh", 4 + 4 * dimension, dimension, 0)
    pack_len = struct.Struct(">i").pack
    uuid_field = {}
    parts: list[bytes] = [_COPY_HEADER]
    for (row_id, collection_id, document), vec in zip(rows, matrix, strict=True):
        rid = row_id.encode("utf-8")
        doc = document.encode("utf-8")
        meta = b"\x01" + json.dumps({"id": row_id}, ensure_ascii=False).encode("utf-8")
        coll = uuid_field.get(collection_id)
        if coll is None:
            coll = uuid_field[collection_id] = struct.pack(">i", 16) + uuid.UUID(collection_id).bytes
        parts += (
            b"\x00\x05", pack_len(len(rid)), rid, coll, vec_head, vec.tobytes(),
            pack_len(len(doc)), doc, pack_len(len(meta)), meta,
        )
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _direct_copy_ok(cur: Any) -> bool:
    """True when the embedding table's column types are exactly the ones binary COPY encodes."""
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname FROM pg_attribute a "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (EMBEDDING_TABLE,),
    )
    types = {name: (formatted, typname) for name, formatted, typname in cur.fetchall()}
    if any(name not in types for name in _WRITE_COLUMNS) or types["embedding"][1] != "vector":
        return False
    return all(types[name][0] in allowed for name, allowed in _DIRECT_TYPES.items())


def write_embeddings(
    conn: Any,
    rows: Sequence[tuple[str, str, str]],
    vectors: Any,
    *,
    dimension: int,
    batch_size: int = DEFAULT_WRITE_BATCH_SIZE,
) -> set[str]:
    """Write precomputed embeddings; returns the ids actually inserted (ids already stored are skipped).

    `rows` are (id, collection uuid, document), `vectors` the matching embeddings (lists or an array).
    Each batch is one transaction with one binary COPY: straight into the table when the types match
    (inside a savepoint), or, when an id already exists (a concurrent or repeated load) or the table has
    other column types, into a temporary staging table followed by `INSERT … SELECT … ON CONFLICT (id)
    DO NOTHING`. Either way loading the same rows twice adds nothing.
    """
    batch_size = max(1, int(batch_size))
    matrix = _as_matrix(vectors, len(rows), int(dimension))
    inserted: set[str] = set()
    if not rows:
        return inserted
    columns = pgsql.SQL(", ").join(map(pgsql.Identifier, _WRITE_COLUMNS))
    autocommit = conn.autocommit
    if autocommit:
        conn.autocommit = False  # savepoints and `with conn` transactions need it
    try:
        with conn, conn.cursor() as cur:
            direct = _direct_copy_ok(cur)
        _write_batches(conn, rows, matrix, columns, direct, batch_size, inserted)
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True
    return inserted


def _write_batches(conn: Any, rows: Sequence[tuple[str, str, str]], matrix: np.ndarray, columns: pgsql.Composable,
                   direct: bool, batch_size: int, inserted: set[str]) -> None:
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        data = _encode_copy(batch, matrix[start:start + batch_size])
        with conn, conn.cursor() as cur:
            if direct and _copy_direct(cur, columns, data):
                inserted.update(row_id for row_id, _, _ in batch)
                continue
            cur.execute(pgsql.SQL(
                "CREATE TEMP TABLE {stage} (id varchar, collection_id uuid, embedding vector, document varchar, "
                "cmetadata jsonb) ON COMMIT DROP").format(stage=pgsql.Identifier(_STAGE_TABLE)))
            cur.copy_expert(
                pgsql.SQL("COPY {stage} ({cols}) FROM STDIN WITH (FORMAT binary)").format(
                    stage=pgsql.Identifier(_STAGE_TABLE), cols=columns),
                io.BytesIO(data),
            )
            cur.execute(_sql(
                "INSERT INTO {emb} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT (id) DO NOTHING RETURNING id",
                cols=columns, stage=pgsql.Identifier(_STAGE_TABLE),
            ))
            inserted.update(r[0] for r in cur.fetchall())


def _copy_direct(cur: Any, columns: pgsql.Composable, data: bytes) -> bool:
    """Binary COPY straight into the table inside a savepoint; False (rolled back) on a duplicate id."""
    cur.execute("SAVEPOINT data_pipeline_copy")
    try:
        cur.copy_expert(_sql("COPY {emb} ({cols}) FROM STDIN WITH (FORMAT binary)", cols=columns),
                        io.BytesIO(data))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT data_pipeline_copy")
        return False
    cur.execute("RELEASE SAVEPOINT data_pipeline_copy")
    return True


def ensure_hnsw_index(conn: Any) -> bool:
    """One HNSW cosine index on the embedding column; returns True when it was created now."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
            "AND indexdef ILIKE %s",
            (EMBEDDING_TABLE, "%USING hnsw (embedding vector_cosine_ops)%"),
        )
        if cur.fetchone() is not None:
            return False
        cur.execute(_sql("CREATE INDEX IF NOT EXISTS {idx} ON {emb} USING hnsw (embedding vector_cosine_ops)",
                         idx=pgsql.Identifier(HNSW_INDEX)))
    return True


def collection_counts(conn: Any) -> dict[str, int]:
    with conn, conn.cursor() as cur:
        cur.execute(_sql("SELECT c.name, count(e.id) FROM {coll} c LEFT JOIN {emb} e ON e.collection_id = c.uuid "
                         "GROUP BY c.name ORDER BY c.name"))
        return {name: int(n) for name, n in cur.fetchall()}


def load_training_data(
    pg_url: str,
    embedder: Any,
    *,
    ddl: list[str],
    documentation: list[str],
    pairs: list[QAPair],
    batch_size: int = 64,
    write_batch_size: int | None = None,
    log: Any = logger,
) -> dict[str, Any]:
    """Embed (in requests of `batch_size` texts) and store everything not yet stored.

    Only ids not already in the table are embedded. Vectors are written with binary COPY, one transaction
    per `write_batch_size` rows (default DATA_PIPELINE_VECTOR_WRITE_BATCH_SIZE; see `write_embeddings`).
    The HNSW cosine index is created once, when absent, after the rows are in (building it over a full
    table is much cheaper than growing it row by row); later loads never rebuild it.

    Returns {"ddl": n_new, "documentation": n_new, "sql": n_new, "skipped_existing": n,
    "total_rows": {collection: rows}, "embedding_model", "dimension", "index_created"}.
    """
    batch_size = max(1, int(batch_size))
    if write_batch_size is None:
        write_batch_size = get_settings().vector_write_batch_size
    write_batch_size = max(1, int(write_batch_size))
    items = _items(ddl, documentation, pairs)
    dimension = int(embedder.dimension)
    conn = connect(pg_url, application_name="data_pipeline_training")
    try:
        fixed_dimension = ensure_vector_tables(conn, dimension, getattr(embedder, "model_name", ""))
        collections = _collection_ids(conn, list(SUFFIXES))
        existing = _existing_ids(conn, [row_id for _, row_id, _ in items])
        todo = [item for item in items if item[1] not in existing]
        log.info(f"training load: {len(items)} item(s), {len(existing)} already stored, {len(todo)} to embed")
        inserted = dict.fromkeys(SUFFIXES, 0)
        collection_of = {row_id: collection for collection, row_id, _ in todo}
        pending: list[tuple[str, str, str]] = []
        pending_vectors: list[Any] = []
        written = 0

        def flush() -> None:
            nonlocal written
            if not pending:
                return
            new_ids = write_embeddings(conn, pending, np.concatenate(pending_vectors), dimension=dimension,
                                       batch_size=write_batch_size)
            for row_id in new_ids:
                inserted[collection_of[row_id]] += 1
            written += len(pending)
            pending.clear()
            pending_vectors.clear()
            log.info(f"training load: stored {written}/{len(todo)}")

        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            vectors = embedder.embed([document for _, _, document in batch])
            pending_vectors.append(_as_matrix(vectors, len(batch), dimension))
            pending.extend((row_id, collections[collection], document) for collection, row_id, document in batch)
            if len(pending) >= write_batch_size:
                flush()
        flush()
        index_created = ensure_hnsw_index(conn) if fixed_dimension else False
        totals = collection_counts(conn)
    finally:
        conn.close()
    skipped = len(items) - sum(inserted.values())
    result = {
        **inserted,
        "skipped_existing": skipped,
        "total_rows": totals,
        "embedding_model": getattr(embedder, "model_name", ""),
        "dimension": dimension,
        "index_created": index_created,
    }
    log.info(f"training load finished: ddl {inserted['ddl']}, documentation {inserted['documentation']}, "
             f"sql {inserted['sql']} new; {skipped} already present")
    return result
