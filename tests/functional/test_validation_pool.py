"""Validation throughput: many statements per connection over a bounded pool, each statement isolated."""
from __future__ import annotations

import time

import psycopg2

from chalicelib.pipeline.models import QAPair
from chalicelib.pipeline.validation import validate_pairs
from chalicelib.pipeline.validation_report import merge_reports


def _sessions(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from pg_stat_activity where application_name = 'data_pipeline_validation'")
        return cur.fetchone()[0]


def _run(url, pairs, **kw):
    return validate_pairs(url, pairs, llm=None, docs=[], enable_repair=False, max_rounds=0,
                          timeout_ms=kw.pop("timeout_ms", 2000), **kw)


def test_results_keep_input_order_over_several_connections(shop_db):
    good, bad = "select id from orders where id = %d;", "select nope from orders where id = %d;"
    pairs = [QAPair(f"q{i}", (bad if i % 7 == 3 else good) % i) for i in range(300)]
    report = _run(shop_db, pairs, concurrency=3, start_index=1000)
    assert [r.index for r in report.results] == list(range(1000, 1300))
    assert [r.valid_before for r in report.results] == [i % 7 != 3 for i in range(300)]
    assert all('column "nope" does not exist' in r.error for r in report.results if not r.valid_before)
    assert _sessions(shop_db) == 0  # every pooled connection closed


def test_timeout_and_read_only_hold_on_pooled_connections(shop_db):
    template = "select amount from orders where id = %d;"
    pairs = [QAPair(f"q{i}", template % i) for i in range(60)]
    pairs[10] = QAPair("slow", "select slow_constant();")
    pairs[40] = QAPair("session", "select show_session();")
    started = time.monotonic()
    report = _run(shop_db, pairs, concurrency=2, timeout_ms=300)
    assert time.monotonic() - started < 2.5
    assert "statement timeout" in report.results[10].error
    assert "read_only=on timeout=300ms" in report.results[40].error
    assert [r.index for r in report.results if not r.valid_before] == [10, 40]
    with psycopg2.connect(shop_db) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from orders")
        assert cur.fetchone()[0] == 5


def test_merge_reports_orders_batches_by_index(shop_db):
    pairs = [QAPair(f"q{i}", f"select {i};") for i in range(6)]
    second = _run(shop_db, pairs[3:], start_index=3)
    first = _run(shop_db, pairs[:3])
    merged = merge_reports([second, first])
    assert [r.index for r in merged.results] == list(range(6))
    assert merged.counts()["valid_after"] == 6
