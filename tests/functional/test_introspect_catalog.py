"""Bulk introspection on a real PostgreSQL: exact types, keys, comments, partitions, row counts, query count."""
from __future__ import annotations

import psycopg2.extensions
import pytest

from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables, list_tables
from chalicelib.pipeline.models import TableMeta, TableRef

SCHEMA_SQL = """
create schema "Sales";
create type "Sales".mood as enum ('new', 'paid', 'shipped');
create domain positive_int as integer check (value > 0);
create table "Sales".customers (
    id serial primary key,
    name varchar(80) not null,
    tags text[],
    created_at timestamptz default now()
);
comment on table "Sales".customers is 'Customers of the shop';
comment on column "Sales".customers.name is 'Full name';
create table "Sales"."OrderItems" (
    "ItemId" bigint generated always as identity primary key,
    customer_id integer references "Sales".customers (id),
    status "Sales".mood not null default 'new',
    qty positive_int,
    price numeric(12,2) default 0,
    sku varchar(20),
    code char(3),
    codes integer[],
    note text
);
comment on column "Sales"."OrderItems".price is 'Unit price';
create table public.events (
    id integer not null,
    happened date not null,
    amount numeric(10,2),
    customer_id integer references "Sales".customers (id),
    primary key (id, happened)
) partition by range (happened);
comment on table public.events is 'Events by day';
create table public.events_2024 partition of public.events for values from ('2024-01-01') to ('2025-01-01');
create table public.events_2025 partition of public.events for values from ('2025-01-01') to ('2026-01-01');
create table public.event_notes (
    id integer primary key,
    event_id integer,
    event_day date,
    body text,
    foreign key (event_id, event_day) references public.events (id, happened)
);
insert into "Sales".customers (name, tags) select 'c' || g, array['a', 'b'] from generate_series(1, 5) g;
insert into "Sales"."OrderItems" (customer_id, status, qty, price, sku, code, codes, note)
    select 1 + g % 5, (array['new', 'paid', 'shipped'])[1 + g % 3]::"Sales".mood, g, g * 1.5, 'SKU' || (g % 4),
           'abc', array[g, g + 1], 'note ' || g
      from generate_series(1, 30) g;
insert into public.events select g, date '2024-12-25' + g, g, 1 from generate_series(1, 12) g;
"""


class CountingCursor(psycopg2.extensions.cursor):
    """Counts statements sent, so tests can assert how many queries introspection needs."""

    calls: list[str] = []

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's signature
        CountingCursor.calls.append(query if isinstance(query, str) else query.as_string(self))
        return super().execute(query, vars)


@pytest.fixture
def shop_conn(scratch_db):
    conn = connect(scratch_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(SCHEMA_SQL)
    yield conn
    conn.close()


def _get(conn, *refs: TableRef, threshold: int = 100_000) -> dict[TableRef, TableMeta]:
    found, errors = introspect_tables(conn, list(refs), exact_count_threshold=threshold)
    assert errors == {}
    return found


def test_exact_types_keys_and_comments(shop_conn):
    ref = TableRef("Sales", "OrderItems")
    meta = _get(shop_conn, ref)[ref]
    assert meta.kind == "table"
    assert meta.comment is None
    cols = {c.name: c for c in meta.columns}
    assert [c.name for c in meta.columns] == ["ItemId", "customer_id", "status", "qty", "price", "sku", "code",
                                              "codes", "note"]
    assert [c.ordinal for c in meta.columns] == list(range(1, 10))
    assert cols["ItemId"].data_type == "bigint" and cols["ItemId"].is_primary_key and not cols["ItemId"].nullable
    assert cols["ItemId"].default is None  # identity, not a default expression
    assert cols["status"].data_type == '"Sales".mood'
    assert cols["status"].type_kind == "enum" and cols["status"].enum_values == ["new", "paid", "shipped"]
    assert cols["status"].default == "'new'::\"Sales\".mood"
    assert cols["status"].nullable is False
    assert (cols["qty"].data_type, cols["qty"].type_kind, cols["qty"].udt_name) == ("positive_int", "domain",
                                                                                    "positive_int")
    assert cols["price"].data_type == "numeric(12,2)" and cols["price"].comment == "Unit price"
    assert cols["price"].default == "0"
    assert (cols["sku"].data_type, cols["sku"].max_length) == ("character varying(20)", 20)
    assert (cols["code"].data_type, cols["code"].max_length) == ("character(3)", 3)
    assert (cols["codes"].data_type, cols["codes"].type_kind, cols["codes"].udt_name) == ("integer[]", "array",
                                                                                          "_int4")
    assert cols["note"].comment is None
    assert meta.primary_key == ["ItemId"]
    assert [(f.columns, f.ref_schema, f.ref_table, f.ref_columns) for f in meta.foreign_keys] == [
        (["customer_id"], "Sales", "customers", ["id"])
    ]
    assert (meta.row_count, meta.row_count_exact) == (30, True)


def test_serial_default_array_and_table_comment(shop_conn):
    ref = TableRef("Sales", "customers")
    meta = _get(shop_conn, ref)[ref]
    assert meta.comment == "Customers of the shop"
    cols = {c.name: c for c in meta.columns}
    assert cols["id"].default.startswith("nextval(")
    assert cols["name"].comment == "Full name" and cols["name"].data_type == "character varying(80)"
    assert cols["tags"].data_type == "text[]"
    assert cols["created_at"].data_type == "timestamp with time zone" and cols["created_at"].default == "now()"


def test_partitioned_table_is_one_table_with_summed_rows(shop_conn):
    ref = TableRef("public", "events")
    meta = _get(shop_conn, ref)[ref]
    assert meta.kind == "partitioned"
    assert meta.comment == "Events by day"
    assert meta.primary_key == ["id", "happened"]
    assert [f.ref_table for f in meta.foreign_keys] == ["customers"]
    assert (meta.row_count, meta.row_count_exact) == (12, True)

    with shop_conn.cursor() as cur:
        cur.execute("analyze public.events_2024; analyze public.events_2025")
    meta = _get(shop_conn, ref, threshold=1)[ref]  # estimate only: summed over the partitions
    assert (meta.row_count, meta.row_count_exact) == (12, False)

    tables = list_tables(shop_conn, ["public"], None)
    assert tables == ["public.event_notes", "public.events"]


def test_foreign_key_to_partitioned_table_is_listed_once(shop_conn):
    ref = TableRef("public", "event_notes")
    meta = _get(shop_conn, ref)[ref]
    assert [(f.columns, f.ref_table, f.ref_columns) for f in meta.foreign_keys] == [
        (["event_id", "event_day"], "events", ["id", "happened"])
    ]


def test_missing_tables_are_reported_not_raised(shop_conn):
    refs = [TableRef("Sales", "OrderItems"), TableRef("public", "nope"), TableRef("nowhere", "x"),
            TableRef("sales", "orderitems")]
    found, errors = introspect_tables(shop_conn, refs, exact_count_threshold=1000)
    assert list(found) == [TableRef("Sales", "OrderItems")]
    assert errors == {
        TableRef("public", "nope"): "table public.nope does not exist",
        TableRef("nowhere", "x"): "table nowhere.x does not exist (schema nowhere not found)",
        # A TableRef is a catalog name, taken literally; the one differing only in case is named.
        TableRef("sales", "orderitems"): 'table sales.orderitems does not exist (schema sales not found); '
                                         'names differing only in case: "Sales"."OrderItems"',
    }
    assert {problem.kind for problem in errors.values()} == {"missing"}
    assert introspect_tables(shop_conn, [], exact_count_threshold=10) == ({}, {})


def test_never_analyzed_big_table_is_estimated_not_counted(shop_conn):
    with shop_conn.cursor() as cur:
        cur.execute("create table big (id int, pad text) with (autovacuum_enabled = false)")
        cur.execute("insert into big select g, repeat('x', 50) from generate_series(1, 5000) g")
    CountingCursor.calls = []
    shop_conn.cursor_factory = CountingCursor
    meta = _get(shop_conn, TableRef("public", "big"), threshold=10)[TableRef("public", "big")]
    assert not meta.row_count_exact
    assert 1000 < meta.row_count < 50_000
    assert not any("count(*)" in q for q in CountingCursor.calls)


def test_query_count_does_not_grow_with_tables(shop_conn):
    with shop_conn.cursor() as cur:
        for i in range(50):
            cur.execute(f"create table many_{i} (id int primary key, ref int references many_0 (id), v text)")
            cur.execute(f"comment on table many_{i} is 'table {i}'")
            cur.execute(f"insert into many_{i} (id) values (1)")  # noqa: S608 - fixed test names
    shop_conn.cursor_factory = CountingCursor

    def count_queries(n: int) -> int:
        CountingCursor.calls = []
        found, errors = introspect_tables(
            shop_conn, [TableRef("public", f"many_{i}") for i in range(n)], exact_count_threshold=100_000
        )
        assert len(found) == n and not errors
        assert all(m.row_count == 1 and m.row_count_exact for m in found.values())
        return len(CountingCursor.calls)

    five, fifty = count_queries(5), count_queries(50)
    assert five == fifty
    assert fifty <= 4  # resolve, columns, constraints, one batched count


def test_list_tables_pattern_schemas_and_escaping(shop_conn):
    with shop_conn.cursor() as cur:
        cur.execute('create table bss_a (id int); create table bssxa (id int); create table "BSS_Upper" (id int)')
        cur.execute('create view bss_view as select 1 as x')
    # Names come back quoted where PostgreSQL needs it, so that each is accepted back as it is.
    assert list_tables(shop_conn, ["public"], "bss_*") == ['public."BSS_Upper"', "public.bss_a"]
    assert list_tables(shop_conn, ["public"], "bss*") == ['public."BSS_Upper"', "public.bss_a", "public.bssxa"]
    assert list_tables(shop_conn, ["Sales"], None) == ['"Sales"."OrderItems"', '"Sales".customers']
    assert list_tables(shop_conn, ["public", "Sales"], "*ers") == ['"Sales".customers']
    everything = list_tables(shop_conn, [], None)
    assert '"Sales".customers' in everything and "public.events" in everything
    assert not any(t.startswith(("pg_catalog.", "information_schema.")) for t in everything)
    assert "public.events_2024" not in everything
    assert list_tables(shop_conn, ["public"], "100%") == []
