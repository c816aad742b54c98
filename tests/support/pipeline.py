"""Drive the HTTP API of a running LocalStack the way a client does: create, upload, execute, poll, read."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from chalice.test import Client

from tests.support.aws_api import multipart

FINAL_STATUSES = ("completed", "failed", "cancelled", "partial_completed")
BASE = "/api/v0/data_pipeline/tasks"


def wait_until_final(status_of: Callable[[str], dict[str, Any]], task_id: str, timeout: float,
                     poll: float) -> dict[str, Any]:
    """Poll a task's status until it is final (a status seen while running is never final)."""
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(task_id)
        if status["status"] in FINAL_STATUSES:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{task_id} still {status['status']} after {timeout} s: {status.get('step_status')}")
        time.sleep(poll)


class PipelineClient:
    def __init__(self, stack: Any):
        self.stack = stack
        self.client = Client(stack.app)

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                expect: int | None = None) -> dict[str, Any]:
        raw = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        response = getattr(self.client.http, method.lower())(path, headers=hdrs, **({"body": raw} if raw else {}))
        payload = json.loads(response.body) if response.body else {}
        if expect is not None:
            assert response.status_code == expect, (path, response.status_code, payload)
        return payload

    def create_task(self, **fields: Any) -> str:
        return self.request("POST", BASE, fields, expect=201)["data"]["task_id"]

    def upload_tables(self, task_id: str, tables: list[str]) -> dict[str, Any]:
        headers, body = multipart("tables.txt", ("\n".join(tables) + "\n").encode())
        return self.request("POST", f"{BASE}/{task_id}/upload-table-list", body, headers, expect=200)["data"]

    def execute(self, task_id: str, expect: int = 202, **body: Any) -> dict[str, Any]:
        return self.request("POST", f"{BASE}/{task_id}/execute", body, expect=expect)

    def status(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"{BASE}/{task_id}", expect=200)["data"]

    def wait(self, task_id: str, timeout: float = 240.0) -> dict[str, Any]:
        return wait_until_final(self.status, task_id, timeout, poll=0.3)

    def run(self, tables: list[str], timeout: float = 240.0, execute: dict | None = None, **fields: Any
            ) -> tuple[str, dict[str, Any]]:
        task_id = self.create_task(**fields)
        self.upload_tables(task_id, tables)
        self.execute(task_id, **(execute or {}))
        return task_id, self.wait(task_id, timeout)

    def files(self, task_id: str) -> dict[str, dict[str, Any]]:
        data = self.request("GET", f"{BASE}/{task_id}/files", expect=200)["data"]
        return {item["file_name"]: item for item in data["files"]}

    def file_text(self, task_id: str, name: str) -> str:
        response = self.client.http.get(f"{BASE}/{task_id}/files/{name}")
        assert response.status_code == 200, (name, response.status_code, response.body[:300])
        return response.body.decode("utf-8")

    def logs(self, task_id: str, **query: Any) -> list[dict[str, Any]]:
        body = {"page_size": 500, **query}
        return self.request("POST", f"{BASE}/{task_id}/logs/query", body, expect=200)["data"]["logs"]
