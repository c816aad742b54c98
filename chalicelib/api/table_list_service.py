"""Table lists of a task: given at create (`table_list_file`: an s3:// URI, a local .txt on the local stack,
or the list itself), uploaded as a .txt file, or sent as names; stored as table_list.txt."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.api.models import TableNamesRequest
from chalicelib.api.task_events import log_api_event
from chalicelib.aws import get_s3
from chalicelib.config import get_settings
from chalicelib.errors import (
    DataPipelineError,
    PayloadTooLarge,
    TaskAlreadyRunning,
    UnsupportedMediaType,
    ValidationError,
)
from chalicelib.pipeline import tablelist
from chalicelib.pipeline.models import TableRef
from chalicelib.stores.files import FileStore
from chalicelib.stores.tasks import TaskStore, now_iso

TABLE_LIST_FILE = "table_list.txt"

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
    log_api_event(task_id, f"table list stored: {len(refs)} tables ({source})")
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


def set_table_names(task_id: str, body: TableNamesRequest) -> dict[str, Any]:
    business_context = body.business_context
    task = _writable_task(task_id)
    refs = _require_tables(tablelist.parse_table_names(body.table_names), "table_names")
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
