"""The local stack's S3 and DynamoDB state survives a restart (issue 8, finding 6): a clean stop, a torn
journal line, and a real `python -m infra.local.serve` killed with SIGKILL while a task runs."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chalice import Chalice

from infra.local.persistence import JOURNAL_NAME, Journal, JournalError
from infra.local.stack import ROOT, LocalStack, database_url

PASS_MACHINE = {"StartAt": "Nothing", "States": {"Nothing": {"Type": "Pass", "End": True}}}
DEMO = "highway_config"  # shared with test_stack_databases: loaded once per test server


def _bare(root: Path, **kwargs) -> LocalStack:
    return LocalStack(root, app_factory=lambda: Chalice(app_name="persist"), function_names=[],
                      definition_text=json.dumps(PASS_MACHINE), use_postgres=False, **kwargs)


def _objects(stack: LocalStack) -> dict[str, dict]:
    s3 = stack.client("s3")
    out = {}
    for obj in s3.list_objects_v2(Bucket=stack.bucket).get("Contents", []):
        got = s3.get_object(Bucket=stack.bucket, Key=obj["Key"])
        out[obj["Key"]] = {"body": got["Body"].read(), "type": got["ContentType"], "meta": got["Metadata"],
                           "etag": obj["ETag"], "modified": obj["LastModified"]}
    return out


def _items(stack: LocalStack) -> dict[str, dict]:
    pages = stack.client("dynamodb").get_paginator("scan").paginate(TableName=stack.table_name)
    return {item["task_id"]["S"]: item for page in pages for item in page["Items"]}


def test_objects_and_items_survive_a_restart_and_the_journal_is_compacted(tmp_path):
    with _bare(tmp_path) as stack:
        s3, dynamodb = stack.client("s3"), stack.client("dynamodb")
        s3.put_object(Bucket=stack.bucket, Key="tasks/t1/服务区 表.txt", Body="高速\n".encode(),
                      ContentType="text/plain; charset=utf-8", Metadata={"origin": "upload"})
        s3.put_object(Bucket=stack.bucket, Key="tasks/t1/logs/0001.jsonl", Body=b'{"m": 1}\n')
        s3.put_object(Bucket=stack.bucket, Key="tasks/t1/gone.txt", Body=b"x")
        s3.delete_object(Bucket=stack.bucket, Key="tasks/t1/gone.txt")
        s3.put_object(Bucket=stack.bucket, Key="tasks/t1/twice.txt", Body=b"first")
        s3.put_object(Bucket=stack.bucket, Key="tasks/t1/twice.txt", Body=b"second")
        dynamodb.put_item(TableName=stack.table_name, Item={"task_id": {"S": "t1"}, "blob": {"B": b"\x00\xff"},
                                                            "name": {"S": "高速"}, "n": {"N": "1"}})
        for _ in range(3):
            dynamodb.update_item(TableName=stack.table_name, Key={"task_id": {"S": "t1"}},
                                 UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}})
        with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):  # refused: never journaled
            dynamodb.put_item(TableName=stack.table_name, Item={"task_id": {"S": "t1"}},
                              ConditionExpression="attribute_not_exists(task_id)")
        dynamodb.put_item(TableName=stack.table_name, Item={"task_id": {"S": "t2"}})
        dynamodb.delete_item(TableName=stack.table_name, Key={"task_id": {"S": "t2"}})
        objects, items = _objects(stack), _items(stack)
    assert set(objects) == {"tasks/t1/服务区 表.txt", "tasks/t1/logs/0001.jsonl", "tasks/t1/twice.txt"}
    assert items["t1"]["n"] == {"N": "4"}

    with _bare(tmp_path) as stack:
        assert _objects(stack) == objects  # bodies, content types, metadata, ETags and modified times
        assert _items(stack) == items
        assert stack.restored == {"replayed": stack.restored["replayed"], "objects": 3, "items": 1}
    journal = (tmp_path / ".local" / "state" / JOURNAL_NAME).read_text(encoding="utf-8").splitlines()
    assert len(journal) == 4  # compacted: one record per object, one PutItem per item

    with _bare(tmp_path) as stack:  # and the compacted journal restores the same state
        assert _objects(stack) == objects and _items(stack) == items


def test_a_torn_last_record_is_dropped_and_a_damaged_one_refused(tmp_path):
    with _bare(tmp_path) as stack:
        stack.client("dynamodb").put_item(TableName=stack.table_name, Item={"task_id": {"S": "kept"}})
    path = tmp_path / ".local" / "state" / JOURNAL_NAME
    with open(path, "ab") as handle:
        handle.write(b'{"dynamodb": "DynamoDB_20120810.PutItem", "bo')  # killed while writing this record
    with _bare(tmp_path) as stack:
        assert set(_items(stack)) == {"kept"}
    path.write_bytes(b'{"damaged\n' + path.read_bytes())
    with pytest.raises(JournalError, match="line 1 is damaged"):
        _bare(tmp_path).start()


def test_two_stacks_cannot_share_one_state_folder(tmp_path):
    with _bare(tmp_path):
        other = Journal(tmp_path / ".local" / "state")
        with pytest.raises(JournalError, match="another local stack"):
            other.lock()


def test_without_persistence_nothing_is_written(tmp_path):
    with _bare(tmp_path, persist=False) as stack:
        stack.client("dynamodb").put_item(TableName=stack.table_name, Item={"task_id": {"S": "x"}})
    assert not (tmp_path / ".local").exists()


@pytest.mark.slow
def test_tasks_files_and_logs_survive_a_restart_through_the_api(tmp_path, pg_url):
    from tests.support.http_api import served

    kwargs = {"server_url": pg_url, "demo_database": DEMO}
    with LocalStack(tmp_path, **kwargs) as stack, served(stack) as api:
        task_id = api.create_task(task_name="保留", business_context="高速公路服务区管理系统")
        api.upload_tables(task_id, ["public.bss_company", "public.bss_branch"])
        before = {path: api.call("GET", path, expect=200).json["data"] for path in _views(task_id)}
        log_text = api.call("GET", f"/data_pipeline/tasks/{task_id}/files/data_pipeline.log", expect=200).raw
    assert "task created" in log_text.decode("utf-8")
    with LocalStack(tmp_path, **kwargs) as stack, served(stack) as api:
        after = {path: api.call("GET", path, expect=200).json["data"] for path in _views(task_id)}
        assert after == before
        assert api.call("GET", f"/data_pipeline/tasks/{task_id}/files/data_pipeline.log", expect=200).raw == log_text
        second = api.create_task(task_name="after restart")  # the id counter and the list total carried on
        listed = api.data("GET", "/data_pipeline/tasks")
        assert {t["task_id"] for t in listed["tasks"]} >= {task_id, second}
        assert listed["total"] == before["/data_pipeline/tasks"]["total"] + 1


def _views(task_id: str) -> list[str]:
    base = f"/data_pipeline/tasks/{task_id}"
    return [base, base + "/files", base + "/table-list-info", base + "/logs", "/data_pipeline/tasks"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """`python -m infra.local.serve` in a process group of its own, its stack rooted in a temporary folder."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.log = open(root / f"serve-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.serve", "--port", str(self.port), "--no-demo",
             "--lambda-workers", "1", "--root", str(root)],
            cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        self.banner = self._read_until_ready()

    def _read_until_ready(self, timeout: float = 120.0) -> str:
        lines = []
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode("utf-8")
            if not line:
                raise AssertionError(f"serve exited ({self.process.poll()}): {''.join(lines)}")
            lines.append(line)
            if "API ready on" in line:
                return "".join(lines)
        raise AssertionError("serve did not become ready: " + "".join(lines))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v0"

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)  # the server only: its Lambda worker is orphaned, as in real life
        self.process.wait(timeout=30)

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=60) == 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever of our group outlived the server
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.mark.slow
def test_a_task_running_when_the_server_is_killed_is_failed_interrupted_and_runs_again(tmp_path, pg_url,
                                                                                       scratch_db, llm_stub):
    from tests.support.http_api import HttpApi

    business_url = database_url(pg_url, DEMO)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATA_PIPELINE_", "PGVECTOR_", "LLM_"))}
    # vectors in a database of their own: the demo database may hold other tests' vectors of another model
    env.update({"DATA_PIPELINE_DB_URL": business_url, "PGVECTOR_DB_URL": scratch_db, "PYTHONPATH": str(ROOT)})
    llm_stub.default = lambda payload: {"delay": 30, "content": "{}"}  # every chat call hangs: the task stays running
    first = _Server(tmp_path, {**env, "LLM_BASE_URL": llm_stub.base_url, "LLM_API_KEY": "x",
                               "LLM_TIMEOUT_SECONDS": "60", "LLM_MAX_RETRIES": "0"})
    try:
        assert "business data: " + business_url.split("?")[0] in first.banner
        assert "from DATA_PIPELINE_DB_URL" in first.banner and "local state: " + str(tmp_path) in first.banner
        api = HttpApi(first.base_url)
        task_id = api.create_task(task_name="killed", business_context="高速公路服务区管理系统")
        api.upload_tables(task_id, ["public.bss_company"])
        api.data("POST", f"/data_pipeline/tasks/{task_id}/execute", {"execution_mode": "complete"}, expect=202)
        deadline = time.monotonic() + 60
        while not llm_stub.chat_requests:  # ddl_generation is waiting for the model
            assert time.monotonic() < deadline, api.status(task_id)
            time.sleep(0.2)
        running = api.status(task_id)
        assert running["status"] == "in_progress" and running["step_status"]["ddl_generation"] == "running"
        first.kill()
    finally:
        first.stop()

    second = _Server(tmp_path, env)  # no LLM_BASE_URL now: the heuristic provider
    try:
        api = HttpApi(second.base_url)
        status = api.status(task_id)
        assert status["status"] == "failed"
        assert status["error_message"].startswith("interrupted")
        assert status["step_status"]["ddl_generation"] == "failed"
        assert api.data("GET", f"/data_pipeline/tasks/{task_id}/table-list-info")  # its table list is still there
        api.data("POST", f"/data_pipeline/tasks/{task_id}/execute", {"execution_mode": "complete"}, expect=202)
        final = api.wait(task_id, timeout=240)
        assert final["status"] == "completed", final.get("error_message")
        files = api.data("GET", f"/data_pipeline/tasks/{task_id}/files")
        second.interrupt()  # Ctrl-C
    finally:
        second.stop()

    third = _Server(tmp_path, env)
    try:
        api = HttpApi(third.base_url)
        assert api.status(task_id) == final
        assert api.data("GET", f"/data_pipeline/tasks/{task_id}/files") == files
    finally:
        third.stop()
