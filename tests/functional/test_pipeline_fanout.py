"""ddl_generation's Map fan-out on the local stack (moto executing infra/data_pipeline.asl.json, step Lambdas
in-process, real PostgreSQL): partial failures are reported and the other tables still produce their files,
a crashed batch Lambda is caught by the Map, and per-table progress is visible while the step runs."""
from __future__ import annotations

import json
import re
import time
import uuid

import psycopg2
import pytest
from psycopg2 import sql

pytestmark = pytest.mark.slow

GOOD = ["public.bss_company", "public.bss_service_area", "public.bss_car_day_count"]
UNREADABLE = "public.bss_branch"
STEP = {"execution_mode": "step", "step_name": "ddl_generation"}


def _as_role(url: str, role: str) -> str:
    return re.sub(r"^postgresql://[^@/]*@", f"postgresql://{role}@", url)


@pytest.fixture(scope="module")
def reader_url(pipeline_stack):
    """A login role that may read the GOOD tables but not UNREADABLE (SELECT revoked)."""
    role = f"fanout_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(pipeline_stack.db_url)
    conn.autocommit = True
    who = sql.Identifier(role)
    good = sql.SQL(", ").join(sql.Identifier(*t.split(".")) for t in GOOD)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("create role {} login").format(who))
        cur.execute(sql.SQL("grant usage on schema public to {}").format(who))
        cur.execute(sql.SQL("grant select on {} to {}").format(good, who))
        cur.execute(sql.SQL("revoke select on {} from {}").format(sql.Identifier(*UNREADABLE.split(".")), who))
    yield _as_role(pipeline_stack.db_url, role)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop owned by {}").format(who))
        cur.execute(sql.SQL("drop role {}").format(who))
    conn.close()


def _errors(pipeline, task_id: str) -> list[str]:
    return [r["message"] for r in pipeline.logs(task_id) if r["level"] == "ERROR"]


def _assert_files(pipeline, task_id: str, tables: list[str], present: bool) -> None:
    files = pipeline.files(task_id)
    for table in tables:
        name = table.split(".", 1)[1]
        assert (f"{name}.ddl" in files and f"{name}_detail.md" in files) is present, (table, sorted(files))


def test_an_unreadable_table_is_reported_and_the_others_produce_files(pipeline, reader_url, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_DDL_BATCH_SIZE", "2")
    task_id, status = pipeline.run([*GOOD, UNREADABLE], execute=STEP, task_name="fan-out partial",
                                   db_connection=reader_url)
    assert status["step_status"]["ddl_generation"] == "completed", status.get("error_message")
    result = status["results"]["ddl_generation"]
    assert result["tables_succeeded"] == 3 and result["tables_failed"] == 1
    assert "permission denied" in result["failed_tables"][UNREADABLE]
    progress = status["progress"]["ddl_generation"]
    assert progress["total"] == 4 and progress["done"] == 3 and progress["failed"] == 1
    assert progress["tables"][UNREADABLE]["ok"] is False
    assert all(progress["tables"][t]["ok"] and progress["tables"][t]["seconds"] >= 0 for t in GOOD)
    assert any(UNREADABLE in message for message in _errors(pipeline, task_id))
    _assert_files(pipeline, task_id, GOOD, True)
    _assert_files(pipeline, task_id, [UNREADABLE], False)


def test_a_crashed_batch_lambda_is_caught_by_the_map_and_reported(pipeline, pipeline_stack, monkeypatch):
    """The Lambda of one Map iteration dies (as on a runtime crash): the Map's Catch reports it, merge marks
    its tables failed, the other batches' tables are done."""
    monkeypatch.setenv("DATA_PIPELINE_DDL_BATCH_SIZE", "2")
    handlers = pipeline_stack.app.handler_map
    real = handlers["step_ddl_tables"]
    doomed = GOOD[2]

    def crashing(event, context):
        names = [f"{t['schema']}.{t['name']}" for t in event["tables"]["tables"]]
        if doomed in names:
            raise MemoryError("Runtime exited with error: signal: killed")
        return real(event, context)

    monkeypatch.setitem(handlers, "step_ddl_tables", crashing)
    tables = [*GOOD, "public.bss_section_route"]
    task_id, status = pipeline.run(tables, execute=STEP, task_name="fan-out crash")
    assert status["step_status"]["ddl_generation"] == "completed", status.get("error_message")
    result = status["results"]["ddl_generation"]
    crashed = [doomed, "public.bss_section_route"]  # the second batch of two
    assert sorted(result["failed_tables"]) == sorted(crashed)
    assert all("MemoryError" in result["failed_tables"][t] for t in crashed)
    progress = status["progress"]["ddl_generation"]
    assert progress["done"] == 2 and progress["failed"] == 2
    assert all(progress["tables"][t]["ok"] is False for t in crashed)
    errors = _errors(pipeline, task_id)
    assert all(any(t in m for m in errors) for t in crashed)
    _assert_files(pipeline, task_id, GOOD[:2], True)
    _assert_files(pipeline, task_id, crashed, False)


def _comment_answer(request: dict) -> dict:
    prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
    columns = re.findall(r"^- (\w+) \(", prompt, re.M)
    return {"content": json.dumps({"table_comment": "t", "columns": {c: c for c in columns}, "enum_candidates": []}),
            "delay": 0.6}


def test_progress_is_visible_while_the_map_runs(pipeline, llm_stub, monkeypatch):
    from infra.local.demo_db import DEMO_TABLES

    monkeypatch.setenv("LLM_BASE_URL", llm_stub.base_url)
    monkeypatch.setenv("LLM_API_KEY", "sk-fanout")
    monkeypatch.setenv("DATA_PIPELINE_DDL_BATCH_SIZE", "2")
    monkeypatch.setenv("DATA_PIPELINE_DDL_MAX_CONCURRENCY", "1")  # batches one after the other
    llm_stub.default = _comment_answer
    task_id = pipeline.create_task(task_name="fan-out progress", business_context="highway service areas")
    pipeline.upload_tables(task_id, DEMO_TABLES)
    pipeline.execute(task_id, **STEP)
    seen: list[tuple[int, str | None]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = pipeline.status(task_id)
        progress = status["progress"].get("ddl_generation") or {}
        if status["step_status"]["ddl_generation"] == "running" and "total" in progress:
            seen.append((progress.get("done", 0), progress.get("current_table")))
        if status["status"] not in ("pending", "in_progress"):
            break
        time.sleep(0.1)
    assert status["step_status"]["ddl_generation"] == "completed", status.get("error_message")
    done_values = [d for d, _ in seen]
    assert done_values == sorted(done_values), done_values  # never goes back
    assert len({d for d in done_values if 0 < d < len(DEMO_TABLES)}) >= 2, seen  # several intermediate states
    assert {c for _, c in seen if c} <= set(DEMO_TABLES) and any(c for _, c in seen)
    final = status["progress"]["ddl_generation"]
    assert final["done"] == len(DEMO_TABLES) and final["total"] == len(DEMO_TABLES)
    # Per-table seconds include the LLM's 0.6 s answer, for every table the model was asked about (a table whose
    # comments all come from the database is not asked).
    asked = [t for t in DEMO_TABLES if any(t.split(".", 1)[1] in r["messages"][-1]["content"]
                                           for r in llm_stub.chat_requests)]
    assert asked and all(final["tables"][t]["seconds"] >= 0.6 for t in asked), (asked, final["tables"])
    # Two tables per batch processed concurrently: the stub saw two comment requests at once.
    assert llm_stub.max_active >= 2
