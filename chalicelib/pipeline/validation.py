"""sql_validation: prove each generated SQL is a single read-only query that PostgreSQL can plan.

Nothing is ever executed: a lexical read-only check runs first (rejected SQL never reaches the
database), then `EXPLAIN` inside a read-only transaction with a statement timeout, always rolled back.
Failing SQL can be sent to the LLM for repair in rounds; every repair is checked again the same way.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg2

from chalicelib import errors
from chalicelib.pipeline.db import connect
from chalicelib.pipeline.models import QAPair, RepairRequest, TableDoc

logger = logging.getLogger(__name__)

_READ_ONLY_STARTS = frozenset({"select", "with", "values", "table"})
_DML_WORDS = frozenset({"insert", "update", "delete", "merge"})
# Statements that may not appear anywhere in a query (they can only sneak in via a second statement or
# a data-modifying CTE, both rejected, but naming them gives a clearer reason).
_OTHER_WRITE_WORDS = frozenset({"truncate", "drop", "create", "alter", "grant", "revoke", "vacuum", "reindex"})
# Functions with side effects (sleeping, file/large-object access, remote SQL, backend signals, settings,
# sequences, advisory locks, running SQL given as text).
_SIDE_EFFECT_FUNCTIONS = frozenset({
    "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
    "pg_rotate_logfile", "pg_log_backend_memory_contexts", "set_config", "nextval", "setval",
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir",
    "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_file_write", "pg_file_rename", "pg_file_unlink",
    "pg_notify", "pg_create_restore_point", "pg_switch_wal", "pg_promote", "pg_backup_start", "pg_backup_stop",
    "pg_start_backup", "pg_stop_backup", "pg_logical_emit_message", "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot", "pg_drop_replication_slot", "pg_replication_origin_create",
    "pg_import_system_collations", "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
    "cursor_to_xml", "cursor_to_xmlschema", "txid_current", "pg_current_xact_id", "pg_stat_reset",
    "pg_stat_reset_shared", "pg_stat_reset_single_table_counters", "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru", "pg_stat_reset_replication_slot", "pg_stat_reset_subscription_stats",
})
_SIDE_EFFECT_PREFIXES = ("lo_", "dblink", "pg_advisory", "pg_try_advisory", "pg_stat_reset")

_IDENT_START = re.compile(r"[A-Za-z_\u0080-\uffff]")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$\u0080-\uffff]")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")


class _UnterminatedError(ValueError):
    pass


@dataclass(frozen=True)
class _Token:
    kind: str  # "word" | "qident" | "string" | "number" | "op" | "ws" | "comment" | "param"
    text: str


def _tokenize(sql: str) -> list[_Token]:
    """Split SQL into tokens the way PostgreSQL's lexer sees them (comments, literals, quoted names)."""
    tokens: list[_Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if c.isspace():
            j = i + 1
            while j < n and sql[j].isspace():
                j += 1
            tokens.append(_Token("ws", sql[i:j]))
            i = j
        elif c == "-" and nxt == "-":
            j = sql.find("\n", i)
            j = n if j < 0 else j
            tokens.append(_Token("comment", sql[i:j]))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise _UnterminatedError("unterminated /* comment")
            tokens.append(_Token("comment", sql[i:j]))
            i = j
        elif c == "'":
            # E'…' strings allow backslash escapes; the prefix letter is the previous word token.
            prev = tokens[-1] if tokens else None
            backslash = prev is not None and prev.kind == "word" and prev.text.lower() == "e"
            j = _end_of_quoted(sql, i, "'", backslash)
            if prev is not None and prev.kind == "word" and prev.text.lower() in {"e", "b", "x", "n", "u&"}:
                tokens[-1] = _Token("string", prev.text + sql[i:j])
            else:
                tokens.append(_Token("string", sql[i:j]))
            i = j
        elif c == '"':
            j = _end_of_quoted(sql, i, '"', False)
            tokens.append(_Token("qident", sql[i + 1:j - 1].replace('""', '"')))
            i = j
        elif c == "$":
            m = _DOLLAR_TAG.match(sql, i)
            if m:
                end = sql.find(m.group(0), m.end())
                if end < 0:
                    raise _UnterminatedError("unterminated dollar-quoted string")
                j = end + len(m.group(0))
                tokens.append(_Token("string", sql[i:j]))
                i = j
            else:
                j = i + 1
                while j < n and sql[j].isdigit():
                    j += 1
                tokens.append(_Token("param" if j > i + 1 else "op", sql[i:j]))
                i = j
        elif _IDENT_START.match(c):
            j = i + 1
            while j < n and _IDENT_CHAR.match(sql[j]):
                j += 1
            word = sql[i:j]
            if word.lower() == "u" and sql.startswith("&'", j):
                word, j = sql[i:j + 1], j + 1
            tokens.append(_Token("word", word))
            i = j
        elif c.isdigit() or (c == "." and nxt.isdigit()):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "._"):
                j += 1
            tokens.append(_Token("number", sql[i:j]))
            i = j
        else:
            tokens.append(_Token("op", c))
            i += 1
    return tokens


def _end_of_quoted(sql: str, start: int, quote: str, backslash: bool) -> int:
    j, n = start + 1, len(sql)
    while j < n:
        ch = sql[j]
        if backslash and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    raise _UnterminatedError("unterminated quoted string" if quote == "'" else "unterminated quoted identifier")


def check_read_only(sql: str) -> str | None:
    """Why `sql` is not a single read-only query, or None when it is.

    Lexical, conservative check run before anything reaches the database: one statement only,
    starting with SELECT/WITH/VALUES/TABLE (or a parenthesis), no data-modifying CTE, no SELECT … INTO,
    no FOR UPDATE/SHARE, no call to a function with side effects.
    """
    try:
        tokens = [t for t in _tokenize(sql or "") if t.kind not in {"ws", "comment"}]
    except _UnterminatedError as exc:
        return str(exc)
    if not tokens:
        return "empty SQL"
    semi = next((i for i, t in enumerate(tokens) if t.kind == "op" and t.text == ";"), None)
    if semi is not None:
        rest = [t for t in tokens[semi + 1:] if not (t.kind == "op" and t.text == ";")]
        if rest:
            return "more than one statement (only a single query is allowed)"
        tokens = tokens[:semi]
        if not tokens:
            return "empty SQL"
    first = next((t for t in tokens if not (t.kind == "op" and t.text == "(")), None)
    if first is None or first.kind != "word" or first.text.lower() not in _READ_ONLY_STARTS:
        shown = first.text if first is not None else tokens[0].text
        return f"not a read-only query: starts with {shown.upper()!r} (only SELECT, WITH, VALUES, TABLE allowed)"
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else None
        after_dot = prev is not None and prev.kind == "op" and prev.text == "."
        if tok.kind == "word" and not after_dot:
            word = tok.text.lower()
            reason = _word_reason(word, tokens, i)
            if reason:
                return reason
        if tok.kind in {"word", "qident"}:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt is not None and nxt.kind == "op" and nxt.text == "(":
                name = tok.text.lower() if tok.kind == "word" else tok.text
                if _is_side_effect_function(name):
                    return f"calls {name}(), a function with side effects"
    return None


def _word_reason(word: str, tokens: list[_Token], i: int) -> str | None:
    prev_words = [t.text.lower() for t in tokens[max(0, i - 3):i] if t.kind == "word"]
    prev = tokens[i - 1] if i else None
    if word in {"update", "share"} and prev_words and (
        prev_words[-1] in {"for", "key"} or prev_words[-2:] == ["no", "key"]
    ):
        return f"locking clause FOR {word.upper()} is not allowed"
    if word in _DML_WORDS:
        if prev is not None and prev.kind == "op" and prev.text == "(":
            return f"data-modifying statement {word.upper()} inside a WITH query"
        return f"data-modifying statement {word.upper()} is not allowed"
    if word == "into":
        return "SELECT … INTO creates a table; not allowed"
    if word in _OTHER_WRITE_WORDS:
        return f"{word.upper()} is not allowed in a read-only query"
    return None


def _is_side_effect_function(name: str) -> bool:
    return name in _SIDE_EFFECT_FUNCTIONS or name.startswith(_SIDE_EFFECT_PREFIXES)


def normalize_sql(sql: str) -> str:
    """One line, comments removed, whitespace outside literals collapsed, ending with ';'."""
    try:
        tokens = _tokenize(sql.strip())
    except _UnterminatedError:
        return sql.strip()
    parts: list[str] = []
    for tok in tokens:
        if tok.kind in {"ws", "comment"}:
            if parts and parts[-1] != " ":
                parts.append(" ")
        elif tok.kind == "qident":
            parts.append('"' + tok.text.replace('"', '""') + '"')
        else:
            parts.append(tok.text)
    text = "".join(parts).strip()
    text = re.sub(r"(\s*;)+\s*$", "", text).rstrip()
    return text + ";" if text else text


# --- EXPLAIN ---------------------------------------------------------------------------------------


def _format_pg_error(exc: psycopg2.Error) -> str:
    first = (exc.pgerror or str(exc)).strip().splitlines()
    text = first[0].strip() if first else type(exc).__name__
    diag = getattr(exc, "diag", None)
    detail = getattr(diag, "message_detail", None) if diag is not None else None
    hint = getattr(diag, "message_hint", None) if diag is not None else None
    if detail:
        text += f" DETAIL: {detail}"
    if hint:
        text += f" HINT: {hint}"
    return text


def explain_sql(conn: Any, sql: str, timeout_ms: int) -> str | None:
    """None when PostgreSQL can plan `sql`, else its error text. Never executes the query.

    Runs `EXPLAIN` (never ANALYZE) in a read-only transaction with a local statement timeout and always
    rolls back, so one failure never poisons the next call on the same connection. SQL that fails the
    read-only check is not sent at all. Connection-level failures (no SQLSTATE) propagate.
    """
    reason = check_read_only(sql)
    if reason:
        return f"rejected before reaching the database: {reason}"
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_ms)),))
            cur.execute("EXPLAIN " + sql.strip())
            cur.fetchall()
        return None
    except psycopg2.Error as exc:
        if exc.pgcode is None:
            raise
        return _format_pg_error(exc)
    finally:
        if not conn.closed:
            conn.rollback()


# --- validation with repair rounds -------------------------------------------------------------------


@dataclass
class PairResult:
    index: int
    question: str
    original_sql: str
    final_sql: str  # what the pair file should hold: the repaired SQL, or the original when not repaired
    valid_before: bool
    valid_after: bool
    error: str | None  # latest error (None when valid after)
    repaired: bool = False
    rounds: int = 0  # repair rounds this pair took part in
    dropped: bool = False  # still invalid at the end: removed when the file is modified
    original_error: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)  # [{round, sql, error}] per repair attempt

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairResult:
        return cls(**data)


@dataclass
class ValidationReport:
    results: list[PairResult]
    repair_enabled: bool = False
    max_rounds: int = 0
    rounds_used: int = 0
    duration_seconds: float = 0.0
    repair_error: str | None = None  # set when the LLM failed for good during repair

    @property
    def total(self) -> int:
        return len(self.results)

    def counts(self) -> dict[str, Any]:
        total = len(self.results)
        valid_before = sum(r.valid_before for r in self.results)
        valid_after = sum(r.valid_after for r in self.results)

        def rate(n: int) -> float:
            return round(100.0 * n / total, 2) if total else 100.0

        return {
            "total": total,
            "valid_before": valid_before,
            "invalid_before": total - valid_before,
            "valid_after": valid_after,
            "invalid_after": total - valid_after,
            "repaired": sum(r.repaired for r in self.results),
            "dropped": sum(r.dropped for r in self.results),
            "success_rate_before": rate(valid_before),
            "success_rate": rate(valid_after),
            "rounds_used": self.rounds_used,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "repair_enabled": self.repair_enabled,
            "max_rounds": self.max_rounds,
            "rounds_used": self.rounds_used,
            "duration_seconds": self.duration_seconds,
            "repair_error": self.repair_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        return cls(
            results=[PairResult.from_dict(r) for r in data["results"]],
            repair_enabled=bool(data.get("repair_enabled", False)),
            max_rounds=int(data.get("max_rounds", 0)),
            rounds_used=int(data.get("rounds_used", 0)),
            duration_seconds=float(data.get("duration_seconds", 0.0)),
            repair_error=data.get("repair_error"),
        )


class _Checker:
    """EXPLAIN on one connection, reconnecting once when the connection itself dies; cached per SQL text."""

    def __init__(self, db_url: str, timeout_ms: int):
        self._url = db_url
        self._timeout_ms = timeout_ms
        self._conn: Any = None
        self._cache: dict[str, str | None] = {}

    def check(self, sql: str) -> str | None:
        if sql in self._cache:
            return self._cache[sql]
        reason = check_read_only(sql)
        if reason:
            result: str | None = f"not read-only: {reason}"
        else:
            result = self._explain(sql)
        self._cache[sql] = result
        return result

    def _explain(self, sql: str) -> str | None:
        for attempt in (1, 2):
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._url, application_name="data_pipeline_validation")
            try:
                return explain_sql(self._conn, sql, self._timeout_ms)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.close()
                if attempt == 2:
                    raise errors.DatabaseConnectionError(
                        f"lost the database connection during SQL validation: {type(exc).__name__}"
                    ) from exc
        return None  # unreachable

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None


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
) -> ValidationReport:
    """EXPLAIN every pair on one connection; with repair, send failing pairs to `llm.repair_sql` in rounds."""
    started = time.monotonic()
    checker = _Checker(db_url, timeout_ms)
    report = ValidationReport(results=[], repair_enabled=enable_repair, max_rounds=max_rounds if enable_repair else 0)
    try:
        for index, pair in enumerate(pairs):
            error = checker.check(pair.sql)
            report.results.append(PairResult(
                index=index, question=pair.question, original_sql=pair.sql, final_sql=pair.sql,
                valid_before=error is None, valid_after=error is None, error=error, original_error=error,
            ))
        invalid = sum(not r.valid_before for r in report.results)
        log.info(f"SQL validation: {len(pairs) - invalid}/{len(pairs)} valid before repair")
        if enable_repair and llm is not None:
            _run_repair_rounds(report, checker, llm, docs, max_rounds, repair_batch_size, log)
    finally:
        checker.close()
    for r in report.results:
        r.dropped = not r.valid_after
    report.duration_seconds = round(time.monotonic() - started, 3)
    counts = report.counts()
    log.info(
        f"SQL validation finished: {counts['valid_after']}/{counts['total']} valid, "
        f"{counts['repaired']} repaired, {counts['dropped']} unrepairable, {report.rounds_used} round(s)"
    )
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
        log.info(f"SQL repair round {round_no}/{max_rounds}: {len(failing)} failing statement(s)")
        answers: dict[int, str] = {}
        for start in range(0, len(failing), max(1, batch_size)):
            batch = failing[start:start + batch_size]
            requests = [RepairRequest(index=r.index, question=r.question, sql=_current_sql(r), error=r.error or "")
                        for r in batch]
            try:
                answers.update(llm.repair_sql(requests, docs) or {})
            except errors.LLMError as exc:
                report.repair_error = f"{type(exc).__name__}: {exc}"
                log.warning(f"SQL repair stopped: the LLM failed ({report.repair_error})")
                _record_round(failing, answers, checker, round_no)
                return
        _record_round(failing, answers, checker, round_no)


def _current_sql(result: PairResult) -> str:
    return result.attempts[-1]["sql"] if result.attempts else result.original_sql


def _record_round(failing: list[PairResult], answers: dict[int, str], checker: _Checker, round_no: int) -> None:
    for r in failing:
        r.rounds = round_no
        raw = answers.get(r.index)
        if not isinstance(raw, str) or not raw.strip():
            r.attempts.append({"round": round_no, "sql": _current_sql(r), "error": "no repair proposed"})
            continue
        new_sql = normalize_sql(raw)
        error = checker.check(new_sql)
        r.attempts.append({"round": round_no, "sql": new_sql, "error": error})
        if error is None:
            r.final_sql, r.valid_after, r.repaired, r.error = new_sql, True, True, None
        else:
            r.error = error


def apply_report(pairs: list[QAPair], report: ValidationReport) -> list[QAPair]:
    """The pair list after validation: repaired SQL replaces the old one, still-invalid pairs are dropped."""
    by_index = {r.index: r for r in report.results}
    out: list[QAPair] = []
    for index, pair in enumerate(pairs):
        result = by_index.get(index)
        if result is None:
            out.append(pair)
        elif result.valid_after:
            out.append(QAPair(question=pair.question, sql=result.final_sql if result.repaired else pair.sql))
    return out


def render_summary(report: ValidationReport, *, file_name: str, ts: str) -> str:
    c = report.counts()
    lines = [
        "SQL validation summary",
        "======================",
        f"File: {file_name}",
        f"Time: {ts}",
        f"Duration: {report.duration_seconds:.2f} s",
        "",
        f"Total statements: {c['total']}",
        f"Valid before repair: {c['valid_before']} ({c['success_rate_before']:.2f}%)",
        f"Invalid before repair: {c['invalid_before']}",
        f"Valid after repair: {c['valid_after']}",
        f"Success rate: {c['success_rate']:.2f}%",
        f"Repair: {'enabled' if report.repair_enabled else 'disabled'}"
        + (f", rounds used {report.rounds_used}/{report.max_rounds}" if report.repair_enabled else ""),
        f"Repaired: {c['repaired']}",
        f"Dropped (unrepairable): {c['dropped']}",
    ]
    if report.repair_error:
        lines.append(f"Repair stopped early: {report.repair_error}")
    failed = [r for r in report.results if not r.valid_before]
    lines += ["", f"Errors ({len(failed)})", "----------"]
    if not failed:
        lines.append("none")
    for r in failed:
        lines += [
            f"[{r.index + 1}] {r.question}",
            f"  SQL: {r.original_sql}",
            f"  Error: {r.original_error}",
        ]
        for attempt in r.attempts:
            lines.append(f"  Round {attempt['round']}: {attempt['sql']}")
            lines.append(f"    -> {'valid' if attempt['error'] is None else attempt['error']}")
        if r.repaired:
            lines.append(f"  Result: repaired: {r.final_sql}")
        else:
            lines.append(f"  Result: still invalid: {r.error}")
    return "\n".join(lines) + "\n"


def render_modifications_log(report: ValidationReport, ts: str) -> str:
    """Every change made to the pair file: repaired SQL (old and new) and dropped pairs with the reason."""
    changes = [r for r in report.results if r.repaired or r.dropped]
    lines = [f"File modifications {ts}", f"Changes: {len(changes)} "
             f"(repaired {sum(r.repaired for r in changes)}, dropped {sum(r.dropped for r in changes)})", ""]
    for r in changes:
        lines.append(f"[{r.index + 1}] {r.question}")
        lines.append(f"  old SQL: {r.original_sql}")
        if r.repaired:
            lines.append(f"  new SQL: {r.final_sql}")
        else:
            lines.append(f"  DROPPED: {r.error}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
