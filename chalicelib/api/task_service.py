"""What the task routes do: create, list/query, status, execute (Step Functions), cancel, table lists."""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.api import requests as rq
from chalicelib.api.task_view import public_task_view
from chalicelib.aws import get_s3, get_sfn
from chalicelib.config import STEP_NAMES, get_settings
from chalicelib.errors import (
    DataPipelineError,
    InvalidConnectionString,
    InvalidExecutionMode,
    InvalidStepName,
    MissingStepName,
    PayloadTooLarge,
    TableListMissing,
    TaskAlreadyRunning,
    TaskNotRunning,
    UnsupportedMediaType,
    ValidationError,
)
from chalicelib.pipeline import tablelist
from chalicelib.pipeline.db import database_name
from chalicelib.pipeline.models import TableRef
from chalicelib.stores.files import FileStore
from chalicelib.stores.tasks import TASK_STATUSES, TaskStore, now_iso
from chalicelib.tasklog import TaskLogger

EXECUTION_MODES = ("complete", "step")
TABLE_LIST_FILE = "table_list.txt"
API_LOGGER = "DataPipelineAPI"
_BOOL_DEFAULTS = {
    "enable_sql_validation": True,
    "enable_llm_repair": True,
    "modify_original_file": True,
    "enable_training_data_load": True,
    "backup_vector_tables": False,
    "truncate_vector_tables": False,
}


def _log(task_id: str, message: str, level: str = "INFO", **extra: Any) -> None:
    with TaskLogger(task_id, logger_name=API_LOGGER, files=FileStore()) as log:
        log.log(level, message, **extra)


# ---- create -------------------------------------------------------------------------------------------

def create_task(body: dict[str, Any], created_by: str | None = None) -> dict[str, Any]:
    """Validate and store a new task.

    `table_list_file` is resolved before anything is stored (see resolve_table_list_file): a value that names no
    readable list is a 4xx and no task is created, so a task never waits for a list that will not come.
    """
    task_name = rq.get_str(body, "task_name", max_length=100)
    business_context = rq.get_str(body, "business_context", max_length=10_000)
    db_connection = rq.get_db_connection(body)
    db_name = rq.get_str(body, "db_name", max_length=128) or _default_db_name(db_connection)
    table_list_file = rq.get_str(body, "table_list_file", max_length=200_000)
    creator = rq.get_str(body, "created_by", max_length=100) or (created_by or "").strip()[:100] or "api"
    flags = {name: rq.get_bool(body, name, default) for name, default in _BOOL_DEFAULTS.items()}
    if flags["truncate_vector_tables"]:
        flags["backup_vector_tables"] = True
    refs, source = resolve_table_list_file(table_list_file) if table_list_file else (None, None)
    parameters = {"business_context": business_context, "db_name": db_name, **flags}
    if table_list_file and source != "inline":
        parameters["table_list_file"] = table_list_file
    task = TaskStore().create_task({
        "task_name": task_name, "created_by": creator, "db_name": db_name, "business_context": business_context,
        "db_connection": db_connection, "parameters": parameters,
    })
    task_id = task["task_id"]
    if refs is not None:
        store_table_list(task_id, refs, source=source or "inline")
    _log(task_id, f"task created: {task_name or task_id}", created_by=creator)
    return {"task_id": task_id, "task_name": task_name, "status": task["status"], "created_at": task["created_at"],
            "has_table_list": refs is not None}


def _default_db_name(db_connection: str | None) -> str | None:
    url = db_connection or get_settings().db_url
    if not url:
        return None
    try:
        return database_name(url) or None
    except DataPipelineError:
        return None


# ---- table_list_file at create -------------------------------------------------------------------------

FIELD_TABLE_LIST_FILE = "table_list_file"
TABLE_LIST_WAYS = (
    "Give the table list in one of three ways: upload a .txt file (POST /data_pipeline/tasks/{task_id}/"
    "upload-table-list), send the names (POST /data_pipeline/tasks/{task_id}/table-list with table_names), or set "
    "table_list_file at create to an s3://bucket/key.txt URI the service may read (the task bucket or "
    "DATA_PIPELINE_TABLE_LIST_BUCKETS), a .txt file in the local server's table-list directory "
    "(DATA_PIPELINE_TABLE_LIST_DIR, default its current directory; local stack only) or the list itself "
    "(names separated by newlines or commas)."
)
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_S3_NOT_READABLE = {"NoSuchKey", "NoSuchBucket", "NotFound", "404", "AccessDenied", "403", "InvalidBucketName",
                    "AllAccessDisabled", "InvalidObjectState"}


def _unresolvable(reason: str) -> ValidationError:
    return ValidationError(f"table_list_file {reason}. {TABLE_LIST_WAYS}", invalid_params=[FIELD_TABLE_LIST_FILE])


def resolve_table_list_file(value: str) -> tuple[list[TableRef], str]:
    """The tables `table_list_file` names and where they came from ("s3", "local_file" or "inline").

    The original service read a path on its own disk. Here: an s3:// URI of an allowed bucket, a value holding
    a newline or a comma (the list itself), or, on the local stack only, a `.txt` path under the configured
    directory. Anything else raises (400, or 413/415 as for an upload) before a task exists.
    """
    label = f"the table list {value!r}"
    if value.lower().startswith("s3://"):
        return _parse_table_list_bytes(_read_s3_table_list(value), FIELD_TABLE_LIST_FILE, label), "s3"
    if "\n" in value or "," in value:
        return _require_tables(tablelist.parse_table_list(value), FIELD_TABLE_LIST_FILE), "inline"
    if _URI_SCHEME.match(value):
        raise _unresolvable(f"{value!r} is a URI the service does not read (only s3:// is)")
    return _parse_table_list_bytes(_read_local_table_list(value), FIELD_TABLE_LIST_FILE, label), "local_file"


def _read_s3_table_list(uri: str) -> bytes:
    settings = get_settings()
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise _unresolvable(f"{uri!r} is not an s3://bucket/key URI")
    allowed = (settings.bucket, *settings.table_list_buckets)
    if bucket not in allowed:
        raise _unresolvable(f"{uri!r}: the service reads table lists only from the buckets {', '.join(allowed)} "
                            "(the task bucket and DATA_PIPELINE_TABLE_LIST_BUCKETS)")
    _check_table_list_name(key, FIELD_TABLE_LIST_FILE, f" ({uri!r} is not a .txt file). {TABLE_LIST_WAYS}")
    try:
        found = get_s3().get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        http_status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _S3_NOT_READABLE or 400 <= http_status < 500:  # the URI's fault, not the service's
            raise _unresolvable(f"{uri!r} could not be read ({code})") from None
        raise DataPipelineError(f"could not read {uri} from S3 ({code or type(exc).__name__})") from exc
    body = found["Body"]
    try:
        limit = _check_table_list_size(int(found.get("ContentLength") or 0), FIELD_TABLE_LIST_FILE)
        return body.read(limit + 1)  # never more than the limit (+1 to see it was exceeded)
    finally:
        body.close()


def _read_local_table_list(value: str) -> bytes:
    settings = get_settings()
    if not settings.local_stack:
        raise _unresolvable(f"{value!r} is neither an s3:// URI nor a list of names (files on the server's own "
                            "disk are read only by the local stack)")
    base = Path(settings.table_list_dir or os.getcwd())
    try:
        root = base.resolve(strict=True)
        target = (root / value).resolve()  # symlinks and .. resolved; an absolute value replaces root
    except (OSError, ValueError, RuntimeError) as exc:
        raise _unresolvable(f"{value!r} is not a readable path ({type(exc).__name__})") from None
    if not target.is_relative_to(root):
        raise _unresolvable(f"{value!r} is outside the table-list directory {root}")
    hint = f" ({value!r} is not a .txt file). {TABLE_LIST_WAYS}"
    _check_table_list_name(value, FIELD_TABLE_LIST_FILE, hint)
    _check_table_list_name(target.name, FIELD_TABLE_LIST_FILE, hint)  # a link named .txt to another file
    try:
        if not target.is_file():
            raise _unresolvable(f"{value!r}: no such file in the table-list directory {root}")
        limit = _check_table_list_size(target.stat().st_size, FIELD_TABLE_LIST_FILE)
        with target.open("rb") as handle:
            return handle.read(limit + 1)
    except OSError as exc:
        raise _unresolvable(f"{value!r} could not be read ({exc.strerror or type(exc).__name__})") from None


# ---- reads --------------------------------------------------------------------------------------------

def public_task(item: dict[str, Any], files: FileStore | None = None) -> dict[str, Any]:
    public = public_task_view(item)
    # A stored table list means table_list.txt was written under the task's prefix (the API deletes no files);
    # only tasks without one need an S3 listing, so polling a task's status costs one DynamoDB read.
    public["directory_exists"] = bool(item.get("table_list")) or (files or FileStore()).task_dir_exists(
        item["task_id"])
    return public


def public_tasks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """API views of a page of tasks; the per-task S3 look-ups run a few at a time, not one after another."""
    files = FileStore()
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda item: public_task(item, files), items))


def get_task_status(task_id: str) -> dict[str, Any]:
    return public_task(TaskStore().get_task(task_id))


def list_tasks(params: dict[str, str] | None) -> dict[str, Any]:
    limit = rq.get_query_int(params, "limit", 50, minimum=1, maximum=500)
    offset = rq.get_query_int(params, "offset", 0, minimum=0)
    status = rq.get_choice((params or {}).get("status") or None, "status", TASK_STATUSES)
    items, total = TaskStore().list_tasks(status=status, limit=limit, offset=offset)
    return {"tasks": public_tasks(items), "total": total, "limit": limit, "offset": offset}


def query_tasks(body: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    page = rq.get_int(body, "page", 1, minimum=1)
    page_size = rq.get_int(body, "page_size", 20, minimum=1, maximum=500)
    filters = {
        "status": rq.get_choice(rq.get_str(body, "status"), "status", TASK_STATUSES),
        "task_name": rq.get_str(body, "task_name", max_length=100),
        "created_by": rq.get_str(body, "created_by", max_length=100),
        "db_name": rq.get_str(body, "db_name", max_length=128),
        "created_time_start": rq.parse_time(body.get("created_time_start"), "created_time_start"),
        "created_time_end": rq.parse_time(body.get("created_time_end"), "created_time_end", end=True),
    }
    items, total = TaskStore().query_tasks(filters, page, page_size)
    total_pages = (total + page_size - 1) // page_size
    return {
        "tasks": public_tasks(items),
        "pagination": {"page": page, "page_size": page_size, "total": total, "total_pages": total_pages,
                       "has_next": page < total_pages, "has_prev": page > 1},
        "filters_applied": {k: v for k, v in filters.items() if v},
        "query_time": f"{time.perf_counter() - started:.3f}s",
    }


# ---- execute / cancel ---------------------------------------------------------------------------------

def parse_execute_body(body: dict[str, Any]) -> tuple[str, str | None, bool | None, bool | None]:
    mode = rq.get_str(body, "execution_mode") or "complete"
    rq.get_choice(mode, "execution_mode", EXECUTION_MODES, error=InvalidExecutionMode)
    step = rq.get_str(body, "step_name")
    if mode == "step" and not step:
        raise MissingStepName("step_name is required when execution_mode is 'step'", invalid_params=["step_name"])
    rq.get_choice(step, "step_name", STEP_NAMES, error=InvalidStepName)
    backup = rq.get_bool(body, "backup_vector_tables")
    truncate = rq.get_bool(body, "truncate_vector_tables")
    return mode, (step if mode == "step" else None), backup, truncate


def build_plan(task: dict[str, Any], mode: str, step: str | None, backup: bool, truncate: bool) -> dict[str, Any]:
    """Which steps this execution runs. Complete mode honours enable_sql_validation / enable_training_data_load."""
    params = task.get("parameters") or {}
    if mode == "step":
        steps = [step]
    else:
        steps = ["ddl_generation", "qa_generation"]
        if params.get("enable_sql_validation", True):
            steps.append("sql_validation")
        if params.get("enable_training_data_load", True):
            steps.append("training_load")
    skipped = [s for s in STEP_NAMES if s not in steps] if mode == "complete" else []
    return {"steps": steps, "skipped": skipped, "backup_vector_tables": backup, "truncate_vector_tables": truncate}


def new_execution_id(task_id: str, mode: str, step: str | None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{task_id}_{step or mode}_exec_{stamp}_{uuid.uuid4().hex[:6]}"


def execute_task(task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Claim the task (409 if it runs) and start the state machine; a failed start releases the claim."""
    mode, step, backup, truncate = parse_execute_body(body)
    store = TaskStore()
    task = store.get_task(task_id)
    if not task.get("table_list"):
        raise TableListMissing("the task has no table list; upload one first", invalid_params=["table_list_file"])
    settings = get_settings()
    if not (task.get("db_connection") or settings.db_url):
        raise InvalidConnectionString("no database connection: give db_connection or configure DATA_PIPELINE_DB_URL",
                                      invalid_params=["db_connection"])
    if not settings.state_machine_arn:
        raise DataPipelineError("the state machine is not configured (DATA_PIPELINE_STATE_MACHINE_ARN)")
    params = task.get("parameters") or {}
    truncate = params.get("truncate_vector_tables", False) if truncate is None else truncate
    backup = bool(truncate or (params.get("backup_vector_tables", False) if backup is None else backup))
    execution_id = new_execution_id(task_id, mode, step)
    store.claim_execution(task_id, mode, step, build_plan(task, mode, step, backup, bool(truncate)),
                          execution_id=execution_id)
    execution_input = {"task_id": task_id, "execution_mode": mode, "step_name": step,
                       "backup_vector_tables": backup, "truncate_vector_tables": bool(truncate)}
    try:
        started = get_sfn().start_execution(stateMachineArn=settings.state_machine_arn, name=execution_id,
                                            input=json.dumps(execution_input, ensure_ascii=False))
    except Exception as exc:
        store.release_claim(task_id, f"could not start the execution ({type(exc).__name__})")
        _log(task_id, f"could not start the execution: {type(exc).__name__}", "ERROR")
        raise DataPipelineError("could not start the execution; the task was released") from exc
    store.set_execution(task_id, started["executionArn"], execution_id)
    _log(task_id, f"execution started: mode={mode} step={step or '-'} id={execution_id}")
    return {"task_id": task_id, "execution_mode": mode, "step_name": step, "execution_id": execution_id,
            "message": "The task runs in the background; poll the status endpoint for progress."}


def cancel_task(task_id: str) -> dict[str, Any]:
    """Stop the running execution and mark the task cancelled (409 TASK_NOT_RUNNING when nothing runs)."""
    store = TaskStore()
    task = store.get_task(task_id)
    if task.get("status") != "in_progress":
        raise TaskNotRunning(f"task {task_id} is not running (status {task.get('status')})")
    arn = (task.get("execution") or {}).get("execution_arn")
    if arn:
        try:
            get_sfn().stop_execution(executionArn=arn, error="Cancelled", cause="cancelled through the API")
        except Exception as exc:  # an execution that already ended cannot be stopped; the task is still cancelled
            _log(task_id, f"stop_execution failed: {type(exc).__name__}", "WARNING")
    for step, status in (task.get("step_status") or {}).items():
        if status == "running":
            store.mark_step_failed(task_id, step, "cancelled")
    store.finish_task(task_id, "cancelled", "cancelled through the API")
    _log(task_id, "task cancelled")
    return {"task_id": task_id, "status": "cancelled", "cancelled_at": now_iso()}


# ---- table lists --------------------------------------------------------------------------------------

def _require_tables(refs: list[TableRef], field: str) -> list[TableRef]:
    if not refs:
        raise ValidationError("the table list contains no tables", invalid_params=[field])
    return refs


def store_table_list(task_id: str, refs: list[TableRef], *, source: str) -> dict[str, Any]:
    """Write table_list.txt (canonical form) and record it on the task."""
    files = FileStore()
    data = tablelist.render_table_list(refs).encode("utf-8")
    files.put_bytes(task_id, TABLE_LIST_FILE, data)
    info = {"file_name": TABLE_LIST_FILE, "file_size": len(data), "file_path": files.uri(task_id, TABLE_LIST_FILE),
            "table_count": len(refs), "uploaded_at": now_iso(), "source": source}
    # The names stay in the file, not in the task item: every status write would otherwise carry (and pay
    # DynamoDB write units for) the whole list, up to hundreds of kilobytes for a large schema.
    TaskStore().set_table_list(task_id, info)
    _log(task_id, f"table list stored: {len(refs)} tables ({source})")
    return {**info, "tables": [r.sql_name for r in refs]}


def _writable_task(task_id: str) -> dict[str, Any]:
    task = TaskStore().get_task(task_id)
    if task.get("status") == "in_progress":
        raise TaskAlreadyRunning(f"task {task_id} is running; its table list cannot change now")
    return task


def _check_table_list_name(filename: str, field: str, hint: str = "") -> None:
    if not filename.lower().endswith(".txt"):
        raise UnsupportedMediaType(f"only .txt table lists are accepted{hint}", invalid_params=[field])


def _check_table_list_size(size: int, field: str) -> int:
    limit = get_settings().max_upload_bytes
    if size > limit:
        raise PayloadTooLarge(f"the table list is larger than the limit of {limit} bytes", invalid_params=[field])
    return limit


def _parse_table_list_bytes(data: bytes, field: str, label: str = "the table list") -> list[TableRef]:
    """The upload rules shared by every way of giving a file: UTF-8 (BOM allowed), at least one table."""
    _check_table_list_size(len(data), field)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError(f"{label} must be UTF-8 text", invalid_params=[field]) from None
    refs = tablelist.parse_table_list(text)
    if not refs:
        raise ValidationError(f"{label} contains no tables", invalid_params=[field])
    return refs


def upload_table_list(task_id: str, filename: str, data: bytes) -> dict[str, Any]:
    """A `.txt` upload, UTF-8, at most settings.max_upload_bytes."""
    _check_table_list_name(filename, "file")
    refs = _parse_table_list_bytes(data, "file")
    _writable_task(task_id)
    return {"task_id": task_id, **_info_view(store_table_list(task_id, refs, source="upload"))}


def set_table_names(task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    names = body.get("table_names")
    if not isinstance(names, list):
        raise ValidationError("table_names must be a list of table names", invalid_params=["table_names"])
    business_context = rq.get_str(body, "business_context", max_length=10_000)
    task = _writable_task(task_id)
    refs = _require_tables(tablelist.parse_table_names(names), "table_names")
    info = store_table_list(task_id, refs, source="table_names")
    if business_context:
        parameters = {**(task.get("parameters") or {}), "business_context": business_context}
        TaskStore().set_fields(task_id, {"business_context": business_context, "parameters": parameters})
    return {"task_id": task_id, **_info_view(info), "business_context": business_context}


def _info_view(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info.get(k) for k in ("file_name", "file_size", "file_path", "table_count", "tables", "uploaded_at")}


def table_list_info(task_id: str) -> dict[str, Any]:
    info = TaskStore().get_task(task_id).get("table_list") or {}
    tables: list[str] = []
    if info:
        text = FileStore().get_text(task_id, TABLE_LIST_FILE)
        tables = [ref.sql_name for ref in tablelist.parse_table_list(text)]
    view = _info_view(info)
    view.update(table_count=info.get("table_count", 0), tables=tables)
    return {"task_id": task_id, "has_table_list": bool(info), **view}
