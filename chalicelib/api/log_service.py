"""What the log routes do: tail a task's log and query it with filters, sorting and pages."""
from __future__ import annotations

import time
from typing import Any

from chalicelib.api.models import LogQueryRequest, LogsParams
from chalicelib.stores import logstore
from chalicelib.stores.files import FileStore
from chalicelib.stores.tasks import TaskStore

_FIELDS = ("timestamp", "level", "logger", "step", "message", "execution_id", "line_number")


def _view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in _FIELDS}


def _log_file(task_id: str) -> str:
    return f"/api/v0/data_pipeline/tasks/{task_id}/files/{logstore.LOG_FILE_NAME}"


def get_logs(task_id: str, params: LogsParams) -> dict[str, Any]:
    """The last `limit` records (oldest first), optionally of one level."""
    limit, level = params.limit, params.level
    TaskStore().get_task(task_id)
    records = [r for r in logstore.read_records(task_id) if not level or r.get("level") == level]
    return {"task_id": task_id, "logs": [_view(r) for r in records[-limit:]], "total": len(records),
            "source": "s3", "log_file": _log_file(task_id)}


def query_logs(task_id: str, body: LogQueryRequest) -> dict[str, Any]:
    started = time.perf_counter()
    page, page_size, level, step_name = body.page, body.page_size, body.level, body.step_name
    start, end = _stamp(body.start_time), _stamp(body.end_time)
    keyword, logger_name = (body.keyword or "").lower(), (body.logger_name or "").lower()
    sort_by, sort_order = body.sort_by, body.sort_order
    TaskStore().get_task(task_id)
    files = FileStore()
    records = logstore.read_records(task_id, files)
    matched = [
        r for r in records
        if (not level or r.get("level") == level)
        and (not start or str(r.get("timestamp", "")) >= start)
        and (not end or str(r.get("timestamp", "")) <= end)
        and (not keyword or keyword in str(r.get("message", "")).lower())
        and (not logger_name or logger_name in str(r.get("logger", "")).lower())
        and (not step_name or r.get("step") == step_name)
    ]
    matched.sort(key=lambda r: (str(r.get(sort_by) or ""), r["line_number"]) if sort_by != "line_number"
                 else r["line_number"], reverse=sort_order == "desc")
    total = len(matched)
    total_pages = (total + page_size - 1) // page_size
    info = logstore.log_file_info(task_id, files)
    last = info["last_modified"]
    return {
        "logs": [_view(r) for r in matched[(page - 1) * page_size: page * page_size]],
        "pagination": {"page": page, "page_size": page_size, "total": total, "total_pages": total_pages,
                       "has_next": page < total_pages, "has_prev": page > 1},
        "log_file_info": {"exists": bool(records), "file_path": _log_file(task_id),
                          "file_size": info["size"],
                          "last_modified": last.strftime("%Y-%m-%dT%H:%M:%S") if last else None},
        "query_time": f"{time.perf_counter() - started:.3f}s",
    }


def _stamp(iso: str | None) -> str | None:
    """Records carry `YYYY-MM-DD HH:MM:SS`; filters are normalised to the same form for string comparison."""
    return iso.replace("T", " ") if iso else None
