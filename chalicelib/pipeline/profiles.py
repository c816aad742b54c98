"""Value profiles of a table: a few distinct real values per column and the [min, max] of its date/time and numeric
columns (`TableDoc.column_values`, `TableDoc.value_ranges`), for prompts, heuristic filters and the empty-range check.

One read-only statement per table, under a statement timeout (PROFILE_TIMEOUT_MS, set with the statement):

- the columns are read from at most PROFILE_SCAN_ROWS rows (`LIMIT`; a table estimated above LARGE_TABLE_ROWS rows
  through `TABLESAMPLE SYSTEM`, so the rows come from all over the table), aggregated in the same statement: per
  value column its first PROFILE_VALUES distinct values (cut to PROFILE_VALUE_CHARS) and how many distinct values the
  rows held, per range column min() and max();
- the same statement reads the table's catalog statistics (`pg_stats`, present once the table was analyzed): when
  the rows read were not the whole table, the values are the statistics' most common values and the ranges are
  widened to the statistics' bounds (the histogram's first and last bound, the most common values).

So a table of up to PROFILE_SCAN_ROWS rows gets exact values and ranges, a larger one the statistics' view of it
(ANALYZE samples the whole table) merged with the rows read. Columns left out: binary, JSON/XML, geometric, text
search and vector types, arrays, composites and ranges (no single values to filter on), and obvious identifiers
(a single-column primary key, `id`, `…_id`, uuid): their values say nothing to a reader. A domain counts as its base
type, known from the Python type of its sampled values.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_INERROR

from chalicelib.pipeline.models import ColumnMeta, TableMeta

logger = logging.getLogger(__name__)

PROFILE_VALUES = 5  # distinct values kept per column
PROFILE_VALUE_CHARS = 80  # each cut to this many characters
PROFILE_SCAN_ROWS = 10_000  # rows read per table at most (min and max over all of them)
PROFILE_VALUE_ROWS = 1_000  # of those, the first this many give the distinct values
PROFILE_MAX_COLUMNS = 64  # value columns aggregated per table (a very wide table: its first ones)
PROFILE_TIMEOUT_MS = 3_000
LARGE_TABLE_ROWS = 100_000  # above this estimate the rows are read through TABLESAMPLE

NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric"})
TEMPORAL_TYPES = frozenset({"date", "timestamp", "timestamptz", "time", "timetz"})
_NO_VALUE_TYPES = frozenset({"bytea", "json", "jsonb", "xml", "point", "polygon", "line", "lseg", "box", "path",
                             "circle", "tsvector", "tsquery", "vector", "halfvec", "sparsevec", "geometry",
                             "geography", "raster", "oid", "uuid", "bit", "varbit", "txid_snapshot", "pg_lsn"})
_RANGE_PYTHON_TYPES = (int, float, Decimal, dt.date, dt.time)  # dt.datetime is a dt.date


@dataclass
class Profile:
    """What one statement learnt about a table: rendered values, raw [min, max] per range column."""

    values: dict[str, list[str]] = field(default_factory=dict)
    ranges: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    distinct: dict[str, int] = field(default_factory=dict)  # distinct values among the rows read
    rows_read: int = 0
    complete: bool = False  # the rows read were the whole table


# --------------------------------------------------------------------------------------------- time bound


def set_statement_timeout(conn: psycopg2.extensions.connection, value: str) -> str:
    """Set the session's statement_timeout, committed (a later rollback of a failed read must not undo it);
    returns the previous value. Only settings and reads happen on these connections: the commit writes nothing."""
    with conn.cursor() as cur:
        cur.execute("select current_setting('statement_timeout'), set_config('statement_timeout', %s, false)",
                    (value,))
        previous = cur.fetchone()[0]
    if not conn.autocommit:
        conn.commit()
    return previous


@contextmanager
def statement_timeout(conn: psycopg2.extensions.connection, milliseconds: int) -> Iterator[None]:
    """A session statement_timeout around the reads inside (the previous value restored after them, a failed
    transaction rolled back first, whether the connection autocommits or not)."""
    previous = set_statement_timeout(conn, str(milliseconds))
    try:
        yield
    finally:
        if not conn.closed:
            if conn.info.transaction_status == TRANSACTION_STATUS_INERROR:
                conn.rollback()
            set_statement_timeout(conn, previous)


# --------------------------------------------------------------------------------------------- columns


def is_obvious_id(meta: TableMeta, col: ColumnMeta) -> bool:
    """A column whose values identify rows rather than describe them."""
    name = col.name
    if len(meta.primary_key) == 1 and meta.primary_key[0] == name:
        return True
    lowered = name.lower()
    return lowered == "id" or lowered.endswith("_id") or (name.endswith(("Id", "ID")) and len(name) > 2) \
        or col.udt_name == "uuid"


def _profiled(col: ColumnMeta) -> bool:
    return col.type_kind in ("base", "enum", "domain") and col.udt_name.lstrip("_") not in _NO_VALUE_TYPES


def range_columns(meta: TableMeta, sampled: list[dict[str, Any]] | None = None) -> list[str]:
    """The columns that get a [min, max]: numeric and date/time base types; a domain when its sampled values are
    numbers, dates or times (`sampled`: raw rows, column -> Python value)."""
    chosen = []
    for col in meta.columns:
        if not _profiled(col) or is_obvious_id(meta, col):
            continue
        if col.type_kind == "base" and col.udt_name in NUMERIC_TYPES | TEMPORAL_TYPES:
            chosen.append(col.name)
        elif col.type_kind == "domain":
            seen = next((row[col.name] for row in sampled or [] if row.get(col.name) is not None), None)
            if isinstance(seen, _RANGE_PYTHON_TYPES) and not isinstance(seen, bool):
                chosen.append(col.name)
    return chosen


def value_columns(meta: TableMeta, ranged: list[str]) -> list[str]:
    """The columns that get a few distinct values: text-like, enum, boolean (ranged columns get their range)."""
    return [col.name for col in meta.columns
            if _profiled(col) and col.name not in ranged and not is_obvious_id(meta, col)][:PROFILE_MAX_COLUMNS]


# --------------------------------------------------------------------------------------------- the statement


def _statement(meta: TableMeta, values: list[str], ranged: list[str], sampled: bool, stats: bool) -> sql.Composable:
    picked = list(dict.fromkeys(values + ranged))
    items: list[sql.Composable] = [sql.SQL("count(*)")]
    for name in ranged:
        ident = sql.Identifier(name)
        items += [sql.SQL("min({})").format(ident), sql.SQL("max({})").format(ident)]
    for name in values:  # distinct values among the first PROFILE_VALUE_ROWS rows read, in byte order (fast)
        agg = sql.SQL('array_agg(distinct left({}::text, {}) collate "C") filter (where {} is not null and rn <= {})'
                      ).format(
            sql.Identifier(name), sql.Literal(PROFILE_VALUE_CHARS), sql.Identifier(name),
            sql.Literal(PROFILE_VALUE_ROWS))
        items += [sql.SQL("({})[1:{}]").format(agg, sql.Literal(PROFILE_VALUES)),
                  sql.SQL("coalesce(cardinality({}), 0)").format(agg)]
    if stats:
        items.append(sql.SQL(
            "(select json_object_agg(attname, json_build_array(most_common_vals::text::text[], "
            "histogram_bounds::text::text[])) from (select attname, most_common_vals, histogram_bounds from pg_stats "
            "where schemaname = {} and tablename = {} and attname = any({}) order by inherited) st)"
        ).format(sql.Literal(meta.ref.schema), sql.Literal(meta.ref.name), sql.Literal(picked)))
    else:
        items.append(sql.SQL("null"))
    source = sql.SQL(meta.ref.sql_name)
    if sampled:
        percent = min(100.0, max(0.01, PROFILE_SCAN_ROWS * 150.0 / max(meta.row_count, 1)))
        source = sql.SQL("{} tablesample system ({})").format(source, sql.Literal(round(percent, 4)))
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in picked)
    return sql.SQL("select {} from (select {}, row_number() over () as rn from {} limit {}) s").format(
        sql.SQL(", ").join(items), columns, source, sql.Literal(PROFILE_SCAN_ROWS))


def _parse_bound(text: str, like: Any) -> Any:
    """A statistics bound (text) as the Python type of `like` (a min/max the rows gave), or None."""
    try:
        if isinstance(like, bool):
            return None
        if isinstance(like, int | float | Decimal):
            value = Decimal(text)
            return value if value.is_finite() else None
        if isinstance(like, dt.datetime):
            value = dt.datetime.fromisoformat(text)
            return value if (value.tzinfo is None) == (like.tzinfo is None) else None
        if isinstance(like, dt.date):
            return dt.date.fromisoformat(text)
        if isinstance(like, dt.time):
            value = dt.time.fromisoformat(text)
            return value if (value.tzinfo is None) == (like.tzinfo is None) else None
    except (ValueError, InvalidOperation):
        return None
    return None


def _widen(low: Any, high: Any, texts: list[str]) -> tuple[Any, Any]:
    like = low if low is not None else high
    if like is None:
        return low, high
    for bound in (b for b in (_parse_bound(t, like) for t in texts) if b is not None):
        low = bound if low is None or bound < low else low
        high = bound if high is None or bound > high else high
    return low, high


def _execute_bounded(conn: psycopg2.extensions.connection, statement: sql.Composable) -> tuple:
    """The statement's one row under PROFILE_TIMEOUT_MS. Inside a transaction (psycopg2's default) in two round
    trips: a savepoint, `SET LOCAL statement_timeout` and the statement, then back to the savepoint (which undoes
    the setting, and a failure); on an autocommit connection around a session setting."""
    if conn.autocommit:
        with statement_timeout(conn, PROFILE_TIMEOUT_MS), conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchone()
    bounded = sql.SQL("savepoint data_pipeline_profile; set local statement_timeout = {}; ").format(
        sql.Literal(PROFILE_TIMEOUT_MS)) + statement
    try:
        with conn.cursor() as cur:
            cur.execute(bounded)
            return cur.fetchone()
    finally:
        if not conn.closed:
            with conn.cursor() as cur:
                cur.execute("rollback to savepoint data_pipeline_profile; release savepoint data_pipeline_profile")


def _read_profile(conn: psycopg2.extensions.connection, meta: TableMeta, values: list[str], ranged: list[str],
                  sampled: bool) -> Profile:
    # The statistics matter only when the rows read may not be the whole table (planning pg_stats costs ~1 ms).
    stats = sampled or not meta.row_count_exact or meta.row_count >= PROFILE_SCAN_ROWS // 2
    row = _execute_bounded(conn, _statement(meta, values, ranged, sampled, stats))
    count, rest = int(row[0]), list(row[1:])
    profile = Profile(rows_read=count, complete=count < PROFILE_SCAN_ROWS and not sampled)
    stats = rest.pop() or {}
    if isinstance(stats, str):
        stats = json.loads(stats)
    for name in ranged:
        low, high = rest.pop(0), rest.pop(0)
        mcv, histogram = (stats.get(name) or [None, None])[:2]
        if not profile.complete:
            low, high = _widen(low, high, [*(mcv or []), *(histogram[:1] + histogram[-1:] if histogram else [])])
        if low is not None and high is not None:
            profile.ranges[name] = (low, high)
    for name in values:
        found, distinct = rest.pop(0) or [], int(rest.pop(0))  # distinct: among PROFILE_VALUE_ROWS rows
        mcv = (stats.get(name) or [None])[0]
        if not profile.complete and mcv:
            found = [str(v)[:PROFILE_VALUE_CHARS] for v in mcv[:PROFILE_VALUES] if v is not None]
        if found:
            profile.values[name] = [str(v) for v in found]
            profile.distinct[name] = distinct
    return profile


def profile_table(conn: psycopg2.extensions.connection, meta: TableMeta,
                  sampled_rows: list[dict[str, Any]] | None = None) -> Profile:
    """The table's value profile (see the module docstring); an empty Profile when it has no column to profile or
    its statement fails or is stopped by the timeout (logged as a warning, never raised: a profile is an aid)."""
    ranged = range_columns(meta, sampled_rows)
    values = value_columns(meta, ranged)
    if not ranged and not values:
        return Profile()
    sampled = meta.row_count > LARGE_TABLE_ROWS and meta.kind in ("table", "partitioned")
    try:
        try:
            return _read_profile(conn, meta, values, ranged, sampled)
        except psycopg2.errors.QueryCanceled:
            raise
        except psycopg2.Error as exc:
            if not sampled:
                raise
            logger.info("tablesample failed, profiling a plain limit",
                        extra={"table": meta.ref.sql_name, "error": str(exc).strip()})
            return _read_profile(conn, meta, values, ranged, False)
    except psycopg2.Error as exc:
        logger.warning("value profile failed; no values or ranges for this table",
                       extra={"table": meta.ref.sql_name, "kind": meta.kind, "timeout_ms": PROFILE_TIMEOUT_MS,
                              "error": str(exc).strip()})
        return Profile()
