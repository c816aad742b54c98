"""The LangChain pgvector tables as they are in the database: which layout, and the indexes the loader needs.

Two layouts share `langchain_pg_collection(uuid, name, cmetadata)`:

- `langchain_postgres` (what Vanna's `PG_VectorStore` uses, and what the product creates when the tables are
  absent): `langchain_pg_embedding(id varchar PRIMARY KEY, collection_id, embedding, document, cmetadata jsonb)`.
- `langchain_community` (the legacy `langchain_community.vectorstores.PGVector`): `langchain_pg_embedding(
  collection_id, embedding, document, cmetadata json|jsonb, custom_id varchar, uuid uuid PRIMARY KEY)`.

The layout of existing tables is read from the catalog and never changed: no column is added, altered or
dropped. The loader adds only indexes, when absent: an expression index on `(collection_id, md5(document))`
for the "is this document already in the collection" lookup, and one HNSW cosine index on `embedding`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql as pgsql

from chalicelib import errors

COLLECTION_TABLE = "langchain_pg_collection"
EMBEDDING_TABLE = "langchain_pg_embedding"
HNSW_INDEX = "ix_langchain_pg_embedding_hnsw_cosine"
CONTENT_INDEX = "ix_langchain_pg_embedding_collection_md5"
SCHEMA_LOCK_KEY = 1573678846307946496  # the advisory lock LangChain takes around its own DDL
_LOOKUP_CHUNK = 2000


@dataclass(frozen=True)
class VectorLayout:
    name: str
    key: str  # the primary key column
    columns: tuple[str, ...]  # the columns the loader writes, in COPY order
    training_id_column: str  # where the product's training id (Vanna's `-sql`/`-ddl`/`-doc` id) is stored

    def key_value(self, training_id: str) -> str:
        """The primary key value of a row with this training id."""
        return training_id if self.key == "id" else training_id[:36]


POSTGRES = VectorLayout("langchain_postgres", "id", ("id", "collection_id", "embedding", "document", "cmetadata"),
                        "id")
COMMUNITY = VectorLayout("langchain_community", "uuid",
                         ("uuid", "collection_id", "embedding", "document", "cmetadata", "custom_id"), "custom_id")
LAYOUTS = {layout.name: layout for layout in (POSTGRES, COMMUNITY)}

# Column types of the temporary staging table (and of the binary COPY encoding).
STAGE_TYPES = {"id": "varchar", "uuid": "uuid", "collection_id": "uuid", "embedding": "vector",
               "document": "varchar", "cmetadata": "jsonb", "custom_id": "varchar"}
# The types binary COPY may write straight into; other types (e.g. json cmetadata) go through staging.
_DIRECT_TYPES = {
    "id": {"character varying", "text"},
    "uuid": {"uuid"},
    "collection_id": {"uuid"},
    "document": {"character varying", "text"},
    "cmetadata": {"jsonb"},
    "custom_id": {"character varying", "text"},
}


def sql(text: str, **extra: pgsql.Composable) -> pgsql.Composed:
    """`text` with {emb} / {coll} bound to the (quoted) vector table names."""
    return pgsql.SQL(text).format(emb=pgsql.Identifier(EMBEDDING_TABLE), coll=pgsql.Identifier(COLLECTION_TABLE),
                                  **extra)


def table_columns(cur: Any, table: str) -> dict[str, tuple[str, str]]:
    """column -> (format_type, type name) of a table; empty when it does not exist."""
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname FROM pg_attribute a "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (table,),
    )
    return {name: (formatted, typname) for name, formatted, typname in cur.fetchall()}


def primary_key(cur: Any, table: str) -> list[str]:
    cur.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (table,),
    )
    return [r[0] for r in cur.fetchall()]


def detect_layout(cur: Any) -> VectorLayout | None:
    """The layout of the existing embedding table; None when it does not exist.

    A table in neither layout is an error naming what was found; it is left as it is.
    """
    columns = table_columns(cur, EMBEDDING_TABLE)
    if not columns:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (EMBEDDING_TABLE,))
        if cur.fetchone()[0]:
            raise errors.StepFailed(f"{EMBEDDING_TABLE} exists but has no columns")
        return None
    pk = primary_key(cur, EMBEDDING_TABLE)
    if pk == ["id"]:
        layout = POSTGRES
    elif pk == ["uuid"] and "custom_id" in columns:
        layout = COMMUNITY
    else:
        raise errors.StepFailed(
            f"{EMBEDDING_TABLE} has columns ({', '.join(columns)}) and primary key ({', '.join(pk) or 'none'}): "
            "neither the langchain_postgres/Vanna layout (id varchar primary key) nor the langchain_community "
            "layout (uuid primary key, custom_id); the table was left unchanged"
        )
    missing = [c for c in layout.columns if c not in columns]
    if missing:
        raise errors.StepFailed(f"{EMBEDDING_TABLE} ({layout.name} layout) lacks the column(s) {', '.join(missing)}; "
                                "the table was left unchanged")
    if columns["embedding"][1] != "vector":
        raise errors.StepFailed(f"{EMBEDDING_TABLE}.embedding has type {columns['embedding'][0]}, expected vector")
    return layout


def direct_copy_ok(cur: Any, layout: VectorLayout) -> bool:
    """True when the table's column types are exactly the ones binary COPY encodes."""
    types = table_columns(cur, EMBEDDING_TABLE)
    return all(types[name][0] in _DIRECT_TYPES[name] for name in layout.columns if name != "embedding")


def _embedding_dimension_check(cur: Any, dimension: int, model_name: str) -> bool:
    """Check the stored embedding dimension against the model's; True when the column has a fixed dimension."""
    formatted = table_columns(cur, EMBEDDING_TABLE)["embedding"][0]
    match = re.fullmatch(r"vector\((\d+)\)", formatted)
    if match and int(match.group(1)) != dimension:
        raise errors.EmbeddingError(
            f"{EMBEDDING_TABLE}.embedding is vector({match.group(1)}) but the embedding model "
            f"{model_name or 'configured'} produces {dimension} dimensions; use a model with "
            f"{match.group(1)} dimensions or back up and drop the vector tables first"
        )
    return match is not None


def _create_tables(cur: Any, dimension: int, layout: VectorLayout) -> None:
    dim = pgsql.Literal(int(dimension))
    if layout is COMMUNITY:  # as langchain_community's SQLAlchemy models create them (use_jsonb=True)
        cur.execute(sql("CREATE TABLE IF NOT EXISTS {coll} (name varchar, cmetadata json, uuid uuid PRIMARY KEY)"))
        cur.execute(sql(
            "CREATE TABLE IF NOT EXISTS {emb} (collection_id uuid REFERENCES {coll} (uuid) ON DELETE CASCADE, "
            "embedding vector({dim}), document varchar, cmetadata jsonb, custom_id varchar, uuid uuid PRIMARY KEY)",
            dim=dim))
    else:  # as langchain_postgres creates them
        cur.execute(sql("CREATE TABLE IF NOT EXISTS {coll} (uuid uuid PRIMARY KEY, name varchar NOT NULL UNIQUE, "
                        "cmetadata json)"))
        cur.execute(sql(
            "CREATE TABLE IF NOT EXISTS {emb} (id varchar PRIMARY KEY, "
            "collection_id uuid REFERENCES {coll} (uuid) ON DELETE CASCADE, "
            "embedding vector({dim}), document varchar, cmetadata jsonb)", dim=dim))
    cur.execute(sql("CREATE INDEX IF NOT EXISTS ix_cmetadata_gin ON {emb} USING gin (cmetadata jsonb_path_ops)"))


def ensure_vector_tables(conn: Any, dimension: int, model_name: str = "", layout: str = POSTGRES.name) -> bool:
    """Create the LangChain tables when absent (in `layout`), check the layout and dimension when present, and
    make sure the document-hash index exists.

    Returns True when the embedding column has a fixed dimension (needed for an HNSW index).
    """
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        if cur.fetchone() is None:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        if detect_layout(cur) is None:
            _create_tables(cur, dimension, LAYOUTS[layout])
            detect_layout(cur)
        fixed = _embedding_dimension_check(cur, int(dimension), model_name)
        ensure_content_index(cur)
    return fixed


def content_index_name(cur: Any) -> str | None:
    """Name of an index on (collection_id, md5(document)) of the embedding table, whoever created it."""
    cur.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
        "AND (indexname = %s OR indexdef ~* %s) ORDER BY indexname LIMIT 1",
        (EMBEDDING_TABLE, CONTENT_INDEX, r"\(collection_id, md5\(\(?document\)?(::text)?\)\)"),
    )
    row = cur.fetchone()
    return row[0] if row else None


def ensure_content_index(cur: Any) -> bool:
    """The expression index the same-document lookup uses; True when it was created now (adds no column and
    changes no row)."""
    if content_index_name(cur) is not None:
        return False
    cur.execute(sql("CREATE INDEX IF NOT EXISTS {idx} ON {emb} (collection_id, md5(document))",
                    idx=pgsql.Identifier(CONTENT_INDEX)))
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
        cur.execute(sql("CREATE INDEX IF NOT EXISTS {idx} ON {emb} USING hnsw (embedding vector_cosine_ops)",
                        idx=pgsql.Identifier(HNSW_INDEX)))
    return True


def collection_ids(conn: Any, names: list[str], namespace: Any) -> dict[str, str]:
    """uuid of each collection, created (uuid5 of the name in `namespace`) when absent."""
    import uuid

    ids: dict[str, str] = {}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        for name in names:
            cur.execute(sql("SELECT uuid::text FROM {coll} WHERE name = %s ORDER BY uuid LIMIT 1"), (name,))
            row = cur.fetchone()
            if row is None:
                new_id = str(uuid.uuid5(namespace, "collection:" + name))
                cur.execute(sql("INSERT INTO {coll} (uuid, name, cmetadata) VALUES (%s, %s, NULL)"), (new_id, name))
                ids[name] = new_id
            else:
                ids[name] = row[0]
    return ids


def collection_counts(conn: Any) -> dict[str, int]:
    with conn, conn.cursor() as cur:
        cur.execute(sql("SELECT c.name, count(e.collection_id) FROM {coll} c LEFT JOIN {emb} e "
                        "ON e.collection_id = c.uuid GROUP BY c.name ORDER BY c.name"))
        return {name: int(n) for name, n in cur.fetchall()}


def existing_keys(conn: Any, layout: VectorLayout, keys: list[str]) -> set[str]:
    """The primary key values among `keys` already in the table."""
    found: set[str] = set()
    cast = pgsql.SQL("::uuid[]" if layout.key == "uuid" else "::varchar[]")
    with conn, conn.cursor() as cur:
        for start in range(0, len(keys), 5000):
            cur.execute(sql("SELECT {key}::text FROM {emb} WHERE {key} = ANY(%s{cast})",
                            key=pgsql.Identifier(layout.key), cast=cast), (keys[start:start + 5000],))
            found.update(r[0] for r in cur.fetchall())
    return found


# The same-document lookup: each (collection uuid, document) probes the (collection_id, md5(document)) index;
# the document itself is compared too, so an md5 collision never hides a row.
DOCUMENT_LOOKUP = sql(
    "SELECT q.i FROM unnest(%s::uuid[], %s::text[]) WITH ORDINALITY AS q(cid, doc, i) "
    "WHERE EXISTS (SELECT 1 FROM {emb} e WHERE e.collection_id = q.cid AND md5(e.document) = md5(q.doc) "
    "AND e.document = q.doc)"
)


def stored_documents(conn: Any, wanted: Sequence[tuple[str, str]]) -> set[int]:
    """Positions (0-based) of the (collection uuid, document) pairs whose collection already holds that document,
    whoever wrote it (this product, Vanna's train(), LangChain's add_texts…)."""
    found: set[int] = set()
    with conn, conn.cursor() as cur:
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start:start + _LOOKUP_CHUNK]
            cur.execute(DOCUMENT_LOOKUP, ([c for c, _ in chunk], [d for _, d in chunk]))
            found.update(start + int(r[0]) - 1 for r in cur.fetchall())
    return found


# Which embedding model and dimension a collection's rows hold: cmetadata.embedding_model as the loader records it
# (null for rows written by others, e.g. Vanna's train()), and the stored vector's own dimension.
STORED_MODELS = sql(
    "SELECT collection_id::text, cmetadata->>'embedding_model', vector_dims(embedding), count(*) FROM {emb} "
    "WHERE collection_id = ANY(%s::uuid[]) GROUP BY 1, 2, 3 ORDER BY 4 DESC"
)


def stored_models(conn: Any, collection_uuids: Sequence[str]) -> dict[str, list[tuple[str | None, int, int]]]:
    """collection uuid -> [(embedding model or None, dimension, rows)], most rows first (one pass over the rows)."""
    found: dict[str, list[tuple[str | None, int, int]]] = {}
    with conn, conn.cursor() as cur:
        cur.execute(STORED_MODELS, (list(collection_uuids),))
        for cid, model, dims, rows in cur.fetchall():
            found.setdefault(cid, []).append((model, int(dims), int(rows)))
    return found
