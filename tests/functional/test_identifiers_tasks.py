"""Task runs on the hostile schema: every table documented, the ambiguous name reported, the complete workflow."""
from __future__ import annotations

import psycopg2
import pytest

from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import TableRef
from chalicelib.pipeline.tablelist import parse_table_names
from tests.functional.test_identifiers import TASKS, VIEWS, assert_replays_with_every_column


@pytest.mark.slow
def test_a_task_documents_every_hostile_table_and_reports_the_ambiguous_one(pipeline, hostile_db):
    conn = connect(hostile_db)
    try:
        from chalicelib.pipeline.introspect import list_tables

        listed = list_tables(conn, [], None)
    finally:
        conn.close()
    written = [n for n in listed if n not in ('public."Dup"', "public.dup")] + VIEWS + [
        "SalesOrder", "Dup", "public.2019"]  # the unquoted spellings, and the ambiguous name
    task_id = pipeline.create_task(business_context="订单分析", db_connection=hostile_db)
    upload = pipeline.upload_tables(task_id, written)
    # The stored list keeps the user's spelling, canonical: each name reads back as the same name.
    info = pipeline.request("GET", f"{TASKS}/{task_id}/table-list-info", expect=200)["data"]
    assert info["tables"] == upload["tables"] and "public.SalesOrder" in info["tables"]
    assert 'public."SalesOrder"' in info["tables"] and "public.Dup" in info["tables"]
    again = pipeline.request("POST", f"{TASKS}/{task_id}/table-list", {"table_names": info["tables"]}, expect=200)
    assert again["data"]["tables"] == info["tables"]

    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")
    status = pipeline.wait(task_id)
    result = status["results"]["ddl_generation"]
    assert result["failed_tables"] == {"public.Dup": 'table name public.Dup is ambiguous: it matches public."Dup" '
                                                     'and public.dup; quote the name to choose one (e.g. public."Dup")'}
    # `SalesOrder` and `public."SalesOrder"`, `public.2019` and `public."2019"` are one table each.
    documented = [TableRef.from_dict(d["meta"]["ref"]) for d in _docs(pipeline, task_id)]
    expected = {ref for ref in (_ref(n) for n in listed + VIEWS) if ref.name not in ("Dup", "dup")}
    assert sorted(documented) == sorted(expected) and result["tables_succeeded"] == len(expected)
    # The names the status shows are accepted back as a table list, naming the same tables.
    shown = list(result["seconds_per_table"]) + list(status["progress"]["ddl_generation"]["tables"])
    assert {_ref(n) for n in shown} == expected | {TableRef("public", "Dup")}  # public.Dup as written: `Dup`
    pipeline.request("POST", f"{TASKS}/{task_id}/table-list", {"table_names": shown}, expect=200)
    assert result["has_llm_comments"] is False and "llm" not in result["comment_sources"]
    assert result["comment_sources"].get("database", 0) >= 1 and result["comment_sources"].get("heuristic", 0) >= 1

    files = pipeline.files(task_id)
    texts = {}
    for ref in expected:
        assert f"{ref.file_stem}.ddl" in files and f"{ref.file_stem}_detail.md" in files, (ref, sorted(files))
        texts[ref] = pipeline.file_text(task_id, f"{ref.file_stem}.ddl")
    conn = connect(hostile_db)
    conn.autocommit = True
    try:
        found, _ = introspect_tables(conn, sorted(expected), exact_count_threshold=1000)
        assert_replays_with_every_column(conn, {ref: found[ref] for ref in expected}, texts)
    finally:
        conn.close()

    messages = [log["message"] for log in pipeline.logs(task_id, step_name="ddl_generation")]
    done = [m for m in messages if " done in " in m]
    assert len(done) == len(expected)
    assert all('heuristic provider "heuristic (no LLM configured)"' in m for m in done), done[:3]
    assert not any("LLM commented" in m or "llm provider" in m for m in messages)
    assert any("Table public.Dup skipped: table name public.Dup is ambiguous" in m for m in messages)


def _ref(name: str) -> TableRef:
    parsed = parse_table_names([name])[0]
    return TableRef(parsed.schema, parsed.name)


def _docs(pipeline, task_id: str) -> list[dict]:
    from types import SimpleNamespace

    from chalicelib.steps.ddl_generation import read_batch_docs
    from chalicelib.stores.files import TaskFiles

    return read_batch_docs(SimpleNamespace(files=TaskFiles(task_id)))


@pytest.mark.slow
def test_the_complete_workflow_runs_on_the_hostile_schema(pipeline, hostile_db):
    import json

    tables = ['"SalesOrder"', '"OrderLine"', "public.2019", '"order"', '"Sales".customers', "ods.customers",
              '"my table"', 'public."we""ird"', "empty_table", '"V_Orders"', "mv_totals"]
    task_id, status = pipeline.run(tables, business_context="订单分析", db_connection=hostile_db,
                                   execute={"execution_mode": "complete"})
    assert status["status"] == "completed", (status.get("error_message"), status["step_status"])
    assert status["results"]["ddl_generation"]["tables_succeeded"] == len(tables)
    pairs = json.loads(pipeline.file_text(task_id, status["results"]["qa_generation"]["pair_file"]))
    assert pairs
    with psycopg2.connect(hostile_db) as conn, conn.cursor() as cur:
        for pair in pairs:
            cur.execute("explain " + pair["sql"])
    metadata = pipeline.file_text(task_id, "metadata.txt")
    with psycopg2.connect(hostile_db) as conn, conn.cursor() as cur:
        cur.execute("create schema meta_replay; set search_path = meta_replay")
        cur.execute(metadata)  # executable as written, quoted table names inside its arrays included
        conn.rollback()
