"""Security checklist, one test per item, against the real local stack over real HTTP."""
from __future__ import annotations

import json
import re

import psycopg2
import pytest

from chalicelib.pipeline.models import QAPair
from chalicelib.pipeline.sqltext import check_read_only
from chalicelib.pipeline.validation import validate_pairs
from chalicelib.providers.heuristic import HeuristicProvider
from tests.support.aws_api import multipart
from tests.support.http_api import TASKS

pytestmark = pytest.mark.slow

SECRET = "S3cret-Pa55word"
BAD_URL = f"postgresql://app_user:{SECRET}@127.0.0.1:1/highway_db"


@pytest.fixture(scope="module")
def task_with_files(api):
    task_id = api.create_task(task_name="security")
    api.upload_tables(task_id, ["public.bss_company"])
    return task_id


def _no_secret(*payloads: bytes | str) -> None:
    for payload in payloads:
        text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
        assert SECRET not in text, text[:500]


# 1. Bearer key on every route ------------------------------------------------------------------------------

def test_bearer_key_is_enforced_on_every_route(api, task_with_files, monkeypatch):
    import app

    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "k3y-for-tests")
    from chalicelib.api.console import is_public_route  # the console's static pages: tests/browser

    routes = [(path, method) for path, methods in app.app.routes.items() for method in methods
              if not is_public_route(path)]
    assert len(routes) >= 17
    for path, method in routes:
        url = path.removeprefix("/api/v0").replace("{task_id}", task_with_files).replace("{filename}",
                                                                                         "table_list.txt")
        body = b"{}" if method == "POST" else None
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic k3y-for-tests"},
                        {"Authorization": "Bearer "}, {"Authorization": "k3y-for-tests"}):
            reply = api.call(method, url, body, headers=headers)
            assert reply.status == 401, (method, url, headers, reply.status)
            assert reply.json["error"]["code"] == "UNAUTHORIZED" and reply.json["success"] is False
        reply = api.call(method, url, body, headers={"Authorization": "Bearer k3y-for-tests"})
        assert reply.status != 401, (method, url)
        assert reply.status < 500, (method, url, reply.raw[:300])
    monkeypatch.delenv("DATA_PIPELINE_API_KEY")
    assert api.call("GET", TASKS).status == 200  # no key configured: open


# 2. Passwords masked everywhere ----------------------------------------------------------------------------

def test_passwords_are_masked_in_status_list_logs_files_and_errors(api):
    task_id = api.create_task(task_name="masked", db_connection=BAD_URL, business_context="测试")
    api.upload_tables(task_id, ["public.bss_company"])
    api.call("POST", f"{TASKS}/{task_id}/execute", {"execution_mode": "step", "step_name": "ddl_generation"},
             expect=202)
    status = api.wait(task_id)
    assert status["status"] == "failed" and status["error_message"]
    replies = [
        api.call("GET", f"{TASKS}/{task_id}", expect=200),
        api.call("GET", TASKS, expect=200),
        api.call("POST", f"{TASKS}/query", {"task_name": "masked"}, expect=200),
        api.call("GET", f"{TASKS}/{task_id}/logs?limit=1000", expect=200),
        api.call("POST", f"{TASKS}/{task_id}/logs/query", {"page_size": 500}, expect=200),
        api.call("GET", f"{TASKS}/{task_id}/files", expect=200),
        api.call("GET", f"{TASKS}/{task_id}/table-list-info", expect=200),
    ]
    _no_secret(*(r.raw for r in replies))
    assert "***" in json.dumps(replies[0].json["data"]["parameters"], ensure_ascii=False) or \
        "db_connection" not in replies[0].json["data"]["parameters"]
    for item in replies[5].json["data"]["files"]:
        _no_secret(api.call("GET", item["download_url"].removeprefix("/api/v0"), expect=200).raw)
    # Error bodies: unreachable database (500) and malformed connection strings (400).
    for body in ({"db_connection": BAD_URL}, {"db_connection": f"mysql://u:{SECRET}@127.0.0.1/db"},
                 {"db_connection": f"postgresql://u:{SECRET}@127.0.0.1:notaport/db"}):
        for path in ("/database/tables", "/database/table/ddl"):
            reply = api.call("POST", path, {**body, "table": "public.bss_company"})
            assert reply.status in (400, 500) and reply.json["success"] is False
            _no_secret(reply.raw)
    reply = api.call("POST", TASKS, {"db_connection": f"mysql://u:{SECRET}@127.0.0.1/db"}, expect=400)
    _no_secret(reply.raw)


# 3. Downloads confined to the task prefix -----------------------------------------------------------------

def test_file_download_is_confined_to_the_task(api, task_with_files):
    other = api.create_task(task_name="other")
    api.call("GET", f"{TASKS}/{task_with_files}/files/table_list.txt", expect=200)
    attempts = [
        f"..%2F{task_with_files}%2Ftable_list.txt",
        f"%2e%2e%2f{task_with_files}%2ftable_list.txt",
        f"%252e%252e%252f{task_with_files}%252ftable_list.txt",
        f"%25252e%25252e%25252f{task_with_files}%25252ftable_list.txt",
        f"..%5C{task_with_files}%5Ctable_list.txt",
        "%2e%2e",
        "table_list.txt%00.ddl",
        "work%2Fschema.json",
        "logs%2Fx.jsonl",
    ]
    for name in attempts:
        for route in (f"{TASKS}/{other}/files/{name}", f"{TASKS}/{other}/files/vector_bak/{name}"):
            reply = api.call("GET", route)
            assert reply.status in (400, 404), (route, reply.status)
            assert reply.json["success"] is False
            assert b"bss_company" not in reply.raw
    # Whole-path traversal in the URL itself never reaches another task's files either.
    reply = api.call("GET", f"{TASKS}/{other}/files/../../{task_with_files}/files/table_list.txt")
    assert reply.status != 200 or reply.json["data"]["task_id"] != other


# 4. Identifiers never interpolated unquoted ---------------------------------------------------------------

def test_table_identifiers_are_never_interpolated_unquoted(api, pipeline_stack, scratch_db):
    task_id = api.create_task()
    for bad in ("bss_company; drop table bss_company", "bss_company union select 1", "a'b", "x\" or 1=1"):
        headers, body = multipart("tables.txt", bad.encode())
        reply = api.call("POST", f"{TASKS}/{task_id}/upload-table-list", body, headers=headers, expect=400)
        assert reply.json["error"]["code"] == "INVALID_TABLE_NAME"
        reply = api.call("POST", "/database/table/ddl", {"table": bad}, expect=400)
    # A legal quoted identifier full of SQL is only ever a (missing) name.
    evil = '"bss_company; drop table public.bss_company; --"'
    api.call("POST", f"{TASKS}/{task_id}/table-list", {"table_names": [evil]}, expect=200)
    api.call("POST", f"{TASKS}/{task_id}/execute", {"execution_mode": "step", "step_name": "ddl_generation"},
             expect=202)
    assert api.wait(task_id)["status"] == "failed"
    api.call("POST", "/database/table/ddl", {"table": evil}, expect=404)
    reply = api.call("POST", "/database/tables", {"schema": "public' or '1'='1", "table_name_pattern": "x' or 1=1 --"},
                     expect=200)
    assert reply.json["data"]["tables"] == []
    with psycopg2.connect(pipeline_stack.db_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from public.bss_company")
        assert cur.fetchone()[0] > 0
    # A real table with such a name is documented correctly (quoted everywhere).
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute('create table "odd; name ""q""" ("select" int primary key, "a b" text)')
        cur.execute('insert into "odd; name ""q""" values (1, \'x\')')
    data = api.data("POST", "/database/table/ddl", {"table": '"odd; name ""q"""', "db_connection": scratch_db})
    assert data["table_info"]["row_count"] == 1
    assert [f["column_name"] for f in data["fields"]] == ["select", "a b"]


# 5. Upload size and type limits ---------------------------------------------------------------------------

def test_upload_size_and_type_limits(api, monkeypatch):
    task_id = api.create_task()
    url = f"{TASKS}/{task_id}/upload-table-list"
    for file_name in ("tables.csv", "tables.txt.exe", "tables"):
        headers, body = multipart(file_name, b"public.bss_company\n")
        reply = api.call("POST", url, body, headers=headers)
        assert reply.status == 415 and reply.json["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE", file_name
    monkeypatch.setenv("DATA_PIPELINE_MAX_UPLOAD_BYTES", "1000")
    headers, body = multipart("tables.txt", b"public.bss_company\n" * 60)
    assert api.call("POST", url, body, headers=headers, expect=413).json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    monkeypatch.delenv("DATA_PIPELINE_MAX_UPLOAD_BYTES")
    headers, body = multipart("tables.txt", b"\xff\xfepublic.bss_company")
    assert api.call("POST", url, body, headers=headers, expect=400).json["success"] is False
    headers, body = multipart("tables.txt", b"public.bss_company", field="other")
    api.call("POST", url, body, headers=headers, expect=400)
    api.call("POST", url, b"public.bss_company", headers={"Content-Type": "text/plain"}, expect=400)
    headers, body = multipart("tables.txt", b"public.bss_company\n")
    assert api.data("POST", url, body, headers=headers)["table_count"] == 1


# 6. LLM-generated SQL is never executed -------------------------------------------------------------------

class WritingRepairer(HeuristicProvider):
    """An LLM that 'repairs' every SQL into a write: it must only ever be EXPLAINed, never run."""

    def repair_sql(self, requests, docs):
        return {i: "DELETE FROM victim; SELECT 1;" for i in range(len(requests))}


def test_generated_sql_is_only_explained_read_only(scratch_db):
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("create table victim (id serial primary key, v int); insert into victim (v) values (1), (2)")
        cur.execute("create sequence counter")
    writes = [
        "DELETE FROM victim;",
        "UPDATE victim SET v = 0;",
        "INSERT INTO victim (v) VALUES (3);",
        "DROP TABLE victim;",
        "WITH gone AS (DELETE FROM victim RETURNING *) SELECT count(*) FROM gone;",
        "SELECT * INTO copy_of_victim FROM victim;",
        "SELECT * FROM victim FOR UPDATE;",
        "SELECT 1; DELETE FROM victim;",
    ]
    for sql in writes:
        assert check_read_only(sql), sql
    side_effects = ["SELECT nextval('counter');", "SELECT pg_sleep(3), count(*) FROM victim;"]
    pairs = [QAPair(f"q{i}", sql) for i, sql in enumerate(writes + side_effects + ["SELECT no_such_col FROM victim;"])]
    report = validate_pairs(scratch_db, pairs, llm=WritingRepairer(), docs=[], enable_repair=True, max_rounds=2,
                            timeout_ms=2000)
    by_sql = {r.original_sql: r for r in report.results}
    assert all(not by_sql[sql].valid_after for sql in writes)
    assert not by_sql["SELECT no_such_col FROM victim;"].valid_after  # the "repair" wrote: refused
    with psycopg2.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("select count(*), sum(v) from victim")
        assert cur.fetchone() == (2, 3)
        cur.execute("select last_value, is_called from counter")
        assert cur.fetchone() == (1, False)  # nextval was explained, not executed
        cur.execute("select to_regclass('copy_of_victim')")
        assert cur.fetchone()[0] is None


# 7. Request body size limit -------------------------------------------------------------------------------

def test_request_body_size_limit_on_every_post_route(api, task_with_files):
    import app

    big = json.dumps({"task_name": "x", "filler": "y" * (2 * 1024 * 1024 + 64 * 1024)}).encode()
    posts = [path for path, methods in app.app.routes.items() if "POST" in methods]
    assert len(posts) >= 8
    for path in posts:
        url = path.removeprefix("/api/v0").replace("{task_id}", task_with_files)
        reply = api.call("POST", url, big)
        assert reply.status == 413, (url, reply.status)
        assert reply.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert not re.search(r"yyyy", api.call("GET", TASKS).raw.decode())
