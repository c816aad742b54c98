"""HTTP routes (mounted under /api/v0): each declares its operation (models, status, error codes) and calls a
service; chalicelib.api.operations validates the request and wraps the result in the envelope."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api import database_service, file_service, log_service, table_list_service, task_service
from chalicelib.api import models as rq
from chalicelib.api import models_responses as rs
from chalicelib.api.error_codes import ERROR_CODES
from chalicelib.api.multipart import read_file_field
from chalicelib.api.operations import Operation, api_route

api_bp = Blueprint(__name__)
TASKS = "/data_pipeline/tasks"
TASK = TASKS + "/{task_id}"
NO_TASK = {404: ("TASK_NOT_FOUND",)}
RUN_CODES = ("VECTOR_BACKUP_FAILED", "VECTOR_TRUNCATE_FAILED", "DATABASE_CONNECTION_ERROR", "STEP_FAILED",
             "LLM_ERROR", "LLM_RATE_LIMITED", "LLM_TIMEOUT", "LLM_BAD_ANSWER", "EMBEDDING_ERROR")
X_USER = {"name": "x-user", "in": "header", "required": False, "schema": {"type": "string"},
          "description": "who creates the task (`created_by`, unless the body names one); cut to 100 characters"}
FILE_DOWNLOAD = {
    "200": {"description": "the file, with a fitting Content-Type and a Content-Disposition attachment",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
    "302": {"description": "large files: a redirect to a short-lived S3 URL",
            "headers": {"Location": {"schema": {"type": "string"}}}},
}
TABLE_LIST_UPLOAD = {
    "description": "UTF-8 text, one table per line or comma-separated, `schema.table` or `table`; `#`/`--` lines "
                   "ignored; at most DATA_PIPELINE_MAX_UPLOAD_BYTES (1 MiB by default).",
    "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                   "required": ["file"]},
        # The part's own name must end in .txt (415 otherwise): said where OpenAPI says it, in its headers.
        "encoding": {"file": {"contentType": "text/plain", "headers": {"Content-Disposition": {
            "schema": {"type": "string"}, "example": 'form-data; name="file"; filename="tables.txt"'}}}}}}}


@api_route(api_bp, TASKS, "POST", Operation(
    "createTask", "Create a task", "tasks", "Task created", rs.TaskCreated, 201, body=rq.CreateTaskRequest,
    errors={400: ("INVALID_TABLE_NAME",), 403: ("DATABASE_HOST_NOT_ALLOWED",), 413: ("PAYLOAD_TOO_LARGE",),
            415: ("UNSUPPORTED_MEDIA_TYPE",)},
    headers=(X_USER,)))
def create_task(body: rq.CreateTaskRequest, request):
    return task_service.create_task(body, request.headers.get("x-user"))


@api_route(api_bp, TASKS, "GET", Operation("listTasks", "List tasks, newest first", "tasks", "Task list",
                                           rs.TaskList, query=rq.ListTasksParams))
def list_tasks(params: rq.ListTasksParams):
    return task_service.list_tasks(params)


@api_route(api_bp, TASKS + "/query", "POST", Operation(
    "queryTasks", "Query tasks with filters", "tasks", "Task query", rs.TaskQueryResult, body=rq.QueryTasksRequest))
def query_tasks(body: rq.QueryTasksRequest):
    return task_service.query_tasks(body)


@api_route(api_bp, TASK, "GET", Operation(
    "getTask", "Task status", "tasks", "Task status", rs.Task, errors=NO_TASK, description=(
        "A run executes in the background, so its failures are not HTTP errors: the task's `error_message` and the "
        "failed step's `error_message` read `<CODE>: <message>`, CODE one of " + ", ".join(
            f"`{c}` ({ERROR_CODES[c][1]})" for c in RUN_CODES) + ".")))
def get_task(task_id):
    return task_service.get_task_status(task_id)


@api_route(api_bp, TASK + "/execute", "POST", Operation(
    "executeTask", "Start the pipeline (Step Functions)", "tasks", "Task execution started", rs.ExecutionStarted, 202,
    body=rq.ExecuteRequest, description="Two simultaneous calls: exactly one wins (202), the other gets 409.",
    errors={400: ("TABLE_LIST_MISSING", "DATABASE_CONNECTION_ERROR", "PROVIDER_NOT_CONFIGURED"),
            403: ("DATABASE_HOST_NOT_ALLOWED",), **NO_TASK, 409: ("TASK_ALREADY_RUNNING",)}))
def execute_task(task_id, body: rq.ExecuteRequest):
    return task_service.execute_task(task_id, body)


@api_route(api_bp, TASK + "/cancel", "POST", Operation(
    "cancelTask", "Cancel a running task", "tasks", "Task cancelled", rs.TaskCancelled,
    errors={**NO_TASK, 409: ("TASK_NOT_RUNNING",), 500: ("TASK_CANCEL_FAILED",)}))
def cancel_task(task_id):
    return task_service.cancel_task(task_id)


@api_route(api_bp, TASK + "/files", "GET", Operation(
    "listFiles", "List a task's files", "files", "Task files", rs.TaskFiles, errors=NO_TASK,
    description="The newest pair JSON is primary; `data_pipeline.log` is the task's log."))
def list_files(task_id):
    return file_service.list_task_files(task_id)


@api_route(api_bp, TASK + "/files/{filename}", "GET", Operation(
    "downloadFile", "Download a task file", "files", raw=FILE_DOWNLOAD,
    errors={400: (), 404: ("TASK_NOT_FOUND", "FILE_NOT_FOUND")},
    description="`data_pipeline.log` is the task's log rendered as text."))
def download_file(task_id, filename):
    return file_service.download_file(task_id, filename)


@api_route(api_bp, TASK + "/files/vector_bak/{filename}", "GET", Operation(
    "downloadVectorBackup", "Download a vector backup file", "files", raw=FILE_DOWNLOAD,
    errors={400: (), 404: ("TASK_NOT_FOUND", "FILE_NOT_FOUND")}))
def download_vector_backup(task_id, filename):
    return file_service.download_file(task_id, filename, folder=file_service.VECTOR_BAK)


@api_route(api_bp, TASK + "/upload-table-list", "POST", Operation(
    "uploadTableList", "Upload the table list (.txt)", "files", "Table list uploaded", rs.TableListInfo,
    upload=TABLE_LIST_UPLOAD, errors={400: ("INVALID_TABLE_NAME",), **NO_TASK, 409: ("TASK_ALREADY_RUNNING",),
                                      413: ("PAYLOAD_TOO_LARGE",), 415: ("UNSUPPORTED_MEDIA_TYPE",)}))
def upload_table_list(task_id, request):
    upload = read_file_field(request.headers.get("content-type"), request.raw_body or b"")
    return table_list_service.upload_table_list(task_id, upload.filename, upload.data)


@api_route(api_bp, TASK + "/table-list-info", "GET", Operation(
    "tableListInfo", "The task's table list", "files", "Table list info", rs.TableListState, errors=NO_TASK))
def table_list_info(task_id):
    return table_list_service.table_list_info(task_id)


@api_route(api_bp, TASK + "/table-list", "POST", Operation(
    "setTableList", "Set the table list from names", "files", "Table list created", rs.TableListSet,
    body=rq.TableNamesRequest, errors={**NO_TASK, 409: ("TASK_ALREADY_RUNNING",)}))
def set_table_list(task_id, body: rq.TableNamesRequest):
    return table_list_service.set_table_names(task_id, body)


@api_route(api_bp, TASK + "/logs", "GET", Operation(
    "getLogs", "The last log records of a task", "logs", "Task logs", rs.TaskLogs, query=rq.LogsParams,
    errors=NO_TASK))
def get_logs(task_id, params: rq.LogsParams):
    return log_service.get_logs(task_id, params)


@api_route(api_bp, TASK + "/logs/query", "POST", Operation(
    "queryLogs", "Query a task's log", "logs", "Log query", rs.LogQueryResult, body=rq.LogQueryRequest,
    errors=NO_TASK))
def query_logs(task_id, body: rq.LogQueryRequest):
    return log_service.query_logs(task_id, body)


@api_route(api_bp, "/database/tables", "POST", Operation(
    "listDatabaseTables", "List a database's tables", "database", "Database tables", rs.DatabaseTables,
    body=rq.DatabaseTablesRequest, errors={403: ("DATABASE_HOST_NOT_ALLOWED",), 500: ("DATABASE_CONNECTION_ERROR",)}))
def database_tables(body: rq.DatabaseTablesRequest):
    return database_service.list_database_tables(body)


@api_route(api_bp, "/database/table/ddl", "POST", Operation(
    "tableDdl", "Document one table (nothing is written)", "database", "Table DDL", rs.TableDdl,
    body=rq.TableDdlRequest, errors={400: ("INVALID_TABLE_NAME", "PROVIDER_NOT_CONFIGURED"),
                                     403: ("DATABASE_HOST_NOT_ALLOWED",), 404: ("NOT_FOUND",), 500: (
        "DATABASE_CONNECTION_ERROR", "LLM_ERROR", "LLM_RATE_LIMITED", "LLM_TIMEOUT", "LLM_BAD_ANSWER")}))
def database_table_ddl(body: rq.TableDdlRequest):
    return database_service.get_table_ddl(body)
