"""Typed request models: every JSON body and query string of the API, validated at the edge.

One source per contract: the routes validate with these classes (chalicelib.api.operations) and the OpenAPI
document (chalicelib.api.openapi) is their JSON schema. The rules are the API's since its first version: `null`
means absent, a blank optional string means its default, strings are trimmed, numbers and booleans are never
coerced from strings in a JSON body, unknown fields are ignored. A failure is a 400 naming the field, with the
specific error code a field type carries (`x-error-code` in the schema).
"""
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from chalicelib.api.model_fields import (  # noqa: F401  (QueryModel, RequestModel: the bases operations.py reads)
    BACKUP_TS,
    BLANK_IS_DEFAULT,
    EXECUTION_MODES,
    OUTPUT_TYPES,
    SORT_FIELDS,
    SORT_ORDERS,
    TASK_ID_EXAMPLE,
    WHITE_SPACE,
    DbConnection,
    EndTime,
    QueryModel,
    RequestModel,
    StartTime,
    TaskId,
    body_int,
    choice,
    fail,
    query_int,
    text,
)
from chalicelib.config import STEP_NAMES
from chalicelib.errors import MissingStepName
from chalicelib.pipeline.vectors import RESTORE_CONFLICT_MODES, VECTOR_TABLES
from chalicelib.stores.tasks import TASK_STATUSES
from chalicelib.tasklog import LEVELS


class CreateTaskRequest(RequestModel):
    """POST /data_pipeline/tasks. Every field is optional."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "task_name": "高速公路服务区", "business_context": "高速公路服务区管理系统", "db_name": "highway_db",
        "db_connection": "postgresql://user:password@localhost:5432/highway_db",
        "enable_sql_validation": True, "enable_llm_repair": True, "modify_original_file": True,
        "enable_training_data_load": True}]})

    task_name: text(100) | None = None
    business_context: text(10_000) | None = None
    db_name: text(128) | None = Field(None, description="default: the database of the connection")
    db_connection: DbConnection | None = None
    table_list_file: text(200_000) | None = Field(None, description=(
        "resolved at create and stored as table_list.txt (same .txt/UTF-8/size rules as upload-table-list): an "
        "s3://bucket/key.txt URI of the task bucket or of a bucket in DATA_PIPELINE_TABLE_LIST_BUCKETS; on the "
        "local stack only, a .txt path under DATA_PIPELINE_TABLE_LIST_DIR (default: the server's current "
        "directory), nothing outside it; or the list itself when it contains a newline or a comma. A value that "
        "cannot be resolved is a 400 and no task is created"))
    created_by: text(100) | None = Field(None, description="default: the x-user header, else `api`")
    enable_sql_validation: bool | None = True
    enable_llm_repair: bool | None = True
    modify_original_file: bool | None = True
    enable_training_data_load: bool | None = True
    backup_vector_tables: bool | None = False
    truncate_vector_tables: bool | None = Field(False, description="implies backup_vector_tables")


class ListTasksParams(QueryModel):
    """GET /data_pipeline/tasks."""

    limit: query_int(1, 500) = Field(50, description="page size")
    offset: query_int(0) = Field(0, description="tasks to skip (ignored with `cursor`)")
    status: choice(TASK_STATUSES) | None = Field(None, description="only tasks in this status")
    cursor: text(2000) | None = Field(None, description=(
        "`next_cursor` of the previous page: the listing goes on from there, reading no entry before it"))


class QueryTasksRequest(RequestModel):
    """POST /data_pipeline/tasks/query. Filters, all optional."""

    page: body_int(1) = 1
    page_size: body_int(1, 500) = 20
    cursor: text(2000) | None = Field(None, description=(
        "`pagination.next_cursor` of the previous page, with the same filters: goes on from there (page ignored)"))
    status: choice(TASK_STATUSES) | None = None
    task_name: text(100) | None = Field(None, description="substring, case-insensitive")
    created_by: text(100) | None = None
    db_name: text(128) | None = None
    created_time_start: StartTime | None = None
    created_time_end: EndTime | None = None


class ExecuteRequest(RequestModel):
    """POST /data_pipeline/tasks/{task_id}/execute."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"execution_mode": "complete"}, {"execution_mode": "step", "step_name": "ddl_generation"}],
        # step mode needs a step: the schema says it as the validator does (MISSING_STEP_NAME otherwise)
        "if": {"required": ["execution_mode"], "properties": {"execution_mode": {"const": "step"}}},
        "then": {"required": ["step_name"], "properties": {"step_name": {"type": "string", "enum": list(STEP_NAMES)}}},
    })

    execution_mode: choice(EXECUTION_MODES, code="INVALID_EXECUTION_MODE") | None = "complete"
    step_name: choice(STEP_NAMES, code="INVALID_STEP_NAME") | None = Field(
        None, description="required in step mode (MISSING_STEP_NAME)", json_schema_extra={
            "x-error-code": "MISSING_STEP_NAME"})
    backup_vector_tables: bool | None = Field(None, description="default: the task's setting")
    truncate_vector_tables: bool | None = Field(None, description="default: the task's setting; forces a backup")

    @model_validator(mode="after")
    def _step_needs_a_name(self) -> "ExecuteRequest":
        if self.execution_mode == "step" and not self.step_name:
            raise MissingStepName("step_name is required when execution_mode is 'step'", invalid_params=["step_name"])
        if self.execution_mode != "step":
            self.step_name = None
        return self


# ---- table lists and logs ---------------------------------------------------------------------------------

# What chalicelib.pipeline.tablelist accepts per item, as a regex can say it: `table` or `schema.table`, each part
# unquoted (letters, digits, _, $, any non-ASCII) or double-quoted ("" inside, no NUL or line break), at most 63
# bytes (63 ASCII characters, or 21 characters of up to 3 bytes claimed); or a blank / `#` / `--` item, which is
# ignored.
_NAME_PART = (r'(?:[A-Za-z0-9_$]{1,63}|[A-Za-z0-9_$\u0080-\ud7ff\ue000-\uffff]{1,21}'
              r'|"(?:[\x01-\x09\x0b\x0c\x0e-\x21\x23-\x7f]|""){1,63}"'
              r'|"(?:[\x01-\x09\x0b\x0c\x0e-\x21\x23-\ud7ff\ue000-\uffff]|""){1,21}")')
TABLE_NAME_ITEM_PATTERN = rf"^\s*(?:{_NAME_PART}(?:\.{_NAME_PART})?|#.*|--.*)?\s*$"
# Exactly one name, trimmed as pydantic trims (Unicode White_Space, not ECMA's `\s`): the review routes' `table`.
# Its unquoted non-ASCII characters leave out that white space too, so that a name the pattern accepts is still a
# name once trimmed; the review routes check the trimmed value against this same pattern.
_NON_ASCII_NOT_SPACE = (r"\u0080-\u0084\u0086-\u009f\u00a1-\u167f\u1681-\u1fff\u200b-\u2027\u202a-\u202e"
                        r"\u2030-\u205e\u2060-\u2fff\u3001-\ud7ff\ue000-\uffff")
_ONE_PART = _NAME_PART.replace(r"\u0080-\ud7ff\ue000-\uffff]", _NON_ASCII_NOT_SPACE + "]", 1)
TABLE_NAME_PATTERN = rf"^[{WHITE_SPACE}]*{_ONE_PART}(?:\.{_ONE_PART})?[{WHITE_SPACE}]*$"


def _name_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise fail("VALIDATION_ERROR", "table_names must be a list of table names")
    return value


class TableNamesRequest(RequestModel):
    """POST /data_pipeline/tasks/{task_id}/table-list. Each name is checked by the table-list rules
    (INVALID_TABLE_NAME names the item)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"table_names": ["bss_company", "public.bss_service_area"], "business_context": "高速公路服务区管理系统"}]})

    table_names: Annotated[list[Any], BeforeValidator(_name_list), WithJsonSchema({
        "type": "array", "items": {"type": "string", "pattern": TABLE_NAME_ITEM_PATTERN},
        "x-error-code": "INVALID_TABLE_NAME", "minItems": 1,
        "contains": {"type": "string", "pattern": r"^\s*[^\s#-]"},
        "examples": [["bss_company", "public.bss_service_area"]],
        "description": "`table` or `schema.table`; blank items and `#`/`--` items are ignored, at least one name "
                       "must remain"})]
    business_context: text(10_000) | None = None


class LogsParams(QueryModel):
    """GET /data_pipeline/tasks/{task_id}/logs."""

    limit: query_int(1, 1000) = Field(100, description="how many records")
    level: choice(LEVELS, upper=True) | None = Field(None, description="only this level (case-insensitive)")


class LogQueryRequest(RequestModel):
    """POST /data_pipeline/tasks/{task_id}/logs/query. Filters, all optional."""

    page: body_int(1) = 1
    page_size: body_int(1, 500) = 50
    level: choice(LEVELS, upper=True) | None = Field(None, description="case-insensitive")
    start_time: StartTime | None = None
    end_time: EndTime | None = None
    keyword: text(500) | None = Field(None, description="substring of the message, case-insensitive")
    logger_name: text(200) | None = Field(None, description="substring, case-insensitive")
    step_name: text(100) | None = None
    sort_by: choice(SORT_FIELDS) | None = "timestamp"
    sort_order: choice(SORT_ORDERS) | None = "desc"


# ---- database tools ---------------------------------------------------------------------------------------

class DatabaseTablesRequest(RequestModel):
    """POST /database/tables. Filters, all optional."""

    db_connection: DbConnection | None = None
    schema_names: text(1000) | None = Field(None, alias="schema", description="comma list, e.g. public,ods")
    table_name_pattern: text(200) | None = Field(None, description="`*` is a wildcard")

    @property
    def schemas(self) -> list[str]:
        return [s.strip() for s in (self.schema_names or "").split(",") if s.strip()]


class TableDdlRequest(RequestModel):
    """POST /database/table/ddl: one table, documented on the fly."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"table": "public.bss_company", "business_context": "高速公路服务区管理系统", "type": "both"}]})

    table: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)] = Field(
        description="`table` or `schema.table`")
    db_connection: DbConnection | None = None
    business_context: text(10_000) | None = None
    type: choice(OUTPUT_TYPES) | None = "both"


# ---- vector tables ----------------------------------------------------------------------------------------

class BackupsParams(QueryModel):
    """GET /data_pipeline/vector/backups."""

    task_id: TaskId | None = Field(None, description="only this task's backups")
    limit: query_int(1, 500) = Field(50, description="at most this many sets")


def _backup_ts(value: str, info: ValidationInfo) -> str:
    if not BACKUP_TS.match(value):
        raise fail("VALIDATION_ERROR", f"{info.field_name} must look like 20250627_143052")
    return value


_VECTOR_TABLE_NAME = "(?:" + "|".join(VECTOR_TABLES) + ")"
_VECTOR_TABLE_LIST = rf"^[\s,]*{_VECTOR_TABLE_NAME}(?:\s*,[\s,]*{_VECTOR_TABLE_NAME})*[\s,]*$"


def _vector_tables(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise fail("VALIDATION_ERROR", "tables must be a non-empty list of vector table names")
    unknown = [t for t in value if t not in VECTOR_TABLES]
    if unknown:
        raise fail("VALIDATION_ERROR", f"tables may only name {', '.join(VECTOR_TABLES)}; unknown: "
                                        f"{', '.join(unknown)}")
    return [t for t in VECTOR_TABLES if t in value]


class RestoreRequest(RequestModel):
    """POST /data_pipeline/vector/restore: a task's backup set back into the pgvector database."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"task_id": TASK_ID_EXAMPLE, "on_conflict": "skip"}]})

    task_id: TaskId
    timestamp: Annotated[str, StringConstraints(strip_whitespace=True, max_length=15), AfterValidator(_backup_ts),
                         WithJsonSchema({"type": "string", "pattern": r"^[0-9]{8}_[0-9]{6}$"}),
                         BLANK_IS_DEFAULT] | None = Field(None, description="default: the latest backup set")
    truncate_before_restore: bool | None = False
    tables: Annotated[list[str], BeforeValidator(_vector_tables), WithJsonSchema({"oneOf": [
        {"type": "array", "items": {"type": "string", "enum": list(VECTOR_TABLES)}, "minItems": 1},
        {"type": "string", "description": "comma list", "pattern": _VECTOR_TABLE_LIST}]})] | None = Field(
        None, description="default: every table of the set")
    on_conflict: choice(RESTORE_CONFLICT_MODES) | None = Field(
        "error", description="error: 409 when a backed-up id exists; skip: keep existing rows")
