"""The OpenAPI 3 document of the API, served at /api/v0/openapi.json.

The document is built here from small helpers (one place per shape) and checked by
tests/functional/test_openapi.py against the routes Chalice really has, and by the fuzzer in tests/heavy.

Authentication: the document is served behind the same Bearer key as every other route (the HTTP middleware
applies to all routes alike). It describes no secret, but it maps the whole attack surface, and a client that
may call the API has the key anyway; an operator who wants it public can fetch it once and host it elsewhere.
"""
from __future__ import annotations

import copy
import functools
from typing import Any

from chalice import Blueprint

from chalicelib.api.envelope import json_response
from chalicelib.config import STEP_NAMES
from chalicelib.pipeline.vectors import RESTORE_CONFLICT_MODES, VECTOR_TABLES
from chalicelib.stores.tasks import TASK_STATUSES

openapi_bp = Blueprint(__name__)

API_VERSION = "0.1.0"
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
TASK_ID_PATTERN = r"^task_[0-9]{8}_[0-9]{6}(_[0-9]{1,4})?$"

# Every error code a response can carry in `error.code`, with its HTTP status (SPEC §3 + chalicelib/errors.py
# + the middleware and the Chalice-level answers the middleware re-wraps).
ERROR_CODES: dict[str, tuple[int, str]] = {
    "VALIDATION_ERROR": (400, "a parameter or the body is invalid; `error.invalid_params` names it"),
    "INVALID_EXECUTION_MODE": (400, "execution_mode is not complete or step"),
    "MISSING_STEP_NAME": (400, "execution_mode is step but step_name is missing"),
    "INVALID_STEP_NAME": (400, "step_name is not one of " + ", ".join(STEP_NAMES)),
    "INVALID_TABLE_NAME": (400, "a table name is not a valid (schema.)identifier"),
    "TABLE_LIST_MISSING": (400, "the task has no table list yet"),
    "DATABASE_CONNECTION_ERROR": (400, "400 when the connection string is malformed or missing, 500 when the "
                                       "database is unreachable or refuses the login"),
    "UNAUTHORIZED": (401, "DATA_PIPELINE_API_KEY is set and the request has no valid `Authorization: Bearer` key"),
    "NOT_FOUND": (404, "the named object (e.g. a table) does not exist"),
    "TASK_NOT_FOUND": (404, "no task with this id"),
    "FILE_NOT_FOUND": (404, "no file with this name in the task"),
    "METHOD_NOT_ALLOWED": (405, "the path exists but not with this HTTP method"),
    "TASK_ALREADY_RUNNING": (409, "the task runs; it cannot start again or change its table list now"),
    "TASK_NOT_RUNNING": (409, "cancel was asked for a task that does not run"),
    "PAYLOAD_TOO_LARGE": (413, "the request body (or the uploaded file) is larger than the limit"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "the upload is not a .txt file"),
    "INTERNAL_ERROR": (500, "an unexpected error; details are in the service logs, never in the answer"),
    "VECTOR_BACKUP_FAILED": (500, "the vector tables could not be backed up"),
    "VECTOR_TRUNCATE_FAILED": (500, "langchain_pg_embedding could not be emptied (or restored)"),
    "LLM_ERROR": (500, "the LLM endpoint failed for good"),
    "LLM_RATE_LIMITED": (500, "the LLM endpoint kept answering 429"),
    "LLM_TIMEOUT": (500, "the LLM endpoint kept timing out"),
    "LLM_BAD_ANSWER": (500, "the LLM answered something unusable twice"),
    "EMBEDDING_ERROR": (500, "the embedding endpoint failed"),
    "STEP_FAILED": (500, "a step could not produce its output"),
    "BACKUP_NOT_FOUND": (404, "the task has no vector backup with that timestamp / table"),
    "VECTOR_RESTORE_CONFLICT": (409, "restoring would clash with rows already in the vector tables; nothing changed"),
    "VECTOR_RESTORE_FAILED": (500, "the vector restore failed; nothing was restored"),
}
ALWAYS = {400: ["VALIDATION_ERROR"], 401: ["UNAUTHORIZED"], 405: ["METHOD_NOT_ALLOWED"],
          413: ["PAYLOAD_TOO_LARGE"], 500: ["INTERNAL_ERROR"]}
STATUS_TEXT = {400: "Invalid request", 401: "Missing or wrong API key", 404: "Not found", 405: "Method not allowed",
               409: "Conflict", 413: "Request too large", 415: "Unsupported media type", 500: "Server error"}


# ---- schema helpers -----------------------------------------------------------------------------------

def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NSTR = nullable(STR)
NINT = nullable(INT)
OBJ = {"type": "object", "additionalProperties": True}
TIME = {"type": "string", "description": "`YYYY-MM-DDTHH:MM:SS`, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`"}


def choice(values: list[str] | tuple[str, ...], default: str | None = None, description: str = "") -> dict[str, Any]:
    """A string choice in a JSON body; like an absent field, an empty string means the default."""
    schema: dict[str, Any] = {"type": "string", "enum": [*values, ""],
                              "description": (description + " " if description else "") + "(empty: the default)"}
    if default is not None:
        schema["default"] = default
    return schema


def obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    return schema


def envelope(data: dict[str, Any], status: int) -> dict[str, Any]:
    return obj({
        "success": {"type": "boolean", "enum": [True]},
        "code": {"type": "integer", "enum": [status]},
        "message": STR,
        "data": data,
    }, ["success", "code", "message", "data"])


def ok(data: dict[str, Any], description: str, status: int = 200) -> dict[str, Any]:
    return {str(status): {"description": description,
                          "content": {"application/json": {"schema": envelope(data, status)}}}}


def error_envelope(status: int, codes: list[str]) -> dict[str, Any]:
    return {"allOf": [ref("ErrorEnvelope"), obj({
        "code": {"type": "integer", "enum": [status]},
        "error": obj({"code": {"type": "string", "enum": codes}}),
    })]}


def errors(*statuses: int, extra: dict[int, list[str]] | None = None) -> dict[str, Any]:
    """Error responses: the envelope with `code` = status and `error.code` one of the listed codes."""
    out: dict[str, Any] = {}
    wanted = sorted(set(statuses) | {401, 405, 413, 500})
    for status in wanted:
        codes = list(dict.fromkeys(ALWAYS.get(status, []) + (extra or {}).get(status, [])))
        lines = "; ".join(f"`{c}`: {ERROR_CODES[c][1]}" for c in codes)
        out[str(status)] = {"description": f"{STATUS_TEXT[status]}. Error codes: {lines}",
                            "content": {"application/json": {"schema": error_envelope(status, codes)}}}
    return out


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"required": False, "description": description + " An empty body is `{}`.",
            "content": {"application/json": {"schema": schema}}}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An optional query parameter; an empty value (`?limit=`) means the default."""
    return {"name": name, "in": "query", "required": False, "allowEmptyValue": True, "schema": schema,
            "description": description + " (empty: the default)"}


TASK_ID = {"name": "task_id", "in": "path", "required": True, "description": "the task id",
           "schema": {"type": "string", "pattern": TASK_ID_PATTERN, "example": "task_20250627_143052"}}
FILENAME = {"name": "filename", "in": "path", "required": True,
            "description": "a plain file name (URL-encoded); `..`, `/`, `\\` and encoded variants are refused",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^/\\]+$",
                       "example": "table_list.txt"}}
X_USER = {"name": "x-user", "in": "header", "required": False, "schema": {"type": "string"},
          "description": "who creates the task (`created_by`, unless the body names one); cut to 100 characters"}


# ---- component schemas ----------------------------------------------------------------------------------

def _components() -> dict[str, Any]:
    step_state = {"type": "string", "enum": ["pending", "running", "completed", "failed", "skipped"]}
    steps_map = obj({s: step_state for s in STEP_NAMES}, list(STEP_NAMES))
    task = obj({
        "task_id": STR, "task_name": NSTR, "status": {"type": "string", "enum": list(TASK_STATUSES)},
        "step_status": steps_map,
        "created_at": NSTR, "started_at": NSTR, "completed_at": NSTR, "updated_at": NSTR,
        "created_by": NSTR, "db_name": NSTR, "business_context": NSTR,
        "parameters": obj({"db_connection": {"type": "string", "description": "password masked as ***"}},
                          additionalProperties=True),
        "current_step": nullable(OBJ), "total_steps": INT,
        "steps": {"type": "array", "items": obj({
            "step_name": {"type": "string", "enum": list(STEP_NAMES)}, "step_status": step_state,
            "started_at": NSTR, "completed_at": NSTR, "error_message": NSTR,
        }, ["step_name", "step_status"])},
        "progress": OBJ, "results": OBJ, "llm_usage": OBJ, "error_message": NSTR,
        "has_table_list": BOOL, "table_count": INT, "execution": nullable(OBJ), "directory_exists": BOOL,
    }, ["task_id", "status", "step_status", "created_at", "parameters", "total_steps", "steps"])
    pagination = obj({"page": INT, "page_size": INT, "total": INT, "total_pages": INT, "has_next": BOOL,
                      "has_prev": BOOL}, ["page", "page_size", "total", "total_pages", "has_next", "has_prev"])
    table_list_info = obj({
        "task_id": STR, "file_name": NSTR, "file_size": NINT, "file_path": NSTR, "table_count": INT,
        "tables": {"type": "array", "items": STR}, "uploaded_at": NSTR,
    }, ["task_id", "table_count", "tables"])
    log_record = obj({"timestamp": NSTR, "level": NSTR, "logger": NSTR, "step": NSTR, "message": NSTR,
                      "execution_id": NSTR, "line_number": NINT}, ["timestamp", "level", "message"])
    return {
        "Envelope": obj({"success": BOOL, "code": INT, "message": STR, "data": {}},
                        ["success", "code", "message"]),
        "ErrorEnvelope": obj({
            "success": {"type": "boolean", "enum": [False]},
            "code": INT,
            "message": STR,
            "error": obj({
                "type": {"type": "string", "description": "ValidationError for every 400 (the specific failure is "
                         "`code`); otherwise the error class, e.g. TaskNotFound"},
                "code": {"type": "string", "enum": list(ERROR_CODES)},
                "details": NSTR,
                "invalid_params": {"type": "array", "items": STR},
                "timestamp": STR,
            }, ["type", "code", "details", "invalid_params", "timestamp"]),
        }, ["success", "code", "message", "error"]),
        "Task": task,
        "Pagination": pagination,
        "TableListInfo": table_list_info,
        "LogRecord": log_record,
        "CreateTaskRequest": obj({
            "table_list_file": {"type": "string", "maxLength": 200_000, "description":
                                "resolved at create and stored as table_list.txt (same .txt/UTF-8/size rules as "
                                "upload-table-list): an s3://bucket/key.txt URI of the task bucket or of a bucket "
                                "in DATA_PIPELINE_TABLE_LIST_BUCKETS; on the local stack only, a .txt path under "
                                "DATA_PIPELINE_TABLE_LIST_DIR (default: the server's current directory), nothing "
                                "outside it; or the list itself when it contains a newline or a comma. A value "
                                "that cannot be resolved is a 400 and no task is created"},
            "business_context": {"type": "string", "maxLength": 10_000},
            "db_name": {"type": "string", "maxLength": 128, "description": "default: from the connection"},
            "db_connection": {"type": "string", "description": "postgresql://user:pass@host:port/db; default: "
                              "the configured database. Never returned unmasked."},
            "task_name": {"type": "string", "maxLength": 100},
            "created_by": {"type": "string", "maxLength": 100},
            **{name: {"type": "boolean", "default": default} for name, default in {
                "enable_sql_validation": True, "enable_llm_repair": True, "modify_original_file": True,
                "enable_training_data_load": True, "backup_vector_tables": False,
                "truncate_vector_tables": False}.items()},
        }),
    }


# ---- paths -----------------------------------------------------------------------------------------------

def _op(summary: str, tag: str, responses: dict[str, Any], *, parameters: list[dict] | None = None,
        body: dict[str, Any] | None = None, description: str | None = None, op_id: str) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    return op


def _paths() -> dict[str, Any]:
    task = ref("Task")
    tasks_list = obj({"tasks": {"type": "array", "items": task}, "total": INT, "limit": INT, "offset": INT},
                     ["tasks", "total", "limit", "offset"])
    task_query = obj({
        "tasks": {"type": "array", "items": task}, "pagination": ref("Pagination"), "filters_applied": OBJ,
        "query_time": STR}, ["tasks", "pagination"])
    file_entry = obj({
        "file_name": STR, "file_type": STR, "file_size": INT, "file_size_human": STR, "created_at": NSTR,
        "is_primary": BOOL, "description": STR, "download_url": STR,
    }, ["file_name", "file_type", "file_size", "file_size_human", "is_primary", "download_url"])
    file_download = {
        "200": {"description": "the file, with a fitting Content-Type and a Content-Disposition attachment",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
        "302": {"description": "large files: a redirect to a short-lived S3 URL",
                "headers": {"Location": {"schema": STR}}},
    }
    paths: dict[str, Any] = {}
    T = "/data_pipeline/tasks/{task_id}"
    paths["/data_pipeline/tasks"] = {
        "post": _op("Create a task", "tasks", {
            **ok(obj({"task_id": STR, "task_name": NSTR, "status": {"type": "string", "enum": ["pending"]},
                      "created_at": STR, "has_table_list": BOOL}, ["task_id", "status", "created_at"]),
                 "created", 201),
            **errors(400, extra={400: ["INVALID_TABLE_NAME", "DATABASE_CONNECTION_ERROR"]}),
        }, op_id="createTask", parameters=[X_USER],
            body=json_body(ref("CreateTaskRequest"), "All fields optional.")),
        "get": _op("List tasks, newest first", "tasks", {
            **ok(tasks_list, "a page of tasks"), **errors(400)},
            op_id="listTasks", parameters=[
                query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
                query("offset", {"type": "integer", "minimum": 0, "default": 0}, "tasks to skip"),
                query("status", {"type": "string", "enum": list(TASK_STATUSES)}, "only tasks in this status"),
            ]),
    }
    paths["/data_pipeline/tasks/query"] = {"post": _op("Query tasks with filters", "tasks", {
        **ok(task_query, "matching tasks, newest first"), **errors(400)}, op_id="queryTasks", body=json_body(obj({
            "page": {"type": "integer", "minimum": 1, "default": 1},
            "page_size": {"type": "integer", "minimum": 1, "maximum": 500, "default": 20},
            "status": choice(TASK_STATUSES),
            "task_name": {"type": "string", "maxLength": 100, "description": "substring, case-insensitive"},
            "created_by": {"type": "string", "maxLength": 100},
            "db_name": {"type": "string", "maxLength": 128},
            "created_time_start": TIME, "created_time_end": TIME,
        }), "Filters, all optional."))}
    run_codes = ["VECTOR_BACKUP_FAILED", "VECTOR_TRUNCATE_FAILED", "DATABASE_CONNECTION_ERROR", "STEP_FAILED",
                 "LLM_ERROR", "LLM_RATE_LIMITED", "LLM_TIMEOUT", "LLM_BAD_ANSWER", "EMBEDDING_ERROR"]
    paths[T] = {"get": _op("Task status", "tasks", {**ok(task, "the task (passwords masked)"), **errors(404, extra={
        404: ["TASK_NOT_FOUND"]})}, op_id="getTask", parameters=[TASK_ID], description=(
            "A run executes in the background, so its failures are not HTTP errors: the task's `error_message` "
            "and the failed step's `error_message` read `<CODE>: <message>`, CODE one of " + ", ".join(
                f"`{c}` ({ERROR_CODES[c][1]})" for c in run_codes) + "."))}
    paths[T + "/execute"] = {"post": _op("Start the pipeline (Step Functions)", "tasks", {
        **ok(obj({"task_id": STR, "execution_mode": {"type": "string", "enum": ["complete", "step"]},
                  "step_name": nullable({"type": "string", "enum": list(STEP_NAMES)}), "execution_id": STR,
                  "message": STR}, ["task_id", "execution_mode", "step_name", "execution_id", "message"]),
             "execution started", 202),
        **errors(400, 404, 409, extra={
            400: ["INVALID_EXECUTION_MODE", "MISSING_STEP_NAME", "INVALID_STEP_NAME", "TABLE_LIST_MISSING",
                  "DATABASE_CONNECTION_ERROR"],
            404: ["TASK_NOT_FOUND"], 409: ["TASK_ALREADY_RUNNING"]}),
    }, op_id="executeTask", parameters=[TASK_ID], description="Two simultaneous calls: exactly one wins (202), "
        "the other gets 409.", body=json_body(obj({
            "execution_mode": choice(["complete", "step"], "complete"),
            "step_name": choice(STEP_NAMES, description="required in step mode"),
            "backup_vector_tables": BOOL, "truncate_vector_tables": {**BOOL, "description": "forces a backup"},
        }), "Execution options."))}
    paths[T + "/cancel"] = {"post": _op("Cancel a running task", "tasks", {
        **ok(obj({"task_id": STR, "status": {"type": "string", "enum": ["cancelled"]}, "cancelled_at": STR},
                 ["task_id", "status", "cancelled_at"]), "cancelled"),
        **errors(404, 409, extra={404: ["TASK_NOT_FOUND"], 409: ["TASK_NOT_RUNNING"]}),
    }, op_id="cancelTask", parameters=[TASK_ID])}
    paths[T + "/files"] = {"get": _op("List a task's files", "files", {
        **ok(obj({"task_id": STR, "files": {"type": "array", "items": file_entry}, "total_files": INT,
                  "total_size": INT, "total_size_human": STR}, ["task_id", "files", "total_files", "total_size"]),
             "the files (the newest pair JSON is primary)"),
        **errors(404, extra={404: ["TASK_NOT_FOUND"]}),
    }, op_id="listFiles", parameters=[TASK_ID])}
    paths[T + "/files/{filename}"] = {"get": _op("Download a task file", "files", {
        **file_download, **errors(400, 404, extra={404: ["TASK_NOT_FOUND", "FILE_NOT_FOUND"]}),
    }, op_id="downloadFile", parameters=[TASK_ID, FILENAME],
        description="`data_pipeline.log` is the task's log rendered as text.")}
    paths[T + "/files/vector_bak/{filename}"] = {"get": _op("Download a vector backup file", "files", {
        **file_download, **errors(400, 404, extra={404: ["TASK_NOT_FOUND", "FILE_NOT_FOUND"]}),
    }, op_id="downloadVectorBackup", parameters=[TASK_ID, FILENAME])}
    paths[T + "/upload-table-list"] = {"post": _op("Upload the table list (.txt)", "files", {
        **ok(ref("TableListInfo"), "stored as table_list.txt"),
        **errors(400, 404, 409, 413, 415, extra={400: ["INVALID_TABLE_NAME"], 404: ["TASK_NOT_FOUND"],
                                                 409: ["TASK_ALREADY_RUNNING"], 415: ["UNSUPPORTED_MEDIA_TYPE"]}),
    }, op_id="uploadTableList", parameters=[TASK_ID], body={
        "required": True, "description": "UTF-8 text, one table per line or comma-separated, `schema.table` or "
        "`table`; `#`/`--` lines ignored; at most DATA_PIPELINE_MAX_UPLOAD_BYTES (1 MiB by default).",
        "content": {"multipart/form-data": {
            "schema": obj({"file": {"type": "string", "format": "binary"}}, ["file"]),
            "encoding": {"file": {"contentType": "text/plain"}}}}})}
    paths[T + "/table-list-info"] = {"get": _op("The task's table list", "files", {
        **ok({"allOf": [ref("TableListInfo"), obj({"has_table_list": BOOL}, ["has_table_list"])]},
             "the table list (empty when none)"),
        **errors(404, extra={404: ["TASK_NOT_FOUND"]}),
    }, op_id="tableListInfo", parameters=[TASK_ID])}
    paths[T + "/table-list"] = {"post": _op("Set the table list from names", "files", {
        **ok({"allOf": [ref("TableListInfo"), obj({"business_context": NSTR})]}, "stored as table_list.txt"),
        **errors(400, 404, 409, extra={400: ["INVALID_TABLE_NAME"], 404: ["TASK_NOT_FOUND"],
                                       409: ["TASK_ALREADY_RUNNING"]}),
    }, op_id="setTableList", parameters=[TASK_ID], body={
        "required": True, "content": {"application/json": {"schema": obj({
            "table_names": {"type": "array", "items": STR, "maxItems": 1000},
            "business_context": {"type": "string", "maxLength": 10_000},
        }, ["table_names"])}}})}
    paths[T + "/logs"] = {"get": _op("The last log records of a task", "logs", {
        **ok(obj({"task_id": STR, "logs": {"type": "array", "items": ref("LogRecord")}, "total": INT,
                  "source": STR, "log_file": STR}, ["task_id", "logs", "total"]), "oldest first"),
        **errors(400, 404, extra={404: ["TASK_NOT_FOUND"]}),
    }, op_id="getLogs", parameters=[
        TASK_ID,
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "how many records"),
        query("level", {"type": "string", "enum": LEVELS}, "only records of this level (case-insensitive)"),
    ])}
    paths[T + "/logs/query"] = {"post": _op("Query a task's log", "logs", {
        **ok(obj({"logs": {"type": "array", "items": ref("LogRecord")}, "pagination": ref("Pagination"),
                  "log_file_info": obj({"exists": BOOL, "file_path": STR, "file_size": INT, "last_modified": NSTR}),
                  "query_time": STR}, ["logs", "pagination", "log_file_info"]), "a page of records"),
        **errors(400, 404, extra={404: ["TASK_NOT_FOUND"]}),
    }, op_id="queryLogs", parameters=[TASK_ID], body=json_body(obj({
        "page": {"type": "integer", "minimum": 1, "default": 1},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
        "level": choice(LEVELS, description="case-insensitive"),
        "start_time": TIME, "end_time": TIME,
        "keyword": {"type": "string", "maxLength": 500}, "logger_name": {"type": "string", "maxLength": 200},
        "step_name": {"type": "string", "maxLength": 100},
        "sort_by": choice(["timestamp", "level", "logger", "step", "line_number"], "timestamp"),
        "sort_order": choice(["asc", "desc"], "desc"),
    }), "Filters, all optional."))}
    db_errors = errors(400, extra={400: ["DATABASE_CONNECTION_ERROR"], 500: ["DATABASE_CONNECTION_ERROR"]})
    db_connection = {"type": "string", "description": "default: the configured database"}
    paths["/database/tables"] = {"post": _op("List a database's tables", "database", {
        **ok(obj({"tables": {"type": "array", "items": STR}, "total": INT, "schemas": {"type": "array", "items": STR},
                  "table_name_pattern": NSTR, "db_connection_info": obj({"database": STR})},
                 ["tables", "total", "schemas"]), "`schema.table` names"),
        **db_errors,
    }, op_id="listDatabaseTables", body=json_body(obj({
        "db_connection": db_connection,
        "schema": {"type": "string", "maxLength": 1000, "description": "comma list, e.g. public,ods"},
        "table_name_pattern": {"type": "string", "maxLength": 200, "description": "`*` is a wildcard"},
    }), "Filters, all optional."))}
    paths["/database/table/ddl"] = {"post": _op("Document one table (nothing is written)", "database", {
        **ok(obj({"ddl": NSTR, "md": NSTR, "table_info": OBJ, "fields": {"type": "array", "items": OBJ},
                  "generation_info": OBJ}, ["ddl", "md", "table_info", "fields", "generation_info"]),
             "DDL and/or Markdown"),
        **errors(400, 404, extra={
            400: ["INVALID_TABLE_NAME", "DATABASE_CONNECTION_ERROR"], 404: ["NOT_FOUND"],
            500: ["DATABASE_CONNECTION_ERROR", "LLM_ERROR", "LLM_RATE_LIMITED", "LLM_TIMEOUT", "LLM_BAD_ANSWER"]}),
    }, op_id="tableDdl", body={"required": True, "content": {"application/json": {"schema": obj({
        "table": {"type": "string", "minLength": 1, "maxLength": 300, "description": "`table` or `schema.table`"},
        "db_connection": db_connection,
        "business_context": {"type": "string", "maxLength": 10_000},
        "type": choice(["ddl", "md", "both"], "both"),
    }, ["table"])}}})}
    backup_set = obj({
        "task_id": STR, "timestamp": {"type": "string", "pattern": r"^[0-9]{8}_[0-9]{6}$"},
        "files": {"type": "array", "items": obj({"table": STR, "file_name": STR, "file_size": INT,
                                                  "file_size_human": STR, "created_at": STR, "download_url": STR})},
        "tables": {"type": "object", "additionalProperties": obj({"rows": NINT, "bytes": INT})},
        "rows_source": NSTR, "total_size": INT, "total_size_human": STR, "total_rows": NINT, "log_file": NSTR,
    }, ["task_id", "timestamp", "files", "tables"])
    paths["/data_pipeline/vector/backups"] = {"get": _op("List vector-table backups", "vectors", {
        **ok(obj({"task_id": NSTR, "backups": {"type": "array", "items": backup_set}, "count": INT, "limit": INT,
                  "truncated": BOOL}, ["backups", "count", "limit", "truncated"]), "backup sets, newest first"),
        **errors(400, 404, extra={404: ["TASK_NOT_FOUND"]}),
    }, op_id="listVectorBackups", parameters=[
        query("task_id", {"type": "string", "example": "task_20250627_143052"}, "only this task's backups"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "at most this many sets"),
    ])}
    paths["/data_pipeline/vector/restore"] = {"post": _op("Restore a vector-table backup", "vectors", {
        **ok(obj({"task_id": STR, "timestamp": STR, "tables": OBJ, "total_restored": INT,
                  "truncate_before_restore": BOOL, "on_conflict": STR, "database": STR, "duration_seconds": {
                      "type": "number"}}, ["task_id", "timestamp", "tables", "total_restored"]), "restored"),
        **errors(400, 404, 409, extra={
            404: ["TASK_NOT_FOUND", "BACKUP_NOT_FOUND"], 409: ["VECTOR_RESTORE_CONFLICT"],
            500: ["VECTOR_RESTORE_FAILED", "DATABASE_CONNECTION_ERROR"]}),
    }, op_id="restoreVectorBackup", description="Loads a task's backup CSVs back into the pgvector database in one "
        "transaction (the latest set unless `timestamp`).", body={"required": True, "content": {
            "application/json": {"schema": obj({
                "task_id": {"type": "string", "example": "task_20250627_143052"},
                "timestamp": {"type": "string", "pattern": r"^[0-9]{8}_[0-9]{6}$",
                              "description": "default: the latest backup set"},
                "truncate_before_restore": {"type": "boolean", "default": False},
                "tables": {"oneOf": [{"type": "array", "items": {"type": "string", "enum": list(VECTOR_TABLES)},
                                      "minItems": 1},
                                     {"type": "string", "description": "comma list"}],
                           "description": "default: every table of the set"},
                "on_conflict": choice(RESTORE_CONFLICT_MODES, "error", "error: 409 when a backed-up id exists; skip: "
                                      "keep existing rows"),
            }, ["task_id"])}}})}
    paths["/openapi.json"] = {"get": _op("This document", "meta", {
        "200": {"description": "the OpenAPI 3 document (not wrapped in the envelope)",
                "content": {"application/json": {"schema": OBJ}}},
        **errors(),
    }, op_id="openapi")}
    return paths


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "data_pipeline API",
            "version": API_VERSION,
            "description": (
                "Turns a PostgreSQL database into Question-SQL training data (see SPEC.md). Every answer except "
                "file downloads and this document is the envelope `{success, code, message, data}`; failures "
                "carry `error{type, code, details, invalid_params, timestamp}` and `code` equals the HTTP status. "
                "When DATA_PIPELINE_API_KEY is set every route, this one included, needs `Authorization: Bearer "
                "<key>`. A server error never carries a stack trace or a password."),
        },
        "servers": [{"url": "/api/v0"}],
        "security": [{"bearerAuth": []}, {}],
        "tags": [{"name": n} for n in ("tasks", "files", "logs", "database", "vectors", "meta")],
        "paths": _paths(),
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description":
                                               "required only when DATA_PIPELINE_API_KEY is configured"}},
        },
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it, e.g. the fuzzer's examples)."""
    return copy.deepcopy(_document())


@openapi_bp.route("/openapi.json", methods=["GET"])
def openapi_json():
    return json_response(_document(), 200)
