"""training_load into a real pgvector database, in the LangChain PGVector layout Vanna reads."""
from __future__ import annotations

import hashlib
import json

import psycopg2
import pytest

from chalicelib import errors
from chalicelib.pipeline.models import QAPair
from chalicelib.pipeline.training import load_training_data, split_markdown_sections, training_id
from chalicelib.providers.embeddings import MiniLMEmbeddings
from tests.support.vector_store import create_langchain_store


class HashEmbedder:
    """Deterministic small vectors; counts what it was asked to embed."""

    model_name = "hash-8"

    def __init__(self, dimension=8):
        self.dimension = dimension
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        out = []
        for t in texts:
            digest = hashlib.sha256(t.encode()).digest()
            out.append([b / 255.0 + 0.01 for b in digest[: self.dimension]])
        return out


DDL = [
    "create table public.orders (\n  id int primary key, -- 主键\n  amount numeric(10,2) -- 金额\n);\n",
    "create table public.stations (id int primary key);\n",
]
MD = "## orders（订单）\n订单表\n\n## stations\n收费站\n"
PAIRS = [
    QAPair("订单总数是多少？", "SELECT COUNT(*) FROM orders;"),
    QAPair("Total amount?", "SELECT SUM(amount) FROM orders;"),
]


def _query(url, sql, params=None):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def test_split_markdown_sections():
    md = "intro line\n\n# Title\n\n## a\nbody a\n```\n# not a heading\n```\n## b\n\n\n### c\n  \n"
    # Heading-only parts ("# Title", "## b", "### c") say nothing by themselves: they are not rows.
    assert split_markdown_sections(md) == ["intro line", "## a\nbody a\n```\n# not a heading\n```"]
    assert split_markdown_sections("## 主题列表（共 2 个）\n\n### 1. 营收\n\n- 说明: 营收分析\n") == [
        "### 1. 营收\n\n- 说明: 营收分析"]
    assert split_markdown_sections("   \n") == []
    assert split_markdown_sections("#hashtag is not a heading\ntext") == ["#hashtag is not a heading\ntext"]


def test_load_twice_adds_nothing_and_matches_vanna_layout(scratch_db):
    embedder = HashEmbedder()
    docs = split_markdown_sections(MD)
    first = load_training_data(scratch_db, embedder, ddl=DDL, documentation=docs, pairs=PAIRS, batch_size=2)
    assert (first["ddl"], first["documentation"], first["sql"], first["skipped_existing"]) == (2, 2, 2, 0)
    assert first["total_rows"] == {"ddl": 2, "documentation": 2, "sql": 2}
    assert [len(c) for c in embedder.calls] == [2, 2, 2]

    second = load_training_data(scratch_db, embedder, ddl=DDL, documentation=docs, pairs=PAIRS + PAIRS[:1],
                                batch_size=2)
    assert (second["ddl"], second["documentation"], second["sql"], second["skipped_existing"]) == (0, 0, 0, 6)
    assert second["total_rows"] == first["total_rows"]
    assert len(embedder.calls) == 3  # nothing re-embedded

    rows = _query(scratch_db, "select e.id, c.name, e.document, e.cmetadata from langchain_pg_embedding e "
                              "join langchain_pg_collection c on c.uuid = e.collection_id")
    assert len(rows) == 6
    suffix = {"ddl": "-ddl", "documentation": "-doc", "sql": "-sql"}
    for row_id, collection, document, cmetadata in rows:
        assert row_id.endswith(suffix[collection])
        assert row_id == training_id(collection, document)
        assert cmetadata == {"id": row_id, "embedding_model": "hash-8", "embedding_dim": 8}
        if collection == "sql":
            parsed = json.loads(document)
            assert set(parsed) == {"question", "sql"}
    sql_docs = sorted(r[2] for r in rows if r[1] == "sql")
    # UTF-8 as is, not \\u escapes
    assert '{"question": "订单总数是多少？", "sql": "SELECT COUNT(*) FROM orders;"}' in sql_docs

    types = dict(_query(scratch_db, "select column_name, format_type(atttypid, atttypmod) from pg_attribute a "
                                    "join information_schema.columns c on c.column_name = a.attname "
                                    "and c.table_name = 'langchain_pg_embedding' "
                                    "where attrelid = 'langchain_pg_embedding'::regclass and attnum > 0"))
    assert types == {"id": "character varying", "collection_id": "uuid", "embedding": "vector(8)",
                     "document": "character varying", "cmetadata": "jsonb"}
    hnsw = _query(scratch_db, "select indexdef from pg_indexes where tablename = 'langchain_pg_embedding' "
                              "and indexdef ilike '%hnsw%'")
    assert len(hnsw) == 1 and "vector_cosine_ops" in hnsw[0][0]
    assert first["index_created"] is True and second["index_created"] is False


def test_dimension_mismatch_is_a_clear_error(scratch_db):
    load_training_data(scratch_db, HashEmbedder(8), ddl=DDL[:1], documentation=[], pairs=[], batch_size=10)
    with pytest.raises(errors.EmbeddingError, match=r"vector\(8\).*16 dimensions"):
        load_training_data(scratch_db, HashEmbedder(16), ddl=DDL, documentation=[], pairs=[], batch_size=10)


def test_existing_langchain_tables_are_reused(scratch_db):
    create_langchain_store(scratch_db, "vector(8)")
    result = load_training_data(scratch_db, HashEmbedder(8), ddl=[], documentation=[], pairs=PAIRS, batch_size=10)
    assert result["sql"] == 2
    assert _query(scratch_db, "select count(*) from langchain_pg_embedding where collection_id = "
                              "'00000000-0000-0000-0000-000000000001'")[0][0] == 2


def test_real_minilm_vectors_are_searchable(scratch_db):
    load_training_data(scratch_db, MiniLMEmbeddings(), ddl=DDL, documentation=split_markdown_sections(MD),
                       pairs=PAIRS, batch_size=4)
    query = MiniLMEmbeddings().embed(["what is the total amount of all orders"])[0]
    literal = "[" + ",".join(map(str, query)) + "]"
    best = _query(scratch_db, "select document from langchain_pg_embedding e join langchain_pg_collection c "
                              "on c.uuid = e.collection_id where c.name = 'sql' "
                              "order by embedding <=> %s::vector limit 1", (literal,))
    assert "SUM(amount)" in best[0][0]
