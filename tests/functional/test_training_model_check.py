"""Every stored row records its embedding model and dimension; a load into a collection holding vectors of
another model or dimension is refused with an error naming both, before anything is embedded."""
from __future__ import annotations

import psycopg2
import pytest

from chalicelib import errors
from chalicelib.pipeline.models import QAPair
from chalicelib.pipeline.training import Provenance, load_training_data
from tests.support.vector_store import create_langchain_store

DDL = ["create table orders (id int primary key, amount numeric);"]
PAIRS = [QAPair("订单总数是多少？", "SELECT COUNT(*) FROM orders;")]



class FixedEmbedder:
    """Deterministic vectors of any dimension under any model name; counts what it was asked to embed."""

    def __init__(self, model_name: str, dimension: int):
        self.model_name, self.dimension = model_name, dimension
        self.embedded = 0

    def embed(self, texts):
        self.embedded += len(texts)
        return [[(i + 1) / self.dimension for i in range(self.dimension)] for _ in texts]


def _rows(url, query, params=()):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def test_each_row_records_model_and_dimension(scratch_db):
    load_training_data(scratch_db, FixedEmbedder("model-a", 8), ddl=DDL, documentation=["## orders\n订单"],
                       pairs=PAIRS)
    load_training_data(scratch_db, FixedEmbedder("model-a", 8), ddl=["create table t (id int);"], documentation=[],
                       pairs=[], provenance=Provenance(task_id="task_1", db_name="shop"))
    rows = _rows(scratch_db, "select cmetadata->>'embedding_model', cmetadata->>'embedding_dim' "
                             "from langchain_pg_embedding")
    assert len(rows) == 4 and set(rows) == {("model-a", "8")}


def test_another_model_of_the_same_dimension_is_refused_naming_both(scratch_db):
    load_training_data(scratch_db, FixedEmbedder("all-MiniLM-L6-v2", 8), ddl=DDL, documentation=[], pairs=PAIRS)
    other = FixedEmbedder("multilingual-e5-small-q4", 8)
    with pytest.raises(errors.EmbeddingError, match=r"collection '(ddl|sql)' holds 1 vector\(s\) of all-MiniLM-L6-v2 "
                                                    r"\(8-d\); refusing to load vectors of multilingual-e5-small-q4 "
                                                    r"\(8-d\)"):
        load_training_data(scratch_db, other, ddl=DDL + ["create table t (id int);"], documentation=[], pairs=[])
    assert other.embedded == 0
    assert _rows(scratch_db, "select count(*) from langchain_pg_embedding")[0][0] == 2
    # a collection the other model never wrote to is open to it
    assert load_training_data(scratch_db, other, ddl=[], documentation=["## t\n表"], pairs=[])["documentation"] == 1


def test_another_dimension_in_an_untyped_vector_column_is_refused(scratch_db):
    """A store created by others with `vector` (no fixed dimension) and rows recording no model (as Vanna's
    train() writes them): the dimension of the stored vectors decides."""
    create_langchain_store(scratch_db, "vector",
                           "insert into langchain_pg_embedding values ('u1-sql', "
                           "'00000000-0000-0000-0000-000000000001', '[1,0,0,0]', "
                           "'{\"question\": \"q\", \"sql\": \"select 1\"}', '{\"id\": \"u1-sql\"}')")
    with pytest.raises(errors.EmbeddingError, match=r"'sql' holds 1 vector\(s\) of an unrecorded model \(4-d\); "
                                                    r"refusing to load vectors of model-b \(8-d\)"):
        load_training_data(scratch_db, FixedEmbedder("model-b", 8), ddl=[], documentation=[], pairs=PAIRS)
    # the same dimension is accepted next to rows that record no model
    same_dimension = load_training_data(scratch_db, FixedEmbedder("model-c", 4), ddl=[], documentation=[], pairs=PAIRS)
    assert same_dimension["sql"] == 1
