"""sql_validation's catalog and empty-date-range checks on a real PostgreSQL, repaired through OpenAIProvider (the
real `openai` client) against the local stub."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import psycopg
import psycopg2
import pytest

from chalicelib.config import get_settings
from chalicelib.pipeline.empty_range import RangeReader, empty_range_error
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import QAPair, TableDoc, TableRef
from chalicelib.pipeline.validation import validate_pairs
from chalicelib.providers.openai_chat import OpenAIProvider
from tests.conftest import run_sql

SCHEMA = """
create table orders (id integer primary key, customer_id integer, order_date date not null, amount numeric(10,2),
                     created_ts timestamp);
create table customers (id integer primary key, name text);
insert into customers select n, 'c' || n from generate_series(1, 5) n;
insert into orders select n, 1 + n % 5, date '2022-01-01' + (n * 3), n * 1.5,
                          timestamp '2022-01-01' + n * interval '3 day' from generate_series(1, 200) n;
"""


@pytest.fixture
def shop(scratch_db):
    run_sql(scratch_db, SCHEMA)
    conn = psycopg2.connect(scratch_db)
    try:
        found, problems = introspect_tables(conn, [TableRef("public", "orders"), TableRef("public", "customers")],
                                            exact_count_threshold=10_000)
    finally:
        conn.close()
    assert not problems
    docs = [TableDoc(meta=meta, table_comment=None, column_comments={}, comment_sources={}, enums={}, samples=[])
            for meta in found.values()]
    return scratch_db, docs


def _provider(stub) -> OpenAIProvider:
    return OpenAIProvider(dataclasses.replace(get_settings(), llm_base_url=stub.base_url, llm_model="stub",
                                              llm_max_retries=0))


PAIRS = [
    QAPair("上半年订单数", "SELECT count(*) FROM orders WHERE order_date BETWEEN '2022-03-01' AND '2022-06-30';"),
    QAPair("订单总额", "SELECT sum(amout) FROM orders;"),
    QAPair("2030 年的订单", "SELECT id, amount FROM orders WHERE order_date >= '2030-01-01';"),
    QAPair("近 30 天订单额", "SELECT sum(amount) FROM orders WHERE order_date >= CURRENT_DATE - 30;"),
    QAPair("大额或未来订单", "SELECT id FROM orders WHERE order_date > '2030-01-01' OR amount > 100;"),
]


def test_unknown_objects_and_empty_ranges_are_flagged_and_repaired(shop, llm_stub):
    url, docs = shop
    fixed_range = "SELECT id, amount FROM orders WHERE order_date >= '2023-01-01';"
    fixed_window = "SELECT sum(amount) FROM orders WHERE order_date >= DATE '2023-08-01' - 30;"
    llm_stub.script(
        {"repairs": [{"index": 1, "sql": "SELECT sum(total) FROM orders;"}, {"index": 2, "sql": fixed_range},
                     {"index": 3, "sql": fixed_window}]},
        {"repairs": [{"index": 1, "sql": "SELECT sum(amount) FROM orders;"}]},
    )
    report = validate_pairs(url, PAIRS, llm=_provider(llm_stub), docs=docs, enable_repair=True, max_rounds=2,
                            timeout_ms=5000)
    results = report.results
    assert [r.valid_before for r in results] == [True, False, False, False, True]
    assert results[1].original_error.startswith('column "amout" does not exist')  # PostgreSQL's own text first
    assert results[2].original_error.startswith("the query plans but returns no row")
    assert "public.orders.order_date >= 2030-01-01 lies outside it" in results[2].original_error
    assert "2022-01-04 … 2023-08-24" in results[2].original_error  # the range read with min()/max()
    assert "window on the current date" in results[3].original_error
    assert [r.final_sql for r in results[1:4]] == ["SELECT sum(amount) FROM orders;", fixed_range, fixed_window]
    assert all(r.valid_after for r in results) and report.counts()["repaired"] == 3
    first, second = (r["messages"][-1]["content"] for r in llm_stub.chat_requests)
    assert "create table public.orders" in first and "public.customers" not in first  # only the tables used
    assert "returns no row" in first and 'column \\"amout\\" does not exist' in first
    items, _ = json.JSONDecoder().raw_decode(second, second.index("\n[") + 1)
    assert items[0]["sql"] == "SELECT sum(total) FROM orders;"
    assert items[0]["previous_attempts"] == [{"sql": "SELECT sum(amout) FROM orders;",
                                              "error": results[1].original_error[:200]}]
    assert llm_stub.chat_requests[0]["temperature"] == 0.0  # repair kind


def test_recorded_ranges_and_tables_outside_the_task_without_repair(shop):
    url, docs = shop
    orders = next(d for d in docs if d.meta.ref.name == "orders")
    recorded = dataclasses.replace(orders, value_ranges={"created_ts": ["2022-01-04 00:00:00", "2023-08-24 00:00:00"]})
    pairs = [QAPair("早期订单", "SELECT id FROM orders WHERE created_ts < '2021-06-01';"),
             QAPair("客户", "SELECT c.name FROM customers c;")]
    # customers exists in the database (EXPLAIN accepts it) but is not one of the task's tables.
    report = validate_pairs(url, pairs, llm=None, docs=[recorded], enable_repair=False, max_rounds=0,
                            timeout_ms=5000)
    assert "public.orders.created_ts < 2021-06-01 lies outside it: the data's range is 2022-01-04 00:00:00" \
        in report.results[0].error
    assert report.results[1].error == "names objects the catalog does not have: unknown table customers"
    assert [r.dropped for r in report.results] == [True, True]


def test_the_probe_decides_a_window_that_reaches_the_data_is_kept(shop):
    url, docs = shop
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on; SET statement_timeout = 2000")
        ranges = RangeReader()
        # Suspect (the data ends before today) but the window reaches back into the data: rows, not flagged.
        wide = "SELECT id FROM orders WHERE order_date >= CURRENT_DATE - 36500;"
        assert empty_range_error(conn, wide, docs, ranges) is None
        narrow = "SELECT count(*) FROM orders WHERE order_date >= CURRENT_DATE - 30;"
        assert "window on the current date" in empty_range_error(conn, narrow, docs, ranges)
        # Not suspect at all when "today" lies inside the data: nothing is probed.
        assert empty_range_error(conn, narrow, docs, ranges, today=dt.date(2023, 1, 1)) is None
