"""The field types, validators and base classes of the request models (chalicelib.api.models): trimmed text,
choices, times, connection strings, task ids, integers in query strings and bodies, and the RequestModel /
QueryModel bases that carry the API's rules (see models.py)."""
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

EXECUTION_MODES = ("complete", "step")
OUTPUT_TYPES = ("ddl", "md", "both")
SORT_FIELDS = ("timestamp", "level", "logger", "step", "line_number")
SORT_ORDERS = ("asc", "desc")
TASK_ID_EXAMPLE = "task_20250627_143052"
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
BACKUP_TS = re.compile(r"^\d{8}_\d{6}$")
# What pydantic's strip_whitespace removes (Unicode White_Space), as a regex character-class body that ECMA-262,
# Python's `re` and Rust's `regex` read alike; ECMA's `\s` differs (it counts U+FEFF, not U+0085).
WHITE_SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
BLANK_IS_DEFAULT = "blank-is-default"  # Annotated marker: "" (or spaces) in this field means "use the default"


def fail(code: str, message: str) -> PydanticCustomError:
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
            raise fail(code, f"{info.field_name} must be one of: {', '.join(values)}")
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
    raise fail("VALIDATION_ERROR", f"{info.field_name} must look like 2025-06-27T14:30:52")


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
        raise fail("DATABASE_CONNECTION_ERROR", f"{info.field_name} must be a non-empty string")
    value = value.strip()
    if not value.lower().startswith(("postgresql://", "postgres://")):
        raise fail("DATABASE_CONNECTION_ERROR", f"{info.field_name} must start with postgresql:// or postgres://")
    return value


DbConnection = Annotated[str, BeforeValidator(_db_connection), WithJsonSchema({
    "type": "string", "x-error-code": "DATABASE_CONNECTION_ERROR",
    # the scheme, then a database name after the first `/` (the host may sit in the query, as `?host=/socket`)
    "pattern": r"^\s*[Pp][Oo][Ss][Tt][Gg][Rr][Ee][Ss](?:[Qq][Ll])?://[^/?#]*/[^/?#\s]",
    "description": "postgresql://user:pass@host:port/db; default: the configured database. Never returned "
                   "unmasked; a malformed one is a 400 DATABASE_CONNECTION_ERROR"})]


def _task_id(value: str, info: ValidationInfo) -> str:
    if not _TASK_ID.match(value):
        raise fail("VALIDATION_ERROR", f"{info.field_name} must be a task id like {TASK_ID_EXAMPLE}")
    return value


TaskId = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_task_id),
                   WithJsonSchema({"type": "string", "examples": [TASK_ID_EXAMPLE]})]


def _query_int(value: Any, info: ValidationInfo) -> Any:
    """Query strings hold text: Python's int() rules, as the API always read them."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise fail("VALIDATION_ERROR", f"{info.field_name} must be an integer") from None
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
