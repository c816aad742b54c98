"""What the file routes do: list a task's files (plus the virtual data_pipeline.log) and download one."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

from chalice import Response

from chalicelib.errors import FileNotFound
from chalicelib.stores import logstore
from chalicelib.stores.files import FileStore, content_type_for, safe_file_name
from chalicelib.stores.tasks import TaskStore

API_BASE = "/api/v0/data_pipeline/tasks"
INLINE_DOWNLOAD_LIMIT = 5 * 1024 * 1024  # API Gateway answers at most ~6 MB; larger files redirect to S3
VECTOR_BAK = "vector_bak"
_PAIR = re.compile(r"^qs_.+_pair\.json$")
_DESCRIPTIONS: list[tuple[re.Pattern[str], str]] = [
    (_PAIR, "Question-SQL training pairs"),
    (re.compile(r"^qs_.+_v\d{3}_changes\.json$"), "Pair file review: change log of a saved version"),
    (re.compile(r"_pair\.json\.backup$"), "Question-SQL pairs before SQL repair (backup)"),
    (re.compile(r"^metadata\.txt$"), "Business theme metadata (SQL)"),
    (re.compile(r"^metadata_detail\.md$"), "Business theme metadata (description)"),
    (re.compile(r"_detail\.md$"), "Table documentation (Markdown)"),
    (re.compile(r"\.ddl$"), "Table DDL with comments"),
    (re.compile(r"^table_list\.txt$"), "Table list"),
    (re.compile(r"^sql_validation_.*_summary\.log$"), "SQL validation report"),
    (re.compile(r"^file_modifications_.*\.log$"), "Pair file modification log"),
    (re.compile(r"^vector_bak/vector_backup_log\.txt$"), "Vector table backup log"),
    (re.compile(r"^vector_bak/.*\.csv$"), "Vector table backup (CSV)"),
    (re.compile(rf"^{re.escape(logstore.LOG_FILE_NAME)}$"), "Task execution log"),
]


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}"
    return f"{size} B"


def describe(name: str) -> str:
    return next((text for pattern, text in _DESCRIPTIONS if pattern.search(name)), "Task file")


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return value


def file_type(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def list_task_files(task_id: str) -> dict[str, Any]:
    TaskStore().get_task(task_id)
    files = FileStore()
    entries = [dict(f) for f in files.list_files(task_id)]
    # The log is listed from its chunks' listing (never downloaded to be listed): its size is what is stored.
    info = logstore.log_file_info(task_id, files)
    if info["exists"]:
        entries.append({"name": logstore.LOG_FILE_NAME, "size": info["size"], "last_modified": info["last_modified"]})
    pairs = sorted((e for e in entries if _PAIR.match(e["name"])), key=lambda e: e["last_modified"])
    primary = pairs[-1]["name"] if pairs else None
    out = [{
        "file_name": e["name"],
        "file_type": file_type(e["name"]),
        "file_size": e["size"],
        "file_size_human": human_size(e["size"]),
        "created_at": _iso(e["last_modified"]),
        "is_primary": e["name"] == primary,
        "description": describe(e["name"]),
        "download_url": f"{API_BASE}/{task_id}/files/{quote(e['name'])}",
    } for e in entries]
    out.sort(key=lambda f: (not f["is_primary"], f["file_name"] == logstore.LOG_FILE_NAME, f["file_name"]))
    total = sum(f["file_size"] for f in out)
    return {"task_id": task_id, "files": out, "total_files": len(out), "total_size": total,
            "total_size_human": human_size(total)}


def download_file(task_id: str, filename: str, folder: str | None = None) -> Response:
    """The file's bytes with its Content-Type; a redirect to a short-lived S3 URL for large files."""
    name = safe_file_name(filename)
    if folder:
        name = f"{folder}/{name}"
    TaskStore().get_task(task_id)
    files = FileStore()
    if name == logstore.LOG_FILE_NAME:
        records = logstore.read_records(task_id, files)
        if not records:
            raise FileNotFound(f"file {name} not found in task {task_id}")
        return _file_response(name, logstore.render_text(records).encode("utf-8"))
    meta = files.head(task_id, name)
    if meta["size"] > INLINE_DOWNLOAD_LIMIT:
        return Response(body="", status_code=302, headers={"Location": files.presigned_url(task_id, name)})
    return _file_response(name, files.get_bytes(task_id, name))


def _file_response(name: str, data: bytes) -> Response:
    content_type = content_type_for(name)
    base = name.rsplit("/", 1)[-1]
    headers = {"Content-Type": content_type,
               "Content-Disposition": f"attachment; filename*=UTF-8''{quote(base)}"}
    body: str | bytes = data
    if content_type.startswith(("text/", "application/json", "application/x-ndjson")):
        body = data.decode("utf-8", errors="replace")
    return Response(body=body, status_code=200, headers=headers)
