"""ddl_generation on a real PostgreSQL: sampling, comment merge, enum confirmation, executable DDL, MD format."""
from __future__ import annotations

import logging

import psycopg2
import pytest

from chalicelib.pipeline import ddl
from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import CommentSuggestion, TableDoc, TableMeta, TableRef

TYPES_SQL = """
create schema "Sales";
create type "Sales".mood as enum ('new', 'paid', 'shipped');
create domain positive_int as integer check (value > 0);
"""

TABLES_SQL = """
create table "Sales".customers (
    id serial primary key,
    name varchar(80) not null,
    tags text[],
    created_at timestamptz default now()
);
comment on table "Sales".customers is '客户信息';
comment on column "Sales".customers.name is '客户
姓名';
create table "Sales"."OrderItems" (
    "ItemId" bigint generated always as identity primary key,
    customer_id integer references "Sales".customers (id),
    status "Sales".mood not null default 'new',
    qty positive_int,
    price numeric(12,2) default 0,
    sku varchar(20),
    "Select" text,
    codes integer[],
    created timestamp(3) without time zone,
    note text
);
comment on column "Sales"."OrderItems".price is 'Unit price';
create table public.events (
    id integer not null,
    happened date not null,
    amount numeric(10,2),
    primary key (id, happened)
) partition by range (happened);
create table public.events_2024 partition of public.events for values from ('2024-01-01') to ('2025-01-01');
create table public.events_2025 partition of public.events for values from ('2025-01-01') to ('2026-01-01');
insert into "Sales".customers (name, tags) select 'c' || g, array['a', 'b'] from generate_series(1, 5) g;
insert into "Sales"."OrderItems" (customer_id, status, qty, price, sku, "Select", codes, created, note)
    select 1 + g % 5, (array['new', 'paid'])[1 + g % 2]::"Sales".mood, g, g * 1.5, 'SKU' || (g % 4),
           repeat('long ', 60), array[g, g + 1], timestamp '2024-01-01 08:00' + g * interval '1 hour', 'note ' || g
      from generate_series(1, 30) g;
insert into public.events select g, date '2024-12-25' + g, g from generate_series(1, 12) g;
"""

ORDER_ITEMS = TableRef("Sales", "OrderItems")
CUSTOMERS = TableRef("Sales", "customers")
EVENTS = TableRef("public", "events")


class FakeLLM:
    """The provider protocol's comment call, scripted per table; records calls."""

    name = "fake"

    def __init__(self, answers: dict[TableRef, CommentSuggestion]):
        self.answers = answers
        self.calls: list[tuple[TableRef, int, str]] = []

    def suggest_table_comments(self, meta: TableMeta, samples: list[dict], business_context: str):
        self.calls.append((meta.ref, len(samples), business_context))
        return self.answers.get(meta.ref, CommentSuggestion(table_comment=None))


@pytest.fixture
def conn(scratch_db):
    conn = connect(scratch_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(TYPES_SQL)
        cur.execute(TABLES_SQL)
    yield conn
    conn.close()


def _metas(conn, *refs: TableRef) -> dict[TableRef, TableMeta]:
    found, errors = introspect_tables(conn, list(refs), exact_count_threshold=100_000)
    assert not errors
    return found


def _order_items_doc(conn, caplog=None) -> tuple[TableDoc, FakeLLM]:
    meta = _metas(conn, ORDER_ITEMS)[ORDER_ITEMS]
    llm = FakeLLM({ORDER_ITEMS: CommentSuggestion(
        table_comment="订单明细\n（每行一个商品）",
        column_comments={"ItemId": "明细ID", "itemid": "ignored lower-case duplicate", "STATUS": "订单状态",
                         "price": "LLM price must lose", "ghost_column": "invented", "sku": "商品编码",
                         "select": "关键字列", "note": "  "},
        enum_candidates=["sku", "note", "Ghost", "STATUS", "codes"],
    )})
    doc = ddl.build_table_doc(conn, meta, llm, "电商订单系统", sample_limit=5, enum_max_distinct=10)
    return doc, llm


def test_build_table_doc_merges_comments_and_confirms_enums(conn, caplog):
    caplog.set_level(logging.WARNING, logger="chalicelib.pipeline.ddl")
    doc, llm = _order_items_doc(conn)
    assert llm.calls == [(ORDER_ITEMS, 5, "电商订单系统")]  # exactly one LLM call per table
    assert doc.table_comment == "订单明细 （每行一个商品）"
    assert doc.comment_sources[""] == "llm"  # FakeLLM has no `kind`: taken as an LLM
    assert doc.column_comments == {"ItemId": "明细ID", "status": "订单状态", "price": "Unit price", "sku": "商品编码",
                                   "Select": "关键字列"}
    assert doc.comment_sources["price"] == "database" and doc.comment_sources["ItemId"] == "llm"
    assert "note" not in doc.column_comments and "customer_id" not in doc.column_comments
    assert any("ghost_column" in str(getattr(r, "columns", "")) for r in caplog.records)
    # PostgreSQL enum: all labels, even one never used; LLM candidate confirmed with its real values;
    # note has 30 distinct values (> 10) and codes is an array: both skipped; Ghost does not exist.
    assert doc.enums == {"status": ["new", "paid", "shipped"], "sku": ["SKU0", "SKU1", "SKU2", "SKU3"]}
    assert len(doc.samples) == 5
    assert all(isinstance(v, str) or v is None for row in doc.samples for v in row.values())
    assert all(len(row["Select"]) == ddl.MAX_VALUE_CHARS and row["Select"].endswith("…") for row in doc.samples)
    assert doc.samples[0]["codes"] == "[1, 2]" and doc.samples[0]["price"] == "1.50"
    assert TableDoc.from_dict(doc.to_dict()) == doc


def test_database_comments_win_over_llm(conn):
    meta = _metas(conn, CUSTOMERS)[CUSTOMERS]
    llm = FakeLLM({CUSTOMERS: CommentSuggestion(table_comment="LLM table", column_comments={"name": "LLM name",
                                                                                           "id": "客户ID"})})
    doc = ddl.build_table_doc(conn, meta, llm, "电商")
    assert doc.table_comment == "客户信息" and doc.comment_sources[""] == "database"
    assert doc.column_comments == {"id": "客户ID", "name": "客户\n姓名"}
    assert doc.enums == {}


def test_sample_rows_uses_tablesample_for_big_estimates_and_falls_back(conn):
    meta = _metas(conn, ORDER_ITEMS)[ORDER_ITEMS]
    meta.row_count, meta.row_count_exact = 10_000_000, False  # pretend: sampling 0.01 % of 30 rows finds few
    rows = ddl.sample_rows(conn, meta, 7)
    assert len(rows) == 7
    assert list(rows[0]) == [c.name for c in meta.columns]
    assert ddl.sample_rows(conn, meta, 0) == []


def test_render_value():
    import datetime as dt
    from decimal import Decimal

    assert ddl.render_value(None) is None
    assert ddl.render_value(Decimal("12.50")) == "12.50"
    assert ddl.render_value(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02 03:04:05"
    assert ddl.render_value({"a": "中"}) == '{"a": "中"}'
    assert ddl.render_value(b"\x00\x01") == "<2 bytes>"
    assert ddl.render_value(True) == "true"
    assert ddl.render_value("x" * 500) == "x" * 99 + "…"


def test_rendered_ddl_is_executable_and_recreates_the_columns(conn):
    metas = _metas(conn, ORDER_ITEMS, CUSTOMERS, EVENTS)
    llm = FakeLLM({ORDER_ITEMS: CommentSuggestion(table_comment="订单明细", column_comments={
        "note": "备注 -- with dashes; and ); parens", "sku": "商品编码\r\n第二行"}, enum_candidates=["sku"])})
    docs = {ref: ddl.build_table_doc(conn, meta, llm, "电商订单系统") for ref, meta in metas.items()}
    texts = {ref: ddl.render_ddl(doc, "电商订单系统") for ref, doc in docs.items()}

    text = texts[ORDER_ITEMS]
    lines = text.splitlines()
    assert lines[0] == "-- 中文名: 订单明细"
    assert lines[1].startswith('-- 描述: 订单明细（电商订单系统），主键 "ItemId"')
    assert '-- 外键: customer_id 关联 "Sales".customers(id)' in lines
    assert 'create table "Sales"."OrderItems" (' in lines
    assert '  "ItemId" bigint not null,' in lines
    assert "  status \"Sales\".mood not null default 'new'::\"Sales\".mood,  -- 可选值：new、paid、shipped" in lines
    assert "  price numeric(12,2) default 0,  -- Unit price" in lines
    assert "  sku varchar(20),  -- 商品编码 第二行，可选值：SKU0、SKU1、SKU2、SKU3" in lines
    assert '  "Select" text,' in lines and "  codes integer[]," in lines and "  qty positive_int," in lines
    assert "  created timestamp(3)," in lines
    assert lines[-2:] == ['  primary key ("ItemId")', ");"]
    assert "foreign key" not in text and "references" not in text.lower().replace("-- ", "")

    cust = texts[CUSTOMERS].splitlines()
    assert "  id serial not null,  -- 客户ID" not in cust  # no LLM comment for customers.id in this run
    assert "  id serial not null," in cust
    assert "  name varchar(80) not null,  -- 客户 姓名" in cust
    assert "  created_at timestamptz default now()," in cust

    before = {ref: [(c.name, c.data_type, c.nullable) for c in meta.columns] for ref, meta in metas.items()}
    with conn.cursor() as cur:
        cur.execute('drop table "Sales"."OrderItems", "Sales".customers, public.events cascade')
        for ref in (CUSTOMERS, ORDER_ITEMS, EVENTS):
            cur.execute(texts[ref])
    after = _metas(conn, ORDER_ITEMS, CUSTOMERS, EVENTS)
    for ref in metas:
        assert [(c.name, c.data_type, c.nullable) for c in after[ref].columns] == before[ref]
        assert after[ref].primary_key == metas[ref].primary_key
    assert after[ORDER_ITEMS].column("status").default == "'new'::\"Sales\".mood"
    assert after[ORDER_ITEMS].column("price").default == "0"


def test_render_ddl_without_primary_key_ends_without_comma(conn):
    with conn.cursor() as cur:
        cur.execute("create table public.plain (a int, b text)")
        cur.execute("comment on column public.plain.b is 'last column'")
    ref = TableRef("public", "plain")
    doc = ddl.build_table_doc(conn, _metas(conn, ref)[ref], FakeLLM({}), "shop analytics")
    text = ddl.render_ddl(doc, "shop analytics")
    assert text.splitlines() == [
        "-- Name: plain",
        "-- Description: Table plain (shop analytics); 0 rows.",
        "-- Columns: last column",  # the commented columns by their business names, for retrieval
        "create table public.plain (",
        "  a integer,",
        "  b text  -- last column",
        ");",
    ]
    with conn.cursor() as cur:
        cur.execute("drop table public.plain")
        cur.execute(text)


def test_render_md_chinese(conn):
    doc, _ = _order_items_doc(conn)
    md = ddl.render_md(doc, "电商订单系统")
    lines = md.splitlines()
    assert lines[0] == '## "Sales"."OrderItems"（订单明细 （每行一个商品））'
    assert lines[1].startswith('订单明细 （每行一个商品）（电商订单系统），主键 "ItemId"')
    assert "字段列表：" in lines
    assert '- "ItemId" (bigint) - 明细ID [主键, 非空] [示例: 1, 2]' in lines
    assert "- status (\"Sales\".mood) - 订单状态 [非空] [示例: paid, new]" in lines
    assert "- price (numeric(12,2)) - Unit price [示例: 1.50, 3.00]" in lines
    assert any(line.startswith("- note (text) [示例: note 1, note 2]") for line in lines)
    assert "字段补充说明：" in lines
    notes = lines[lines.index("字段补充说明：") + 1:]
    assert notes == [
        '- 主键: "ItemId"',
        '- 外键: customer_id 关联 "Sales".customers(id)',
        "- status 为枚举字段，可选值：new、paid、shipped",
        "- sku 为枚举字段，可选值：SKU0、SKU1、SKU2、SKU3",
    ]


def test_render_md_english_and_public_heading(conn):
    meta = _metas(conn, EVENTS)[EVENTS]
    assert meta.kind == "partitioned" and meta.row_count == 12
    llm = FakeLLM({EVENTS: CommentSuggestion(table_comment="Daily events", column_comments={"amount": "Amount"},
                                             enum_candidates=["amount"])})
    doc = ddl.build_table_doc(conn, meta, llm, "event tracking", enum_max_distinct=20)
    md = ddl.render_md(doc, "event tracking")
    lines = md.splitlines()
    assert lines[0] == "## events (Daily events)"
    assert lines[1] == "Daily events (event tracking); primary key id, happened; enum columns amount; 12 rows."
    assert "Fields:" in lines
    assert "- id (integer) [primary key, not null] [examples: 1, 2]" in lines
    assert "- amount (numeric(10,2)) - Amount [examples: 1.00, 2.00]" in lines
    assert lines[lines.index("Notes:") + 1:] == [
        "- Primary key: id, happened",
        "- amount is an enum column, values: " + ", ".join(f"{i}.00" for i in range(1, 13)),
    ]
    # Without an explicit context, the language follows the comments.
    assert ddl.render_md(doc).splitlines()[0] == "## events (Daily events)"


def test_table_info_and_fields(conn):
    doc, _ = _order_items_doc(conn)
    assert ddl.table_info(doc) == {
        "table_name": "OrderItems", "schema_name": "Sales", "full_name": '"Sales"."OrderItems"',
        "table_type": "table", "comment": "订单明细 （每行一个商品）", "field_count": 10, "row_count": 30,
    }
    by_name = {f["column_name"]: f for f in ddl.fields(doc)}
    assert by_name["sku"] == {"column_name": "sku", "data_type": "varchar", "max_length": 20, "is_nullable": True,
                              "is_primary_key": False, "comment": "商品编码"}
    assert by_name["ItemId"]["is_primary_key"] and not by_name["ItemId"]["is_nullable"]
    assert by_name["price"]["data_type"] == "numeric" and by_name["codes"]["data_type"] == "integer[]"
    assert by_name["note"]["comment"] is None


def test_short_type_and_language_detection():
    assert ddl.short_type("character varying(32)") == "varchar(32)"
    assert ddl.short_type("character varying[]") == "varchar[]"
    assert ddl.short_type("character(3)") == "char(3)"
    assert ddl.short_type("timestamp(3) without time zone") == "timestamp(3)"
    assert ddl.short_type("timestamp with time zone[]") == "timestamptz[]"
    assert ddl.short_type("time without time zone") == "time"
    assert ddl.short_type('"Sales".mood') == '"Sales".mood'
    assert ddl.is_chinese("高速公路服务区管理系统") and not ddl.is_chinese("highway") and not ddl.is_chinese(None)


def test_demo_tables_render_and_replay(demo_db_url, scratch_db):
    from chalicelib.pipeline.tablelist import parse_table_names
    from infra.local.demo_db import DEMO_BUSINESS_CONTEXT, DEMO_TABLES

    refs = parse_table_names(DEMO_TABLES)
    source = connect(demo_db_url)
    try:
        metas = _metas(source, *refs)
        area = TableRef("public", "bss_service_area")
        llm = FakeLLM({area: CommentSuggestion(table_comment=None, column_comments={"service_position": "经纬度"},
                                               enum_candidates=["service_state", "service_area_type"])})
        docs = [ddl.build_table_doc(source, metas[ref], llm, DEMO_BUSINESS_CONTEXT) for ref in refs]
    finally:
        source.close()
    # A language model is asked about every table but the one whose comments all come from the database.
    asked = {ref for ref, *_ in llm.calls}
    assert asked == {metas[ref].ref for ref in refs if not ddl.fully_commented(metas[ref])}
    assert {metas[ref].ref for ref in refs} - asked == {TableRef("public", "bss_section_route_area_link")}
    area_doc = next(d for d in docs if d.meta.ref == area)
    assert area_doc.enums == {"service_area_type": ["信息化服务区", "智能化服务区"],
                              "service_state": ["上传数据", "关闭", "开放"]}
    assert area_doc.column_comments["service_position"] == "经纬度"
    md = ddl.render_md(area_doc, DEMO_BUSINESS_CONTEXT)
    assert md.startswith("## bss_service_area（高速公路服务区基础信息）\n")
    assert "- service_state 为枚举字段，可选值：上传数据、关闭、开放" in md

    target = connect(scratch_db)
    target.autocommit = True
    try:
        with target.cursor() as cur:
            for doc in docs:
                cur.execute(ddl.render_ddl(doc, DEMO_BUSINESS_CONTEXT))
        replayed = _metas(target, *refs)
    finally:
        target.close()
    for ref in refs:
        assert [(c.name, c.data_type, c.nullable) for c in replayed[ref].columns] == [
            (c.name, c.data_type, c.nullable) for c in metas[ref].columns]


def test_a_batch_lends_at_most_its_connections_and_replaces_a_broken_one(scratch_db):
    """Twelve threads, a pool of three: never more than three connections, each phase on its own lease."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.pipeline.db_pool import ConnectionPool

    connections = ConnectionPool(scratch_db, 3)
    lent, most = [0], [0]
    lock = threading.Lock()

    def phase(i: int) -> int:
        with connections.lease() as conn:
            with lock:
                lent[0] += 1
                most[0] = max(most[0], lent[0])
            with conn.cursor() as cur:
                cur.execute("select pg_sleep(0.02), pg_backend_pid()")
                pid = cur.fetchone()[1]
            with lock:
                lent[0] -= 1
        return pid

    try:
        with ThreadPoolExecutor(12) as pool:
            pids = set(pool.map(phase, range(36)))
        assert most[0] <= 3 and 1 <= len(pids) <= 3
        with pytest.raises(psycopg2.Error), connections.lease() as conn, conn.cursor() as cur:
            cur.execute("select * from no_such_table")
        assert len(connections._all) <= 2  # the failed one was discarded, not returned to the pool
        assert phase(0) > 0
    finally:
        connections.close()
