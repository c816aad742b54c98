"""The whole SPEC §3 contract over real HTTP: LocalStack + Chalice's local dev server started exactly as
`python -m infra.local.serve` starts them, driven with urllib (no test client)."""
from __future__ import annotations

import json
import threading
from urllib.parse import quote

import pytest

from infra.local.demo_db import DEMO_BUSINESS_CONTEXT
from tests.support.aws_api import multipart
from tests.support.http_api import TASKS

pytestmark = pytest.mark.slow

NAME = "服务区日报 – 测试 ✓"


@pytest.fixture(scope="module")
def done_task(api):
    """A task created, given a table list by multipart upload, executed (step mode) to its end."""
    task_id = api.create_task(task_name=NAME, business_context=DEMO_BUSINESS_CONTEXT, db_name="highway_e2e")
    uploaded = api.upload_tables(task_id, ["public.bss_company", "# comment", "bss_company", "public.bss_branch"])
    assert uploaded["table_count"] == 2 and uploaded["file_name"] == "table_list.txt"
    # Two simultaneous executes: exactly one wins.
    replies = []

    def execute():
        replies.append(api.call("POST", f"{TASKS}/{task_id}/execute",
                                {"execution_mode": "step", "step_name": "ddl_generation"}))

    threads = [threading.Thread(target=execute) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status for r in replies) == [202, 409], [r.raw for r in replies]
    conflict = next(r for r in replies if r.status == 409).json
    assert conflict["error"]["code"] == "TASK_ALREADY_RUNNING" and conflict["code"] == 409
    status = api.wait(task_id)
    assert status["status"] == "partial_completed", status.get("error_message")
    return task_id


def test_create_get_list_query_with_utf8(api, done_task):
    reply = api.call("GET", f"{TASKS}/{done_task}", expect=200)
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert NAME.encode("utf-8") in reply.raw  # Chinese sent unescaped, as UTF-8
    body = reply.json
    assert body["success"] is True and body["code"] == 200
    data = body["data"]
    assert data["task_name"] == NAME and data["total_steps"] == 4
    assert data["step_status"]["ddl_generation"] == "completed" and data["step_status"]["qa_generation"] == "pending"
    listed = api.data("GET", f"{TASKS}?limit=50&offset=0")
    assert any(t["task_id"] == done_task and t["task_name"] == NAME for t in listed["tasks"])
    assert listed["limit"] == 50 and listed["total"] >= 1
    assert all(t["status"] == "partial_completed" for t in api.data("GET", f"{TASKS}?status=partial_completed")
               ["tasks"])
    queried = api.data("POST", f"{TASKS}/query", {"task_name": "日报", "page": 1, "page_size": 5})
    assert [t["task_id"] for t in queried["tasks"]] == [done_task]
    assert queried["pagination"]["total"] == 1


def test_table_list_routes(api, done_task):
    info = api.data("GET", f"{TASKS}/{done_task}/table-list-info")
    assert info["has_table_list"] and info["tables"] == ["public.bss_company", "public.bss_branch"]
    other = api.create_task(task_name="直接表清单")
    data = api.data("POST", f"{TASKS}/{other}/table-list", {"table_names": ["bss_company", "public.bss_branch"],
                                                           "business_context": "服务区"})
    assert data["table_count"] == 2
    assert api.data("GET", f"{TASKS}/{other}")["business_context"] == "服务区"


def test_files_list_and_downloads(api, done_task):
    files = api.data("GET", f"{TASKS}/{done_task}/files")
    names = {f["file_name"]: f for f in files["files"]}
    assert {"bss_company.ddl", "bss_company_detail.md", "bss_branch.ddl", "table_list.txt",
            "data_pipeline.log"} <= set(names)
    assert files["total_files"] == len(files["files"]) and files["total_size_human"]
    expected = {"bss_company.ddl": "text/plain; charset=utf-8", "bss_company_detail.md": "text/markdown; charset=utf-8",
                "table_list.txt": "text/plain; charset=utf-8", "data_pipeline.log": "text/plain; charset=utf-8"}
    for name, content_type in expected.items():
        reply = api.call("GET", names[name]["download_url"].removeprefix("/api/v0"), expect=200)
        assert reply.headers["Content-Type"] == content_type, name
        assert int(reply.headers["Content-Length"]) == len(reply.raw) > 0
        assert "attachment" in reply.headers.get("Content-Disposition", "")
    ddl = api.call("GET", f"{TASKS}/{done_task}/files/bss_company.ddl").raw.decode("utf-8")
    assert ddl.startswith("-- ") and "create table public.bss_company" in ddl.lower()
    log = api.call("GET", f"{TASKS}/{done_task}/files/data_pipeline.log").raw.decode("utf-8")
    assert "[INFO] DDLMDGenerator: 开始处理表: public.bss_company" in log
    missing = api.call("GET", f"{TASKS}/{done_task}/files/nothing.ddl", expect=404).json
    assert missing["error"]["code"] == "FILE_NOT_FOUND" and missing["success"] is False


def test_logs_and_log_query(api, done_task):
    logs = api.data("GET", f"{TASKS}/{done_task}/logs?limit=5&level=INFO")
    assert len(logs["logs"]) == 5 and logs["total"] >= 5 and all(r["level"] == "INFO" for r in logs["logs"])
    query = api.data("POST", f"{TASKS}/{done_task}/logs/query",
                     {"keyword": "开始处理表", "step_name": "ddl_generation", "page_size": 1, "sort_order": "asc"})
    assert query["pagination"]["total"] == 2 and query["pagination"]["has_next"]
    assert "bss_company" in query["logs"][0]["message"] or "bss_branch" in query["logs"][0]["message"]
    assert query["log_file_info"]["exists"] is True
    bad = api.call("POST", f"{TASKS}/{done_task}/logs/query", {"page_size": 501}, expect=400).json
    assert bad["error"]["invalid_params"] == ["page_size"]


def test_database_tools(api):
    tables = api.data("POST", "/database/tables", {"schema": "public", "table_name_pattern": "bss_*"})
    assert "public.bss_company" in tables["tables"] and tables["total"] == len(tables["tables"])
    assert tables["db_connection_info"]["database"] == "highway_e2e"
    ddl = api.data("POST", "/database/table/ddl", {"table": "public.bss_company", "type": "both",
                                                   "business_context": DEMO_BUSINESS_CONTEXT})
    assert ddl["ddl"].lower().count("create table") == 1 and ddl["md"].startswith("## ")
    assert ddl["table_info"]["full_name"] == "public.bss_company" and ddl["fields"]
    bad = api.call("POST", "/database/tables", {"db_connection": "mysql://u:secret@h/db"}, expect=400).json
    assert "secret" not in json.dumps(bad)


def test_cancel_a_running_task(api):
    task_id = api.create_task(task_name="to cancel", business_context=DEMO_BUSINESS_CONTEXT)
    api.upload_tables(task_id, ["public.bss_company", "public.bss_branch"])
    api.call("POST", f"{TASKS}/{task_id}/execute", {"execution_mode": "complete"}, expect=202)
    cancelled = api.data("POST", f"{TASKS}/{task_id}/cancel")
    assert cancelled["task_id"] == task_id
    assert api.wait(task_id)["status"] == "cancelled"
    again = api.call("POST", f"{TASKS}/{task_id}/cancel", expect=409).json
    assert again["error"]["code"] == "TASK_NOT_RUNNING"


def test_error_envelopes(api, done_task):
    cases = [
        ("GET", f"{TASKS}/task_19990101_000000", None, 404, "TASK_NOT_FOUND"),
        ("POST", f"{TASKS}/{done_task}/execute", {"execution_mode": "fast"}, 400, "INVALID_EXECUTION_MODE"),
        ("POST", f"{TASKS}/{done_task}/execute", {"execution_mode": "step"}, 400, "MISSING_STEP_NAME"),
        ("POST", f"{TASKS}/{done_task}/execute", {"execution_mode": "step", "step_name": "x"}, 400,
         "INVALID_STEP_NAME"),
        ("POST", TASKS, b"{not json", 400, "VALIDATION_ERROR"),
        ("POST", TASKS, {"task_name": "x" * 101}, 400, "VALIDATION_ERROR"),
        ("GET", f"{TASKS}?limit=abc", None, 400, "VALIDATION_ERROR"),
        ("POST", TASKS, {"filler": "x" * (3 * 1024 * 1024)}, 413, "PAYLOAD_TOO_LARGE"),
    ]
    for method, path, body, status, code in cases:
        reply = api.call(method, path, body, expect=status)
        assert reply.headers["Content-Type"].startswith("application/json")
        envelope = reply.json
        assert envelope["success"] is False and envelope["code"] == status, (path, envelope)
        assert envelope["error"]["code"] == code, (path, envelope)
        assert envelope["error"]["timestamp"] and envelope["message"]
    # A task without a table list cannot execute.
    empty = api.create_task()
    assert api.call("POST", f"{TASKS}/{empty}/execute", {}, expect=400).json["error"]["code"] == "TABLE_LIST_MISSING"


def test_upload_limits_over_http(api):
    task_id = api.create_task()
    headers, body = multipart("tables.csv", b"public.bss_company\n")
    assert api.call("POST", f"{TASKS}/{task_id}/upload-table-list", body, headers=headers).status in (400, 415)
    headers, body = multipart("tables.txt", b"public.bss_company\n" * 70_000)  # > 1 MiB
    reply = api.call("POST", f"{TASKS}/{task_id}/upload-table-list", body, headers=headers, expect=413)
    assert reply.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    headers, body = multipart("tables.txt", "public.服务区\nbad-name\n".encode())
    reply = api.call("POST", f"{TASKS}/{task_id}/upload-table-list", body, headers=headers, expect=400)
    assert "'bad-name' on line 2" in reply.json["message"]  # PostgreSQL accepts 服务区 unquoted, not bad-name


def test_traversal_over_http(api, done_task):
    for name in ("..%2Ftable_list.txt", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%252e%252e%252ftable_list.txt",
                 quote("..\\x.txt")):
        reply = api.call("GET", f"{TASKS}/{done_task}/files/{name}")
        assert reply.status in (400, 404), (name, reply.status)
        assert reply.raw and b"root:" not in reply.raw


def test_vector_routes_over_http(api):
    data = api.data("GET", "/data_pipeline/vector/backups?limit=5")
    assert data["limit"] == 5 and isinstance(data["backups"], list)
    reply = api.call("POST", "/data_pipeline/vector/restore", {"task_id": "task_19990101_000000"}, expect=404)
    assert reply.json["error"]["code"] == "TASK_NOT_FOUND"


def _raw(api, method: str, path: str, connection=None):
    """One request over http.client (any method); `path` is absolute when it starts with /api or is /,
    else relative to the API base. Returns (status, lower-cased headers, body)."""
    import http.client
    from urllib.parse import urlsplit

    base = urlsplit(api.base_url)
    conn = connection or http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    conn.request(method, path if path == "/" or path.startswith("/api") else base.path + path)
    response = conn.getresponse()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("TRACE", f"{TASKS}", "GET, POST"),
    ("PATCH", f"{TASKS}/task_19990101_000000", "GET"),
    ("DELETE", f"{TASKS}/task_19990101_000000", "GET"),
    ("OPTIONS", f"{TASKS}", "GET, POST"),
    ("PUT", f"{TASKS}/task_19990101_000000/execute", "POST"),
    ("PROPFIND", f"{TASKS}", "GET, POST"),
    ("M-SEARCH", f"{TASKS}", "GET, POST"),
])
def test_a_method_the_route_lacks_is_a_405_envelope(api, method, path, allowed):
    """Issue 8, finding 8: TRACE used to get http.server's HTML 501, OPTIONS a bare 200."""
    status, headers, body = _raw(api, method, path)
    assert status == 405, body[:300]
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["allow"] == allowed
    envelope = json.loads(body)
    assert envelope["success"] is False and envelope["code"] == 405
    assert envelope["error"]["type"] == "MethodNotAllowed" and envelope["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert method in envelope["message"] and allowed in envelope["message"]


@pytest.mark.parametrize("method", ["GET", "POST", "TRACE"])
@pytest.mark.parametrize("path", ["/", "/api/v0", "/api/v0/nothing/here?x=1", "/api/v0/data_pipeline/tasks/a/b/c",
                                  "/api/v0/%E6%9C%8D%E5%8A%A1"])
def test_an_unknown_path_is_a_404_envelope(api, method, path):
    status, headers, body = _raw(api, method, path)
    assert status == 404, body[:300]
    envelope = json.loads(body)
    assert envelope["success"] is False and envelope["code"] == 404
    assert envelope["error"]["type"] == "NotFound" and envelope["error"]["code"] == "NOT_FOUND"
    assert method in envelope["message"] and path.split("?")[0] in envelope["message"]


def test_head_gets_headers_only_and_the_connection_stays_usable(api):
    import http.client
    from urllib.parse import urlsplit

    base = urlsplit(api.base_url)
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    status, headers, body = _raw(api, "HEAD", TASKS, conn)
    assert status == 405 and body == b"" and int(headers["content-length"]) > 0
    status, _, body = _raw(api, "GET", TASKS, conn)  # same connection: no stray body in front of this answer
    assert status == 200 and json.loads(body)["success"] is True
    conn.close()
