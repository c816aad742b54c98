"""sql_validation: prove each generated SQL is a single read-only query over the catalog's tables and columns that
PostgreSQL can plan and whose date filters lie where the data is.

A SQL that EXPLAINs is then checked against the task's introspected catalog (catalog_check: every table and
column it names resolves, so a table outside the task is caught too), and a query filtering a date/time column
outside the data's range is probed with a read-only `SELECT * FROM (…) LIMIT 1` (empty_range) and flagged when it
finds nothing. Either failure is repaired like an EXPLAIN error. Apart from that probe (and one bounded min/max
read of a column whose range the docs do not hold), nothing is ever executed.

Three locks, each enough on its own against a second statement:
1. PostgreSQL's own parser (pglast, in `sqltext`) proves one read-only query; rejected SQL never reaches the
   database.
2. `EXPLAIN` goes through the extended query protocol (psycopg 3, Parse/Bind/Execute), where PostgreSQL itself
   refuses more than one statement, in a read-only transaction with a statement timeout and
   `standard_conforming_strings` on (the quoting rules the parser of step 1 reads by).
3. The connection's role should have only SELECT (README, Security, "Read-only SQL").
Many statements share a connection and a few connections work in parallel. On each connection the EXPLAINs of a
chunk are pipelined (libpq pipeline mode: every statement its own Parse/Bind/Execute followed by a Sync, so each is
its own read-only transaction and one failure never aborts the next; the chunk costs one round trip), so
validation outruns a plain EXPLAIN loop while isolating every statement.
Failing SQL can be sent to the LLM for repair in rounds; every repair is checked again the same way.
"""
from __future__ import annotations

import logging
import selectors
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result
from psycopg.pq import TransactionStatus

from chalicelib import errors
from chalicelib.pipeline.catalog_check import unknown_objects
from chalicelib.pipeline.db_pool import ConnectionPool, connect_extended
from chalicelib.pipeline.empty_range import RangeReader, empty_range_error
from chalicelib.pipeline.models import QAPair, RepairRequest, TableDoc
from chalicelib.pipeline.sqltext import check_read_only, normalize_sql
from chalicelib.pipeline.validation_report import PairResult, ValidationReport

logger = logging.getLogger(__name__)

# --- EXPLAIN ---------------------------------------------------------------------------------------

# Our own fixed text (no caller's SQL in it), so it may use the simple protocol.
_SESSION = ("SET default_transaction_read_only = on; SET standard_conforming_strings = on; "
            "SET statement_timeout = {timeout_ms}")
_TRANSACTION = ("BEGIN READ ONLY; SET LOCAL standard_conforming_strings = on; "
                "SET LOCAL statement_timeout = {timeout_ms}")


def _format_pg_error(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = (diag.message_primary or "").strip()
    if not text:
        first = str(exc).strip().splitlines()
        text = first[0].strip() if first else type(exc).__name__
    if diag.message_detail:
        text += f" DETAIL: {diag.message_detail}"
    if diag.message_hint:
        text += f" HINT: {diag.message_hint}"
    return text


def _send_explain(cur: Any, sql: str) -> None:
    """`EXPLAIN <sql>` as one Parse/Bind/Execute (`binary=True` makes psycopg use PQsendQueryParams; without
    parameters it would use the simple protocol, which runs every statement of a string)."""
    cur.execute("EXPLAIN " + sql.strip(), binary=True)


def _explain_on(conn: psycopg.Connection, sql: str, timeout_ms: int | None) -> str | None:
    """EXPLAIN on an autocommit connection; None when valid, else PostgreSQL's error. The connection is
    always left idle (rolled back), so one failure never poisons the next statement.

    `timeout_ms` None: the session is already read-only with a statement timeout (`_configure_session`),
    so the statement is sent alone and runs as its own read-only transaction (one round trip).
    """
    try:
        with conn.cursor() as cur:
            if timeout_ms is not None:
                cur.execute(_TRANSACTION.format(timeout_ms=int(timeout_ms)))
            _send_explain(cur, sql)
            if timeout_ms is not None:
                cur.execute("ROLLBACK")
        return None
    except psycopg.Error as exc:
        if exc.sqlstate is None or conn.closed:  # the connection itself failed
            raise
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        return _format_pg_error(exc)


_POLL_SECONDS = 1.0  # a wait for the socket wakes up this often (the server's statement timeout bounds each one)


def _explain_pipelined(conn: psycopg.Connection, sqls: Sequence[str]) -> list[str | None]:
    """EXPLAIN every statement of `sqls` on a session set up by `_configure_session`, pipelined: None per valid
    statement, else PostgreSQL's error, in input order.

    Each `EXPLAIN <sql>` is sent as its own Parse/Bind/Execute (PQsendQueryParams: one statement only) followed by a
    Sync, so in the autocommit, read-only session each is its own transaction under the statement timeout and an
    error ends only its own (libpq marks nothing after a Sync as aborted). All are sent before any result is read:
    one round trip for the chunk. The socket is waited on with the GIL released (a blocking PQgetResult would hold
    it and stall the other validation threads); libpq reads while it cannot write, so a long chunk never deadlocks.

    A connection-level failure raises (psycopg.OperationalError) and leaves `conn` closed: its pipeline state is
    unknown, so it must never serve another statement.
    """
    if not sqls:
        return []
    pg = conn.pgconn
    if pg.transaction_status != pq.TransactionStatus.IDLE:
        raise psycopg.InterfaceError("the validation connection is not idle")
    encoding = conn.info.encoding
    finished = False
    blocking = pg.nonblocking
    pg.nonblocking = 1
    pg.enter_pipeline_mode()
    try:
        for sql in sqls:
            pg.send_query_params(("EXPLAIN " + sql.strip()).encode(encoding), None, result_format=1)
            pg.pipeline_sync()
        out: list[str | None] = []
        error: str | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(pg.socket, selectors.EVENT_READ)
            while len(out) < len(sqls):
                unsent = pg.flush()  # 1: some of the chunk is still to be written
                selector.modify(pg.socket, selectors.EVENT_READ | (selectors.EVENT_WRITE if unsent else 0))
                if not any(mask & selectors.EVENT_READ for _key, mask in selector.select(_POLL_SECONDS)):
                    continue
                pg.consume_input()
                while len(out) < len(sqls) and not pg.is_busy():
                    result = pg.get_result()
                    if result is None:  # the end of one statement's results; its Sync follows
                        continue
                    if result.status == pq.ExecStatus.FATAL_ERROR:
                        exc = error_from_result(result, encoding=encoding)
                        if exc.sqlstate is None:
                            raise psycopg.OperationalError(_format_pg_error(exc))
                        error = _format_pg_error(exc)
                    elif result.status == pq.ExecStatus.PIPELINE_SYNC:
                        out.append(error)
                        error = None
                    elif result.status != pq.ExecStatus.TUPLES_OK:
                        raise psycopg.OperationalError(
                            f"unexpected result of a pipelined EXPLAIN: {pq.ExecStatus(result.status).name}")
        pg.exit_pipeline_mode()
        finished = True
        return out
    finally:
        if finished:
            pg.nonblocking = blocking
        else:
            conn.close()


def _configure_session(conn: psycopg.Connection, timeout_ms: int) -> None:
    """A connection owned by the validator: autocommit, every transaction read-only, standard strings,
    statements time out."""
    conn.autocommit = True
    conn.execute(_SESSION.format(timeout_ms=int(timeout_ms)))


def explain_sql(conn: psycopg.Connection, sql: str, timeout_ms: int) -> str | None:
    """None when PostgreSQL can plan `sql`, else its error text. Never executes the query.

    `conn` is a psycopg 3 connection (the extended protocol). Runs `EXPLAIN` (never ANALYZE) in a read-only
    transaction with a local statement timeout and always rolls back, so one failure never poisons the next
    call on the same connection; the connection's own settings (autocommit) are restored. SQL that fails the
    read-only check is not sent at all. Connection-level failures (no SQLSTATE) propagate.
    """
    reason = check_read_only(sql)
    if reason:
        return f"rejected before reaching the database: {reason}"
    autocommit = conn.autocommit
    if not autocommit:
        conn.rollback()
        conn.autocommit = True
    try:
        return _explain_on(conn, sql, timeout_ms)
    finally:
        if not autocommit and not conn.closed:
            conn.autocommit = False


# --- validation with repair rounds -------------------------------------------------------------------

DEFAULT_CONCURRENCY = 4
# Statements per pipeline: one round trip each. Below this many per connection, opening another connection costs
# more than it saves.
PIPELINE_CHUNK = 25


class _Checker:
    """Read-only check + EXPLAIN for many statements over a small pool of connections; cached per SQL text.

    Each connection validates many statements. Its session is set up once (autocommit, every transaction
    read-only, statement timeout); the statements come in chunks of PIPELINE_CHUNK, whose EXPLAINs are pipelined
    (`_explain_pipelined`: each its own read-only transaction, a failing statement never poisons the next, one round
    trip per chunk). At most `concurrency` connections are open, each worker taking the next chunk; a connection that
    dies is replaced once. Results come back in input order.
    """

    def __init__(self, db_url: str, timeout_ms: int, concurrency: int = DEFAULT_CONCURRENCY,
                 docs: list[TableDoc] | None = None, complete_catalog: bool = False):
        self._timeout_ms = timeout_ms
        self._docs = list(docs or [])
        self._complete = complete_catalog
        self._ranges = RangeReader()
        self._concurrency = max(1, int(concurrency))
        # Autocommit sessions: nothing to roll back when a connection goes back to the pool.
        self._pool = ConnectionPool(db_url, self._concurrency, connect=self._connect, reset=None)
        self._lock = threading.Lock()
        self._cache: dict[str, str | None] = {}

    def check(self, sql: str) -> str | None:
        return self.check_many([sql])[0]

    def check_many(self, sqls: Sequence[str]) -> list[str | None]:
        todo = list(dict.fromkeys(s for s in sqls if s not in self._cache))
        if todo:
            chunks = [todo[i:i + PIPELINE_CHUNK] for i in range(0, len(todo), PIPELINE_CHUNK)]
            workers = min(self._concurrency, len(chunks))
            if workers == 1:
                self._work(iter(chunks))
            else:
                shared = iter(chunks)  # each worker takes the next chunk
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sql-validation") as pool:
                    for future in [pool.submit(self._work, shared) for _ in range(workers)]:
                        future.result()
        return [self._cache[s] for s in sqls]

    def _work(self, chunks: Any) -> None:
        conn = None
        try:
            while True:
                with self._lock:
                    chunk = next(chunks, None)
                if chunk is None:
                    return
                refused = {sql: reason for sql in chunk if (reason := check_read_only(sql))}
                # PostgreSQL's own error first (the exact text a repair needs); then what it accepts but the task's
                # catalog does not have (a table outside the task), then an empty date range.
                explained, conn = self._explain(conn, [sql for sql in chunk if sql not in refused])
                for sql in chunk:
                    if sql in refused:
                        result: str | None = f"not read-only: {refused[sql]}"
                    else:
                        result = explained[sql]
                        unknown = unknown_objects(sql, self._docs, complete=self._complete) if result is None else []
                        if unknown:
                            result = "names objects the catalog does not have: " + "; ".join(unknown)
                        elif result is None and self._docs:
                            result = empty_range_error(conn, sql, self._docs, self._ranges)
                    self._cache[sql] = result
        finally:
            if conn is not None:
                self._pool.release(conn)

    def _explain(self, conn: Any, sqls: list[str]) -> tuple[dict[str, str | None], Any]:
        for attempt in (1, 2):
            try:
                if conn is None:
                    conn = self._pool.get()
                return dict(zip(sqls, _explain_pipelined(conn, sqls), strict=True)), conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if conn is not None:
                    self._pool.discard(conn)
                conn = None
                if attempt == 2:
                    raise errors.DatabaseConnectionError(
                        f"lost the database connection during SQL validation: {type(exc).__name__}"
                    ) from exc
        return {}, conn  # unreachable

    def _connect(self, url: str) -> Any:
        conn = connect_extended(url, application_name="data_pipeline_validation")
        _configure_session(conn, self._timeout_ms)
        return conn

    def close(self) -> None:
        self._pool.close()


def validate_pairs(
    db_url: str,
    pairs: list[QAPair],
    *,
    llm: Any,
    docs: list[TableDoc],
    enable_repair: bool,
    max_rounds: int,
    timeout_ms: int,
    log: Any = logger,
    repair_batch_size: int = 20,
    concurrency: int = DEFAULT_CONCURRENCY,
    start_index: int = 0,
    complete_catalog: bool = False,
) -> ValidationReport:
    """Check every pair against the catalog (`docs`; none: not checked), EXPLAIN it and probe an empty date
    range; with repair, send failing pairs to `llm.repair_sql` in rounds.

    An LLM that cannot repair (a refused request, unusable answers) stops the repair and the report says why
    (`repair_error`); a throttled or unavailable one (LLMRateLimited, LLMTimeout) raises, so the batch is
    retried later instead of dropping pairs that a repair could have kept.

    Statements are checked over at most `concurrency` connections, each statement in its own read-only
    transaction. `start_index` numbers the results when `pairs` is one batch of a longer list. With
    `complete_catalog`, `docs` are every table the pairs may name even when empty (a validation batch's docs).
    """
    started = time.monotonic()
    checker = _Checker(db_url, timeout_ms, concurrency, docs, complete_catalog)
    report = ValidationReport(results=[], repair_enabled=enable_repair, max_rounds=max_rounds if enable_repair else 0)
    try:
        checked = checker.check_many([pair.sql for pair in pairs])
        for offset, (pair, error) in enumerate(zip(pairs, checked, strict=True)):
            report.results.append(PairResult(
                index=start_index + offset, question=pair.question, original_sql=pair.sql, final_sql=pair.sql,
                valid_before=error is None, valid_after=error is None, error=error, original_error=error,
            ))
        invalid = sum(not r.valid_before for r in report.results)
        log.info("SQL validation: {valid}/{total} valid before repair",
                 extra={"valid": len(pairs) - invalid, "total": len(pairs)})
        if enable_repair and llm is not None:
            _run_repair_rounds(report, checker, llm, docs, max_rounds, repair_batch_size, log)
    finally:
        checker.close()
    for r in report.results:
        r.dropped = not r.valid_after
    report.duration_seconds = round(time.monotonic() - started, 3)
    counts = report.counts()
    log.info("SQL validation finished: {valid_after}/{total} valid, {repaired} repaired, {dropped} unrepairable, "
             "{rounds} round(s)", extra={**{k: counts[k] for k in ("valid_after", "total", "repaired", "dropped")},
                                          "rounds": report.rounds_used})
    return report


def _run_repair_rounds(
    report: ValidationReport, checker: _Checker, llm: Any, docs: list[TableDoc], max_rounds: int,
    batch_size: int, log: Any,
) -> None:
    for round_no in range(1, max_rounds + 1):
        failing = [r for r in report.results if not r.valid_after]
        if not failing:
            return
        report.rounds_used = round_no
        log.info("SQL repair round {round}/{max_rounds}: {failing} failing statement(s)",
                 extra={"round": round_no, "max_rounds": max_rounds, "failing": len(failing)})
        answers: dict[int, str] = {}
        for start in range(0, len(failing), max(1, batch_size)):
            batch = failing[start:start + batch_size]
            requests = [RepairRequest(index=r.index, question=r.question, sql=_current_sql(r), error=r.error or "",
                                      attempts=_previous_attempts(r)) for r in batch]
            try:
                answers.update(llm.repair_sql(requests, docs) or {})
            except (errors.LLMRateLimited, errors.LLMTimeout):
                raise  # retrying can fix it: the state machine retries the batch, no pair is dropped for it
            except errors.LLMError as exc:
                report.repair_error = f"{type(exc).__name__}: {exc}"
                log.warning("SQL repair stopped: the LLM failed ({error})", extra={"error": report.repair_error})
                _record_round(failing, answers, checker, round_no)
                return
        _record_round(failing, answers, checker, round_no)


def _current_sql(result: PairResult) -> str:
    return result.attempts[-1]["sql"] if result.attempts else result.original_sql


def _previous_attempts(result: PairResult) -> list[dict[str, Any]]:
    """The SQL tried before the current one, with its error (the original first), for the repair prompt."""
    if not result.attempts:
        return []
    tried = [{"sql": result.original_sql, "error": result.original_error or ""}]
    tried += [{"sql": a["sql"], "error": a.get("error") or ""} for a in result.attempts[:-1]]
    seen: set[str] = {_current_sql(result)}
    unique = []
    for attempt in tried:
        if attempt["sql"] not in seen:
            seen.add(attempt["sql"])
            unique.append(attempt)
    return unique


def _record_round(failing: list[PairResult], answers: dict[int, str], checker: _Checker, round_no: int) -> None:
    proposals: dict[int, str] = {}
    for r in failing:
        raw = answers.get(r.index)
        if isinstance(raw, str) and raw.strip():
            proposals[r.index] = normalize_sql(raw)
    checked = dict(zip(proposals.values(), checker.check_many(list(proposals.values())), strict=True))
    for r in failing:
        r.rounds = round_no
        new_sql = proposals.get(r.index)
        if new_sql is None:
            r.attempts.append({"round": round_no, "sql": _current_sql(r), "error": "no repair proposed"})
            continue
        error = checked[new_sql]
        r.attempts.append({"round": round_no, "sql": new_sql, "error": error})
        if error is None:
            r.final_sql, r.valid_after, r.repaired, r.error = new_sql, True, True, None
        else:
            r.error = error
