"""A typed Python client of the data_pipeline API (standard library only).

The method names and arguments of the original guide's client class (§8.6 `DataPipelineAPI`: create_task,
execute_task, get_task_status, poll_task_status, get_task_files, download_file, get_task_logs) are kept, and
like there they return the answer's whole envelope `{success, code, message, data}`; `watch()` and `wait()`
work with the task's status (`data`) itself. A failure is an ApiError (the envelope's code and message); a
server that cannot be reached is ServerUnreachable.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8084"
API_PREFIX = "/api/v0"
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "partial_completed"})
Envelope = dict[str, Any]


class ApiError(Exception):
    """The API answered with an error envelope (or something that is not one)."""

    def __init__(self, status: int, code: str, message: str, envelope: Mapping[str, Any] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.envelope = dict(envelope or {})

    @property
    def data(self) -> Any:
        """The `data` of an error answer that carries one (422 SQL_VALIDATION_FAILED: the failing statements)."""
        return self.envelope.get("data")


class ServerUnreachable(ApiError):
    """No answer at all: the server is down, the URL wrong, or the connection timed out."""

    def __init__(self, url: str, reason: str):
        super().__init__(0, "SERVER_UNREACHABLE", f"cannot reach {url}: {reason}")
        self.url = url


class TaskFailed(Exception):
    """poll_task_status: the task ended without completing (the guide's client raised here too)."""

    def __init__(self, status: Mapping[str, Any]):
        super().__init__(f"task {status.get('task_id')} {status.get('status')}: "
                         f"{status.get('error_message') or 'no error message'}")
        self.status = dict(status)


def _base_url(url: str | None) -> str:
    """`http://host:port`, `http://host:port/api/v0` or with a trailing slash: the server's root."""
    text = (url or os.environ.get("DATA_PIPELINE_URL") or DEFAULT_URL).strip().rstrip("/")
    return text[:-len(API_PREFIX)] if text.endswith(API_PREFIX) else text


def _query(params: Mapping[str, Any]) -> str:
    kept = {k: ("true" if v is True else "false" if v is False else v) for k, v in params.items() if v is not None}
    return ("?" + urllib.parse.urlencode(kept)) if kept else ""


class Client:
    """`Client("http://127.0.0.1:8084", api_key=...)`; both default to DATA_PIPELINE_URL / DATA_PIPELINE_API_KEY."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 user: str | None = None):
        self.base_url = _base_url(base_url)
        self.api_key = api_key if api_key is not None else os.environ.get("DATA_PIPELINE_API_KEY") or None
        self.timeout = timeout
        self.user = user

    # ---- transport ----------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                content_type: str = "application/json", envelope: bool = True) -> Any:
        """`path` below /api/v0. The decoded envelope (or, with envelope=False, the raw bytes)."""
        url = self.base_url + API_PREFIX + path
        data = raw if raw is not None else (
            json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None)
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        if self.user:
            req.add_header("x-user", self.user)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc.code, exc.read()) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ServerUnreachable(self.base_url, str(reason)) from None
        if not envelope:
            return payload
        try:
            return json.loads(payload.decode("utf-8"))
        except ValueError:
            raise ApiError(200, "INVALID_RESPONSE", f"{method} {path}: the answer is not JSON") from None

    @staticmethod
    def _error(status: int, payload: bytes) -> ApiError:
        try:
            answer = json.loads(payload.decode("utf-8"))
        except ValueError:
            return ApiError(status, "HTTP_ERROR", payload.decode("utf-8", "replace")[:300])
        error = answer.get("error") or {} if isinstance(answer, dict) else {}
        message = answer.get("message") if isinstance(answer, dict) else None
        return ApiError(status, str(error.get("code") or "HTTP_ERROR"), str(message or error.get("details")), answer)

    def _data(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request(method, path, body, **kw)["data"]

    # ---- tasks (the guide's names) ------------------------------------------------------------------------

    def create_task(self, **params: Any) -> Envelope:
        """POST /data_pipeline/tasks: task_name, business_context, db_name, db_connection, table_list_file, …"""
        return self.request("POST", "/data_pipeline/tasks", params)

    def execute_task(self, task_id: str, execution_mode: str = "complete", step_name: str | None = None,
                     **options: Any) -> Envelope:
        """Start the pipeline; options: backup_vector_tables, truncate_vector_tables."""
        body: dict[str, Any] = {"execution_mode": execution_mode, **options}
        if step_name:
            body["step_name"] = step_name
        return self.request("POST", f"/data_pipeline/tasks/{task_id}/execute", body)

    def get_task_status(self, task_id: str) -> Envelope:
        return self.request("GET", f"/data_pipeline/tasks/{task_id}")

    def poll_task_status(self, task_id: str, interval: float = 5) -> Envelope:
        """Poll until the task ends: its envelope when completed, TaskFailed otherwise (as the guide's client)."""
        final = self.wait(task_id, interval=interval, max_interval=interval)
        if final.get("status") != "completed":
            raise TaskFailed(final)
        return self.get_task_status(task_id)

    def get_task_files(self, task_id: str) -> Envelope:
        return self.request("GET", f"/data_pipeline/tasks/{task_id}/files")

    def download_file(self, task_id: str, filename: str, save_path: str | os.PathLike[str] | None = None) -> str:
        """Save a task file (to `filename` in the current folder unless `save_path`); returns where."""
        target = Path(save_path if save_path is not None else Path(filename).name)
        target.write_bytes(self.get_file_bytes(task_id, filename))
        return str(target)

    def get_task_logs(self, task_id: str, limit: int = 100, level: str | None = None) -> Envelope:
        return self.request("GET", f"/data_pipeline/tasks/{task_id}/logs" + _query({"limit": limit, "level": level}))

    # ---- tasks (the rest of the API) ----------------------------------------------------------------------

    def list_tasks(self, limit: int = 50, offset: int = 0, status: str | None = None,
                   cursor: str | None = None) -> Envelope:
        return self.request("GET", "/data_pipeline/tasks" + _query(
            {"limit": limit, "offset": offset, "status": status, "cursor": cursor}))

    def query_tasks(self, **filters: Any) -> Envelope:
        """page, page_size, status, task_name, created_by, db_name, created_time_start, created_time_end."""
        return self.request("POST", "/data_pipeline/tasks/query", filters)

    def cancel_task(self, task_id: str) -> Envelope:
        return self.request("POST", f"/data_pipeline/tasks/{task_id}/cancel")

    def upload_table_list(self, task_id: str, tables: str | Sequence[str], file_name: str = "tables.txt") -> Envelope:
        """Upload a table list: its text, or a list of names (one per line)."""
        text = tables if isinstance(tables, str) else "\n".join(tables) + "\n"
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n"
                "Content-Type: text/plain\r\n\r\n")
        body = head.encode() + text.encode("utf-8") + f"\r\n--{boundary}--\r\n".encode()
        return self.request("POST", f"/data_pipeline/tasks/{task_id}/upload-table-list", raw=body,
                            content_type=f"multipart/form-data; boundary={boundary}")

    def set_table_list(self, task_id: str, table_names: Sequence[str], business_context: str | None = None
                       ) -> Envelope:
        body: dict[str, Any] = {"table_names": list(table_names)}
        if business_context is not None:
            body["business_context"] = business_context
        return self.request("POST", f"/data_pipeline/tasks/{task_id}/table-list", body)

    def get_table_list_info(self, task_id: str) -> Envelope:
        return self.request("GET", f"/data_pipeline/tasks/{task_id}/table-list-info")

    def get_file_bytes(self, task_id: str, filename: str) -> bytes:
        name = urllib.parse.quote(filename, safe="/")
        return self.request("GET", f"/data_pipeline/tasks/{task_id}/files/{name}", envelope=False)

    def query_logs(self, task_id: str, **filters: Any) -> Envelope:
        """page, page_size, level, start_time, end_time, keyword, logger_name, step_name, sort_by, sort_order."""
        return self.request("POST", f"/data_pipeline/tasks/{task_id}/logs/query", filters)

    # ---- database tools -----------------------------------------------------------------------------------

    def list_database_tables(self, db_connection: str | None = None, schema: str | None = None,
                             table_name_pattern: str | None = None) -> Envelope:
        body = {k: v for k, v in {"db_connection": db_connection, "schema": schema,
                                  "table_name_pattern": table_name_pattern}.items() if v is not None}
        return self.request("POST", "/database/tables", body)

    def get_table_ddl(self, table: str, db_connection: str | None = None, business_context: str | None = None,
                      type: str = "both") -> Envelope:  # noqa: A002  (the API's field name)
        body = {k: v for k, v in {"table": table, "db_connection": db_connection,
                                  "business_context": business_context, "type": type}.items() if v is not None}
        return self.request("POST", "/database/table/ddl", body)

    # ---- vectors ------------------------------------------------------------------------------------------

    def list_vector_backups(self, task_id: str | None = None, limit: int = 50) -> Envelope:
        return self.request("GET", "/data_pipeline/vector/backups" + _query({"task_id": task_id, "limit": limit}))

    def restore_vector_backup(self, task_id: str, timestamp: str | None = None, truncate_before_restore: bool = False,
                              tables: Sequence[str] | None = None, on_conflict: str = "error") -> Envelope:
        body: dict[str, Any] = {"task_id": task_id, "truncate_before_restore": truncate_before_restore,
                                "on_conflict": on_conflict}
        if timestamp:
            body["timestamp"] = timestamp
        if tables:
            body["tables"] = list(tables)
        return self.request("POST", "/data_pipeline/vector/restore", body)

    def vector_stats(self, task_id: str | None = None) -> Envelope:
        return self.request("GET", "/data_pipeline/vector/stats" + _query({"task_id": task_id}))

    # ---- review -------------------------------------------------------------------------------------------

    def validate_sql(self, task_id: str, sql: str) -> Envelope:
        """{valid, error, tables}: planned on the task's database (read-only EXPLAIN), never executed."""
        return self.request("POST", f"/data_pipeline/tasks/{task_id}/sql/validate", {"sql": sql})

    def get_pairs(self, task_id: str, version: int | None = None) -> Envelope:
        return self.request("GET", f"/data_pipeline/tasks/{task_id}/pairs" + _query({"version": version}))

    def save_pairs(self, task_id: str, base_version: int, author: str, pairs: Sequence[Mapping[str, str]]
                   ) -> Envelope:
        """The full new list; ApiError 422 SQL_VALIDATION_FAILED (its `data["errors"]`) or 409 on a stale base."""
        body = {"base_version": base_version, "author": author,
                "pairs": [{"question": p["question"], "sql": p["sql"]} for p in pairs]}
        return self.request("PUT", f"/data_pipeline/tasks/{task_id}/pairs", body)

    def edit_table_comments(self, task_id: str, table: str, table_comment: str | None = None,
                            column_comments: Mapping[str, str] | None = None) -> Envelope:
        body: dict[str, Any] = {"table": table, "column_comments": dict(column_comments or {})}
        if table_comment is not None:
            body["table_comment"] = table_comment
        return self.request("POST", f"/data_pipeline/tasks/{task_id}/tables/comments", body)

    # ---- watching -----------------------------------------------------------------------------------------

    def watch(self, task_id: str, *, interval: float = 1.0, max_interval: float = 10.0, backoff: float = 1.5,
              timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the task's status (`data`) on every poll until it is final (the last one yielded). Polls every
        `interval` seconds while it changes, backing off by `backoff` up to `max_interval` while it does not.
        TimeoutError after `timeout` seconds."""
        started = time.monotonic()
        delay = interval
        last_seen: str | None = None
        while True:
            status = self.get_task_status(task_id)["data"]
            yield status
            if status.get("status") in FINAL_STATUSES:
                return
            seen = json.dumps([status.get("status"), status.get("step_status"), status.get("progress"),
                               status.get("updated_at")], sort_keys=True, default=str)
            delay = interval if seen != last_seen else min(max_interval, delay * backoff)
            last_seen = seen
            if timeout is not None and time.monotonic() - started + delay > timeout:
                raise TimeoutError(f"task {task_id} is still {status.get('status')} after {timeout:.0f} s")
            time.sleep(delay)

    def wait(self, task_id: str, *, interval: float = 1.0, max_interval: float = 10.0,
             timeout: float | None = None) -> dict[str, Any]:
        """The task's final status (`data`): completed, failed, cancelled or partial_completed."""
        final: dict[str, Any] = {}
        for status in self.watch(task_id, interval=interval, max_interval=max_interval, timeout=timeout):
            final = status
        return final


DataPipelineAPI = Client  # the guide's class name
