"""Vector restore through the HTTP API on the real local stack: load -> backup -> truncate -> restore gives
byte-identical rows (ids, documents, metadata, vectors), plus the listing of backups and the 4xx/409 rules."""
from __future__ import annotations

import random

import psycopg2
import pytest

from chalicelib.pipeline.models import QAPair
from chalicelib.pipeline.training import load_training_data
from chalicelib.pipeline.vector_restore import restore_vector_backup

pytestmark = pytest.mark.slow

VECTOR = "/api/v0/data_pipeline/vector"
EMB = "langchain_pg_embedding"
COLL = "langchain_pg_collection"


class SeededEmbedder:
    """384-d vectors (the local stack's dimension) with full float precision, deterministic per text."""

    model_name = "seeded-384"
    dimension = 384

    def embed(self, texts):
        return [[random.Random(t).uniform(-1, 1) for _ in range(self.dimension)] for t in texts]


def _rows(url: str) -> list[tuple]:
    """Every row, the vector as its binary wire format (byte comparison) and as text."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('langchain_pg_embedding') is not null")
        if not cur.fetchone()[0]:
            return []
        cur.execute("select id, collection_id::text, vector_send(embedding), embedding::text, document, "
                    "cmetadata::text from langchain_pg_embedding order by id")
        emb = [(r[0], r[1], bytes(r[2]), *r[3:]) for r in cur.fetchall()]
        cur.execute("select uuid::text, name, cmetadata::text from langchain_pg_collection order by uuid")
        return emb + cur.fetchall()


def _count(url: str, table: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"select count(*) from {table}")  # noqa: S608 - fixed table names
        return cur.fetchone()[0]


@pytest.fixture(scope="module")
def backed_up(pipeline_stack):
    """Training rows loaded, then a task whose execution backs up and truncates the vector tables."""
    from tests.support.pipeline import PipelineClient

    client = PipelineClient(pipeline_stack)
    url = pipeline_stack.pgvector_url
    existing = {r[0] for r in _rows(url) if len(r) == 6}
    pairs = [QAPair(f"服务区 {i} 的\"营收\"，按月统计？", f"SELECT {i}, 'a;b'\nFROM t;") for i in range(12)]
    docs = ["## 服务区\n多行文档, with \"quotes\"\r\nCRLF and 中文", "## plain section"]
    load_training_data(url, SeededEmbedder(), ddl=["create table t (id int); -- 表"], documentation=docs,
                       pairs=pairs, batch_size=5)
    before = _rows(url)
    task_id, status = client.run(
        ["public.bss_company"], business_context="高速公路服务区",
        execute={"execution_mode": "step", "step_name": "ddl_generation", "truncate_vector_tables": True},
    )
    assert status["status"] == "partial_completed", status.get("error_message")
    assert _count(url, EMB) == 0
    yield client, task_id, before, status
    # Leave the shared vector database as other modules expect: everything restored, this module's rows gone.
    mine = [r[0] for r in before if len(r) == 6 and r[0] not in existing]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("delete from langchain_pg_embedding where id = any(%s)", (mine,))


def test_backups_are_listed_with_rows_from_the_backup_log(backed_up):
    client, task_id, before, status = backed_up
    data = client.request("GET", f"{VECTOR}/backups?task_id={task_id}", expect=200)["data"]
    assert data["task_id"] == task_id and data["count"] == 1
    backup = data["backups"][0]
    counts = status["results"]["vector_backup"]["counts"]
    assert backup["timestamp"] == status["results"]["vector_backup"]["timestamp"]
    assert backup["rows_source"] == "backup_log"
    assert {t: i["rows"] for t, i in backup["tables"].items()} == counts
    assert counts[EMB] == len([r for r in before if len(r) == 6])
    assert [f["table"] for f in backup["files"]] == [COLL, EMB]
    assert all(f["file_size"] > 0 and f["download_url"].endswith(".csv") for f in backup["files"])
    assert backup["total_size"] == sum(f["file_size"] for f in backup["files"])
    # The download URL works.
    response = client.client.http.get(backup["files"][1]["download_url"])
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    # Listing across tasks finds it too.
    everywhere = client.request("GET", f"{VECTOR}/backups", expect=200)["data"]["backups"]
    assert any(b["task_id"] == task_id and b["timestamp"] == backup["timestamp"] for b in everywhere)


def test_restore_after_truncate_gives_byte_identical_rows(backed_up, pipeline_stack):
    client, task_id, before, _ = backed_up
    url = pipeline_stack.pgvector_url
    data = client.request("POST", f"{VECTOR}/restore", {"task_id": task_id}, expect=200)["data"]
    emb_rows = len([r for r in before if len(r) == 6])
    assert data["tables"][EMB] == {"rows_in_backup": emb_rows, "restored": emb_rows, "unchanged": 0,
                                   "skipped_conflicting": 0}
    # The collections were never truncated: identical rows are left alone.
    assert data["tables"][COLL]["restored"] == 0 and data["tables"][COLL]["unchanged"] > 0
    assert data["total_restored"] == emb_rows
    assert _rows(url) == before

    # Truncating first and restoring both tables gives the same bytes again.
    data = client.request("POST", f"{VECTOR}/restore", {"task_id": task_id, "truncate_before_restore": True,
                                                        "timestamp": data["timestamp"]}, expect=200)["data"]
    assert data["tables"][EMB]["restored"] == emb_rows and data["tables"][COLL]["restored"] > 0
    assert _rows(url) == before
    # Restoring what is already there is a no-op.
    data = client.request("POST", f"{VECTOR}/restore", {"task_id": task_id}, expect=200)["data"]
    assert data["total_restored"] == 0
    assert _rows(url) == before
    status = client.status(task_id)
    assert status["results"]["vector_restore"]["timestamp"] == data["timestamp"]
    assert any("vector restore done" in r["message"] for r in client.logs(task_id))


def test_restore_conflicts_are_409_and_change_nothing(backed_up, pipeline_stack):
    client, task_id, before, _ = backed_up
    url = pipeline_stack.pgvector_url
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("update langchain_pg_embedding set document = 'edited' where id = (select min(id) from "
                    "langchain_pg_embedding)")
        cur.execute("delete from langchain_pg_embedding where id = (select max(id) from langchain_pg_embedding)")
    changed = _rows(url)
    body = client.request("POST", f"{VECTOR}/restore", {"task_id": task_id, "tables": [EMB]}, expect=409)
    assert body["success"] is False and body["code"] == 409
    assert body["error"]["code"] == "VECTOR_RESTORE_CONFLICT" and "on_conflict=skip" in body["message"]
    assert _rows(url) == changed
    data = client.request("POST", f"{VECTOR}/restore", {"task_id": task_id, "tables": [EMB], "on_conflict": "skip"},
                          expect=200)["data"]
    assert data["tables"][EMB]["restored"] == 1 and data["tables"][EMB]["skipped_conflicting"] == 1
    client.request("POST", f"{VECTOR}/restore", {"task_id": task_id, "truncate_before_restore": True}, expect=200)
    assert _rows(url) == before


def test_restore_input_errors(backed_up, pipeline):
    client, task_id, _, _ = backed_up
    cases = [
        ({}, 400, "VALIDATION_ERROR"),
        ({"task_id": "../etc"}, 400, "VALIDATION_ERROR"),
        ({"task_id": "task_19990101_000000"}, 404, "TASK_NOT_FOUND"),
        ({"task_id": task_id, "timestamp": "yesterday"}, 400, "VALIDATION_ERROR"),
        ({"task_id": task_id, "timestamp": "19990101_000000"}, 404, "BACKUP_NOT_FOUND"),
        ({"task_id": task_id, "tables": ["pg_authid"]}, 400, "VALIDATION_ERROR"),
        ({"task_id": task_id, "tables": [COLL], "truncate_before_restore": True}, 400, "VALIDATION_ERROR"),
        ({"task_id": task_id, "truncate_before_restore": "yes"}, 400, "VALIDATION_ERROR"),
        ({"task_id": task_id, "on_conflict": "overwrite"}, 400, "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        answer = client.request("POST", f"{VECTOR}/restore", body, expect=status)
        assert answer["error"]["code"] == code, (body, answer)
    no_backup = pipeline.create_task(task_name="no backup")
    answer = client.request("POST", f"{VECTOR}/restore", {"task_id": no_backup}, expect=404)
    assert answer["error"]["code"] == "BACKUP_NOT_FOUND"
    assert client.request("GET", f"{VECTOR}/backups?task_id={no_backup}", expect=200)["data"]["backups"] == []
    client.request("GET", f"{VECTOR}/backups?task_id=task_19990101_000000", expect=404)
    client.request("GET", f"{VECTOR}/backups?limit=0", expect=400)


def test_restore_creates_missing_tables(scratch_db):
    """A fresh vector database: the tables are created (dimension from the backup) and filled."""
    header = "id,collection_id,embedding,document,cmetadata\r\n"
    coll = b"uuid,name,cmetadata\r\n0d6a1c7e-0000-5000-8000-000000000001,sql,\r\n"
    emb = (header + '1-sql,0d6a1c7e-0000-5000-8000-000000000001,"[0.5,-1.25,3]","{""q"": ""中文""}",'
           '"{""id"": ""1-sql""}"\r\n').encode()
    report = restore_vector_backup(scratch_db, {COLL: coll, EMB: emb}, False)
    assert report[EMB]["restored"] == 1 and report[COLL]["restored"] == 1
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("select embedding::text, document, format_type(a.atttypid, a.atttypmod) from "
                    "langchain_pg_embedding, pg_attribute a where a.attrelid = 'langchain_pg_embedding'::regclass "
                    "and a.attname = 'embedding'")
        assert cur.fetchone() == ("[0.5,-1.25,3]", '{"q": "中文"}', "vector(3)")
