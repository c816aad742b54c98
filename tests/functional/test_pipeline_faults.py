"""Failure handling through the real state machine (moto executing infra/data_pipeline.asl.json, step Lambdas
in-process, real PostgreSQL): the business database going away mid-run, a step Lambda delivered twice
(at-least-once), and a vector backup that fails before a requested truncate."""
from __future__ import annotations

import json
import re
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from infra.local.demo_db import DEMO_BUSINESS_CONTEXT

pytestmark = pytest.mark.slow

DB_PASSWORD = "Pw-Faults-G-91"

SHOP_SCHEMA = """
create table shop (
    id integer primary key,
    shop_name varchar(50) not null,
    city varchar(20),
    opened_on date,
    delete_ts timestamp
);
comment on table shop is '门店';
comment on column shop.shop_name is '门店名称';
create table sale (
    id integer primary key,
    shop_id integer not null references shop (id),
    amount numeric(10,2),
    pay_type varchar(10),
    sold_on date
);
comment on table sale is '销售流水';
insert into shop select g, '门店' || g, (array['北京','上海','广州'])[1 + g % 3], date '2024-01-01' + g, null
    from generate_series(1, 12) g;
insert into sale select g, 1 + g % 12, (g % 97) * 1.5, (array['微信','支付宝','现金'])[1 + g % 3],
    date '2024-03-01' + g % 30 from generate_series(1, 300) g;
analyze shop; analyze sale;
"""


def _with_password(url: str, password: str = DB_PASSWORD) -> str:
    return re.sub(r"^postgresql://([^:/@]+):[^@]*@", rf"postgresql://\1:{password}@", url)


def _with_user(url: str, user: str, password: str) -> str:
    return re.sub(r"^postgresql://[^@]*@", f"postgresql://{user}:{password}@", url)


def _dbname(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[1]


def _admin(pg_url: str):
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    return conn


def _run(pipeline, task_id: str, timeout: float = 90, **execute) -> dict:
    pipeline.execute(task_id, **execute)
    return pipeline.wait(task_id, timeout=timeout)


def _vector_counts(url: str) -> dict[str, int]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('public.langchain_pg_embedding') is not null")
        if not cur.fetchone()[0]:
            return {}
        cur.execute("select c.name, count(e.id) from langchain_pg_collection c "
                    "left join langchain_pg_embedding e on e.collection_id = c.uuid group by c.name")
        return dict(cur.fetchall())


def _public_files(pipeline, task_id: str) -> dict[str, str]:
    """Every listed file with its text, except the task log (it grows with every invocation)."""
    return {name: pipeline.file_text(task_id, name) for name in pipeline.files(task_id) if name != "data_pipeline.log"}


# -- 5. the business database goes away --------------------------------------------------------------------------


def _set_connections(pg_url: str, dbname: str, allowed: bool) -> None:
    conn = _admin(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("alter database {} allow_connections {}").format(
                sql.Identifier(dbname), sql.SQL("true" if allowed else "false")))
            if not allowed:
                cur.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                            "where datname = %s and pid <> pg_backend_pid()", (dbname,))
    finally:
        conn.close()


def test_business_database_going_away_fails_the_step_and_the_task_recovers(pipeline, pg_url, scratch_db):
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute(SHOP_SCHEMA)
    dbname = _dbname(scratch_db)
    task_id = pipeline.create_task(business_context="连锁门店销售分析", db_connection=_with_password(scratch_db))
    pipeline.upload_tables(task_id, ["public.shop", "public.sale"])
    for step in ("ddl_generation", "qa_generation"):
        status = _run(pipeline, task_id, execution_mode="step", step_name=step)
        assert status["step_status"][step] == "completed", status.get("error_message")
    pair_file = status["results"]["qa_generation"]["pair_file"]
    assert pair_file.startswith(f"qs_{dbname}_")
    before = _public_files(pipeline, task_id)

    _set_connections(pg_url, dbname, allowed=False)
    try:
        status = _run(pipeline, task_id, execution_mode="step", step_name="sql_validation")
        assert status["status"] == "failed"
        assert status["step_status"] == {"ddl_generation": "completed", "qa_generation": "completed",
                                         "sql_validation": "failed", "training_load": "pending"}
        message = status["error_message"]
        assert "DATABASE_CONNECTION_ERROR" in message, message
        failed = next(st for st in status["steps"] if st["step_name"] == "sql_validation")
        assert "DATABASE_CONNECTION_ERROR" in failed["error_message"]
        assert "not currently accepting connections" in message and f"/{dbname}" in message
        assert DB_PASSWORD not in message and "postgres:***@" in message
        # Nothing half-done is presented: the pair file is untouched, no summary, no backup.
        assert _public_files(pipeline, task_id) == before
        assert not [n for n in before if n.startswith("sql_validation_") or n.endswith(".backup")]

        errors = pipeline.logs(task_id, level="ERROR")
        assert any("sql_validation failed" in r["message"] for r in errors)
        assert DB_PASSWORD not in json.dumps(pipeline.logs(task_id), ensure_ascii=False)
        assert DB_PASSWORD not in pipeline.file_text(task_id, "data_pipeline.log")
    finally:
        _set_connections(pg_url, dbname, allowed=True)

    status = _run(pipeline, task_id, execution_mode="step", step_name="sql_validation")
    assert status["step_status"]["sql_validation"] == "completed", status.get("error_message")
    assert status["status"] == "partial_completed" and status["error_message"] is None
    assert status["results"]["sql_validation"]["total"] == len(json.loads(before[pair_file]))
    assert any(n.startswith("sql_validation_") and n.endswith("_summary.log") for n in pipeline.files(task_id))
    assert DB_PASSWORD not in json.dumps(pipeline.status(task_id), ensure_ascii=False)


# -- 6. at-least-once delivery ------------------------------------------------------------------------------------


def _invoke(stack, function: str, event: dict) -> dict:
    """Invoke a step Lambda through the Lambda API (moto), exactly as the state machine does."""
    response = stack.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode("utf-8"))
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, payload
    return payload


def _comparable(files: dict[str, str]) -> dict[str, str]:
    """File contents without the part that legitimately changes per invocation (the validation duration)."""
    return {name: re.sub(r"(?m)^Duration: .*$", "Duration: -", text) for name, text in files.items()}


def test_step_lambdas_delivered_twice_produce_the_same_outputs(pipeline, pipeline_stack):
    task_id = pipeline.create_task(business_context=DEMO_BUSINESS_CONTEXT, task_name="at least once")
    pipeline.upload_tables(task_id, ["public.bss_company"])
    status = _run(pipeline, task_id, timeout=150)
    assert status["status"] == "completed", status.get("error_message")
    files = _public_files(pipeline, task_id)
    vectors = _vector_counts(pipeline_stack.pgvector_url)
    progress = status["progress"]

    from chalicelib.stores.tasks import TaskStore

    task = TaskStore().get_task(task_id)
    base = {"task_id": task_id, "execution_id": task["execution"]["execution_id"]}
    themes = status["results"]["qa_generation"]["themes"]
    tables = [{"schema": "public", "name": "bss_company"}]
    # Every step Lambda after the plan, re-delivered with the event the state machine sends.
    _invoke(pipeline_stack, "step_ddl_tables", {**base, "tables": tables})
    for index in range(themes):
        _invoke(pipeline_stack, "step_qa_theme", {**base, "theme_index": index})
    merged = _invoke(pipeline_stack, "step_qa_merge", {
        **base, "plan": {}, "themes_usage": {},
        "results": [{"index": i, "pairs": 0, "llm_usage": {}} for i in range(themes)],
    })
    assert merged["pair_file"] == status["results"]["qa_generation"]["pair_file"]
    planned = _invoke(pipeline_stack, "step_sql_validation_plan", {**base, "plan": {}})
    results = [_invoke(pipeline_stack, "step_sql_validation_batch", {**base, "batch_index": item["index"]})
               for item in ({"index": i} for i in range(planned["count"]))]  # the plan's items are in S3
    _invoke(pipeline_stack, "step_sql_validation_merge", {**base, "plan": {}, "results": results})
    loaded = _invoke(pipeline_stack, "step_training_load", {**base, "plan": {}})
    assert loaded == {"loaded": {"ddl": 0, "documentation": 0, "sql": 0}}

    again = _public_files(pipeline, task_id)
    assert sorted(again) == sorted(files)
    assert _comparable(again) == _comparable(files)
    assert _vector_counts(pipeline_stack.pgvector_url) == vectors
    status = pipeline.status(task_id)
    assert status["status"] == "completed" and set(status["step_status"].values()) == {"completed"}
    assert status["results"]["qa_generation"]["pairs"] == json.loads(files[merged["pair_file"]]).__len__()
    assert progress["ddl_generation"]["done"] == 1 and progress["qa_generation"]["done"] == themes
    # Re-delivered iterations replaced their records without counting twice.
    assert status["progress"]["ddl_generation"]["done"] == 1
    assert status["progress"]["qa_generation"]["done"] == themes


def test_progress_counts_an_item_once_when_its_lambda_is_delivered_twice(pipeline_stack):
    from chalicelib.api.task_view import public_task_view
    from chalicelib.stores.tasks import TaskStore

    store = TaskStore()
    task_id = store.create_task({"task_name": "progress", "created_by": "test", "parameters": {}})["task_id"]
    record = {"table": "public.bss_company", "ok": True, "seconds": 0.1}
    for _ in range(2):
        store.record_item_progress(task_id, "ddl_generation", "tables", "public.bss_company", record, ok=True)
    assert public_task_view(store.get_task(task_id))["progress"]["ddl_generation"]["done"] == 1


# -- 7. a vector backup that fails before a truncate ---------------------------------------------------------------


@pytest.fixture
def restricted_vector_db(pg_url, scratch_db):
    """A pgvector database holding 5 embeddings, reached as a role that may TRUNCATE the embedding table but not
    read it: the backup cannot succeed, the truncate could."""
    from chalicelib.pipeline.training import ensure_vector_tables

    role = f"g_vec_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(scratch_db)
    try:
        ensure_vector_tables(conn, 3)
        with conn, conn.cursor() as cur:
            cur.execute("insert into langchain_pg_collection (uuid, name) values (gen_random_uuid(), 'ddl')")
            cur.execute("insert into langchain_pg_embedding (id, collection_id, embedding, document) "
                        "select 'row-' || g, (select uuid from langchain_pg_collection), '[1,0,0]', 'doc ' || g "
                        "from generate_series(1, 5) g")
            cur.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
            cur.execute(sql.SQL("grant connect on database {} to {}").format(
                sql.Identifier(_dbname(scratch_db)), sql.Identifier(role)))
            cur.execute(sql.SQL("grant usage on schema public to {}").format(sql.Identifier(role)))
            cur.execute(sql.SQL("grant select on langchain_pg_collection to {}").format(sql.Identifier(role)))
            cur.execute(sql.SQL("grant truncate on langchain_pg_embedding to {}").format(sql.Identifier(role)))
    finally:
        conn.close()
    yield _with_user(scratch_db, role, DB_PASSWORD)
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
    admin = _admin(pg_url)
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
    finally:
        admin.close()


def test_failed_backup_stops_the_truncate(pipeline, scratch_db, restricted_vector_db, monkeypatch):
    monkeypatch.setenv("PGVECTOR_DB_URL", restricted_vector_db)
    task_id = pipeline.create_task(business_context=DEMO_BUSINESS_CONTEXT)
    pipeline.upload_tables(task_id, ["public.bss_company"])
    status = _run(pipeline, task_id, execution_mode="step", step_name="ddl_generation", truncate_vector_tables=True)

    assert status["status"] == "failed"
    message = status["error_message"]
    assert message.startswith("VECTOR_BACKUP_FAILED:"), message
    assert "permission denied for table langchain_pg_embedding" in message
    assert DB_PASSWORD not in message
    # Neither the truncate nor the requested step ran; the failure is not pinned on a pipeline step.
    assert "vector_truncate" not in status["results"] and "vector_backup" not in status["results"]
    assert status["step_status"]["ddl_generation"] == "pending"
    assert not [n for n in pipeline.files(task_id) if n.startswith("vector_bak/") or n.endswith(".ddl")]
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from langchain_pg_embedding")
        assert cur.fetchone()[0] == 5
    messages = [r["message"] for r in pipeline.logs(task_id)]
    assert not any("truncated" in m for m in messages)
    assert any("VECTOR_BACKUP_FAILED" in m or "vector backup failed" in m for m in messages)
