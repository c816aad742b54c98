"""EXPLAIN-based validation against a real PostgreSQL: nothing runs, errors are PostgreSQL's own, repair rounds."""
from __future__ import annotations

import time

import psycopg
import psycopg2
import pytest

from chalicelib import errors
from chalicelib.pipeline.models import QAPair, RepairRequest
from chalicelib.pipeline.validation import explain_sql, validate_pairs
from chalicelib.pipeline.validation_report import (
    ValidationReport,
    apply_report,
    render_modifications_log,
    render_summary,
)


class ScriptedRepairLLM:
    """Implements LLMProvider.repair_sql from a script: per round, a function of the request -> new SQL or None."""

    name = "scripted"

    def __init__(self, rounds):
        self.rounds = list(rounds)
        self.calls: list[list[RepairRequest]] = []

    def repair_sql(self, requests, docs):
        self.calls.append(list(requests))
        fix = self.rounds[len(self.calls) - 1] if len(self.calls) <= len(self.rounds) else (lambda r: None)
        return {r.index: s for r in requests if (s := fix(r)) is not None}


class FailingLLM:
    name = "failing"

    def __init__(self, error: errors.LLMError | None = None):
        self.error = error or errors.LLMBadAnswer("unusable answer twice")

    def repair_sql(self, requests, docs):
        raise self.error


def _rows(url):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('orders') is not null")
            if not cur.fetchone()[0]:
                return None
            cur.execute("select count(*) from orders")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_destructive_sql_never_runs(shop_db):
    pairs = [
        QAPair("drop it", "DROP TABLE orders;"),
        QAPair("two statements", "select 1; delete from orders;"),
        QAPair("cte", "with d as (delete from orders returning *) select count(*) from d;"),
        QAPair("into", "select * into orders_copy from orders;"),
        QAPair("lock", "select * from orders for update;"),
        QAPair("ok", "select count(*) from orders;"),
    ]
    report = validate_pairs(shop_db, pairs, llm=None, docs=[], enable_repair=False, max_rounds=0, timeout_ms=2000)
    assert [r.valid_before for r in report.results] == [False, False, False, False, False, True]
    assert all("not read-only" in r.error for r in report.results[:5])
    assert _rows(shop_db) == 5
    conn = psycopg2.connect(shop_db)
    with conn.cursor() as cur:
        cur.execute("select to_regclass('orders_copy')")
        assert cur.fetchone()[0] is None
    conn.close()


def test_explain_errors_carry_postgres_message_and_do_not_poison(shop_db):
    conn = psycopg.connect(shop_db)  # explain_sql speaks the extended protocol (psycopg 3)
    try:
        err = explain_sql(conn, "select nope from orders;", 2000)
        assert err is not None and 'column "nope" does not exist' in err
        assert explain_sql(conn, "select count(*) from orders;", 2000) is None
        err = explain_sql(conn, "select * from missing_table;", 2000)
        assert 'relation "missing_table" does not exist' in err
        err = explain_sql(conn, "select * from orders where;", 2000)
        assert "syntax error" in err
        assert explain_sql(conn, "select amount from orders where id = 1;", 2000) is None
        # The session is left as it was: not read-only, no timeout, no open transaction.
        with conn.cursor() as cur:
            cur.execute("show transaction_read_only")
            assert cur.fetchone()[0] == "off"
            cur.execute("show statement_timeout")
            assert cur.fetchone()[0] == "0"
        conn.rollback()
    finally:
        conn.close()


def test_explain_never_executes(shop_db):
    conn = psycopg.connect(shop_db)
    try:
        # A division by zero in the data would fail on execution; EXPLAIN only plans it.
        assert explain_sql(conn, "select 1 / (id - id) from orders;", 2000) is None
    finally:
        conn.close()


def test_statement_timeout_is_honoured(shop_db):
    conn = psycopg.connect(shop_db)
    try:
        started = time.monotonic()
        # An immutable function is evaluated while planning, so EXPLAIN itself takes 3 s without a timeout.
        err = explain_sql(conn, "select slow_constant();", 300)
        assert time.monotonic() - started < 2.5
        assert err is not None and "statement timeout" in err
        assert explain_sql(conn, "select 1;", 300) is None
    finally:
        conn.close()


def test_repair_succeeds_in_second_round(shop_db):
    llm = ScriptedRepairLLM([
        lambda r: "select missing_col from orders;",  # round 1: still wrong
        lambda r: "select\n  sum(amount)\nfrom orders -- fixed\n",  # round 2: right
    ])
    pairs = [QAPair("total?", "select sum(amout) from orders;"), QAPair("count?", "select count(*) from orders;")]
    report = validate_pairs(shop_db, pairs, llm=llm, docs=[], enable_repair=True, max_rounds=3, timeout_ms=2000)
    bad = report.results[0]
    assert (bad.valid_before, bad.valid_after, bad.repaired, bad.rounds, bad.dropped) == (False, True, True, 2, False)
    assert bad.final_sql == "select sum(amount) from orders;"
    assert 'column "amout" does not exist' in bad.original_error
    assert report.rounds_used == 2
    # Round 2 got round 1's SQL and its new error.
    second = llm.calls[1][0]
    assert second.sql == "select missing_col from orders;" and "missing_col" in second.error
    assert len(llm.calls[0]) == 1 and llm.calls[0][0].index == 0
    c = report.counts()
    assert (c["total"], c["valid_before"], c["valid_after"], c["repaired"], c["dropped"]) == (2, 1, 2, 1, 0)
    assert apply_report(pairs, report) == [QAPair("total?", "select sum(amount) from orders;"), pairs[1]]


def test_never_fixed_is_dropped_and_write_repairs_rejected(shop_db):
    llm = ScriptedRepairLLM([
        lambda r: "delete from orders;" if r.index == 0 else None,
        lambda r: "select 1; drop table orders;" if r.index == 0 else "select nothing_here from orders;",
    ])
    pairs = [
        QAPair("bad 1", "select x from orders;"),
        QAPair("bad 2", "select y from orders;"),
        QAPair("good", "select id from orders;"),
    ]
    report = validate_pairs(shop_db, pairs, llm=llm, docs=[], enable_repair=True, max_rounds=2, timeout_ms=2000)
    r0, r1, r2 = report.results
    assert not r0.valid_after and r0.dropped and not r0.repaired and r0.final_sql == "select x from orders;"
    assert "not read-only" in r0.error
    assert [a["error"].split(":")[0] for a in r0.attempts] == ["not read-only", "not read-only"]
    assert not r1.valid_after and r1.dropped and r1.rounds == 2
    assert r2.valid_after and not r2.dropped
    assert _rows(shop_db) == 5
    assert apply_report(pairs, report) == [pairs[2]]

    summary = render_summary(report, file_name="qs_demo_20250101_000000_pair.json", ts="20250101_000000")
    assert "Total statements: 3" in summary
    assert "Success rate: 33.33%" in summary and "Dropped (unrepairable): 2" in summary
    assert "bad 1" in summary and "select x from orders;" in summary and 'column "x" does not exist' in summary
    mods = render_modifications_log(report, "20250101_000000")
    assert "[1] bad 1" in mods and "old SQL: select x from orders;" in mods and "DROPPED:" in mods
    assert "good" not in mods

    again = ValidationReport.from_dict(report.to_dict())
    assert again.counts() == report.counts()


def test_llm_failure_stops_repair_but_keeps_results(shop_db):
    pairs = [QAPair("bad", "select x from orders;"), QAPair("good", "select 1;")]
    report = validate_pairs(shop_db, pairs, llm=FailingLLM(), docs=[], enable_repair=True, max_rounds=2,
                            timeout_ms=2000)
    assert report.repair_error and "LLMBadAnswer" in report.repair_error
    assert report.counts()["valid_after"] == 1 and report.results[0].dropped


@pytest.mark.parametrize("error", [errors.LLMRateLimited("HTTP 429 after 3 attempts"),
                                   errors.LLMTimeout("failed with HTTP 503 after 3 attempts")])
def test_throttled_repair_raises_for_a_retry_of_the_batch(shop_db, error):
    # Dropping the pair would make a passing 429 permanent; the batch is retried by the state machine instead.
    pairs = [QAPair("bad", "select x from orders;"), QAPair("good", "select 1;")]
    with pytest.raises(type(error)) as info:
        validate_pairs(shop_db, pairs, llm=FailingLLM(error), docs=[], enable_repair=True, max_rounds=2,
                       timeout_ms=2000)
    assert info.value is error


def test_many_statements_share_one_connection(shop_db):
    good, bad = "select id from orders where id = %d;", "select nope from orders where id = %d;"
    pairs = [QAPair(f"q{i}", (good if i % 2 else bad) % i) for i in range(40)]
    report = validate_pairs(shop_db, pairs, llm=None, docs=[], enable_repair=False, max_rounds=0, timeout_ms=2000)
    assert [r.valid_before for r in report.results] == [bool(i % 2) for i in range(40)]
    mods = render_modifications_log(report, "ts")
    assert mods.count("DROPPED") == 20


def test_unreachable_database_is_a_connection_error(tmp_path):
    url = f"postgresql://postgres@/postgres?host={tmp_path}&connect_timeout=2"
    with pytest.raises(errors.DatabaseConnectionError):
        validate_pairs(url, [QAPair("q", "select 1;")], llm=None, docs=[], enable_repair=False, max_rounds=0,
                       timeout_ms=1000)
