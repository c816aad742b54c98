"""The training_load step records where each row came from (task, database, file, provider, models) in cmetadata,
next to Vanna's `id`; run through the real state machine on the local stack."""
from __future__ import annotations

import re
import uuid

import psycopg2
import pytest

from chalicelib.pipeline.db import database_name
from chalicelib.providers.embeddings import DEFAULT_OFFLINE_MODEL

pytestmark = pytest.mark.slow


def _with_password(url: str) -> str:
    # db_connection must be a full user:password URL; pgserver trusts local connections, so any password does.
    return re.sub(r"^postgresql://([^:/@]+):[^@]*@", r"postgresql://\1:secret@", url)


def test_loaded_rows_say_which_task_database_file_and_provider_produced_them(pipeline, pipeline_stack, scratch_db):
    # A table of its own, so no earlier load in the stack's shared vector database holds the same documents.
    table = f"parcel_{uuid.uuid4().hex[:8]}"
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute(f"create table {table} (id int primary key, weight_kg numeric(8,2), city varchar(32), "
                    "sent_at timestamp)")
        cur.execute(f"insert into {table} select g, g * 1.5, 'city ' || (g % 3), now() "  # noqa: S608
                    "from generate_series(1, 30) g")
    dbname = database_name(scratch_db)
    task_id, status = pipeline.run([f"public.{table}"], task_name="provenance", business_context="物流包裹管理",
                                   db_connection=_with_password(scratch_db),
                                   execute={"execution_mode": "complete"})
    assert status["status"] == "completed", status.get("error_message")
    load = status["results"]["training_load"]
    assert load["layout"] == "langchain_postgres" and load["ddl"] == 1 and load["sql"] > 0

    with psycopg2.connect(pipeline_stack.pgvector_url) as conn, conn.cursor() as cur:
        cur.execute("select c.name, e.id, e.cmetadata from langchain_pg_embedding e join langchain_pg_collection c "
                    "on c.uuid = e.collection_id where e.cmetadata->>'task_id' = %s", (task_id,))
        rows = cur.fetchall()
    assert {name for name, _, _ in rows} == {"ddl", "documentation", "sql"}
    assert len(rows) == load["ddl"] + load["documentation"] + load["sql"]
    files = pipeline.files(task_id)
    for collection, row_id, meta in rows:
        assert meta["id"] == row_id and row_id[-4:] == {"ddl": "-ddl", "documentation": "-doc", "sql": "-sql"}[
            collection]
        assert meta["db_name"] == dbname
        assert (meta["provider"], meta["model"]) == ("heuristic", None)  # no LLM configured in the tests
        assert meta["embedding_model"] == DEFAULT_OFFLINE_MODEL and meta["loaded_by"] == "data_pipeline"
        assert meta["embedding_dim"] == 384
        expected = {"ddl": {f"{table}.ddl"}, "documentation": {f"{table}_detail.md", "metadata_detail.md"},
                    "sql": {status["results"]["qa_generation"]["pair_file"]}}[collection]
        assert meta["source_file"] in expected and meta["source_file"] in files
    assert f"{table}_detail.md" in {meta["source_file"] for _, _, meta in rows}
