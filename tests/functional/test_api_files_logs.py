"""File, table-list and log routes through the Chalice test client inside moto."""
from __future__ import annotations

import json

import pytest

from chalicelib.stores.files import FileStore
from chalicelib.tasklog import TaskLogger
from tests.support.aws_api import api_environment, multipart, post_json

BASE = "/api/v0/data_pipeline/tasks"


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


@pytest.fixture
def task_id(client):
    return post_json(client, BASE, {"task_name": "files"}).json_body["data"]["task_id"]


def upload(client, task_id, filename, data):
    headers, body = multipart(filename, data)
    return client.http.post(f"{BASE}/{task_id}/upload-table-list", headers=headers, body=body)


def test_upload_ok_with_quoted_mixed_case(client, task_id):
    text = '# tables\nbss_company\nods."MixedCase", public.bss_company\n-- done\n'
    res = upload(client, task_id, "tables.txt", text.encode())
    assert res.status_code == 200, res.json_body
    data = res.json_body["data"]
    assert data["file_name"] == "table_list.txt" and data["table_count"] == 2
    assert data["tables"] == ["public.bss_company", 'ods."MixedCase"']
    info = client.http.get(f"{BASE}/{task_id}/table-list-info").json_body["data"]
    assert info["has_table_list"] and info["uploaded_at"] and info["file_size"] == data["file_size"]
    stored = client.http.get(f"{BASE}/{task_id}/files/table_list.txt")
    assert stored.status_code == 200 and stored.headers["Content-Type"].startswith("text/plain")
    assert stored.body.decode() == 'public.bss_company\nods."MixedCase"\n'


@pytest.mark.parametrize("filename, data, status, code", [
    ("tables.csv", b"a\n", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("tables.txt", "表\n".encode("gbk"), 400, "VALIDATION_ERROR"),
    ("tables.txt", b"good\nbad name!\n", 400, "INVALID_TABLE_NAME"),
    ("tables.txt", b"# only comments\n", 400, "VALIDATION_ERROR"),
])
def test_upload_rejections(client, task_id, filename, data, status, code):
    res = upload(client, task_id, filename, data)
    assert res.status_code == status and res.json_body["error"]["code"] == code


def test_upload_too_large_states_limit(client, task_id, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_MAX_UPLOAD_BYTES", "100")
    res = upload(client, task_id, "t.txt", b"a_table\n" * 50)
    assert res.status_code == 413 and "100 bytes" in res.json_body["message"]


def test_upload_needs_multipart(client, task_id):
    res = post_json(client, f"{BASE}/{task_id}/upload-table-list", {"file": "x"})
    assert res.status_code == 400 and res.json_body["error"]["invalid_params"] == ["file"]


def test_table_names_route_validation(client, task_id):
    assert post_json(client, f"{BASE}/{task_id}/table-list", {"table_names": "x"}).status_code == 400
    res = post_json(client, f"{BASE}/{task_id}/table-list", {"table_names": ["ok", "not ok"]})
    assert res.status_code == 400 and res.json_body["error"]["code"] == "INVALID_TABLE_NAME"


def test_files_listing_and_downloads(client, task_id):
    store = FileStore()
    store.put_text(task_id, "qs_highway_db_20250627_143052_pair.json", json.dumps([{"question": "问", "sql": "s;"}],
                                                                                   ensure_ascii=False))
    store.put_text(task_id, "bss_company.ddl", "create table bss_company (id int);\n")
    store.put_text(task_id, "bss_company_detail.md", "## bss_company\n")
    store.put_text(task_id, "vector_bak/langchain_pg_embedding_20250627.csv", "id\n1\n")
    store.put_text(task_id, "work/schema.json", "{}")
    with TaskLogger(task_id, step="ddl_generation", logger_name="DDLMDGenerator", files=store) as log:
        log.info("开始处理表: bss_company")
    data = client.http.get(f"{BASE}/{task_id}/files").json_body["data"]
    names = [f["file_name"] for f in data["files"]]
    assert names[0] == "qs_highway_db_20250627_143052_pair.json" and data["files"][0]["is_primary"] is True
    assert "work/schema.json" not in names and "data_pipeline.log" in names
    assert "vector_bak/langchain_pg_embedding_20250627.csv" in names
    assert data["total_files"] == len(names) and data["total_size"] == sum(f["file_size"] for f in data["files"])
    assert all(f["description"] and f["download_url"].startswith(BASE) for f in data["files"])

    pair = client.http.get(f"{BASE}/{task_id}/files/qs_highway_db_20250627_143052_pair.json")
    assert pair.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(pair.body)[0]["question"] == "问"
    md = client.http.get(f"{BASE}/{task_id}/files/bss_company_detail.md")
    assert md.headers["Content-Type"].startswith("text/markdown")
    csv = client.http.get(f"{BASE}/{task_id}/files/vector_bak/langchain_pg_embedding_20250627.csv")
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    log = client.http.get(f"{BASE}/{task_id}/files/data_pipeline.log")
    assert log.status_code == 200 and "[INFO] DDLMDGenerator: 开始处理表: bss_company" in log.body.decode()
    missing = client.http.get(f"{BASE}/{task_id}/files/nope.json")
    assert missing.status_code == 404 and missing.json_body["error"]["code"] == "FILE_NOT_FOUND"


@pytest.mark.parametrize("name", ["..%2F..%2Fother%2Fsecret.json", "%2e%2e%2fsecret.json",
                                  "%252e%252e%252fsecret.json", "..%5Csecret.json", "..", "%2e%2e",
                                  "a%00b.json"])
def test_traversal_refused(client, task_id, name):
    other = post_json(client, BASE, {}).json_body["data"]["task_id"]
    FileStore().put_text(other, "secret.json", '{"secret": true}')
    res = client.http.get(f"{BASE}/{task_id}/files/{name}")
    assert res.status_code in (400, 404)
    assert b"secret\": true" not in res.body
    assert client.http.get(f"{BASE}/{task_id}/files/vector_bak/{name}").status_code in (400, 404)


def _write_logs(task_id):
    with TaskLogger(task_id, logger_name="SchemaWorkflowOrchestrator", files=FileStore()) as log:
        for i in range(30):
            log.info("message %d", i)
        log.child(step="sql_validation", logger_name="SQLValidator").error("SQL验证失败，尝试LLM修复")
        log.debug("hidden below INFO")


def test_logs_get_and_query(client, task_id):
    _write_logs(task_id)
    data = client.http.get(f"{BASE}/{task_id}/logs?limit=5").json_body["data"]
    assert len(data["logs"]) == 5 and data["logs"][-1]["level"] == "ERROR" and data["total"] == 32
    errors = client.http.get(f"{BASE}/{task_id}/logs?level=error").json_body["data"]
    assert errors["total"] == 1 and errors["logs"][0]["logger"] == "SQLValidator"

    q = post_json(client, f"{BASE}/{task_id}/logs/query", {"page": 2, "page_size": 10, "sort_order": "asc",
                                                          "logger_name": "orchestrator"}).json_body["data"]
    assert q["pagination"]["total"] == 30 and q["pagination"]["has_prev"] and q["pagination"]["has_next"]
    assert q["logs"][0]["message"] == "message 10" and q["log_file_info"]["exists"] is True
    step = post_json(client, f"{BASE}/{task_id}/logs/query", {"step_name": "sql_validation", "keyword": "sql验证"})
    assert [r["level"] for r in step.json_body["data"]["logs"]] == ["ERROR"]
    assert step.json_body["data"]["logs"][0]["line_number"] > 1
    later = post_json(client, f"{BASE}/{task_id}/logs/query", {"start_time": "2999-01-01T00:00:00"})
    assert later.json_body["data"]["pagination"]["total"] == 0


@pytest.mark.parametrize("body, field", [({"page_size": 501}, "page_size"), ({"page": 0}, "page"),
                                         ({"level": "LOUD"}, "level"), ({"sort_order": "up"}, "sort_order"),
                                         ({"start_time": "soon"}, "start_time"), ({"keyword": 5}, "keyword")])
def test_logs_query_validation(client, task_id, body, field):
    res = post_json(client, f"{BASE}/{task_id}/logs/query", body)
    assert res.status_code == 400 and res.json_body["error"]["invalid_params"] == [field]
