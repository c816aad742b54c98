"""Honest cancel (issue 12, item 5), on moto: a task is reported cancelled only when its execution was stopped or
had already ended; any other StopExecution failure is a 500 naming it and leaves the task running. A cancelled
task's later step invocations write nothing, in training_load not even after the embeddings came back."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import psycopg2
import pytest
from moto.core import set_initial_no_auth_action_count

from chalicelib.errors import TaskCancelled
from chalicelib.steps import ddl_generation, lifecycle, training_load, vector_tables
from chalicelib.stores.files import FileStore, TaskFiles
from chalicelib.stores.tasks import TaskStore
from tests.support.aws_api import BUCKET, TABLE, api_environment, post_json
from tests.support.llm_stub import hash_embedding

TASKS = "/api/v0/data_pipeline/tasks"


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


def _running_task(client) -> tuple[str, str]:
    """A task whose execution runs (moto does not execute the machine here: the execution stays RUNNING)."""
    task_id = post_json(client, TASKS, {"task_name": "to cancel"}).json_body["data"]["task_id"]
    assert post_json(client, f"{TASKS}/{task_id}/table-list", {"table_names": ["public.t"]}).status_code == 200
    assert post_json(client, f"{TASKS}/{task_id}/execute", {}).status_code == 202
    arn = TaskStore().get_task(task_id)["execution"]["execution_arn"]
    assert boto3.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "RUNNING"
    return task_id, arn


def _status(client, task_id: str) -> dict:
    return client.http.get(f"{TASKS}/{task_id}").json_body["data"]


def _snapshot(task_id: str) -> tuple[dict, dict]:
    """Every object of the task in S3 (name -> ETag) and the raw task item."""
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"tasks/{task_id}/").get("Contents", [])
    item = boto3.resource("dynamodb").Table(TABLE).get_item(Key={"task_id": task_id})["Item"]
    return {o["Key"]: o["ETag"] for o in listed}, item


def test_cancel_stops_the_running_execution(client):
    task_id, arn = _running_task(client)
    res = post_json(client, f"{TASKS}/{task_id}/cancel", {})
    assert res.status_code == 200 and res.json_body["data"]["status"] == "cancelled"
    assert boto3.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert _status(client, task_id)["status"] == "cancelled"


def test_cancel_of_an_execution_that_already_ended(client):
    task_id, arn = _running_task(client)
    boto3.client("stepfunctions").stop_execution(executionArn=arn)  # it ended without updating the task
    res = post_json(client, f"{TASKS}/{task_id}/cancel", {})
    assert res.status_code == 200 and _status(client, task_id)["status"] == "cancelled"


def test_stop_refused_while_the_execution_runs_fails_the_cancel(client, monkeypatch):
    task_id, arn = _running_task(client)
    before = _snapshot(task_id)

    @set_initial_no_auth_action_count(3)  # the three IAM calls below run unauthenticated, then IAM applies
    def as_a_role_without_stop_execution():
        iam = boto3.client("iam")
        iam.create_user(UserName="operator")
        iam.put_user_policy(UserName="operator", PolicyName="no-stop", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "states:StopExecution", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="operator")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        return post_json(client, f"{TASKS}/{task_id}/cancel", {})

    res = as_a_role_without_stop_execution()
    body = res.json_body
    assert res.status_code == 500 and body["error"]["code"] == "TASK_CANCEL_FAILED", body
    assert "still running" in body["message"] and "not cancelled" in body["message"]
    assert "AccessDenied" in body["message"] and "states:StopExecution" in body["message"]
    assert arn.rsplit(":", 1)[-1] in body["message"]
    assert _snapshot(task_id)[1]["status"] == "in_progress" and _snapshot(task_id)[1] == before[1]
    assert boto3.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "RUNNING"


def test_an_unreachable_step_functions_fails_the_cancel(client, monkeypatch):
    task_id, _ = _running_task(client)
    # nothing listens there: the state is unknown. botocore reads AWS_ENDPOINT_URL_SFN; chalicelib.aws keys its
    # client cache by AWS_ENDPOINT_URL_STEPFUNCTIONS, so both are set to get a fresh client pointed there.
    for name in ("AWS_ENDPOINT_URL_SFN", "AWS_ENDPOINT_URL_STEPFUNCTIONS"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    res = post_json(client, f"{TASKS}/{task_id}/cancel", {})
    body = res.json_body
    assert res.status_code == 500 and body["error"]["code"] == "TASK_CANCEL_FAILED", body
    assert "EndpointConnectionError" in body["message"] and "state is unknown" in body["message"]
    monkeypatch.delenv("AWS_ENDPOINT_URL_SFN")
    monkeypatch.delenv("AWS_ENDPOINT_URL_STEPFUNCTIONS")
    assert _status(client, task_id)["status"] == "in_progress"


def test_a_cancelled_tasks_later_steps_write_nothing(client):
    task_id, arn = _running_task(client)
    assert post_json(client, f"{TASKS}/{task_id}/cancel", {}).status_code == 200
    before = _snapshot(task_id)
    event = {"task_id": task_id, "execution_id": arn}
    for handler in (lifecycle.prepare, ddl_generation.plan, vector_tables.backup, training_load.load,
                    lifecycle.finalize, lifecycle.handle_failure):
        with pytest.raises(TaskCancelled, match="was cancelled"):
            handler(dict(event), None)
    assert _snapshot(task_id) == before  # no file, no log line, no status change


def test_a_step_of_a_superseded_execution_writes_nothing(client):
    task_id, arn = _running_task(client)
    before = _snapshot(task_id)
    with pytest.raises(TaskCancelled, match="another execution"):
        ddl_generation.plan({"task_id": task_id, "execution_id": arn + "-earlier"}, None)
    assert _snapshot(task_id) == before


class _CancellingEmbeddings:
    """An OpenAI-compatible /v1/embeddings endpoint that cancels the task while it answers (the cancel arrives
    while training_load waits for its vectors)."""

    def __init__(self, task_id: str, dim: int):
        outer = self
        self.calls = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):  # noqa: N802
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.calls += 1
                TaskStore().finish_task(task_id, "cancelled", "cancelled through the API")
                texts = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
                body = json.dumps({"object": "list", "model": "stub", "data": [
                    {"object": "embedding", "index": i, "embedding": hash_embedding(t, dim)}
                    for i, t in enumerate(texts)], "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def test_training_load_writes_no_row_once_the_task_is_cancelled(client, scratch_db, monkeypatch):
    task_id = post_json(client, TASKS, {"task_name": "load"}).json_body["data"]["task_id"]
    files = TaskFiles(task_id, FileStore())
    files.put_text("public.orders.ddl", "create table public.orders (id int primary key);\n")
    files.put_text("public.orders_detail.md", "## orders（订单）\n订单表\n")
    files.put_text("qs_x_pair.json", json.dumps([{"question": "订单数？", "sql": "SELECT COUNT(*) FROM orders;"}]))
    files.put_text("work/pair_file.txt", "qs_x_pair.json")
    endpoint = _CancellingEmbeddings(task_id, 8)
    monkeypatch.setenv("PGVECTOR_DB_URL", scratch_db)
    monkeypatch.setenv("EMBEDDING_BASE_URL", endpoint.url)
    monkeypatch.setenv("EMBEDDING_API_KEY", "x")
    monkeypatch.setenv("EMBEDDING_DIM", "8")
    try:
        with pytest.raises(TaskCancelled):
            training_load.load({"task_id": task_id}, None)
    finally:
        endpoint.server.shutdown()
    assert endpoint.calls >= 1  # the cancel came while the vectors were computed
    conn = psycopg2.connect(scratch_db)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('langchain_pg_embedding') is not null")
            exists = cur.fetchone()[0]
            if exists:
                cur.execute("select count(*) from langchain_pg_embedding")
                assert cur.fetchone()[0] == 0
    finally:
        conn.close()
    assert TaskStore().get_task(task_id)["step_status"]["training_load"] != "completed"
