"""What the vector routes do: list the vector-table backups kept in tasks' files, restore one.

A backup set is what one execution's vector backup wrote into its task: `vector_bak/{table}_{ts}.csv` for each
vector table that existed (ts = `YYYYmmdd_HHMMSS`), plus `vector_bak/vector_backup_log.txt` (the latest set's
rows and sizes). Restoring loads the CSVs back into the task's pgvector database (config.get_vector_db_url) in one
transaction, each CSV streamed from S3 into COPY (never read whole), see
chalicelib.pipeline.vector_restore.restore_vector_backup for the conflict rules.
"""
from __future__ import annotations

import functools
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from chalicelib.api.file_service import API_BASE, human_size
from chalicelib.api.models import BackupsParams, RestoreRequest
from chalicelib.config import get_settings
from chalicelib.errors import BackupNotFound, DataPipelineError
from chalicelib.pipeline.db import check_connection_allowed, mask_url
from chalicelib.pipeline.vector_restore import restore_vector_backup
from chalicelib.pipeline.vectors import BACKUP_DIR, BACKUP_LOG_NAME, VECTOR_TABLES
from chalicelib.stores.files import FileStore
from chalicelib.stores.tasks import TaskStore
from chalicelib.tasklog import TaskLogger

LOGGER = "VectorTableManager"
_TABLES = "|".join(map(re.escape, VECTOR_TABLES))
_BACKUP_FILE = re.compile(rf"^{BACKUP_DIR}/({_TABLES})_(\d{{8}}_\d{{6}})\.csv$")
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_LOG_ROWS = re.compile(rf"^({_TABLES}): (\d+) rows")
_LIST_WORKERS = 8


# ---- listing ------------------------------------------------------------------------------------------

def _parse_backup_log(text: str) -> tuple[str | None, dict[str, int]]:
    """(timestamp, rows per table) from vector_backup_log.txt."""
    ts = None
    rows: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("Timestamp:"):
            ts = line.split(":", 1)[1].strip()
        match = _LOG_ROWS.match(line)
        if match:
            rows[match.group(1)] = int(match.group(2))
    return ts, rows


def task_backups(task_id: str, files: FileStore | None = None, task: dict[str, Any] | None = None
                 ) -> list[dict[str, Any]]:
    """The backup sets of one task, newest first."""
    files = files or FileStore()
    entries = files.list_files(task_id, prefix=f"{BACKUP_DIR}/")
    sets: dict[str, dict[str, Any]] = {}
    log_entry = None
    for entry in entries:
        if entry["name"] == BACKUP_LOG_NAME:
            log_entry = entry
        match = _BACKUP_FILE.match(entry["name"])
        if not match:
            continue
        table, ts = match.groups()
        item = sets.setdefault(ts, {"task_id": task_id, "timestamp": ts, "files": [], "tables": {}})
        item["files"].append({
            "table": table,
            "file_name": entry["name"],
            "file_size": entry["size"],
            "file_size_human": human_size(entry["size"]),
            "created_at": entry["last_modified"].strftime("%Y-%m-%dT%H:%M:%S"),
            "download_url": f"{API_BASE}/{task_id}/files/{BACKUP_DIR}/{quote(entry['name'].split('/', 1)[1])}",
        })
        item["tables"][table] = {"rows": None, "bytes": entry["size"]}
    if not sets:
        return []
    log_ts, log_rows = (None, {})
    if log_entry is not None:
        log_ts, log_rows = _parse_backup_log(files.get_text(task_id, BACKUP_LOG_NAME))
    result_rows: dict[str, Any] = {}
    result_ts = None
    if task is not None:
        backup = (task.get("results") or {}).get("vector_backup") or {}
        result_ts, result_rows = backup.get("timestamp"), backup.get("counts") or {}
    for ts, item in sets.items():
        source = None
        if ts == log_ts:
            rows, source = log_rows, "backup_log"
        elif ts == result_ts:
            rows, source = result_rows, "task_result"
        else:
            rows = {}
        for table, info in item["tables"].items():
            if table in rows:
                info["rows"] = int(rows[table])
        item["rows_source"] = source
        item["total_size"] = sum(f["file_size"] for f in item["files"])
        item["total_size_human"] = human_size(item["total_size"])
        item["total_rows"] = (sum(i["rows"] for i in item["tables"].values())
                              if all(i["rows"] is not None for i in item["tables"].values()) else None)
        item["log_file"] = BACKUP_LOG_NAME if ts == log_ts else None
        item["files"].sort(key=lambda f: VECTOR_TABLES.index(f["table"]))
    return sorted(sets.values(), key=lambda s: s["timestamp"], reverse=True)


def _task_ids_in_bucket(files: FileStore) -> list[str]:
    """Every task folder in the bucket, newest task id first (ids start with their creation time)."""
    ids = []
    paginator = files.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=files.bucket, Prefix="tasks/", Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            ids.append(prefix["Prefix"][len("tasks/"):].rstrip("/"))
    return sorted(ids, reverse=True)


def list_backups(params: BackupsParams) -> dict[str, Any]:
    """Backup sets of one task (`task_id`) or of all tasks, newest first, at most `limit` (default 50)."""
    limit, task_id = params.limit, params.task_id
    files = FileStore()
    store = TaskStore()
    if task_id:
        backups = task_backups(task_id, files, store.get_task(task_id))
    else:
        backups = []
        ids = _task_ids_in_bucket(files)
        with ThreadPoolExecutor(max_workers=_LIST_WORKERS) as pool:
            for start in range(0, len(ids), _LIST_WORKERS * 2):  # newest tasks first; stop once enough
                chunk = [i for i in ids[start:start + _LIST_WORKERS * 2] if _TASK_ID.match(i)]
                for found in pool.map(lambda i: task_backups(i, files), chunk):
                    backups.extend(found)
                if len(backups) >= limit:
                    break
        backups.sort(key=lambda s: (s["timestamp"], s["task_id"]), reverse=True)
    return {"task_id": task_id, "backups": backups[:limit], "count": min(len(backups), limit), "limit": limit,
            "truncated": len(backups) > limit}


# ---- restore ------------------------------------------------------------------------------------------

def restore_backup(body: RestoreRequest) -> dict[str, Any]:
    """Restore a task's backup set (the latest unless `timestamp`) into the pgvector database.

    Body: task_id (required), timestamp (`YYYYmmdd_HHMMSS`, default latest), truncate_before_restore (false),
    tables (subset of the backed-up tables, default all), on_conflict ("error" -> 409 when a backed-up id already
    exists, nothing changed; "skip" -> existing rows kept, the missing ones restored).
    """
    started = time.monotonic()
    task_id, timestamp, tables = body.task_id, body.timestamp, body.tables
    truncate, on_conflict = bool(body.truncate_before_restore), body.on_conflict
    store = TaskStore()
    task = store.get_task(task_id)
    # The database the task's own loads went to (config.get_vector_db_url: the same rule as training_load).
    url = get_settings().vector_db_url_for(task.get("db_connection"))
    if not url:
        raise DataPipelineError("the vector database is not configured (PGVECTOR_DB_URL)")
    check_connection_allowed(url)  # 403 before any backup is read; connecting checks (and pins) it again
    files = FileStore()
    sets = task_backups(task_id, files, task)
    if not sets:
        raise BackupNotFound(f"task {task_id} has no vector backup", invalid_params=["task_id"])
    chosen = sets[0] if timestamp is None else next((s for s in sets if s["timestamp"] == timestamp), None)
    if chosen is None:
        available = ", ".join(s["timestamp"] for s in sets)
        raise BackupNotFound(f"task {task_id} has no vector backup {timestamp} (available: {available})",
                             invalid_params=["timestamp"])
    in_set = {f["table"]: f["file_name"] for f in chosen["files"]}
    wanted = tables or [t for t in VECTOR_TABLES if t in in_set]
    missing = [t for t in wanted if t not in in_set]
    if missing:
        raise BackupNotFound(f"backup {chosen['timestamp']} of task {task_id} has no file for "
                             f"{', '.join(missing)} (the table did not exist when it was backed up)",
                             invalid_params=["tables"])
    csvs = {table: functools.partial(files.open_stream, task_id, in_set[table]) for table in wanted}
    with TaskLogger(task_id, logger_name=LOGGER, files=FileStore()) as log:
        log.info("restoring vector backup {timestamp} ({tables}) into {database}; "
                 "truncate_before_restore={truncate}, on_conflict={on_conflict}",
                 timestamp=chosen["timestamp"], tables=", ".join(wanted), database=mask_url(url), truncate=truncate,
                 on_conflict=on_conflict)
        try:
            report = restore_vector_backup(url, csvs, truncate, on_conflict=on_conflict)
        except DataPipelineError as exc:
            log.error("vector restore failed: {error}", error=exc.message, code=exc.code)
            raise
        log.info("vector restore done: {restored}", restored={t: r["restored"] for t, r in report.items()})
    result = {
        "task_id": task_id,
        "timestamp": chosen["timestamp"],
        "tables": report,
        "total_restored": sum(r["restored"] for r in report.values()),
        "truncate_before_restore": truncate,
        "on_conflict": on_conflict,
        "database": mask_url(url),
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    store.set_result(task_id, "vector_restore", result)
    return result

