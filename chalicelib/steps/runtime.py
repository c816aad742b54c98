"""What every step Lambda shares: loading the task, its files and logger, and bridging domain logs.

Domain modules log through the standard `logging` module; while a step runs, their records are
forwarded to that step's TaskLogger (so they reach the task's log in S3) by a thread-aware handler.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib import errors
from chalicelib.config import Settings, get_settings
from chalicelib.errors import DatabaseConnectionError, DataPipelineError, TaskCancelled
from chalicelib.stores.files import FileStore, TaskFiles
from chalicelib.stores.tasks import TaskStore
from chalicelib.tasklog import TaskLogger

# Domain module -> the logger name users see in the task log (the original system's component names).
_LOGGER_NAMES = {
    "chalicelib.pipeline.introspect": "SchemaInspector",
    "chalicelib.pipeline.names": "SchemaInspector",
    "chalicelib.pipeline.db": "DatabaseConnector",
    "chalicelib.pipeline.db_pool": "DatabaseConnector",
    "chalicelib.pipeline.hosts": "DatabaseConnector",
    "chalicelib.pipeline.ddl": "DDLMDGenerator",
    "chalicelib.pipeline.ddl_render": "DDLMDGenerator",
    "chalicelib.pipeline.relationships": "DDLMDGenerator",
    "chalicelib.pipeline.profiles": "DDLMDGenerator",
    "chalicelib.pipeline.qa": "QuestionSQLGenerator",
    "chalicelib.pipeline.validation": "SQLValidator",
    "chalicelib.pipeline.validation_report": "SQLValidator",
    "chalicelib.pipeline.sqltext": "SQLValidator",
    "chalicelib.pipeline.empty_range": "SQLValidator",
    "chalicelib.pipeline.training": "TrainingDataLoader",
    "chalicelib.pipeline.vector_layout": "TrainingDataLoader",
    "chalicelib.pipeline.vector_copy": "TrainingDataLoader",
    "chalicelib.pipeline.vectors": "VectorTableManager",
    "chalicelib.pipeline.vector_restore": "VectorTableManager",
    "chalicelib.providers.openai_chat": "LLMProvider",
    "chalicelib.providers.answers": "LLMProvider",
    "chalicelib.providers.heuristic": "HeuristicProvider",
    "chalicelib.providers.embeddings": "EmbeddingProvider",
}

_current = threading.local()
# What every LogRecord has; anything else on a record came from `extra={...}` and travels on as a log field.
_STANDARD_RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _TaskLogBridge(logging.Handler):
    """Sends records of domain loggers to the TaskLogger of the step running in this thread."""

    def emit(self, record: logging.LogRecord) -> None:
        task_log: TaskLogger | None = getattr(_current, "log", None)
        if task_log is None:
            return
        name = _LOGGER_NAMES.get(record.name, record.name.rsplit(".", 1)[-1])
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must not break the step
            message = str(record.msg)
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_RECORD_KEYS and not k.startswith("_")}
        task_log.child(logger_name=name).log(record.levelname, message, **fields)


_bridge_installed = False
_bridge_lock = threading.Lock()


def _install_bridge() -> None:
    global _bridge_installed
    with _bridge_lock:
        if _bridge_installed:
            return
        for module in ("chalicelib.pipeline", "chalicelib.providers"):
            logger = logging.getLogger(module)
            logger.addHandler(_TaskLogBridge())
            logger.setLevel(logging.DEBUG)
        _bridge_installed = True


def describe_failure(error: dict[str, Any] | None) -> tuple[str, str]:
    """(error name, message) from a Step Functions Catch result `{"Error": …, "Cause": …}`."""
    if not error:
        return "UnknownError", "the execution failed without an error description"
    name = str(error.get("Error") or "UnknownError")
    cause = error.get("Cause")
    message = cause if isinstance(cause, str) else ""
    try:
        parsed = json.loads(message) if message else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        message = str(parsed.get("errorMessage") or parsed.get("Cause") or message)
        name = str(parsed.get("errorType") or name)
    if name == "States.Timeout":
        message = message or "the step did not finish within its time limit"
    code = getattr(errors, name, None)
    if isinstance(code, type) and issubclass(code, errors.DataPipelineError):
        name = code.code
    return name, message or name


def sum_usage(usages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """LLM usage of several invocations of one step, added up."""
    usages = [u for u in usages if u]
    if not usages:
        return None
    total: dict[str, Any] = {"provider": usages[0].get("provider")}
    for key in ("calls", "prompt_tokens", "completion_tokens", "seconds", "retries"):
        total[key] = round(sum(u.get(key, 0) or 0 for u in usages), 3)
    return total


@dataclass
class StepRun:
    """One invocation of a step Lambda for one task."""

    task_id: str
    step: str
    task: dict[str, Any]
    tasks: TaskStore
    files: TaskFiles
    log: TaskLogger
    settings: Settings

    @property
    def execution_id(self) -> str | None:
        return (self.task.get("execution") or {}).get("execution_id")

    @property
    def params(self) -> dict[str, Any]:
        return self.task.get("parameters") or {}

    @property
    def business_context(self) -> str:
        return self.params.get("business_context") or ""

    @property
    def db_url(self) -> str:
        url = self.settings.business_db_url_for(self.task.get("db_connection"))
        if not url:
            raise DatabaseConnectionError(
                "no database connection: the task has no db_connection and DATA_PIPELINE_DB_URL is not set"
            )
        return url

    @property
    def pgvector_url(self) -> str:
        url = self.settings.vector_db_url_for(self.task.get("db_connection"))
        if not url:
            raise DatabaseConnectionError("no vector database: set PGVECTOR_DB_URL (or DATA_PIPELINE_DB_URL)")
        return url

    @property
    def db_name(self) -> str:
        from chalicelib.pipeline.db import database_name

        return self.task.get("db_name") or database_name(self.db_url)

    @property
    def run_ts(self) -> str:
        """Timestamp of the current execution, `YYYYmmdd_HHMMSS`.

        Derived from the execution's start, not from the clock, so a step invoked twice for the same
        execution (Step Functions delivers at least once) writes the same file names.
        """
        started = self.task.get("started_at") or self.task.get("created_at")
        return datetime.fromisoformat(started).strftime("%Y%m%d_%H%M%S")


def ensure_not_cancelled(tasks: TaskStore, task_id: str, execution_arn: str | None = None,
                         task: dict[str, Any] | None = None) -> dict[str, Any]:
    """`task` (or, without it, the task's status and execution as they are now); TaskCancelled when it was
    cancelled, or when `execution_arn` (the invocation's `$$.Execution.Id`) is not the task's current execution
    (its ARN or name): such an invocation writes nothing."""
    task = task if task is not None else tasks.get_run_state(task_id)
    execution = task.get("execution") or {}
    # The state machine sends the execution's ARN; its name (the task's execution_id) is accepted as well.
    current = {execution.get("execution_arn"), execution.get("execution_id")} - {None}
    if task.get("status") == "cancelled":
        raise TaskCancelled(f"task {task_id} was cancelled; this step writes nothing")
    if execution_arn and execution.get("execution_arn") and execution_arn not in current \
            and execution_arn.rsplit(":", 1)[-1] not in current:
        raise TaskCancelled(f"task {task_id} runs another execution now; this step of an earlier one writes nothing")
    return task


@contextmanager
def step_run(event: dict[str, Any], step: str, *, logger_name: str, starts_step: bool = False) -> Iterator[StepRun]:
    """Open a step invocation; log and re-raise any failure so the state machine's Catch sees its class.

    A cancelled task's invocation stops at once (TaskCancelled) before it writes anything, its log included."""
    _install_bridge()
    task_id = event["task_id"]
    tasks = TaskStore()
    task = ensure_not_cancelled(tasks, task_id, event.get("execution_id"), tasks.get_task_for_step(task_id))
    execution_id = (task.get("execution") or {}).get("execution_id")
    log = TaskLogger(task_id, step=step, execution_id=execution_id, logger_name=logger_name, files=FileStore())
    if starts_step:
        tasks.mark_step_started(task_id, step, execution_id)
        task = tasks.get_task_for_step(task_id)
    run = StepRun(
        task_id=task_id,
        step=step,
        task=task,
        tasks=tasks,
        files=TaskFiles(task_id, FileStore()),
        log=log,
        settings=get_settings(),
    )
    try:
        with bind_step_log(log):
            yield run
    except DataPipelineError as exc:
        log.error("{step} failed: {error}", step=step, error=exc.message, code=exc.code)
        raise
    except Exception as exc:
        log.error("{step} failed: {error_type}: {error}", step=step, error_type=type(exc).__name__, error=str(exc))
        raise
    finally:
        log.flush()


@contextmanager
def bind_step_log(log: TaskLogger) -> Iterator[None]:
    """While active in this thread, domain-module log records go to `log` (worker threads of a step bind it
    too: the bridge looks the TaskLogger up per thread)."""
    previous = getattr(_current, "log", None)
    _current.log = log
    try:
        yield
    finally:
        _current.log = previous
