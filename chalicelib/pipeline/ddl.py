"""ddl_generation for one table: sample rows, merge comments (recording who wrote each), confirm enums.

Rendering (`.ddl`, `_detail.md`, the API views) is in chalicelib.pipeline.ddl_render, re-exported here.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from decimal import Decimal
from typing import Any, Protocol

import psycopg2
from psycopg2 import sql

from chalicelib.pipeline import profiles
from chalicelib.pipeline.ddl_render import (  # noqa: F401  (the module's public rendering API)
    describe_table,
    fields,
    is_chinese,
    render_ddl,
    render_md,
    short_type,
    table_info,
)
from chalicelib.pipeline.models import CommentSuggestion, TableDoc, TableMeta
from chalicelib.pipeline.text import collapse_whitespace

logger = logging.getLogger(__name__)

MAX_VALUE_CHARS = 100
# Tables estimated above this many rows are sampled with TABLESAMPLE and enum checks read a bounded prefix.
LARGE_TABLE_ROWS = 100_000
ENUM_SCAN_ROWS = 200_000
# Reading a view (or a foreign table) runs its query: every read of one is bounded in rows and in time.
VIEW_READ_TIMEOUT_MS = 5_000
# Types whose values have no equality or are not meaningful as categories.
_NO_ENUM_TYPES = {"json", "xml", "bytea", "point", "polygon", "line", "lseg", "box", "path", "circle", "tsvector",
                  "vector", "jsonb"}


class CommentSuggester(Protocol):
    """The part of the LLM provider protocol (chalicelib.pipeline.ports.LLMProvider) this module uses.

    `kind` ("llm" or "heuristic") says who writes the comments; a provider without one is taken as an LLM."""

    def suggest_table_comments(
        self, meta: TableMeta, samples: list[dict], business_context: str
    ) -> CommentSuggestion: ...


# --------------------------------------------------------------------------------------------- values


def render_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str | None:
    """A database value as display text (None stays None), cut to `limit` characters."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        text = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    elif isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, bytes | bytearray | memoryview):
        text = f"<{len(bytes(value))} bytes>"
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _read(conn: psycopg2.extensions.connection, query: sql.Composable, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _select_list(meta: TableMeta) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c.name) for c in meta.columns)


def _runs_a_query(meta: TableMeta) -> bool:
    """Reading a view runs its query, reading a foreign table reaches another server: bound those reads."""
    return meta.kind in ("view", "foreign")


@contextmanager
def _time_bound(conn: psycopg2.extensions.connection, meta: TableMeta) -> Iterator[None]:
    """For a view or foreign table, a session statement_timeout of VIEW_READ_TIMEOUT_MS around the reads (the
    previous value restored after them, whether the connection autocommits or not); tables are not bounded."""
    if not _runs_a_query(meta):
        yield
        return
    with profiles.statement_timeout(conn, VIEW_READ_TIMEOUT_MS):
        yield


_set_statement_timeout = profiles.set_statement_timeout


# --------------------------------------------------------------------------------------------- sampling


def sample_rows(conn: psycopg2.extensions.connection, meta: TableMeta, limit: int) -> list[dict]:
    """Up to `limit` rows, values rendered as strings (None kept). Big tables are sampled with TABLESAMPLE.

    A view or foreign table is read with LIMIT under a statement timeout: when its query takes longer, the
    doc has no samples (logged as a warning), never a long scan."""
    return render_rows(sample_raw_rows(conn, meta, limit))


def render_rows(rows: list[dict[str, Any]]) -> list[dict[str, str | None]]:
    return [{name: render_value(v) for name, v in row.items()} for row in rows]


def sample_raw_rows(conn: psycopg2.extensions.connection, meta: TableMeta, limit: int) -> list[dict[str, Any]]:
    """`sample_rows` before rendering: column -> the driver's Python value."""
    if limit <= 0 or not meta.columns:
        return []
    if not _runs_a_query(meta):
        return _sample_rows(conn, meta, limit)
    try:
        with _time_bound(conn, meta):
            return _sample_rows(conn, meta, limit)
    except psycopg2.errors.QueryCanceled as exc:
        logger.warning("sampling stopped by the statement timeout; no sample rows",
                       extra={"table": meta.ref.sql_name, "kind": meta.kind, "timeout_ms": VIEW_READ_TIMEOUT_MS,
                              "error": str(exc).strip()})
        return []


def _sample_rows(conn: psycopg2.extensions.connection, meta: TableMeta, limit: int) -> list[dict[str, Any]]:
    table = sql.SQL(meta.ref.sql_name)
    rows: list[tuple] = []
    if meta.row_count > LARGE_TABLE_ROWS and meta.kind in ("table", "partitioned"):
        percent = min(100.0, max(0.01, limit * 20 * 100.0 / meta.row_count))
        try:
            rows = _read(conn, sql.SQL("select {} from {} tablesample system ({}) limit %s").format(
                _select_list(meta), table, sql.Literal(percent)), (limit,))
        except psycopg2.Error as exc:
            if not conn.autocommit:
                conn.rollback()
            logger.info("tablesample failed, using a plain limit", extra={"table": meta.ref.sql_name,
                                                                          "error": str(exc).strip()})
            rows = []
    if len(rows) < limit:
        rows = _read(conn, sql.SQL("select {} from {} limit %s").format(_select_list(meta), table), (limit,))
    names = [c.name for c in meta.columns]
    return [dict(zip(names, row, strict=True)) for row in rows]


# --------------------------------------------------------------------------------------------- enums


def confirm_enums(
    conn: psycopg2.extensions.connection, meta: TableMeta, candidates: list[str], max_distinct: int
) -> dict[str, list[str]]:
    """Candidate columns that really hold at most `max_distinct` distinct non-null values, with those values.

    Big tables, views and foreign tables are checked on a bounded prefix of rows, never with a full scan; a view
    or foreign table also under a statement timeout (a column whose check is stopped is not confirmed).
    """
    with _time_bound(conn, meta):
        return _confirm_enums(conn, meta, candidates, max_distinct)


def _confirm_enums(
    conn: psycopg2.extensions.connection, meta: TableMeta, candidates: list[str], max_distinct: int
) -> dict[str, list[str]]:
    confirmed: dict[str, list[str]] = {}
    table = sql.SQL(meta.ref.sql_name)
    for name in dict.fromkeys(candidates):
        col = meta.column(name)
        if col is None or col.udt_name.lstrip("_") in _NO_ENUM_TYPES or col.type_kind == "array":
            continue
        ident = sql.Identifier(name)
        if meta.row_count > ENUM_SCAN_ROWS or not meta.row_count_exact:
            source = sql.SQL("(select {} from {} limit {}) s").format(ident, table, sql.Literal(ENUM_SCAN_ROWS))
        else:
            source = table
        query = sql.SQL("select distinct {} from {} where {} is not null order by 1 limit %s").format(
            ident, source, ident)
        try:
            values = [row[0] for row in _read(conn, query, (max_distinct + 1,))]
        except psycopg2.Error as exc:
            if not conn.autocommit:
                conn.rollback()
            logger.warning("enum check failed", extra={"table": meta.ref.sql_name, "column": name,
                                                       "error": str(exc).strip()})
            continue
        if not values or len(values) > max_distinct:
            continue
        confirmed[name] = [render_value(v) or "" for v in values]
    return confirmed


# --------------------------------------------------------------------------------------------- merge


def _match_columns(meta: TableMeta, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map suggested names to real column names (exact first, then case-insensitive); return unknown ones."""
    exact = {c.name for c in meta.columns}
    folded: dict[str, str] = {}
    for c in meta.columns:
        folded.setdefault(c.name.casefold(), c.name)
    matched: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        key = str(name).strip().strip('"')
        if key in exact:
            matched[name] = key
        elif key.casefold() in folded:
            matched[name] = folded[key.casefold()]
        else:
            unknown.append(str(name))
    return matched, unknown


def provider_kind(provider: Any) -> str:
    """"heuristic" or "llm": who writes the comments a provider suggests (its `kind`; "llm" when it has none)."""
    return "heuristic" if getattr(provider, "kind", "llm") == "heuristic" else "llm"


def count_comment_sources(doc: TableDoc) -> dict[str, int]:
    """How many kept comments each source wrote: `{"database": 2, "heuristic": 5}` (sources in first-seen order)."""
    sources = list(doc.comment_sources.values())
    return {source: sources.count(source) for source in dict.fromkeys(sources)}


def merge_comments(meta: TableMeta, suggestion: CommentSuggestion, source: str = "llm"
                   ) -> tuple[str | None, dict[str, str], dict[str, str], list[str]]:
    """(table_comment, column_comments, comment_sources, enum candidates): database comments win.

    `source` ("llm" or "heuristic") is who made the suggestion; each kept comment's source is "database" when
    the database already had it, else `source`."""
    sources: dict[str, str] = {}
    table_comment = meta.comment
    if table_comment:
        sources[""] = "database"
    elif isinstance(suggestion.table_comment, str) and suggestion.table_comment.strip():
        table_comment = collapse_whitespace(suggestion.table_comment)
        sources[""] = source

    suggested = {k: v for k, v in (suggestion.column_comments or {}).items()
                 if isinstance(v, str) and v.strip()}
    matched, unknown = _match_columns(meta, list(suggested))
    if unknown:
        logger.warning("the {provider} provider commented columns that do not exist; dropped",
                       extra={"table": meta.ref.sql_name, "provider": source, "columns": unknown})
    from_llm: dict[str, str] = {}
    for key, column in matched.items():
        # An exact-name suggestion beats a case-insensitive one for the same column.
        if column not in from_llm or key == column:
            from_llm[column] = collapse_whitespace(suggested[key])

    comments: dict[str, str] = {}
    for col in meta.columns:
        if col.comment:
            comments[col.name] = col.comment
            sources[col.name] = "database"
        elif col.name in from_llm:
            comments[col.name] = from_llm[col.name]
            sources[col.name] = source

    enum_matched, enum_unknown = _match_columns(meta, [str(c) for c in (suggestion.enum_candidates or [])])
    if enum_unknown:
        logger.warning("the {provider} provider named enum columns that do not exist; dropped",
                       extra={"table": meta.ref.sql_name, "provider": source, "columns": enum_unknown})
    candidates = list(dict.fromkeys(enum_matched.values()))
    return table_comment, comments, sources, candidates


def fully_commented(meta: TableMeta) -> bool:
    """The table and every column already have a database comment (which wins over any suggestion)."""
    return bool(meta.comment) and all(col.comment for col in meta.columns)


def profile_enum_candidates(meta: TableMeta, profile: profiles.Profile, max_distinct: int) -> list[str]:
    """Value columns whose rows read held at most `max_distinct` distinct values, each repeated (fewer distinct
    values than rows): the candidates confirm_enums checks when no provider was asked."""
    return [name for name, count in profile.distinct.items()
            if 0 < count <= max_distinct and count < min(profile.rows_read, profiles.PROFILE_VALUE_ROWS)
            and (col := meta.column(name)) is not None and col.udt_name != "bool"]


def build_table_doc(
    conn: psycopg2.extensions.connection | None,
    meta: TableMeta,
    llm: CommentSuggester,
    business_context: str,
    *,
    sample_limit: int = 20,
    enum_max_distinct: int = 20,
    lease: Callable[[], AbstractContextManager[psycopg2.extensions.connection]] | None = None,
) -> TableDoc:
    """Samples and the value profile + one LLM call + enum confirmation for one table. PostgreSQL enum columns need
    no confirming. A language model is not asked about a table whose comment and column comments all come from
    the database (they win anyway): its enum candidates then come from the value profile.

    `lease`, when given, lends a connection for each database phase (the samples and profile before the LLM call,
    the enum confirmation after it), so that no connection is held while the model answers; else `conn` serves
    throughout."""
    use = lease or (lambda: nullcontext(conn))
    with use() as phase_conn:
        raw = sample_raw_rows(phase_conn, meta, sample_limit)
        profile = profiles.profile_table(phase_conn, meta, raw)
    samples = render_rows(raw)
    source = provider_kind(llm)
    if source == "llm" and fully_commented(meta):
        logger.info("every comment is in the database; the model is not asked", extra={"table": meta.ref.sql_name})
        suggestion = CommentSuggestion(table_comment=None,
                                       enum_candidates=profile_enum_candidates(meta, profile, enum_max_distinct))
    else:
        suggestion = llm.suggest_table_comments(meta, samples, business_context or "")
    table_comment, comments, sources, candidates = merge_comments(meta, suggestion, source)
    enums: dict[str, list[str]] = {}
    for col in meta.columns:
        if col.type_kind == "enum" and col.enum_values:
            enums[col.name] = list(col.enum_values)
    to_check = [c for c in candidates if c not in enums]
    if to_check:
        with use() as phase_conn:
            enums.update(confirm_enums(phase_conn, meta, to_check, enum_max_distinct))
    # Keep the table's column order.
    enums = {c.name: enums[c.name] for c in meta.columns if c.name in enums}
    return TableDoc(
        meta=meta,
        table_comment=table_comment,
        column_comments=comments,
        comment_sources=sources,
        enums=enums,
        samples=samples,
        column_values=dict(profile.values),
        value_ranges={name: [render_value(low) or "", render_value(high) or ""]
                      for name, (low, high) in profile.ranges.items()},
    )
