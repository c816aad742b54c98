"""Batched vector loading: binary COPY per batch, idempotent, HNSW index built once and never rebuilt."""
from __future__ import annotations

import numpy as np
import psycopg2
import pytest

from chalicelib import errors
from chalicelib.pipeline import training, vector_copy
from chalicelib.pipeline.models import QAPair


class CountingEmbedder:
    """Deterministic 8-d vectors; records every request so batch sizes can be checked."""

    model_name = "counting"
    dimension = 8

    def __init__(self):
        self.calls: list[int] = []

    def embed(self, texts):
        self.calls.append(len(texts))
        return [[float((hash(t) >> s) % 97) + 1.0 for s in range(8)] for t in texts]


def _one(url, query, params=None):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()[0]


def _pairs(n: int, offset: int = 0) -> list[QAPair]:
    return [QAPair(f"问题 {i}", f"select {i};") for i in range(offset, offset + n)]


def test_batches_idempotency_and_hnsw_index_kept(scratch_db):
    embedder = CountingEmbedder()
    first = training.load_training_data(scratch_db, embedder, ddl=[], documentation=[], pairs=_pairs(25),
                                        batch_size=4, write_batch_size=10)
    assert first["sql"] == 25 and first["index_created"] is True
    assert embedder.calls == [4] * 6 + [1]  # embeddings requested in batches of batch_size
    oid = _one(scratch_db, "select to_regclass(%s)::oid", (training.HNSW_INDEX,))
    assert oid is not None

    second = training.load_training_data(scratch_db, embedder, ddl=[], documentation=[],
                                         pairs=_pairs(25) + _pairs(5, offset=100), batch_size=4, write_batch_size=10)
    assert (second["sql"], second["skipped_existing"], second["index_created"]) == (5, 25, False)
    assert embedder.calls[7:] == [4, 1]  # only the new ids were embedded
    assert _one(scratch_db, "select to_regclass(%s)::oid", (training.HNSW_INDEX,)) == oid  # never rebuilt
    assert _one(scratch_db, "select count(*) from langchain_pg_embedding") == 30
    assert _one(scratch_db, "select count(*) from pg_indexes where tablename = 'langchain_pg_embedding' "
                            "and indexdef ilike '%hnsw%'") == 1


def test_write_embeddings_skips_existing_ids_inside_a_batch(scratch_db):
    conn = psycopg2.connect(scratch_db)
    try:
        training.ensure_vector_tables(conn, 3)
        collection = training._collection_ids(conn, ["sql"])["sql"]
        rows = [(f"id-{i}-sql", collection, f'{{"question": "q{i}"}}') for i in range(6)]
        vectors = np.arange(18, dtype=np.float32).reshape(6, 3) + 1
        assert vector_copy.write_embeddings(conn, rows[:2], vectors[:2], dimension=3) == {"id-0-sql", "id-1-sql"}
        # ids 0 and 1 exist: the direct COPY of that batch fails on them, the staging path inserts the rest.
        inserted = vector_copy.write_embeddings(conn, rows, vectors, dimension=3, batch_size=4)
        assert inserted == {f"id-{i}-sql" for i in range(2, 6)}
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        with conn.cursor() as cur:
            cur.execute("select id, embedding::text, cmetadata from langchain_pg_embedding order by id")
            stored = cur.fetchall()
        assert len(stored) == 6
        assert stored[3] == ("id-3-sql", "[10,11,12]", {"id": "id-3-sql"})
    finally:
        conn.close()


def test_json_cmetadata_tables_go_through_staging(scratch_db):
    conn = psycopg2.connect(scratch_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("create table langchain_pg_collection (uuid uuid primary key, name varchar, cmetadata json)")
        cur.execute("create table langchain_pg_embedding (collection_id uuid references langchain_pg_collection, "
                    "embedding vector, document text, cmetadata json, id varchar primary key)")
    conn.close()
    result = training.load_training_data(scratch_db, CountingEmbedder(), ddl=["create table t (id int);"],
                                         documentation=[], pairs=_pairs(3), batch_size=2)
    assert (result["ddl"], result["sql"]) == (1, 3)
    assert result["index_created"] is False  # no fixed dimension: no HNSW index possible
    assert _one(scratch_db, "select count(*) from langchain_pg_embedding where cmetadata->>'id' = id") == 4


def test_bad_vectors_are_clear_errors(scratch_db):
    conn = psycopg2.connect(scratch_db)
    try:
        training.ensure_vector_tables(conn, 3)
        collection = training._collection_ids(conn, ["sql"])["sql"]
        rows = [("a-sql", collection, "a"), ("b-sql", collection, "b")]
        with pytest.raises(errors.EmbeddingError, match="dimensions"):
            vector_copy.write_embeddings(conn, rows, [[1.0, 2.0, 3.0], [1.0, 2.0]], dimension=3)
        with pytest.raises(errors.EmbeddingError, match="NaN"):
            vector_copy.write_embeddings(conn, rows, [[1.0, 2.0, 3.0], [1.0, float("nan"), 3.0]], dimension=3)
        with pytest.raises(errors.EmbeddingError, match="1 vectors for 2 texts"):
            vector_copy.write_embeddings(conn, rows, [[1.0, 2.0, 3.0]], dimension=3)
    finally:
        conn.close()


def test_rounds_build_the_hnsw_index_once_after_the_last(scratch_db):
    """A load in rounds (training_load's FILES_PER_ROUND) builds the index over all of them at the end: growing
    an HNSW index row by row from the second round on costs several times a build over the full table."""
    embedder = CountingEmbedder()
    first = training.load_training_data(scratch_db, embedder, ddl=[], documentation=[], pairs=_pairs(10),
                                        create_index=False)
    assert first["index_created"] is False
    assert _one(scratch_db, "select to_regclass(%s)::oid", (training.HNSW_INDEX,)) is None
    last = training.load_training_data(scratch_db, embedder, ddl=[], documentation=[], pairs=_pairs(5, offset=10))
    assert last["index_created"] is True and last["sql"] == 5
    assert _one(scratch_db, "select to_regclass(%s)::oid", (training.HNSW_INDEX,)) is not None
