"""HTTP routes (mounted under /api/v0): parse the request, call a service, wrap the result in the envelope."""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api import database_service, file_service, log_service, table_list_service, task_service
from chalicelib.api.envelope import handle_errors, success
from chalicelib.api.multipart import read_file_field
from chalicelib.api.requests import parse_json_object

api_bp = Blueprint(__name__)
# Chalice would answer a foreign Content-Type with its own (non-envelope) 415; bodies are checked by us instead.
ANY = ["*/*"]
TASK = "/data_pipeline/tasks/{task_id}"


def _body() -> dict:
    return parse_json_object(api_bp.current_request.raw_body)


def _params() -> dict:
    return api_bp.current_request.query_params or {}


@api_bp.route("/data_pipeline/tasks", methods=["POST"], content_types=ANY)
@handle_errors
def create_task():
    created_by = api_bp.current_request.headers.get("x-user")
    return success(task_service.create_task(_body(), created_by), "Task created", 201)


@api_bp.route("/data_pipeline/tasks", methods=["GET"])
@handle_errors
def list_tasks():
    return success(task_service.list_tasks(_params()), "Task list")


@api_bp.route("/data_pipeline/tasks/query", methods=["POST"], content_types=ANY)
@handle_errors
def query_tasks():
    return success(task_service.query_tasks(_body()), "Task query")


@api_bp.route(TASK, methods=["GET"])
@handle_errors
def get_task(task_id):
    return success(task_service.get_task_status(task_id), "Task status")


@api_bp.route(TASK + "/execute", methods=["POST"], content_types=ANY)
@handle_errors
def execute_task(task_id):
    return success(task_service.execute_task(task_id, _body()), "Task execution started", 202)


@api_bp.route(TASK + "/cancel", methods=["POST"], content_types=ANY)
@handle_errors
def cancel_task(task_id):
    return success(task_service.cancel_task(task_id), "Task cancelled")


@api_bp.route(TASK + "/files", methods=["GET"])
@handle_errors
def list_files(task_id):
    return success(file_service.list_task_files(task_id), "Task files")


@api_bp.route(TASK + "/files/{filename}", methods=["GET"])
@handle_errors
def download_file(task_id, filename):
    return file_service.download_file(task_id, filename)


@api_bp.route(TASK + "/files/vector_bak/{filename}", methods=["GET"])
@handle_errors
def download_vector_backup(task_id, filename):
    return file_service.download_file(task_id, filename, folder=file_service.VECTOR_BAK)


@api_bp.route(TASK + "/upload-table-list", methods=["POST"], content_types=ANY)
@handle_errors
def upload_table_list(task_id):
    request = api_bp.current_request
    upload = read_file_field(request.headers.get("content-type"), request.raw_body or b"")
    return success(table_list_service.upload_table_list(task_id, upload.filename, upload.data), "Table list uploaded")


@api_bp.route(TASK + "/table-list-info", methods=["GET"])
@handle_errors
def table_list_info(task_id):
    return success(table_list_service.table_list_info(task_id), "Table list info")


@api_bp.route(TASK + "/table-list", methods=["POST"], content_types=ANY)
@handle_errors
def set_table_list(task_id):
    return success(table_list_service.set_table_names(task_id, _body()), "Table list created")


@api_bp.route(TASK + "/logs", methods=["GET"])
@handle_errors
def get_logs(task_id):
    return success(log_service.get_logs(task_id, _params()), "Task logs")


@api_bp.route(TASK + "/logs/query", methods=["POST"], content_types=ANY)
@handle_errors
def query_logs(task_id):
    return success(log_service.query_logs(task_id, _body()), "Log query")


@api_bp.route("/database/tables", methods=["POST"], content_types=ANY)
@handle_errors
def database_tables():
    return success(database_service.list_database_tables(_body()), "Database tables")


@api_bp.route("/database/table/ddl", methods=["POST"], content_types=ANY)
@handle_errors
def database_table_ddl():
    return success(database_service.get_table_ddl(_body()), "Table DDL")
