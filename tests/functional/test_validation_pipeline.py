# ruff: noqa: S608 - the SQL here is fixed test text over generated integers
"""The validator's pipelined EXPLAIN (libpq pipeline mode) against a real PostgreSQL: every statement its own
read-only transaction and its own Parse/Bind/Execute, errors isolated, the connection left idle or closed."""
from __future__ import annotations

import threading
import time

import psycopg
import psycopg2
import pytest

from chalicelib import errors
from chalicelib.pipeline import validation
from chalicelib.pipeline.db_pool import connect_extended
from chalicelib.pipeline.models import QAPair


def _session(url: str, timeout_ms: int = 2000) -> psycopg.Connection:
    conn = connect_extended(url)
    validation._configure_session(conn, timeout_ms)
    return conn


def test_errors_between_valid_statements_end_only_their_own_transaction(shop_db):
    conn = _session(shop_db)
    try:
        sqls = ["select id from orders;", "select nope from orders;", "select amount from orders where id = 2;",
                "select * from missing_table;", "select count(*) from orders;"]
        out = validation._explain_pipelined(conn, sqls)
        assert out[0] is None and out[2] is None and out[4] is None
        assert out[1].startswith('column "nope" does not exist')
        assert out[3].startswith('relation "missing_table" does not exist')
        # The connection is idle and usable afterwards, out of pipeline mode, in its previous blocking mode.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
        assert conn.execute("select 1").fetchone() == (1,)
    finally:
        conn.close()


def test_each_statement_is_one_statement_even_without_the_parser_gate(shop_db):
    """Lock 2 on its own: two statements in one string reach PostgreSQL (check_read_only is bypassed here) and
    PostgreSQL refuses them in the extended protocol; the DELETE never runs, the next statement is unaffected."""
    conn = _session(shop_db)
    try:
        out = validation._explain_pipelined(conn, ["select 1; delete from orders", "select id from orders;"])
        assert "cannot insert multiple commands into a prepared statement" in out[0]
        assert out[1] is None
    finally:
        conn.close()
    with psycopg2.connect(shop_db) as check, check.cursor() as cur:
        cur.execute("select count(*) from orders")
        assert cur.fetchone()[0] == 5


def test_each_statement_gets_its_own_timeout_and_read_only_transaction(shop_db):
    conn = _session(shop_db, timeout_ms=300)
    try:
        started = time.monotonic()
        out = validation._explain_pipelined(conn, ["select slow_constant();", "select show_session();",
                                                    "select slow_constant();", "select 1;"])
        assert time.monotonic() - started < 2.5  # two timeouts of 0.3 s, not two sleeps of 3 s
        assert "statement timeout" in out[0] and "statement timeout" in out[2]
        assert "read_only=on timeout=300ms" in out[1]
        assert out[3] is None
    finally:
        conn.close()


def test_a_connection_lost_mid_pipeline_raises_and_is_closed(shop_db):
    conn = _session(shop_db, timeout_ms=10_000)
    pid = conn.info.backend_pid

    def terminate():
        time.sleep(0.5)
        with psycopg2.connect(shop_db) as admin, admin.cursor() as cur:
            cur.execute("select pg_terminate_backend(%s)", (pid,))

    killer = threading.Thread(target=terminate)
    killer.start()
    try:
        with pytest.raises(psycopg.OperationalError):
            validation._explain_pipelined(conn, ["select 1;", "select slow_constant();", "select 2;"])
    finally:
        killer.join()
    assert conn.closed  # its pipeline state is unknown: it never serves another statement


def test_the_validator_replaces_a_lost_connection_once(shop_db, monkeypatch):
    """A chunk whose connection dies is validated again on a new connection; a second loss is a connection error."""
    real = validation._explain_pipelined
    losses = []

    def losing(conn, sqls, limit):
        if len(losses) < limit:
            losses.append(conn.info.backend_pid)
            conn.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(conn, sqls)

    pairs = [QAPair(f"q{i}", f"select id from orders where id = {i};") for i in range(3)]
    options = dict(llm=None, docs=[], enable_repair=False, max_rounds=0, timeout_ms=2000, concurrency=1)
    monkeypatch.setattr(validation, "_explain_pipelined", lambda conn, sqls: losing(conn, sqls, 1))
    report = validation.validate_pairs(shop_db, pairs, **options)
    assert [r.valid_before for r in report.results] == [True, True, True] and len(losses) == 1

    losses.clear()
    monkeypatch.setattr(validation, "_explain_pipelined", lambda conn, sqls: losing(conn, sqls, 2))
    with pytest.raises(errors.DatabaseConnectionError, match="lost the database connection"):
        validation.validate_pairs(shop_db, pairs, **options)
    assert len(losses) == 2 and losses[0] != losses[1]


def test_a_chunk_longer_than_the_socket_buffers_does_not_deadlock(shop_db):
    """Thousands of statements in one pipeline: libpq must read results while it still has queries to write."""
    conn = _session(shop_db)
    try:
        padding = " ".join(f"and {i} = {i}" for i in range(40))
        sqls = [f"select id, amount, create_ts from orders where id > {i} {padding};" for i in range(3000)]
        out = validation._explain_pipelined(conn, sqls)
        assert out == [None] * 3000
    finally:
        conn.close()
