"""Task routes through the Chalice test client inside moto: envelope, codes, execute races, masking, auth."""
from __future__ import annotations

import json
import os
import threading

import boto3
import pytest

from tests.support.aws_api import api_environment, make_moto_dynamodb_writes_atomic, post_json

BASE = "/api/v0/data_pipeline/tasks"
SECRET = "s3cr3t-pw"


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


def create(client, **body):
    res = post_json(client, BASE, body)
    assert res.status_code == 201, res.json_body
    return res.json_body["data"]["task_id"]


def with_tables(client, **body):
    task_id = create(client, **body)
    res = post_json(client, f"{BASE}/{task_id}/table-list", {"table_names": ["bss_company", "ods.orders"]})
    assert res.status_code == 200, res.json_body
    return task_id


def test_create_get_list_newest_first(client):
    res = post_json(client, BASE, {"task_name": "高速公路数据处理", "business_context": "高速公路服务区管理系统",
                                   "db_connection": f"postgresql://u:{SECRET}@localhost:5432/highway_db"})
    body = res.json_body
    assert res.status_code == 201 and body["success"] is True and body["code"] == 201
    data = body["data"]
    assert data["status"] == "pending" and data["task_name"] == "高速公路数据处理"
    assert data["task_id"].startswith("task_") and len(data["created_at"]) == 19
    second = create(client, task_name="second")

    status = client.http.get(f"{BASE}/{data['task_id']}").json_body["data"]
    assert status["total_steps"] == 4 and [s["step_name"] for s in status["steps"]][0] == "ddl_generation"
    assert status["step_status"] == {s: "pending" for s in status["step_status"]}
    assert status["db_name"] == "highway_db" and status["created_by"] == "api"
    assert status["parameters"]["enable_sql_validation"] is True

    listing = client.http.get(f"{BASE}?limit=10").json_body["data"]
    assert listing["total"] == 2 and listing["limit"] == 10 and listing["offset"] == 0
    assert [t["task_id"] for t in listing["tasks"]] == [second, data["task_id"]]
    for key in ("created_by", "db_name", "business_context", "directory_exists", "updated_at"):
        assert key in listing["tasks"][0]
    page2 = client.http.get(f"{BASE}?limit=1&offset=1").json_body["data"]
    assert [t["task_id"] for t in page2["tasks"]] == [data["task_id"]]


def test_passwords_masked_everywhere(client):
    task_id = create(client, task_name="secret", db_connection=f"postgresql://u:{SECRET}@localhost:5432/x")
    for res in (client.http.get(f"{BASE}/{task_id}"), client.http.get(BASE),
                post_json(client, f"{BASE}/query", {"task_name": "secret"})):
        assert res.status_code == 200
        assert SECRET not in res.body.decode()
    assert "postgresql://u:***@localhost:5432/x" in client.http.get(f"{BASE}/{task_id}").body.decode()
    # stored sealed with KMS (never in clear, #12), opened again for the steps
    item = boto3.resource("dynamodb").Table("dp-test-tasks").get_item(Key={"task_id": task_id})["Item"]
    assert SECRET not in str(item) and item["db_connection_sealed"].startswith("kms:v1:")
    from chalicelib.stores.tasks import TaskStore

    assert SECRET in TaskStore().get_task(task_id)["db_connection"]


def test_query_filters_and_pagination(client):
    create(client, task_name="Highway A", db_name="hw", created_by="alice")
    create(client, task_name="highway B", db_name="hw")
    create(client, task_name="other", db_name="crm")
    res = post_json(client, f"{BASE}/query", {"task_name": "HIGHWAY", "page_size": 1}, {"X-User": "ignored"})
    data = res.json_body["data"]
    next_cursor = data["pagination"].pop("next_cursor")
    assert data["pagination"] == {"page": 1, "page_size": 1, "total": 2, "total_pages": 2, "has_next": True,
                                  "has_prev": False}
    assert data["tasks"][0]["task_name"] == "highway B"
    # The cursor goes on from the first page with the same filters, and the last page has none.
    second = post_json(client, f"{BASE}/query", {"task_name": "HIGHWAY", "page_size": 1, "cursor": next_cursor})
    assert [t["task_name"] for t in second.json_body["data"]["tasks"]] == ["Highway A"]
    assert second.json_body["data"]["pagination"]["next_cursor"] is None
    assert post_json(client, f"{BASE}/query", {"created_by": "alice"}).json_body["data"]["pagination"]["total"] == 1
    assert post_json(client, f"{BASE}/query", {"db_name": "crm"}).json_body["data"]["tasks"][0]["task_name"] == "other"
    assert post_json(client, f"{BASE}/query", {"status": "completed"}).json_body["data"]["tasks"] == []
    future = post_json(client, f"{BASE}/query", {"created_time_start": "2999-01-01"}).json_body["data"]
    assert future["pagination"]["total"] == 0
    everything = post_json(client, f"{BASE}/query", {"created_time_start": "2000-01-01", "created_time_end":
                                                     "2999-12-31"}).json_body["data"]
    assert everything["pagination"]["total"] == 3
    bad = post_json(client, f"{BASE}/query", {"created_time_end": "yesterday"})
    assert bad.status_code == 400 and bad.json_body["error"]["invalid_params"] == ["created_time_end"]


def test_list_pages_by_cursor_cover_every_task_once(client):
    created = [create(client, task_name=f"t{i}") for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        data = client.http.get(f"{BASE}{query}").json_body["data"]
        seen += [t["task_id"] for t in data["tasks"]]
        cursor, pages = data["next_cursor"], pages + 1
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == sorted(created) and len(seen) == len(set(seen))
    offset_page = client.http.get(f"{BASE}?limit=2&offset=2").json_body["data"]
    assert [t["task_id"] for t in offset_page["tasks"]] == seen[2:4]  # the same order as the offset listing
    bad = client.http.get(f"{BASE}?cursor=xyz").json_body
    assert bad["code"] == 400 and bad["error"]["invalid_params"] == ["cursor"]


def test_created_by_header(client):
    res = post_json(client, BASE, {"task_name": "x"}, {"X-User": "user123"})
    task_id = res.json_body["data"]["task_id"]
    assert client.http.get(f"{BASE}/{task_id}").json_body["data"]["created_by"] == "user123"


@pytest.mark.parametrize("body, field, code", [
    ({"task_name": 5}, "task_name", "VALIDATION_ERROR"),
    ({"task_name": "x" * 101}, "task_name", "VALIDATION_ERROR"),
    ({"enable_sql_validation": "yes"}, "enable_sql_validation", "VALIDATION_ERROR"),
    ({"truncate_vector_tables": 1}, "truncate_vector_tables", "VALIDATION_ERROR"),
    ({"db_connection": "mysql://u:p@h/db"}, "db_connection", "DATABASE_CONNECTION_ERROR"),
    ({"table_list_file": "good_table,bad table!"}, "table_list_file", "INVALID_TABLE_NAME"),
])
def test_create_validation(client, body, field, code):
    res = post_json(client, BASE, body)
    assert res.status_code == 400 and res.json_body["code"] == 400 and res.json_body["success"] is False
    error = res.json_body["error"]
    assert error["code"] == code and field in error["invalid_params"] and error["timestamp"]
    assert "p@h" not in res.body.decode()


def test_null_and_blank_mean_the_default_and_unknown_fields_are_accepted(client):
    """The models keep the API's first rules: `null` is absent, a blank optional string is its default, strings
    are trimmed, fields the guide's clients send that the API does not know are ignored."""
    task_id = create(client, task_name="  trimmed  ", db_name="", enable_sql_validation=None,
                     truncate_vector_tables=None, created_by="   ", client_version="1.2", priority=5)
    data = client.http.get(f"{BASE}/{task_id}").json_body["data"]
    assert data["task_name"] == "trimmed" and data["created_by"] == "api"
    assert data["parameters"]["enable_sql_validation"] is True and data["parameters"]["truncate_vector_tables"] is False
    assert "client_version" not in data["parameters"]
    post_json(client, f"{BASE}/{task_id}/table-list", {"table_names": ["bss_company"], "business_context": None})
    res = post_json(client, f"{BASE}/{task_id}/execute", {"execution_mode": " ", "step_name": None, "extra": [1]})
    assert res.status_code == 202 and res.json_body["data"]["execution_mode"] == "complete"
    res = client.http.get(f"{BASE}?limit=&status=&offset=")
    assert res.status_code == 200 and res.json_body["data"]["limit"] == 50


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b"\n", b"   "])
def test_malformed_json_is_400_naming_body(client, raw):
    res = post_json(client, BASE, raw)
    assert res.status_code == 400 and res.json_body["error"]["invalid_params"] == ["body"]


def test_inline_table_list_at_creation(client):
    task_id = create(client, table_list_file="bss_company\nods.orders, bss_company")
    info = client.http.get(f"{BASE}/{task_id}/table-list-info").json_body["data"]
    assert info["has_table_list"] is True and info["table_count"] == 2
    assert info["tables"] == ["public.bss_company", "ods.orders"]


def test_unknown_task_is_404(client):
    for res in (client.http.get(f"{BASE}/task_20990101_000000"), client.http.get(f"{BASE}/nonsense"),
                post_json(client, f"{BASE}/task_20990101_000000/execute", {})):
        assert res.status_code == 404 and res.json_body["error"]["code"] == "TASK_NOT_FOUND"


@pytest.mark.parametrize("body, code, field", [
    ({"execution_mode": "fast"}, "INVALID_EXECUTION_MODE", "execution_mode"),
    ({"execution_mode": "step"}, "MISSING_STEP_NAME", "step_name"),
    ({"execution_mode": "step", "step_name": "ddl"}, "INVALID_STEP_NAME", "step_name"),
    ({"backup_vector_tables": "true"}, "VALIDATION_ERROR", "backup_vector_tables"),
    ({"execution_mode": 3}, "VALIDATION_ERROR", "execution_mode"),
])
def test_execute_validation(client, body, code, field):
    task_id = with_tables(client)
    res = post_json(client, f"{BASE}/{task_id}/execute", body)
    assert res.status_code == 400 and res.json_body["error"]["code"] == code
    assert res.json_body["error"]["invalid_params"] == [field]


def test_execute_needs_table_list(client):
    task_id = create(client)
    res = post_json(client, f"{BASE}/{task_id}/execute", {})
    assert res.status_code == 400 and res.json_body["error"]["code"] == "TABLE_LIST_MISSING"


def test_execute_starts_state_machine_with_input(client):
    task_id = with_tables(client, truncate_vector_tables=False)
    res = post_json(client, f"{BASE}/{task_id}/execute", {"execution_mode": "step", "step_name": "ddl_generation",
                                                          "truncate_vector_tables": True})
    assert res.status_code == 202 and res.json_body["code"] == 202
    data = res.json_body["data"]
    assert data["execution_mode"] == "step" and data["step_name"] == "ddl_generation"
    sfn = boto3.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=os.environ["DATA_PIPELINE_STATE_MACHINE_ARN"])["executions"]
    assert len(executions) == 1
    described = sfn.describe_execution(executionArn=executions[0]["executionArn"])


    assert json.loads(described["input"]) == {"task_id": task_id, "execution_mode": "step",
                                              "step_name": "ddl_generation", "backup_vector_tables": True,
                                              "truncate_vector_tables": True}
    status = client.http.get(f"{BASE}/{task_id}").json_body["data"]
    assert status["status"] == "in_progress" and status["current_step"]["execution_id"] == data["execution_id"]
    again = post_json(client, f"{BASE}/{task_id}/execute", {})
    assert again.status_code == 409 and again.json_body["error"]["code"] == "TASK_ALREADY_RUNNING"


def test_execute_start_failure_releases_claim(client, monkeypatch):
    task_id = with_tables(client)
    monkeypatch.setenv("DATA_PIPELINE_STATE_MACHINE_ARN",
                       "arn:aws:states:us-east-1:123456789012:stateMachine:missing")
    res = post_json(client, f"{BASE}/{task_id}/execute", {})
    assert res.status_code == 500 and res.json_body["success"] is False
    assert "Traceback" not in res.body.decode()
    status = client.http.get(f"{BASE}/{task_id}").json_body["data"]
    assert status["status"] == "failed" and status["error_message"]


def test_two_simultaneous_executes_one_wins(client, monkeypatch):
    make_moto_dynamodb_writes_atomic(monkeypatch)
    task_id = with_tables(client)
    barrier = threading.Barrier(2)
    codes = []
    saved_environ = os.environ  # the test client swaps os.environ per call; threads would leave a copy behind

    def run():
        barrier.wait()
        codes.append(post_json(client, f"{BASE}/{task_id}/execute", {}).status_code)

    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.environ = saved_environ  # noqa: B003 - restoring the very object, not clearing
    assert sorted(codes) == [202, 409]


def test_cancel(client):
    task_id = with_tables(client)
    res = post_json(client, f"{BASE}/{task_id}/cancel", {})
    assert res.status_code == 409 and res.json_body["error"]["code"] == "TASK_NOT_RUNNING"
    assert post_json(client, f"{BASE}/{task_id}/execute", {}).status_code == 202
    res = post_json(client, f"{BASE}/{task_id}/cancel", {})
    assert res.status_code == 200 and res.json_body["data"]["status"] == "cancelled"
    assert client.http.get(f"{BASE}/{task_id}").json_body["data"]["status"] == "cancelled"
    assert post_json(client, f"{BASE}/{task_id}/execute", {}).status_code == 202


def test_bearer_key(client, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "k3y")
    res = client.http.get(BASE)
    assert res.status_code == 401 and res.json_body["error"]["code"] == "UNAUTHORIZED"
    assert client.http.get(BASE, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.http.get(BASE, headers={"Authorization": "Basic k3y"}).status_code == 401
    assert client.http.get(BASE, headers={"Authorization": "Bearer k3y"}).status_code == 200
    monkeypatch.delenv("DATA_PIPELINE_API_KEY")
    assert client.http.get(BASE).status_code == 200


def test_list_parameter_errors(client):
    for query, field in (("limit=abc", "limit"), ("limit=0", "limit"), ("offset=-1", "offset"),
                         ("status=bogus", "status")):
        res = client.http.get(f"{BASE}?{query}")
        assert res.status_code == 400 and res.json_body["error"]["invalid_params"] == [field]


def test_body_size_limit(client):
    res = post_json(client, BASE, {"business_context": "x" * (3 * 1024 * 1024)})
    assert res.status_code == 413 and res.json_body["code"] == 413


def test_directory_exists_follows_the_files_of_the_task(client):
    s3, bucket = boto3.client("s3"), os.environ["DATA_PIPELINE_BUCKET"]
    bare = create(client, task_name="no table list")
    assert client.http.get(f"{BASE}/{bare}").json_body["data"]["directory_exists"] is True  # its creation log
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=f"tasks/{bare}/").get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    assert client.http.get(f"{BASE}/{bare}").json_body["data"]["directory_exists"] is False
    listed = with_tables(client, task_name="with a table list")
    tasks = {t["task_id"]: t for t in client.http.get(f"{BASE}?limit=10").json_body["data"]["tasks"]}
    assert tasks[bare]["directory_exists"] is False and tasks[listed]["directory_exists"] is True
    # The stored table-list names come from table_list.txt, not from the task item.
    item = boto3.resource("dynamodb").Table("dp-test-tasks").get_item(Key={"task_id": listed})["Item"]
    assert "tables" not in item["table_list"] and item["table_list"]["table_count"] == 2
    info = client.http.get(f"{BASE}/{listed}/table-list-info").json_body["data"]
    assert info["tables"] == ["public.bss_company", "ods.orders"]


# ---- error.type as the guide shows it (issue 8, finding 4) ------------------------------------------------

def test_every_400_has_error_type_validation_error_and_keeps_its_code(client):
    task_id = create(client)
    answers = {
        "TABLE_LIST_MISSING": post_json(client, f"{BASE}/{task_id}/execute", {}),
        "INVALID_EXECUTION_MODE": post_json(client, f"{BASE}/{task_id}/execute", {"execution_mode": "fast"}),
        "MISSING_STEP_NAME": post_json(client, f"{BASE}/{task_id}/execute", {"execution_mode": "step"}),
        "INVALID_STEP_NAME": post_json(client, f"{BASE}/{task_id}/execute", {"execution_mode": "step",
                                                                             "step_name": "ddl"}),
        "INVALID_TABLE_NAME": post_json(client, f"{BASE}/{task_id}/table-list", {"table_names": ["bad name!"]}),
        "DATABASE_CONNECTION_ERROR": post_json(client, BASE, {"db_connection": "mysql://h/db"}),
        "VALIDATION_ERROR": post_json(client, BASE, b"{not json"),
    }
    for code, res in answers.items():
        assert res.status_code == 400, (code, res.json_body)
        assert res.json_body["error"]["type"] == "ValidationError", (code, res.json_body)
        assert res.json_body["error"]["code"] == code
    not_found = client.http.get(f"{BASE}/task_20990101_000000").json_body["error"]
    assert not_found["code"] == "TASK_NOT_FOUND" and not_found["type"] != "ValidationError"


def test_a_chalice_made_400_has_error_type_validation_error_too():
    from chalice import Response

    from chalicelib.api.middleware import as_envelope

    wrapped = as_envelope(Response(body={"Code": "BadRequestError", "Message": "bad JSON"}, status_code=400))
    error = json.loads(wrapped.body)["error"]
    assert wrapped.status_code == 400 and error["type"] == "ValidationError" and error["code"] == "VALIDATION_ERROR"
    not_allowed = as_envelope(Response(body={"Code": "MethodNotAllowedError", "Message": "no"}, status_code=405))
    # Named as the local server and API Gateway name it (infra/local/gateway.py, infra/api_gateway.py).
    assert json.loads(not_allowed.body)["error"]["type"] == "MethodNotAllowed"
    assert json.loads(not_allowed.body)["error"]["code"] == "METHOD_NOT_ALLOWED"
