"""A query that plans but finds nothing because its date filter lies outside the data (`CURRENT_DATE - 30` on
2022-23 data, a literal year the data does not reach).

`suspect_filters` compares each date/time filter of a query (catalog_check.date_filters) with the column's range:
`TableDoc.value_ranges` when ddl_generation recorded it, else one bounded `min()/max()` read. Only a suspect
query is then run, as `SELECT * FROM (<query>) LIMIT 1` on the validator's read-only session under its statement
timeout (sql_validation): no row, or an aggregate's one row over no row (every value NULL or 0), means it is
flagged and repaired like a failing one. Nothing else is executed.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql as pgsql

from chalicelib.pipeline.catalog_check import DateFilter, date_filters
from chalicelib.pipeline.models import TableDoc

logger = logging.getLogger(__name__)

PROBE_ALIAS = "data_pipeline_probe"


def instant(text: str | None) -> dt.datetime | None:
    """A date or timestamp as written in SQL or rendered by PostgreSQL (a time zone is ignored: the check is
    coarse, the probe query decides), or None."""
    if not text:
        return None
    cleaned = text.strip().replace("T", " ")
    for candidate in (cleaned[:19], cleaned[:16], cleaned[:10]):
        try:
            return dt.datetime.fromisoformat(candidate)
        except ValueError:
            continue
    return None


def outside(found: DateFilter, low: str, high: str, today: dt.date) -> str | None:
    """Why the filter can match no row of a column holding [low, high] (None when it may match some)."""
    lo, hi = instant(low), instant(high)
    if lo is None or hi is None:
        return None
    name = f"{found.doc.meta.ref.display_name}.{found.column}"
    data = f"the data's range is {low} … {high}"
    if found.relative_to_now:
        if found.op in (">", ">=", "=", "between") and hi.date() < today:
            return f"{name} {found.op} a window on the current date ({today.isoformat()}), but {data}"
        return None
    values = [instant(v) for v in found.values]
    if any(v is None for v in values):
        return None
    shown = " and ".join(found.values)
    first, last = values[0], values[-1]
    assert first is not None and last is not None
    empty = {
        ">": first >= hi, ">=": first > hi, "<": first <= lo, "<=": first < lo, "=": first < lo or first > hi,
        "between": last < lo or first > hi,
    }.get(found.op, False)
    return f"{name} {found.op} {shown} lies outside it: {data}" if empty else None


class RangeReader:
    """[min, max] of date/time columns: from the docs, else read once per column (bounded, read-only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: dict[tuple[str, str, str], tuple[str, str] | None] = {}

    def range_of(self, conn: psycopg.Connection, doc: TableDoc, column: str) -> tuple[str, str] | None:
        recorded = doc.value_ranges.get(column)
        if recorded and len(recorded) == 2 and all(recorded):
            return recorded[0], recorded[1]
        key = (doc.meta.ref.schema, doc.meta.ref.name, column)
        with self._lock:
            if key in self._read:
                return self._read[key]
        found = self._query(conn, doc, column)
        with self._lock:
            self._read[key] = found
        return found

    @staticmethod
    def _query(conn: psycopg.Connection, doc: TableDoc, column: str) -> tuple[str, str] | None:
        name = pgsql.Identifier(column)
        query = pgsql.SQL("SELECT min({})::text, max({})::text FROM {}").format(
            name, name, pgsql.Identifier(doc.meta.ref.schema, doc.meta.ref.name))
        try:
            with conn.cursor() as cur:
                cur.execute(query, binary=True)
                row = cur.fetchone()
        except psycopg.Error as exc:
            if exc.sqlstate is None or conn.closed:
                raise
            logger.info("date range not read", extra={"table": doc.meta.ref.display_name, "column": column,
                                                       "error": type(exc).__name__})
            return None
        if not row or row[0] is None or row[1] is None:
            return None
        return str(row[0]), str(row[1])


def suspect_filters(conn: psycopg.Connection, sql: str, docs: list[TableDoc], ranges: RangeReader,
                    today: dt.date | None = None) -> list[str]:
    """Why each date filter of `sql` can match nothing, for the filters that cannot ([] for a clean query)."""
    reasons: list[str] = []
    today = today or dt.date.today()
    for found in date_filters(sql, docs):
        span = ranges.range_of(conn, found.doc, found.column)
        reason = outside(found, span[0], span[1], today) if span else None
        if reason and reason not in reasons:
            reasons.append(reason)
    return reasons


def _nothing(value: Any) -> bool:
    return value is None or (isinstance(value, int | float | Decimal) and not isinstance(value, bool) and value == 0)


def returns_no_row(conn: psycopg.Connection, sql: str) -> bool | None:
    """True when the (already read-only-checked) query finds nothing, probed with LIMIT 1 on the validator's
    read-only session: no row, or the one row of an aggregate over no row (every value NULL or 0); None when
    that cannot be told (timeout, an error), which never flags it."""
    body = sql.strip().rstrip(";").strip()
    try:
        with conn.cursor() as cur:
            # The caller's text, already proved one read-only query by PostgreSQL's parser (sqltext).
            probe = pgsql.SQL("SELECT * FROM ({}) AS {} LIMIT 1").format(pgsql.SQL(body),  # type: ignore[arg-type]
                                                                          pgsql.Identifier(PROBE_ALIAS))
            cur.execute(probe, binary=True)
            row = cur.fetchone()
            return row is None or all(_nothing(value) for value in row)
    except psycopg.Error as exc:
        if exc.sqlstate is None or conn.closed:
            raise
        logger.info("empty-range probe gave no answer", extra={"error": type(exc).__name__,
                                                               "sqlstate": exc.sqlstate})
        return None


def empty_range_error(conn: psycopg.Connection, sql: str, docs: list[TableDoc], ranges: RangeReader,
                      today: dt.date | None = None) -> str | None:
    """The error text of a query whose date filter lies outside the data and that finds no row, else None."""
    reasons = suspect_filters(conn, sql, docs, ranges, today)
    if not reasons or not returns_no_row(conn, sql):
        return None
    return ("the query plans but returns no row: its date filter lies outside the data ("
            + "; ".join(reasons) + "); filter on dates inside that range")

