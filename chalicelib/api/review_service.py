"""What the review routes do: validate one SQL on a task's database, read and save versions of its pair file,
edit a documented table's comments, count the vector rows.

Every SQL is checked by the path sql_validation uses (chalicelib.pipeline.validation.explain_sql: PostgreSQL's
parser proves one read-only query, then EXPLAIN in a read-only transaction over the extended protocol; never
executed) on the task's own database, its sealed password opened as the steps open it.
"""
from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import psycopg

from chalicelib.api import pair_versions
from chalicelib.api.review_models import SavePairsRequest, TableCommentsRequest, ValidateSqlRequest
from chalicelib.config import get_settings
from chalicelib.errors import (
    ColumnNotDocumented,
    DatabaseConnectionError,
    DatabaseHostNotAllowed,
    DataPipelineError,
    DdlCheckFailed,
    InvalidConnectionString,
    InvalidTableName,
    SqlValidationFailed,
    TableNotDocumented,
    ValidationError,
)
from chalicelib.pipeline import ddl_render, tablelist
from chalicelib.pipeline.db_pool import connect_extended
from chalicelib.pipeline.models import TableDoc, TableMeta, TableRef
from chalicelib.pipeline.names import TableName
from chalicelib.pipeline.sqltext import referenced_tables
from chalicelib.pipeline.validation import explain_sql
from chalicelib.pipeline.vector_layout import COLLECTION_TABLE, EMBEDDING_TABLE, collection_counts
from chalicelib.steps.ddl_generation import TABLE_DOCS
from chalicelib.stores.files import FileStore, TaskFiles
from chalicelib.stores.tasks import TaskStore
from chalicelib.tasklog import TaskLogger

LOGGER = "ReviewEditor"
COLLECTIONS = ("ddl", "documentation", "sql")


class SqlErrors(SqlValidationFailed):
    """SQL_VALIDATION_FAILED with the failing statements (`data.errors` of the answer)."""

    def __init__(self, message: str, errors: list[dict[str, Any]]):
        super().__init__(message, invalid_params=["pairs"])
        self.data = {"errors": errors}


def _task(task_id: str) -> dict[str, Any]:
    return TaskStore().get_task(task_id)


def _business_url(task: dict[str, Any]) -> str:
    url = get_settings().business_db_url_for(task.get("db_connection"))
    if not url:
        raise DatabaseConnectionError(
            "no database connection: the task has no db_connection and DATA_PIPELINE_DB_URL is not set")
    return url


@contextmanager
def _task_connection(url: str) -> Iterator[psycopg.Connection]:
    """A connection to the task's own database; one that does not answer is a 400 naming db_connection."""
    try:
        conn = connect_extended(url, application_name="data_pipeline_review")
    except (InvalidConnectionString, DatabaseHostNotAllowed):
        raise
    except DatabaseConnectionError as exc:
        raise InvalidConnectionString(f"the task's database does not answer: {exc.message}",
                                      invalid_params=["db_connection"]) from None
    with closing(conn):
        yield conn


def _table_names(sql: str) -> list[str]:
    return [f"{schema}.{name}" if schema else name for schema, name in referenced_tables(sql)]


def _explain_all(task: dict[str, Any], sqls: list[str]) -> list[str | None]:
    """PostgreSQL's error (None when valid) of each statement, over one connection to the task's database."""
    if not sqls:
        return []
    timeout = get_settings().statement_timeout_ms
    with _task_connection(_business_url(task)) as conn:
        return [explain_sql(conn, sql, timeout) for sql in sqls]


# ---- one SQL ----------------------------------------------------------------------------------------------

def validate_sql(task_id: str, body: ValidateSqlRequest) -> dict[str, Any]:
    error = _explain_all(_task(task_id), [body.sql])[0]
    return {"valid": error is None, "error": error, "tables": _table_names(body.sql)}


# ---- pair file versions -----------------------------------------------------------------------------------

def _version_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in ("version", "file_name", "created_at", "author", "summary", "change_log")}


def get_pairs(task_id: str, version: int | None) -> dict[str, Any]:
    _task(task_id)
    files = TaskFiles(task_id, FileStore())
    versions = pair_versions.load_versions(files)
    entry = versions.latest if version is None else versions.get(version)
    return {"file_name": entry["file_name"], "version": entry["version"],
            "latest_version": versions.latest["version"],
            "pairs": pair_versions.read_pairs(files, entry["file_name"]),
            "versions": [_version_view(v) for v in versions.versions]}


def save_pairs(task_id: str, body: SavePairsRequest) -> dict[str, Any]:
    task = _task(task_id)
    files = TaskFiles(task_id, FileStore())
    versions = pair_versions.load_versions(files)
    pair_versions.check_base(versions, body.base_version)
    before = pair_versions.read_pairs(files, versions.latest["file_name"])
    after = [{"question": p.question, "sql": p.sql} for p in body.pairs]
    changes = pair_versions.diff_pairs(before, after)
    if not changes:
        latest = versions.latest
        return {"version": latest["version"], "file_name": latest["file_name"], "changes": [], "written": False}
    checks = pair_versions.sql_to_check(changes)
    found = _explain_all(task, [sql for _, sql in checks])
    failing = [{"index": index, "sql": sql, "error": error} for (index, sql), error in zip(checks, found, strict=True)
               if error is not None]
    if failing:
        first = failing[0]
        raise SqlErrors(f"{len(failing)} of {len(checks)} edited or added SQL statement(s) failed validation; "
                        f"nothing was saved (pair {first['index']}: {first['error']})", failing)
    entry = pair_versions.save_version(files, versions, body.author, after, changes)
    with TaskLogger(task_id, logger_name=LOGGER, files=FileStore()) as task_log:
        task_log.info("pair file version saved", version=entry["version"], file=entry["file_name"],
                      author=body.author, summary=entry["summary"])
    return {"version": entry["version"], "file_name": entry["file_name"], "change_log": entry["change_log"],
            "summary": entry["summary"], "changes": changes, "written": True}


# ---- table comments ---------------------------------------------------------------------------------------

def _matches(written: TableName, ref: TableRef) -> int:
    """2: the exact spelling, 1: PostgreSQL's folding of it, 0: another table."""
    if (ref.schema, ref.name) == (written.schema, written.name):
        return 2
    return int(ref.schema in written.schema_candidates() and ref.name in written.name_candidates())


def _pick(written: TableName, items: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [(_matches(written, TableMeta.from_dict(item["meta"]).ref), item) for item in items]
    for score in (2, 1):
        found = [item for s, item in scored if s == score]
        if len(found) > 1:
            raise InvalidTableName(f"table {written.text} is ambiguous: name it exactly (quoted)",
                                   invalid_params=["table"])
        if found:
            return found[0]
    return None


def _find_doc(files: TaskFiles, written: TableName) -> tuple[TableDoc, str]:
    """(the TableDoc, the ddl_generation batch work file it is stored in)."""
    for name in files.iter_names(TABLE_DOCS):
        item = _pick(written, json.loads(files.get_text(name)).get("docs", []))
        if item is not None:
            return TableDoc.from_dict(item), name
    raise TableNotDocumented(f"table {written.text} is not documented in task {files.task_id} (run "
                             "ddl_generation with it in the table list)", invalid_params=["table"])


def _store_doc(files: TaskFiles, doc: TableDoc, where: str, texts: dict[str, str]) -> None:
    batch = json.loads(files.get_text(where))
    batch["docs"] = [doc.to_dict() if TableMeta.from_dict(i["meta"]).ref == doc.meta.ref else i
                     for i in batch.get("docs", [])]
    batch.setdefault("files", {}).update(texts)
    files.put_text(where, json.dumps(batch, ensure_ascii=False))


def _scratch_copy(doc: TableDoc, schema: str) -> TableDoc:
    meta = dataclasses.replace(doc.meta, ref=TableRef(schema, doc.meta.ref.name))
    return dataclasses.replace(doc, meta=meta)


def check_ddl_executes(url: str, doc: TableDoc, business_context: str) -> None:
    """Execute the table's DDL, moved into a scratch schema, in a transaction that is always rolled back
    (`pg_temp` when the role may not create schemas). DdlCheckFailed with PostgreSQL's error when it fails."""
    timeout = int(get_settings().statement_timeout_ms)
    with _task_connection(url) as conn:
        for schema in (f"dp_ddl_check_{uuid.uuid4().hex[:12]}", "pg_temp"):
            statement = ddl_render.render_ddl(_scratch_copy(doc, schema), business_context)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"BEGIN; SET LOCAL statement_timeout = {timeout}")
                    if schema != "pg_temp":
                        cur.execute(f'CREATE SCHEMA "{schema}"')
                    cur.execute(statement, binary=True)  # one statement only: the extended protocol
                conn.execute("ROLLBACK")
                return
            except psycopg.errors.InsufficientPrivilege:
                conn.execute("ROLLBACK")
                if schema == "pg_temp":
                    raise DdlCheckFailed("the DDL could not be checked: the role may create neither a schema nor "
                                         "a temporary table") from None
            except psycopg.Error as exc:
                if exc.sqlstate is None:
                    raise
                conn.execute("ROLLBACK")
                text = (exc.diag.message_primary or str(exc)).strip()
                raise DdlCheckFailed(f"the new DDL of {doc.meta.ref.display_name} does not execute: {text}",
                                     invalid_params=["table_comment", "column_comments"]) from None


def edit_table_comments(task_id: str, body: TableCommentsRequest) -> dict[str, Any]:
    task = _task(task_id)
    refs = tablelist.parse_table_names([body.table])
    if len(refs) != 1:
        raise ValidationError("table must name exactly one table", invalid_params=["table"])
    files = TaskFiles(task_id, FileStore())
    doc, where = _find_doc(files, refs[0])
    columns = {c.name for c in doc.meta.columns}
    unknown = sorted(set(body.column_comments) - columns)
    if unknown:
        raise ColumnNotDocumented(f"table {doc.meta.ref.display_name} has no column {', '.join(unknown)} in its "
                                  "documentation (nothing was written)", invalid_params=["column_comments"])
    if body.table_comment is not None:
        doc.table_comment = body.table_comment
    for column, comment in body.column_comments.items():
        if comment:
            doc.column_comments[column] = comment
        else:
            doc.column_comments.pop(column, None)
    context = (task.get("parameters") or {}).get("business_context") or task.get("business_context") or ""
    check_ddl_executes(_business_url(task), doc, context)
    stem = doc.meta.ref.file_stem
    texts = {f"{stem}.ddl": ddl_render.render_ddl(doc, context),
             f"{stem}_detail.md": ddl_render.render_md(doc, context)}
    for name, text in texts.items():
        files.put_text(name, text)
    _store_doc(files, doc, where, texts)
    with TaskLogger(task_id, logger_name=LOGGER, files=FileStore()) as task_log:
        task_log.info("table comments edited", table=doc.meta.ref.display_name,
                      table_comment=body.table_comment is not None, columns=sorted(body.column_comments))
    return {"table": doc.meta.ref.display_name, "files": list(texts), "ddl": texts[f"{stem}.ddl"],
            "md": texts[f"{stem}_detail.md"]}


# ---- vector counts ----------------------------------------------------------------------------------------

def vector_stats(task_id: str | None) -> dict[str, Any]:
    from chalicelib.pipeline import db

    task = _task(task_id) if task_id else {}
    url = get_settings().vector_db_url_for(task.get("db_connection"))
    if not url:
        raise DataPipelineError("the vector database is not configured (PGVECTOR_DB_URL)")
    with closing(db.connect(url)) as conn:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                        (COLLECTION_TABLE, EMBEDDING_TABLE))
            present = cur.fetchone()[0]
        counts = collection_counts(conn) if present else {}
    names = list(COLLECTIONS) + sorted(set(counts) - set(COLLECTIONS))
    collections = [{"name": name, "rows": int(counts.get(name, 0))} for name in names]
    return {"collections": collections, "table": EMBEDDING_TABLE, "total": sum(c["rows"] for c in collections),
            "database": db.mask_url(url)}
