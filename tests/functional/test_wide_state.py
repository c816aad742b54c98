"""A complete run on a few hundred tables through the real state machine (moto) passes references, not data:
the largest state input/output stays the same small size whatever the table count, the task item stays small,
and training_load embeds the files a round at a time. (benchmarks/bench_wide_run.py runs 1,000 and 10,000.)"""
from __future__ import annotations

import json
import uuid

import psycopg2
import pytest

from benchmarks.bench_wide_run import _history, _largest_item, _largest_payload, build_database
from chalicelib.steps import training_load

TABLES = 200

pytestmark = pytest.mark.slow


@pytest.fixture
def wide_db(scratch_db):
    schema = f"w{uuid.uuid4().hex[:8]}"  # new documents for the vector store, which outlives test runs
    return scratch_db, build_database(scratch_db, TABLES, schema)


def test_a_wide_complete_run_keeps_states_and_items_small(pipeline, pipeline_stack, wide_db, llm_stub, monkeypatch):
    url, tables = wide_db
    # Embeddings from the stub's endpoint (deterministic, instant): the figure is the pipeline's, not MiniLM's.
    llm_stub.embedding_dim = 384  # the shared vector store is 384-d
    monkeypatch.setenv("EMBEDDING_BASE_URL", llm_stub.base_url)
    monkeypatch.setenv("EMBEDDING_MODEL", "stub-embedding")
    monkeypatch.setenv("EMBEDDING_DIM", "384")
    monkeypatch.setattr(training_load, "FILES_PER_ROUND", 64)  # 401 files: seven rounds
    task_id, status = pipeline.run(tables, timeout=600, task_name="wide", db_connection=url, db_name="wide",
                                   execute={"execution_mode": "complete"})
    assert status["status"] == "completed", status.get("error_message")
    assert status["results"]["ddl_generation"]["tables_succeeded"] == TABLES
    assert status["results"]["training_load"]["ddl"] == TABLES
    arn = pipeline_stack.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + \
        status["execution"]["execution_id"]
    events = _history(pipeline_stack.sfn, arn)
    largest, where = _largest_payload(events)
    names_alone = len(json.dumps(tables).encode("utf-8"))  # what a state listing the tables would carry at least
    assert largest < 4096 < names_alone, (largest, where)
    size, key = _largest_item(pipeline_stack.client("dynamodb"), pipeline_stack.table_name)
    assert size < 60_000, (size, key)
    # Every table's DDL row is in the vector store although no round held more than 64 files.
    with psycopg2.connect(pipeline_stack.pgvector_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from langchain_pg_embedding where cmetadata->>'task_id' = %s "
                    "and cmetadata->>'source_file' like %s", (task_id, "%.ddl"))
        assert cur.fetchone()[0] == TABLES
    messages = [entry["message"] for entry in pipeline.logs(task_id)]
    assert f"{2 * TABLES + 1} files: {2 * TABLES} from the ddl_generation bundle (checked against their ETags), " \
           "1 read from S3" in messages
