"""What the log routes do: tail a task's log and query it with filters, sorting and pages."""
from __future__ import annotations

import time
from typing import Any

from chalicelib.api.models import LogQueryRequest, LogsParams
from chalicelib.stores import logstore
from chalicelib.stores.files import FileStore
from chalicelib.stores.log_chunks import LogFilter, LogReader
from chalicelib.stores.tasks import TaskStore

LOG_ORDER = ("timestamp", "line_number")  # sorts that follow the log's own order (timestamp ties in line order)
_FIELDS = ("timestamp", "level", "logger", "step", "message", "execution_id", "line_number")


def _view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in _FIELDS}


def _log_file(task_id: str) -> str:
    return f"/api/v0/data_pipeline/tasks/{task_id}/files/{logstore.LOG_FILE_NAME}"


def get_logs(task_id: str, params: LogsParams) -> dict[str, Any]:
    """The last `limit` records (oldest first), optionally of one level. `total` is counted from the chunks'
    names; only the chunks holding the returned records are read (stores/log_chunks.py)."""
    TaskStore().get_task(task_id)
    page = LogReader(task_id).page(LogFilter(level=params.level), 0, params.limit, descending=True)
    return {"task_id": task_id, "logs": [_view(r) for r in reversed(page.records)], "total": page.total,
            "source": "s3", "log_file": _log_file(task_id)}


def query_logs(task_id: str, body: LogQueryRequest) -> dict[str, Any]:
    """A page of the filtered log. Sorted by timestamp or line (the log's own order), only the chunks the page
    takes records from are read, plus those whose count under the filter their names cannot tell (a keyword,
    logger or step filter reads every chunk the level and time range leave, for an exact total); another sort
    reads every chunk left by the level and time range."""
    started = time.perf_counter()
    page, page_size, step_name = body.page, body.page_size, body.step_name
    keyword, logger_name = (body.keyword or "").lower(), (body.logger_name or "").lower()
    sort_by, descending = body.sort_by, body.sort_order == "desc"

    def content(r: dict[str, Any]) -> bool:
        return ((not keyword or keyword in str(r.get("message", "")).lower())
                and (not logger_name or logger_name in str(r.get("logger", "")).lower())
                and (not step_name or r.get("step") == step_name))

    where = LogFilter(level=body.level, start=_stamp(body.start_time), end=_stamp(body.end_time),
                      content=content if keyword or logger_name or step_name else None)
    TaskStore().get_task(task_id)
    reader = LogReader(task_id, FileStore())
    offset = (page - 1) * page_size
    if sort_by in LOG_ORDER:  # timestamp ties are in line order: the log's own order
        found = reader.page(where, offset, page_size, descending)
        records, total = found.records, found.total
    else:
        matched = reader.page(where, 0, None, False).records
        matched.sort(key=lambda r: (str(r.get(sort_by) or ""), r["line_number"]), reverse=descending)
        records, total = matched[offset:offset + page_size], len(matched)
    total_pages = (total + page_size - 1) // page_size
    chunks = reader.chunks
    last = max((c.last_modified for c in chunks), default=None)
    return {
        "logs": [_view(r) for r in records],
        "pagination": {"page": page, "page_size": page_size, "total": total, "total_pages": total_pages,
                       "has_next": page < total_pages, "has_prev": page > 1},
        "log_file_info": {"exists": bool(chunks), "file_path": _log_file(task_id),
                          "file_size": sum(c.size for c in chunks),
                          "last_modified": last.strftime("%Y-%m-%dT%H:%M:%S") if last else None},
        "query_time": f"{time.perf_counter() - started:.3f}s",
    }


def _stamp(iso: str | None) -> str | None:
    """Records carry `YYYY-MM-DD HH:MM:SS`; filters are normalised to the same form for string comparison."""
    return iso.replace("T", " ") if iso else None
