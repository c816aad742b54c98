"""Typed request models: every JSON body and query string of the API, validated at the edge.

One source per contract: the routes validate with these classes (chalicelib.api.operations) and the OpenAPI
document (chalicelib.api.openapi) is their JSON schema. The rules are the API's since its first version: `null`
means absent, a blank optional string means its default, strings are trimmed, numbers and booleans are never
coerced from strings in a JSON body, unknown fields are ignored. A failure is a 400 naming the field, with the
specific error code a field type carries (`x-error-code` in the schema).
"""
import functools
import re
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError

from chalicelib.config import STEP_NAMES
from chalicelib.errors import MissingStepName
from chalicelib.pipeline.vectors import RESTORE_CONFLICT_MODES, VECTOR_TABLES
from chalicelib.stores.tasks import TASK_STATUSES
from chalicelib.tasklog import LEVELS

EXECUTION_MODES = ("complete", "step")
OUTPUT_TYPES = ("ddl", "md", "both")
SORT_FIELDS = ("timestamp", "level", "logger", "step", "line_number")
SORT_ORDERS = ("asc", "desc")
TASK_ID_EXAMPLE = "task_20250627_143052"
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_BACKUP_TS = re.compile(r"^\d{8}_\d{6}$")
BLANK_IS_DEFAULT = "blank-is-default"  # Annotated marker: "" (or spaces) in this field means "use the default"


def _fail(code: str, message: str) -> PydanticCustomError:
    """A field error whose pydantic type is our API error code (chalicelib.api.operations maps it back)."""
    return PydanticCustomError(code, message)


# ---- field types ------------------------------------------------------------------------------------------

def text(max_length: int) -> Any:
    """A trimmed string of at most `max_length` characters; blank means the default."""
    return Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_length), BLANK_IS_DEFAULT]


def choice(values: tuple[str, ...] | list[str], *, code: str = "VALIDATION_ERROR", upper: bool = False) -> Any:
    """One of `values` (case-insensitive when `upper`); blank means the default. A value outside the set is
    `code`; a value that is not a string is a plain VALIDATION_ERROR."""

    def check(value: str, info: ValidationInfo) -> str:
        normal = value.upper() if upper else value
        if normal not in values:
            raise _fail(code, f"{info.field_name} must be one of: {', '.join(values)}")
        return normal

    schema: dict[str, Any] = {"type": "string", "enum": [*values, ""]}
    if code != "VALIDATION_ERROR":
        schema["x-error-code"] = code
    return Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(check), WithJsonSchema(schema),
                     BLANK_IS_DEFAULT]


def _time(value: str, info: ValidationInfo, *, end: bool) -> str:
    text_value = value.strip().replace("Z", "")
    for fmt in _TIME_FORMATS:
        try:
            moment = datetime.strptime(text_value, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d" and end:
            moment = moment.replace(hour=23, minute=59, second=59)
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    raise _fail("VALIDATION_ERROR", f"{info.field_name} must look like 2025-06-27T14:30:52")


_TIME_DOC = "`YYYY-MM-DDTHH:MM:SS`, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`"
# What _time accepts, as far as a regex can say it: real calendar days (29 February, accepted in leap years, is
# not claimed), hours, minutes, optional seconds, an optional trailing Z.
_MONTH_DAY = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
              r"|02-(?:0[1-9]|1[0-9]|2[0-8]))")
TIME_PATTERN = rf"^[1-9][0-9]{{3}}-{_MONTH_DAY}(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?)?Z?$"
StartTime = Annotated[str, AfterValidator(lambda v, i: _time(v, i, end=False)),
                      WithJsonSchema({"type": "string", "pattern": TIME_PATTERN, "description": _TIME_DOC,
                                      "examples": ["2025-06-27T14:30:52", "2025-06-27"]})]
EndTime = Annotated[str, AfterValidator(lambda v, i: _time(v, i, end=True)),
                    WithJsonSchema({"type": "string", "pattern": TIME_PATTERN,
                                    "description": _TIME_DOC + " (a bare date: its end)",
                                    "examples": ["2025-06-28T00:00:00", "2025-06-28"]})]


def _db_connection(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail("DATABASE_CONNECTION_ERROR", f"{info.field_name} must be a non-empty string")
    value = value.strip()
    if not value.lower().startswith(("postgresql://", "postgres://")):
        raise _fail("DATABASE_CONNECTION_ERROR", f"{info.field_name} must start with postgresql:// or postgres://")
    return value


DbConnection = Annotated[str, BeforeValidator(_db_connection), WithJsonSchema({
    "type": "string", "x-error-code": "DATABASE_CONNECTION_ERROR",
    # the scheme, then a database name after the first `/` (the host may sit in the query, as `?host=/socket`)
    "pattern": r"^\s*[Pp][Oo][Ss][Tt][Gg][Rr][Ee][Ss](?:[Qq][Ll])?://[^/?#]*/[^/?#\s]",
    "description": "postgresql://user:pass@host:port/db; default: the configured database. Never returned "
                   "unmasked; a malformed one is a 400 DATABASE_CONNECTION_ERROR"})]


def _task_id(value: str, info: ValidationInfo) -> str:
    if not _TASK_ID.match(value):
        raise _fail("VALIDATION_ERROR", f"{info.field_name} must be a task id like {TASK_ID_EXAMPLE}")
    return value


TaskId = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_task_id),
                   WithJsonSchema({"type": "string", "examples": [TASK_ID_EXAMPLE]})]


def _query_int(value: Any, info: ValidationInfo) -> Any:
    """Query strings hold text: Python's int() rules, as the API always read them."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise _fail("VALIDATION_ERROR", f"{info.field_name} must be an integer") from None
    return value


def query_int(minimum: int, maximum: int | None = None) -> Any:
    return Annotated[int, Field(ge=minimum, le=maximum), BeforeValidator(_query_int)]


def _integral(value: Any) -> Any:
    """JSON has one number type: 2.0 is the integer 2 (JSON Schema says so too); 2.5 and true stay errors."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def body_int(minimum: int, maximum: int | None = None) -> Any:
    return Annotated[int, Field(ge=minimum, le=maximum), BeforeValidator(_integral)]


def _has_marker(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return BLANK_IS_DEFAULT in annotation.__metadata__ or _has_marker(get_args(annotation)[0])
    return get_origin(annotation) in (Union, UnionType) and any(_has_marker(a) for a in get_args(annotation))


@functools.cache
def _blank_is_default_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names (and aliases) of the optional fields whose type says a blank string means the default."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        if not field.is_required() and (BLANK_IS_DEFAULT in field.metadata or _has_marker(field.annotation)):
            names.update({name, field.alias or name})
    return frozenset(names)


# ---- base classes -----------------------------------------------------------------------------------------

def _allows_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(o.get("type") == "null" for o in schema.get("anyOf", []))


class RequestModel(BaseModel):
    """A JSON body: strict types, unknown fields ignored, `null` = absent, blank optional strings = default."""

    model_config = ConfigDict(strict=True, extra="ignore")

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """Every optional field also admits `null` (it means absent), as the server accepts it."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        required = set(schema.get("required", []))
        for name, prop in list(schema.get("properties", {}).items()):
            if name not in required and not _allows_null(prop):
                outer = {k: prop.pop(k) for k in ("default", "title", "description", "examples") if k in prop}
                schema["properties"][name] = {"anyOf": [prop, {"type": "null"}], **outer}
        return schema

    @model_validator(mode="before")
    @classmethod
    def _absent_values(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        blank_ok = _blank_is_default_fields(cls)
        return {key: value for key, value in data.items() if value is not None
                and not (key in blank_ok and isinstance(value, str) and not value.strip())}


class QueryModel(RequestModel):
    """A query string: every value arrives as text; an empty value (`?limit=`) means the default."""

    @model_validator(mode="before")
    @classmethod
    def _empty_values(cls, data: Any) -> Any:
        return {k: v for k, v in (data or {}).items() if v != ""} if isinstance(data, dict) or data is None else data


# ---- tasks ------------------------------------------------------------------------------------------------

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
# bytes (21 characters of up to 3 bytes claimed); or a blank / `#` / `--` item, which is ignored.
_NAME_PART = (r'(?:[A-Za-z0-9_$]{1,63}|[A-Za-z0-9_$\u0080-\ud7ff\ue000-\uffff]{1,21}'
              r'|"(?:[\x01-\x09\x0b\x0c\x0e-\x21\x23-\ud7ff\ue000-\uffff]|""){1,21}")')
TABLE_NAME_ITEM_PATTERN = rf"^\s*(?:{_NAME_PART}(?:\.{_NAME_PART})?|#.*|--.*)?\s*$"


def _name_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise _fail("VALIDATION_ERROR", "table_names must be a list of table names")
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
    if not _BACKUP_TS.match(value):
        raise _fail("VALIDATION_ERROR", f"{info.field_name} must look like 20250627_143052")
    return value


_VECTOR_TABLE_NAME = "(?:" + "|".join(VECTOR_TABLES) + ")"
_VECTOR_TABLE_LIST = rf"^[\s,]*{_VECTOR_TABLE_NAME}(?:\s*,[\s,]*{_VECTOR_TABLE_NAME})*[\s,]*$"


def _vector_tables(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise _fail("VALIDATION_ERROR", "tables must be a non-empty list of vector table names")
    unknown = [t for t in value if t not in VECTOR_TABLES]
    if unknown:
        raise _fail("VALIDATION_ERROR", f"tables may only name {', '.join(VECTOR_TABLES)}; unknown: "
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
