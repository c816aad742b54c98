"""training_load: DDL, documentation sections and Q/A pairs into pgvector, in the layout LangChain's PGVector
(and so Vanna's pgvector store) reads: `langchain_pg_collection` + `langchain_pg_embedding`.

Ids are deterministic (uuid5 of collection + content, with Vanna's `-ddl`/`-doc`/`-sql` suffix), so loading
the same data twice adds no rows, and already stored ids are not embedded again.
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from psycopg2 import sql as pgsql
from psycopg2.extras import execute_values

from chalicelib import errors
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


def _vector_literal(vec: list[float]) -> str:
    return "[" + ",".join(repr(float(v)) for v in vec) + "]"


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
    log: Any = logger,
) -> dict[str, Any]:
    """Embed and insert everything not yet stored; one transaction per batch of rows.

    Returns {"ddl": n_new, "documentation": n_new, "sql": n_new, "skipped_existing": n,
    "total_rows": {collection: rows}, "embedding_model", "dimension", "index_created"}.
    """
    batch_size = max(1, int(batch_size))
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
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            vectors = embedder.embed([document for _, _, document in batch])
            if len(vectors) != len(batch):
                raise errors.EmbeddingError(f"embedder returned {len(vectors)} vectors for {len(batch)} texts")
            rows = []
            for (collection, row_id, document), vec in zip(batch, vectors, strict=True):
                if len(vec) != dimension:
                    raise errors.EmbeddingError(f"embedding has {len(vec)} dimensions, expected {dimension}")
                rows.append((row_id, collections[collection], _vector_literal(vec), document,
                             json.dumps({"id": row_id}, ensure_ascii=False)))
            with conn, conn.cursor() as cur:
                returned = execute_values(
                    cur,
                    _sql("INSERT INTO {emb} (id, collection_id, embedding, document, cmetadata) "
                         "VALUES %s ON CONFLICT (id) DO NOTHING RETURNING id"),
                    rows,
                    template="(%s, %s::uuid, %s::vector, %s, %s::jsonb)",
                    page_size=len(rows),
                    fetch=True,
                )
            new_ids = {r[0] for r in returned}
            for collection, row_id, _ in batch:
                if row_id in new_ids:
                    inserted[collection] += 1
            log.info(f"training load: stored {min(start + batch_size, len(todo))}/{len(todo)}")
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
