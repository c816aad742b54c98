"""Value profiles (chalicelib.pipeline.profiles) through build_table_doc on real databases: the demo highway
database, a hostile schema (quoted mixed case, reserved words, domains, an enum, arrays, an empty table, a view, a
materialized view) and a large analyzed table read through TABLESAMPLE and its statistics. One statement per table."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg2
import pytest

from chalicelib.pipeline import ddl, profiles
from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import CommentSuggestion, TableRef
from tests.conftest import run_sql

HOSTILE = (Path(__file__).resolve().parent.parent / "fixtures" / "hostile_schema.sql").read_text(encoding="utf-8")
EXTRA = """
create domain public.day_of_sale as date;
create table public."Tagged" ("Tags" text[], "Scores" integer[], "select" text, "Sold On" public.day_of_sale,
                              payload jsonb, raw bytea, uid uuid, "Flag" boolean);
insert into public."Tagged" select array['a' || g], array[g], 'v' || (g % 2), date '2022-12-30' + g,
       '{"k": 1}', '\\x00', gen_random_uuid(), g % 2 = 0 from generate_series(1, 6) g;
"""


class Silent:
    """A provider that suggests nothing (kind heuristic: always asked), recording what it was shown."""

    kind = "heuristic"
    name = "silent"

    def __init__(self):
        self.shown: list[list[dict]] = []

    def suggest_table_comments(self, meta, samples, business_context):
        self.shown.append(samples)
        return CommentSuggestion(table_comment=None)


def _docs(url: str, refs: list[TableRef]) -> dict[str, ddl.TableDoc]:
    conn = connect(url)
    try:
        found, problems = introspect_tables(conn, refs, exact_count_threshold=100_000)
        assert not problems, problems
        return {meta.ref.name: ddl.build_table_doc(conn, meta, Silent(), "销售") for meta in found.values()}
    finally:
        conn.close()


def test_demo_database_values_and_ranges_are_the_real_ones(demo_db_url):
    names = ["bss_business_day_data", "bss_service_area", "bss_car_day_count", "bss_company"]
    docs = _docs(demo_db_url, [TableRef("public", n) for n in names])
    conn = psycopg2.connect(demo_db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("select min(oper_date), max(oper_date), min(pay_sum), max(pay_sum), count(*) "
                        "from bss_business_day_data")
            low, high, pay_low, pay_high, rows = cur.fetchone()
            cur.execute("select distinct service_area_name from bss_service_area")
            area_names = {r[0] for r in cur.fetchall()}
            cur.execute("select min(count_date), max(count_date) from bss_car_day_count")
            car_low, car_high = cur.fetchone()
    finally:
        conn.close()
    assert rows < profiles.PROFILE_SCAN_ROWS  # the whole table read: exact
    day = docs["bss_business_day_data"]
    assert day.value_ranges["oper_date"] == [low.isoformat(), high.isoformat()]
    assert day.value_ranges["pay_sum"] == [ddl.render_value(pay_low), ddl.render_value(pay_high)]
    assert "create_ts" in day.value_ranges and "delete_ts" in day.value_ranges  # timestamps too
    assert docs["bss_car_day_count"].value_ranges["count_date"] == [car_low.isoformat(), car_high.isoformat()]
    area = docs["bss_service_area"]
    assert set(area.column_values["service_area_name"]) <= area_names
    assert len(area.column_values["service_area_name"]) == profiles.PROFILE_VALUES
    assert set(area.column_values["service_state"]) == {"开放", "关闭", "上传数据"}
    # Obvious identifiers are left out: the primary key and the *_id references.
    assert "id" not in area.column_values and "company_id" not in area.column_values
    assert "id" not in area.value_ranges
    # Ranges are for dates and numbers; text gets values.
    assert "service_area_name" not in area.value_ranges and "oper_date" not in day.column_values


def test_hostile_schema_values_and_ranges(scratch_db):
    run_sql(scratch_db, HOSTILE + EXTRA)
    refs = [TableRef("public", "SalesOrder"), TableRef("public", "OrderLine"), TableRef("public", "2019"),
            TableRef("public", "服务区日报"), TableRef("public", "empty_audit"), TableRef("public", "BigOrders"),
            TableRef("ods", "region_counts"), TableRef("public", "Tagged"), TableRef("Sales", "customers")]
    docs = _docs(scratch_db, refs)
    order = docs["SalesOrder"]
    # Reserved words and mixed case, read as the catalog names them.
    assert order.column_values["Group"] == ["A", "B"]
    assert order.column_values["user"][:2] == ["u1", "u10"]  # the first distinct values, in order
    assert order.value_ranges["order"] == ["1", "40"] and order.value_ranges["Year"] == ["2018", "2020"]
    # A domain over numeric is a number; an enum gets its values.
    assert order.value_ranges["Amount"] == ["10.50", "420.00"]
    assert sorted(order.column_values["Type"]) == sorted(["新建", "paid", "shipped", "Cancelled"])
    assert "OrderID" not in order.value_ranges and "OrderID" not in order.column_values  # the primary key
    assert order.value_ranges["created_at"][0][:4] == str(dt.date.today().year)
    assert docs["服务区日报"].value_ranges["日期"] == ["2023-04-01", "2023-04-15"]
    assert docs["服务区日报"].column_values["服务区"] == ["服务区0", "服务区1", "服务区2", "服务区3"]
    assert docs["OrderLine"].value_ranges["Price"] == ["1.25", "150.00"]
    assert docs["2019"].value_ranges["score"] == ["0.1", "3.0"]
    # The empty table: nothing to show, no failure.
    assert docs["empty_audit"].column_values == {} and docs["empty_audit"].value_ranges == {}
    # A view (its query run under the time bound) and a materialized view.
    assert docs["BigOrders"].value_ranges["total"][0] and "Customer Name" in docs["BigOrders"].column_values
    assert sorted(docs["region_counts"].column_values["region"]) == ["east", "north", "south"]
    # Arrays, JSON, binary and uuid are left out; a domain over date gets a range; booleans get values.
    tagged = docs["Tagged"]
    assert set(tagged.column_values) == {"select", "Flag"} and tagged.column_values["Flag"] == ["false", "true"]
    assert tagged.value_ranges == {"Sold On": ["2022-12-31", "2023-01-05"]}
    assert docs["customers"].column_values["Name"][0] == "sales 1"


def test_a_large_table_is_read_through_tablesample_and_its_statistics(scratch_db):
    run_sql(scratch_db, """
        create table big (id bigint primary key, day date, amount numeric(10,2), city text);
        insert into big select g, date '2020-01-01' + (g % 1000), g % 5000, (array['北京','上海','广州'])[1 + g % 3]
        from generate_series(1, 150000) g;
        analyze big;
    """)
    conn = connect(scratch_db)
    statements: list[str] = []
    try:
        found, _ = introspect_tables(conn, [TableRef("public", "big")], exact_count_threshold=1000)
        meta = found[TableRef("public", "big")]
        assert meta.row_count > profiles.LARGE_TABLE_ROWS
        raw = ddl.sample_raw_rows(conn, meta, 5)
        real_execute = psycopg2.extensions.cursor.execute

        class Counting(psycopg2.extensions.cursor):
            def execute(self, query, vars=None):  # noqa: A002 - psycopg2's name
                statements.append(query.as_string(conn) if hasattr(query, "as_string") else str(query))
                return real_execute(self, query, vars)

        conn.cursor_factory = Counting
        profile = profiles.profile_table(conn, meta, raw)
    finally:
        conn.close()
    # Two round trips: the bounded statement (one read: rows through TABLESAMPLE and the statistics), the rollback
    # to its savepoint.
    assert len(statements) == 2 and statements[1].startswith("rollback to savepoint")
    assert "set local statement_timeout = 3000; select count(*)" in statements[0]
    assert "tablesample system" in statements[0] and "pg_stats" in statements[0]
    assert not profile.complete and 0 < profile.rows_read <= profiles.PROFILE_SCAN_ROWS
    # The statistics widen what the sample saw to (about) the whole table's range.
    low, high = profile.ranges["day"]
    assert low <= dt.date(2020, 1, 15) and high >= dt.date(2022, 9, 1)
    assert set(profile.values["city"]) == {"北京", "上海", "广州"}


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_profile_stopped_by_the_timeout_is_empty_and_logged(scratch_db, monkeypatch, caplog, autocommit):
    run_sql(scratch_db, """
        create function slow(int) returns int language sql as 'select $1 from pg_sleep(0.05)';
        create view slow_view as select slow(g) as n, 'x' || g as label from generate_series(1, 200) g;
    """)
    monkeypatch.setattr(profiles, "PROFILE_TIMEOUT_MS", 200)
    conn = connect(scratch_db)
    conn.autocommit = autocommit
    try:
        found, _ = introspect_tables(conn, [TableRef("public", "slow_view")], exact_count_threshold=1000)
        meta = found[TableRef("public", "slow_view")]
        with caplog.at_level("WARNING"):
            profile = profiles.profile_table(conn, meta, [{"n": 1, "label": "x1"}])
        with conn.cursor() as cur:  # the session is usable and its timeout restored
            cur.execute("show statement_timeout")
            assert cur.fetchone()[0] == "0"
    finally:
        conn.close()
    assert profile.values == {} and profile.ranges == {}
    assert any(r.getMessage() == "value profile failed; no values or ranges for this table" for r in caplog.records)


@pytest.mark.parametrize("name,expected", [("id", True), ("company_id", True), ("OrderID", True),
                                           ("service_no", False), ("idle", False)])
def test_obvious_ids(name, expected):
    from chalicelib.pipeline.models import ColumnMeta, TableMeta

    col = ColumnMeta(name, "integer", "int4", "base", None, True, None, None)
    meta = TableMeta(TableRef("public", "t"), None, "table", [col], [], [], 0, True)
    assert profiles.is_obvious_id(meta, col) is expected
