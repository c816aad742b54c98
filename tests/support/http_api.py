"""The product over real HTTP: LocalStack + Chalice's local dev server (as `python -m infra.local.serve` runs
them) and a small urllib client."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from infra.local.serve import api_base_url, start_api_server, stop_api_server
from tests.support.aws_api import multipart
from tests.support.pipeline import FINAL_STATUSES, wait_until_final

__all__ = ["FINAL_STATUSES", "HttpApi", "served"]
TASKS = "/data_pipeline/tasks"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes
    data: Any = field(default=None)

    @property
    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8"))


class HttpApi:
    """`api.call("GET", "/data_pipeline/tasks")` against http://host:port/api/v0."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             expect: int | None = None) -> Reply:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        if self.api_key:
            hdrs["Authorization"] = f"Bearer {self.api_key}"
        hdrs.update(headers or {})
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = Reply(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, dict(exc.headers.items()), exc.read())
        if expect is not None:
            assert reply.status == expect, (method, path, reply.status, reply.raw[:500])
        return reply

    def data(self, method: str, path: str, body: Any = None, expect: int = 200, **kw: Any) -> Any:
        return self.call(method, path, body, expect=expect, **kw).json["data"]

    # -- the usual client flow ------------------------------------------------------------------------------
    def create_task(self, **fields: Any) -> str:
        return self.data("POST", TASKS, fields, expect=201)["task_id"]

    def upload_tables(self, task_id: str, tables: list[str], file_name: str = "tables.txt") -> dict[str, Any]:
        headers, body = multipart(file_name, ("\n".join(tables) + "\n").encode())
        return self.data("POST", f"{TASKS}/{task_id}/upload-table-list", body, headers=headers)

    def status(self, task_id: str) -> dict[str, Any]:
        return self.data("GET", f"{TASKS}/{task_id}")

    def wait(self, task_id: str, timeout: float = 240.0, poll: float = 0.5) -> dict[str, Any]:
        return wait_until_final(self.status, task_id, timeout, poll)


@contextmanager
def served(stack: Any, api_key: str | None = None) -> Iterator[HttpApi]:
    """Chalice's local server for a started LocalStack on a free port; the environment is restored after."""
    saved = dict(os.environ)
    server = start_api_server(stack, "127.0.0.1", 0)
    try:
        yield HttpApi(api_base_url(server), api_key)
    finally:
        stop_api_server(server)
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)
