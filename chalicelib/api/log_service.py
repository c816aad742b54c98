"""What the log routes do: tail a task's log and query it with filters, sorting and pages."""
from __future__ import annotations

import time
from typing import Any

from chalicelib.api import requests as rq
from chalicelib.errors import ValidationError
from chalicelib.stores import logstore
from chalicelib.stores.files import FileStore
from chalicelib.stores.tasks import TaskStore
from chalicelib.tasklog import LEVELS

MAX_PAGE_SIZE = 500
SORT_FIELDS = ("timestamp", "level", "logger", "step", "line_number")
_FIELDS = ("timestamp", "level", "logger", "step", "message", "execution_id", "line_number")


def _level(value: Any, name: str = "level") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value.upper() not in LEVELS:
        raise ValidationError(f"{name} must be one of: {', '.join(LEVELS)}", invalid_params=[name])
    return value.upper()


def _view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in _FIELDS}


def _log_file(task_id: str) -> str:
    return f"/api/v0/data_pipeline/tasks/{task_id}/files/{logstore.LOG_FILE_NAME}"


def get_logs(task_id: str, params: dict[str, str] | None) -> dict[str, Any]:
    """The last `limit` records (oldest first), optionally of one level."""
    limit = rq.get_query_int(params, "limit", 100, minimum=1, maximum=1000)
    level = _level((params or {}).get("level"))
    TaskStore().get_task(task_id)
    records = [r for r in logstore.read_records(task_id) if not level or r.get("level") == level]
    return {"task_id": task_id, "logs": [_view(r) for r in records[-limit:]], "total": len(records),
            "source": "s3", "log_file": _log_file(task_id)}


def query_logs(task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    page = rq.get_int(body, "page", 1, minimum=1)
    page_size = rq.get_int(body, "page_size", 50, minimum=1, maximum=MAX_PAGE_SIZE)
    level = _level(body.get("level"))
    start = _stamp(rq.parse_time(body.get("start_time"), "start_time"))
    end = _stamp(rq.parse_time(body.get("end_time"), "end_time", end=True))
    keyword = (rq.get_str(body, "keyword", max_length=500) or "").lower()
    logger_name = (rq.get_str(body, "logger_name", max_length=200) or "").lower()
    step_name = rq.get_str(body, "step_name", max_length=100)
    sort_by = rq.get_choice(rq.get_str(body, "sort_by") or "timestamp", "sort_by", SORT_FIELDS)
    sort_order = rq.get_choice(rq.get_str(body, "sort_order") or "desc", "sort_order", ("asc", "desc"))
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
                          "file_size": len(logstore.render_text(records).encode("utf-8")),
                          "last_modified": last.strftime("%Y-%m-%dT%H:%M:%S") if last else None},
        "query_time": f"{time.perf_counter() - started:.3f}s",
    }


def _stamp(iso: str | None) -> str | None:
    """Records carry `YYYY-MM-DD HH:MM:SS`; filters are normalised to the same form for string comparison."""
    return iso.replace("T", " ") if iso else None
