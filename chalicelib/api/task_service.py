"""What the task routes do: create, list/query, status, execute (Step Functions), cancel, table lists."""
from __future__ import annotations

import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from chalicelib.api.models import CreateTaskRequest, ExecuteRequest, ListTasksParams, QueryTasksRequest
from chalicelib.api.table_list_service import resolve_table_list_file, store_table_list
from chalicelib.api.task_cancel import stop_execution
from chalicelib.api.task_events import API_LOGGER, log_api_event
from chalicelib.api.task_view import public_task_view
from chalicelib.aws import get_sfn
from chalicelib.config import STEP_NAMES, Settings, get_settings
from chalicelib.errors import (
    DatabaseConnectionError,
    DatabaseHostNotAllowed,
    DataPipelineError,
    InvalidConnectionString,
    TableListMissing,
    TaskNotRunning,
)
from chalicelib.pipeline.db import check_connection_allowed, database_name
from chalicelib.providers.factory import check_providers_ready
from chalicelib.stores.files import FileStore
from chalicelib.stores.task_reconcile import fail_lost_execution, lost_execution_message
from chalicelib.stores.tasks import TaskStore, now_iso
from chalicelib.tasklog import TaskLogger

logger = logging.getLogger(__name__)

FLAGS = ("enable_sql_validation", "enable_llm_repair", "modify_original_file", "enable_training_data_load",
         "backup_vector_tables", "truncate_vector_tables")


# ---- create -------------------------------------------------------------------------------------------

def create_task(body: CreateTaskRequest, created_by: str | None = None) -> dict[str, Any]:
    """Validate and store a new task.

    `table_list_file` is resolved before anything is stored (see resolve_table_list_file): a value that names no
    readable list is a 4xx and no task is created, so a task never waits for a list that will not come.
    """
    task_name, business_context = body.task_name, body.business_context
    db_connection, table_list_file = body.db_connection, body.table_list_file
    db_name = body.db_name or _default_db_name(db_connection)
    creator = body.created_by or (created_by or "").strip()[:100] or "api"
    flags = {name: getattr(body, name) for name in FLAGS}
    if flags["truncate_vector_tables"]:
        flags["backup_vector_tables"] = True
    if db_connection:
        check_task_database(db_connection)
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
    log_api_event(task_id, f"task created: {task_name or task_id}", created_by=creator)
    return {"task_id": task_id, "task_name": task_name, "status": task["status"], "created_at": task["created_at"],
            "has_table_list": refs is not None}


def check_task_database(db_connection: str) -> None:
    """A task's own db_connection must name an allowed host (403 DATABASE_HOST_NOT_ALLOWED) that resolves (400):
    checked when it is given and again by every step before it connects. Nothing is connected here."""
    try:
        check_connection_allowed(db_connection)
    except (InvalidConnectionString, DatabaseHostNotAllowed):
        raise
    except DatabaseConnectionError as exc:  # the host name does not resolve: the request names a wrong host
        raise InvalidConnectionString(exc.message, invalid_params=["db_connection"]) from None


def _default_db_name(db_connection: str | None) -> str | None:
    url = db_connection or get_settings().db_url
    if not url:
        return None
    try:
        return database_name(url) or None
    except DataPipelineError:
        return None


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
        return list(pool.map(lambda item: public_task(reconcile_stale_task(item), files), items))


def get_task_status(task_id: str) -> dict[str, Any]:
    return public_task(reconcile_stale_task(TaskStore().get_task(task_id)))


def reconcile_stale_task(item: dict[str, Any]) -> dict[str, Any]:
    """The task as it is: an item in_progress unchanged for longer than DATA_PIPELINE_RECONCILE_AFTER_SECONDS
    is checked with DescribeExecution, and failed with the cause when its execution no longer runs (the
    EventBridge rule does the same within seconds; this covers an event that never arrived)."""
    execution_arn = (item.get("execution") or {}).get("execution_arn")
    if item.get("status") != "in_progress" or not execution_arn:
        return item
    try:
        changed_at = datetime.fromisoformat(item.get("updated_at") or item.get("started_at") or "")
    except ValueError:
        return item
    age = (datetime.now(UTC) - changed_at.replace(tzinfo=changed_at.tzinfo or UTC)).total_seconds()
    if age <= get_settings().reconcile_after_seconds:
        return item
    sfn = get_sfn()
    try:
        described = sfn.describe_execution(executionArn=execution_arn)
        status, error, cause = described["status"], described.get("error"), described.get("cause")
    except sfn.exceptions.ExecutionDoesNotExist:
        status, error, cause = "LOST", None, "Step Functions no longer knows the execution"
    except Exception as exc:  # the read still answers, with the item as stored
        logger.warning("execution check failed", extra={"task_id": item["task_id"], "error": type(exc).__name__})
        return item
    if status == "RUNNING":
        return item
    store = TaskStore()
    message = lost_execution_message(status, error, cause)
    if fail_lost_execution(store, item["task_id"], execution_arn, (item.get("execution") or {}).get("execution_id"),
                           message):
        with TaskLogger(item["task_id"], logger_name=API_LOGGER, files=FileStore()) as log:
            log.error("task marked failed, its execution ended: %s", message)
    return store.get_task(item["task_id"])


def list_tasks(params: ListTasksParams) -> dict[str, Any]:
    filters = {"status": params.status} if params.status else {}
    items, total, next_cursor = _task_page(filters, params.limit, params.offset, params.cursor)
    return {"tasks": public_tasks(items), "total": total, "limit": params.limit, "offset": params.offset,
            "next_cursor": next_cursor}


def query_tasks(body: QueryTasksRequest) -> dict[str, Any]:
    started = time.perf_counter()
    page, page_size = body.page, body.page_size
    filters = body.model_dump(include={"status", "task_name", "created_by", "db_name", "created_time_start",
                                       "created_time_end"})
    items, total, next_cursor = _task_page(filters, page_size, (page - 1) * page_size, body.cursor)
    total_pages = (total + page_size - 1) // page_size
    return {
        "tasks": public_tasks(items),
        "pagination": {"page": page, "page_size": page_size, "total": total, "total_pages": total_pages,
                       "has_next": next_cursor is not None, "has_prev": page > 1 or body.cursor is not None,
                       "next_cursor": next_cursor},
        "filters_applied": {k: v for k, v in filters.items() if v},
        "query_time": f"{time.perf_counter() - started:.3f}s",
    }


def _task_page(filters: dict[str, Any], limit: int, offset: int, cursor: str | None
               ) -> tuple[list[dict[str, Any]], int, str | None]:
    """(tasks, total, next cursor): from a cursor (reading only from there on), else from an offset."""
    store = TaskStore()
    if cursor:
        items, next_cursor = store.page_tasks(filters, limit, cursor)
        return items, store.count_matching(filters), next_cursor
    items, total = store.query_tasks(filters, 1, limit, offset=offset)
    more = bool(items) and offset + len(items) < total
    return items, total, store.cursor_after(items[-1], filters) if more else None


# ---- execute / cancel ---------------------------------------------------------------------------------

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


def execute_task(task_id: str, body: ExecuteRequest) -> dict[str, Any]:
    """Claim the task (409 if it runs) and start the state machine; a failed start releases the claim."""
    mode, step, backup, truncate = body.execution_mode, body.step_name, body.backup_vector_tables, \
        body.truncate_vector_tables
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
    plan = build_plan(task, mode, step, backup, bool(truncate))
    preflight(task, plan, settings)
    execution_id = new_execution_id(task_id, mode, step)
    store.claim_execution(task_id, mode, step, plan, execution_id=execution_id)
    execution_input = {"task_id": task_id, "execution_mode": mode, "step_name": step,
                       "backup_vector_tables": backup, "truncate_vector_tables": bool(truncate)}
    try:
        started = get_sfn().start_execution(stateMachineArn=settings.state_machine_arn, name=execution_id,
                                            input=json.dumps(execution_input, ensure_ascii=False))
    except Exception as exc:
        store.release_claim(task_id, f"could not start the execution ({type(exc).__name__})")
        log_api_event(task_id, f"could not start the execution: {type(exc).__name__}", "ERROR")
        raise DataPipelineError("could not start the execution; the task was released") from exc
    store.set_execution(task_id, started["executionArn"], execution_id)
    log_api_event(task_id, f"execution started: mode={mode} step={step or '-'} id={execution_id}")
    return {"task_id": task_id, "execution_mode": mode, "step_name": step, "execution_id": execution_id,
            "message": "The task runs in the background; poll the status endpoint for progress."}


def preflight(task: dict[str, Any], plan: dict[str, Any], settings: Settings) -> None:
    """Before anything starts: the providers the planned steps need can run here (400 PROVIDER_NOT_CONFIGURED),
    and the databases the run will connect to are allowed hosts (403 DATABASE_HOST_NOT_ALLOWED)."""
    check_providers_ready(settings, plan["steps"])
    urls = [settings.business_db_url_for(task.get("db_connection"))]
    if "training_load" in plan["steps"] or plan.get("backup_vector_tables") or plan.get("truncate_vector_tables"):
        urls.append(settings.vector_db_url_for(task.get("db_connection")))
    for url in dict.fromkeys(u for u in urls if u):
        check_task_database(url)


def cancel_task(task_id: str) -> dict[str, Any]:
    """Stop the running execution and mark the task cancelled (409 TASK_NOT_RUNNING when nothing runs).

    Only an execution that was stopped, or had already ended, lets the task be cancelled; any other failure of
    StopExecution is a 500 TASK_CANCEL_FAILED naming it, and the task stays as it was (its execution may run)."""
    store = TaskStore()
    task = store.get_task(task_id)
    if task.get("status") != "in_progress":
        raise TaskNotRunning(f"task {task_id} is not running (status {task.get('status')})")
    arn = (task.get("execution") or {}).get("execution_arn")
    if arn:
        outcome = stop_execution(get_sfn(), arn)
        log_api_event(task_id, f"execution {outcome}")
        task = store.get_task(task_id)
        if task.get("status") != "in_progress":  # it finished (or was cancelled) while it was being stopped
            raise TaskNotRunning(f"task {task_id} is not running (status {task.get('status')})")
    for step, status in (task.get("step_status") or {}).items():
        if status == "running":
            store.mark_step_failed(task_id, step, "cancelled")
    store.finish_task(task_id, "cancelled", "cancelled through the API")
    log_api_event(task_id, "task cancelled")
    return {"task_id": task_id, "status": "cancelled", "cancelled_at": now_iso()}
