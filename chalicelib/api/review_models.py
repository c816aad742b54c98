"""Request and response models of the review routes (validate one SQL, versioned pair-file writes, table-comment
edits) and of the vector counts: chalicelib.api.review_routes declares them, the OpenAPI document shows them."""
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, WithJsonSchema

from chalicelib.api.model_fields import (
    BLANK_IS_DEFAULT,
    WHITE_SPACE,
    QueryModel,
    RequestModel,
    TaskId,
    body_int,
    fail,
    query_int,
)
from chalicelib.api.models import TABLE_NAME_PATTERN
from chalicelib.api.models_responses import Data

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text and UTF-8 files hold neither


def _storable(value: str, info: ValidationInfo) -> str:
    if _UNSTORABLE.search(value):
        raise fail("VALIDATION_ERROR", f"{info.field_name} must not contain NUL or unpaired surrogate characters")
    return value


# The same rules in the schema, in a regex that ECMA-262, Python's `re` and Rust's `regex` read alike (validators
# and generators use all three): no NUL anywhere and, where required, something besides the white space the
# trimming removes (model_fields.WHITE_SPACE). A lone surrogate cannot be stated in a pattern that every engine
# reads (Rust's strings cannot hold one); it is not text (RFC 7493 refuses such JSON), and the server refuses it
# with the same VALIDATION_ERROR.
STORABLE_PATTERN = r"^[^\x00]*$"
_STORABLE_TEXT_PATTERN = rf"^[^\x00]*[^\x00{WHITE_SPACE}][^\x00]*$"
_NO_NUL = "no NUL or unpaired surrogate characters"


def _clean(max_length: int) -> Any:
    """Trimmed, non-empty, at most `max_length` characters, no NUL / lone surrogate."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length),
                     AfterValidator(_storable),
                     WithJsonSchema({"type": "string", "minLength": 1, "maxLength": max_length,
                                     "pattern": _STORABLE_TEXT_PATTERN, "description": _NO_NUL})]


def _one_table_name(value: str, info: ValidationInfo) -> str:
    if not re.fullmatch(TABLE_NAME_PATTERN, value):
        raise fail("INVALID_TABLE_NAME", f"{info.field_name} must be one `table` or `schema.table` (each part at most "
                   "63 bytes, unquoted letters, digits, _, $ or non-ASCII, or double-quoted)")
    return value


def _comment(max_length: int) -> Any:
    """Trimmed, at most `max_length` characters (blank: see the field), no NUL / lone surrogate."""
    return Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_length),
                     AfterValidator(_storable),
                     WithJsonSchema({"type": "string", "maxLength": max_length, "pattern": STORABLE_PATTERN,
                                     "description": _NO_NUL})]


SqlText = _clean(100_000)
Question = _clean(10_000)


class ValidateSqlRequest(RequestModel):
    """POST /data_pipeline/tasks/{task_id}/sql/validate: one SQL, planned (never executed) on the task's database."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"sql": "SELECT count(*) FROM bss_company"}]})

    sql: SqlText


class PairItem(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    question: Question
    sql: SqlText


class PairsParams(QueryModel):
    """GET /data_pipeline/tasks/{task_id}/pairs."""

    version: query_int(1) | None = Field(None, description="default: the latest version")


class SavePairsRequest(RequestModel):
    """PUT /data_pipeline/tasks/{task_id}/pairs: the full new list (a pair left out is removed, new ones are added,
    changed ones edited); every added or edited SQL must pass the read-only EXPLAIN."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "base_version": 1, "author": "张三",
        "pairs": [{"question": "一共有多少家公司？", "sql": "SELECT count(*) FROM bss_company"}]}]})

    base_version: body_int(1) = Field(description="the version the edit started from (409 when not the latest)")
    author: _clean(100)
    pairs: list[PairItem] = Field(max_length=100_000)


class TableCommentsRequest(RequestModel):
    """POST /data_pipeline/tasks/{task_id}/tables/comments: new comments for one documented table."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "table": "public.bss_company", "table_comment": "公司信息表",
        "column_comments": {"company_name": "公司名称"}}]})

    table: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
                     AfterValidator(_one_table_name),
                     WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 300,
                                     "pattern": TABLE_NAME_PATTERN, "x-error-code": "INVALID_TABLE_NAME"})] = Field(
        description="`table` or `schema.table`, as ddl_generation documented it (the table-list name rules)")
    table_comment: Annotated[_comment(2000), BLANK_IS_DEFAULT] | None = Field(
        None, description="default (null or blank): unchanged")
    column_comments: dict[str, _comment(2000)] = Field(
        default_factory=dict, description="column -> new comment (an empty string removes it); a column the "
                                          "table's documentation lacks is a 409 COLUMN_NOT_DOCUMENTED")


class VectorStatsParams(QueryModel):
    """GET /data_pipeline/vector/stats."""

    task_id: TaskId | None = Field(None, description="the vector database of this task (default: the configured)")


# ---- answers ----------------------------------------------------------------------------------------------

class SqlValidation(Data):
    valid: bool
    error: str | None = Field(description="PostgreSQL's error (or why the SQL was refused before reaching it)")
    tables: list[str] = Field(description="the relations the SQL names")


class PairVersion(Data):
    version: int
    file_name: str
    created_at: str | None = None
    author: str | None = None
    summary: str | None = None


class PairFile(Data):
    file_name: str
    version: int
    pairs: list[dict[str, Any]]
    versions: list[PairVersion]


class PairChange(Data):
    op: str = Field(description="edit | add | remove")
    index: int = Field(description="position in the saved list (edit, add) or in the base version (remove)")
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class PairsSaved(Data):
    version: int
    file_name: str
    changes: list[PairChange]


class TableCommentsSaved(Data):
    table: str
    files: list[str]


class CollectionCount(Data):
    name: str
    rows: int


class VectorStats(Data):
    collections: list[CollectionCount]
    table: str
    total: int
