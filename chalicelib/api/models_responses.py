"""Response models: the `data` of each route's envelope, and the envelope of a failure.

The services return plain dicts (JSON as it goes out); these classes describe them for the OpenAPI document,
and tests/functional/test_openapi.py checks real answers against the document. Extra keys are allowed: an
answer may carry more than the document promises, never less.
"""
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.api.error_codes import ERROR_CODES
from chalicelib.config import STEP_NAMES
from chalicelib.stores.tasks import TASK_STATUSES

StepName = Literal[tuple(STEP_NAMES)]  # type: ignore[valid-type]
StepState = Literal["pending", "running", "completed", "failed", "skipped"]
ErrorCode = Literal[tuple(ERROR_CODES)]  # type: ignore[valid-type]


class Data(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorInfo(Data):
    type: str = Field(description="ValidationError for every 400 (the specific failure is `code`); otherwise the "
                                  "error class, e.g. TaskNotFound")
    code: ErrorCode
    details: str | None
    invalid_params: list[str] = Field(description="the fields of the request that are wrong")
    timestamp: str


class ErrorEnvelope(Data):
    success: Literal[False]
    code: int = Field(description="the HTTP status")
    message: str
    error: ErrorInfo


# ---- tasks ------------------------------------------------------------------------------------------------

class StepsStatus(Data):
    ddl_generation: StepState
    qa_generation: StepState
    sql_validation: StepState
    training_load: StepState


class StepRecord(Data):
    step_name: StepName
    step_status: StepState
    started_at: str | None = None
    completed_at: str | None = None
    error_message: str | None = None


class TaskParameters(Data):
    db_connection: str | None = Field(None, description="password masked as ***")


class Task(Data):
    """A task as the API shows it (passwords masked)."""

    task_id: str
    task_name: str | None = None
    status: Literal[tuple(TASK_STATUSES)]  # type: ignore[valid-type]
    step_status: StepsStatus
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    updated_at: str | None = None
    created_by: str | None = None
    db_name: str | None = None
    business_context: str | None = None
    parameters: TaskParameters
    current_step: dict[str, Any] | None = None
    total_steps: int
    steps: list[StepRecord]
    progress: dict[str, Any] = {}
    results: dict[str, Any] = {}
    llm_usage: dict[str, Any] = {}
    error_message: str | None = None
    has_table_list: bool = False
    table_count: int = 0
    execution: dict[str, Any] | None = None
    directory_exists: bool = False


class TaskCreated(Data):
    task_id: str
    task_name: str | None = None
    status: Literal["pending"]
    created_at: str
    has_table_list: bool = False


class TaskList(Data):
    tasks: list[Task]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last")


class Pagination(Data):
    page: int
    page_size: int
    total: int
    total_pages: int
    has_next: bool
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last")
    has_prev: bool


class TaskQueryResult(Data):
    tasks: list[Task]
    pagination: Pagination
    filters_applied: dict[str, Any] = {}
    query_time: str | None = None


class ExecutionStarted(Data):
    task_id: str
    execution_mode: Literal["complete", "step"]
    step_name: StepName | None
    execution_id: str
    message: str


class TaskCancelled(Data):
    task_id: str
    status: Literal["cancelled"]
    cancelled_at: str


# ---- files and table lists --------------------------------------------------------------------------------

class FileEntry(Data):
    file_name: str
    file_type: str
    file_size: int
    file_size_human: str
    created_at: str | None = None
    is_primary: bool
    description: str | None = None
    download_url: str


class TaskFiles(Data):
    task_id: str
    files: list[FileEntry]
    total_files: int
    total_size: int
    total_size_human: str | None = None


class TableListInfo(Data):
    task_id: str
    file_name: str | None = None
    file_size: int | None = None
    file_path: str | None = None
    table_count: int
    tables: list[str]
    uploaded_at: str | None = None


class TableListState(TableListInfo):
    has_table_list: bool


class TableListSet(TableListInfo):
    business_context: str | None = None


# ---- logs -------------------------------------------------------------------------------------------------

class LogRecord(Data):
    timestamp: str | None
    level: str | None
    logger: str | None = None
    step: str | None = None
    message: str | None
    execution_id: str | None = None
    line_number: int | None = None


class TaskLogs(Data):
    task_id: str
    logs: list[LogRecord] = Field(description="oldest first")
    total: int
    source: str | None = None
    log_file: str | None = None


class LogFileInfo(Data):
    exists: bool
    file_path: str
    file_size: int
    last_modified: str | None = None


class LogQueryResult(Data):
    logs: list[LogRecord]
    pagination: Pagination
    log_file_info: LogFileInfo
    query_time: str | None = None


# ---- database tools ---------------------------------------------------------------------------------------

class DatabaseInfo(Data):
    database: str


class DatabaseTables(Data):
    tables: list[str] = Field(description="`schema.table` names")
    total: int
    schemas: list[str]
    table_name_pattern: str | None = None
    db_connection_info: DatabaseInfo | None = None


class TableDdl(Data):
    ddl: str | None
    md: str | None
    table_info: dict[str, Any]
    fields: list[dict[str, Any]]
    generation_info: dict[str, Any]


# ---- vector tables ----------------------------------------------------------------------------------------

class BackupFile(Data):
    table: str
    file_name: str
    file_size: int
    file_size_human: str | None = None
    created_at: str | None = None
    download_url: str


class BackupTable(Data):
    rows: int | None
    bytes: int


class BackupSet(Data):
    task_id: str
    timestamp: str = Field(pattern=r"^[0-9]{8}_[0-9]{6}$")
    files: list[BackupFile]
    tables: dict[str, BackupTable]
    rows_source: str | None = None
    total_size: int | None = None
    total_size_human: str | None = None
    total_rows: int | None = None
    log_file: str | None = None


class BackupList(Data):
    task_id: str | None = None
    backups: list[BackupSet] = Field(description="newest first")
    count: int
    limit: int
    truncated: bool


class RestoreResult(Data):
    task_id: str
    timestamp: str
    tables: dict[str, Any]
    total_restored: int
    truncate_before_restore: bool | None = None
    on_conflict: str | None = None
    database: str | None = None
    duration_seconds: float | None = None
