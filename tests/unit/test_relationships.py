"""Relationships inferred where no foreign key is declared (chalicelib.pipeline.relationships), on scratch
databases of the real PostgreSQL: naming, stems, types, the data check, declared keys, quoted names, schemas,
empty tables, the time bound, and the no-FK warehouse of tests/fixtures."""
from __future__ import annotations

import logging
import time

import psycopg2
import pytest

from chalicelib.pipeline import introspect, relationships
from chalicelib.pipeline.models import TableDoc, TableRef
from tests.conftest import run_sql
from tests.fixtures.nofk_warehouse import EXPECTED, TABLES, load_nofk_warehouse


@pytest.fixture
def conn(scratch_db):
    connection = psycopg2.connect(scratch_db)
    yield connection
    connection.close()


def _metas(conn, names: list[str]):
    refs = [TableRef(*name.split(".", 1)) for name in names]
    found, missing = introspect.introspect_tables(conn, refs, exact_count_threshold=1_000_000)
    assert not missing, missing
    return refs, {ref: found[ref] for ref in refs}


def _infer(conn, names: list[str], *, task: list[str] | None = None, chinese: bool = False, **options):
    """{(table, column): (ref table, ref column, evidence)} of every listed table, keys among `task` (or all)."""
    refs, metas = _metas(conn, names)
    task_refs = [TableRef(*name.split(".", 1)) for name in task] if task is not None else refs
    index = relationships.load_candidate_keys(conn, task_refs)
    inferred = {}
    for ref, meta in metas.items():
        for fk in relationships.infer_relationships(conn, meta, index, chinese=chinese, **options):
            assert fk.inferred and fk.evidence and len(fk.columns) == len(fk.ref_columns) == 1
            inferred[(ref.sql_name, fk.columns[0])] = (TableRef(fk.ref_schema, fk.ref_table).sql_name,
                                                      fk.ref_columns[0], fk.evidence)
    return inferred


SHOP = """
create table customers (id integer primary key, name text);
create table t_product (id bigint primary key, product_name text);
create table orders (id integer primary key, customer_id integer, product_id integer, amount numeric(10,2));
insert into customers select g, 'c' || g from generate_series(1, 20) g;
insert into t_product select g, 'p' || g from generate_series(1, 10) g;
insert into orders select g, 1 + g % 20, 1 + g % 10, g from generate_series(1, 200) g;
"""


def test_x_id_names_table_x_or_xs_or_prefix_x(conn):
    run_sql(conn.dsn, SHOP)
    inferred = _infer(conn, ["public.customers", "public.t_product", "public.orders"])
    assert {k: v[:2] for k, v in inferred.items()} == {
        ("public.orders", "customer_id"): ("public.customers", "id"),  # plural table name
        ("public.orders", "product_id"): ("public.t_product", "id"),  # integer -> bigint, prefix word dropped
    }
    assert inferred[("public.orders", "customer_id")][2] == (
        "naming customer_id → customers.id; 100% of 20 sampled values found")


def test_shared_stem_on_text_codes_and_chinese_evidence(conn):
    run_sql(conn.dsn, """
        create table bss_service_area (id varchar(32) primary key, service_area_no varchar(255),
                                       service_area_name varchar(255));
        create table bss_business_day_data (id varchar(32) primary key, service_no varchar(255), pay_sum numeric);
        insert into bss_service_area select md5(g::text), (1000 + g)::text, 'a' || g from generate_series(1, 12) g;
        insert into bss_business_day_data select md5('d' || g), (1000 + 1 + g % 12)::text, g
          from generate_series(1, 300) g;
    """)
    inferred = _infer(conn, ["public.bss_service_area", "public.bss_business_day_data"], chinese=True)
    assert inferred == {("public.bss_business_day_data", "service_no"): (
        "public.bss_service_area", "service_area_no",
        "命名 service_no ↔ bss_service_area.service_area_no；抽样 12 个值中 100% 命中")}


def test_incompatible_types_are_refused_before_any_data_check(conn):
    run_sql(conn.dsn, """
        create table account (id integer primary key);
        create table payment (id integer primary key, account_id varchar(10), account_no date);
        insert into account select g from generate_series(1, 10) g;
        insert into payment select g, (1 + g % 10)::text, date '2023-01-01' from generate_series(1, 50) g;
    """)
    refs, metas = _metas(conn, ["public.account", "public.payment"])
    index = relationships.load_candidate_keys(conn, refs)
    assert relationships.propose(metas[refs[1]], index) == []  # text vs integer: not even a candidate
    assert _infer(conn, ["public.account", "public.payment"]) == {}


def test_low_overlap_and_non_unique_targets_are_refused(conn):
    run_sql(conn.dsn, """
        create table region (id integer primary key, region_no text);
        create table store (id integer primary key, region_id integer, region_no text);
        insert into region select g, 'R' || (g % 3) from generate_series(1, 6) g;  -- region_no repeats
        insert into store select g, g, 'R' || (g % 3) from generate_series(1, 40) g;  -- ids 1..40: 15 % found
    """)
    refs, metas = _metas(conn, ["public.region", "public.store"])
    index = relationships.load_candidate_keys(conn, refs)
    candidates = {(c.column.name, c.key.column) for c in relationships.propose(metas[refs[1]], index)}
    assert candidates == {("region_id", "id"), ("region_no", "region_no")}  # naming proposes both
    low = next(c for c in relationships.propose(metas[refs[1]], index) if c.column.name == "region_id")
    result = relationships.check_candidate(conn, metas[refs[1]], low)
    assert (result.sampled, result.found, result.kept) == (40, 6, False)
    dup = next(c for c in relationships.propose(metas[refs[1]], index) if c.column.name == "region_no")
    assert relationships.check_candidate(conn, metas[refs[1]], dup).duplicated == 3
    assert _infer(conn, ["public.region", "public.store"]) == {}  # the data supports neither


def test_a_declared_foreign_key_is_not_inferred_again(conn):
    run_sql(conn.dsn, SHOP + "alter table orders add foreign key (customer_id) references customers (id);")
    refs, metas = _metas(conn, ["public.customers", "public.t_product", "public.orders"])
    orders = metas[refs[2]]
    index = relationships.load_candidate_keys(conn, refs)
    orders.inferred_keys = relationships.infer_relationships(conn, orders, index, chinese=False)
    assert [fk.columns for fk in orders.inferred_keys] == [["product_id"]]
    assert [(fk.columns, fk.inferred) for fk in orders.relationships] == [(["customer_id"], False),
                                                                          (["product_id"], True)]


def test_quoted_mixed_case_names(conn):
    run_sql(conn.dsn, """
        create schema "Sales";
        create table "Sales"."Product" ("Id" integer primary key, "ProductName" text);
        create table "Sales"."OrderLine" ("Id" integer primary key, "ProductId" integer, "Qty" integer);
        insert into "Sales"."Product" select g, 'p' || g from generate_series(1, 8) g;
        insert into "Sales"."OrderLine" select g, 1 + g % 8, g from generate_series(1, 30) g;
    """)
    inferred = _infer(conn, ['Sales.Product', 'Sales.OrderLine'])
    assert inferred == {('"Sales"."OrderLine"', "ProductId"): (
        '"Sales"."Product"', "Id", 'naming "ProductId" → "Sales"."Product"."Id"; 100% of 8 sampled values found')}


def test_several_schemas_the_data_decides_and_only_the_tasks_tables(conn):
    run_sql(conn.dsn, """
        create schema crm; create schema sales; create schema hr;
        create table crm.customer (id integer primary key);
        create table hr.customer (id integer primary key);  -- same name, other ids
        create table sales.invoice (id integer primary key, customer_id integer);
        insert into crm.customer select g from generate_series(1, 10) g;
        insert into hr.customer select g from generate_series(500, 510) g;
        insert into sales.invoice select g, 1 + g % 10 from generate_series(1, 50) g;
    """)
    tables = ["crm.customer", "hr.customer", "sales.invoice"]
    assert {k: v[:2] for k, v in _infer(conn, tables).items()} == {
        ("sales.invoice", "customer_id"): ("crm.customer", "id")}
    # crm.customer is not one of the task's tables: nothing to relate to
    assert _infer(conn, ["sales.invoice"], task=["hr.customer", "sales.invoice"]) == {}


def test_empty_tables_give_no_relationship_and_no_error(conn):
    run_sql(conn.dsn, """
        create table customers (id integer primary key);
        create table orders (id integer primary key, customer_id integer);
        create table visits (id integer primary key, customer_id integer);
        insert into visits select g, g from generate_series(1, 5) g;  -- customers is empty
    """)
    assert _infer(conn, ["public.customers", "public.orders", "public.visits"]) == {}


def test_a_check_is_stopped_by_its_time_bound(conn, scratch_db, caplog):
    run_sql(conn.dsn, SHOP)
    refs, metas = _metas(conn, ["public.customers", "public.t_product", "public.orders"])
    index = relationships.load_candidate_keys(conn, refs)
    blocker = psycopg2.connect(scratch_db)
    try:
        with blocker.cursor() as cur:  # the check waits for this lock until its statement timeout
            cur.execute("lock table customers in access exclusive mode")
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=relationships.logger.name):
            inferred = relationships.infer_relationships(conn, metas[refs[2]], index, chinese=False, timeout_ms=200)
        seconds = time.monotonic() - started
    finally:
        blocker.rollback()
        blocker.close()
    assert [(fk.columns, fk.ref_table) for fk in inferred] == [(["product_id"], "t_product")]
    assert seconds < 3, seconds
    stopped = [r for r in caplog.records if r.getMessage() == "relationship check stopped"]
    assert len(stopped) == 1 and stopped[0].column == "customer_id" and "statement timeout" in stopped[0].error
    # Nothing left open, the session's timeout untouched.
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    with conn.cursor() as cur:
        cur.execute("show statement_timeout")
        assert cur.fetchone()[0] == "0"


def test_checks_per_table_are_capped(conn, caplog):
    run_sql(conn.dsn, SHOP)
    with caplog.at_level(logging.INFO, logger=relationships.logger.name):
        inferred = _infer(conn, ["public.customers", "public.t_product", "public.orders"], max_checks=1)
    assert list(inferred) == [("public.orders", "customer_id")]
    assert [r.checked for r in caplog.records if r.getMessage() == "relationship checks capped"] == [1]


def test_the_nofk_warehouse_gets_exactly_its_relationships(scratch_db, conn):
    load_nofk_warehouse(scratch_db)
    inferred = _infer(conn, TABLES, chinese=True)
    assert {(t.split(".")[1], c): (r.split(".")[1], rc) for (t, c), (r, rc, _e) in inferred.items()} == EXPECTED
    # The mapper's service_no mixes in other systems' codes (YG…): half of them are no service area's.
    assert ("public.bss_service_area_mapper", "service_no") not in inferred
    assert inferred[("public.bss_business_day_data", "service_no")][2] == (
        "命名 service_no ↔ bss_service_area.service_area_no，注释相同（服务区编码）；抽样 15 个值中 100% 命中")


def test_heuristic_themes_join_tables_along_inferred_relationships(scratch_db, conn):
    """A database without foreign keys gets multi-table themes once relationships are inferred."""
    from chalicelib.providers.heuristic import HeuristicProvider

    load_nofk_warehouse(scratch_db)
    refs, metas = _metas(conn, TABLES)
    docs = [TableDoc(meta=m, table_comment=m.comment, column_comments={c.name: c.comment for c in m.columns
                                                                      if c.comment},
                     comment_sources={}, enums={}, samples=[]) for m in metas.values()]
    provider = HeuristicProvider()
    before = provider.extract_themes(docs, "高速公路服务区", 3)
    assert all(len(t.related_tables) == 1 for t in before)  # nothing declared: one table per theme
    index = relationships.load_candidate_keys(conn, refs)
    for doc in docs:
        doc.meta.inferred_keys = relationships.infer_relationships(conn, doc.meta, index, chinese=True)
    themes = provider.extract_themes(docs, "高速公路服务区", 3)
    assert len(themes[0].related_tables) >= 3
    assert "public.bss_service_area" in themes[0].related_tables


class _CountingCursor(psycopg2.extensions.cursor):
    statements: list[str] = []

    def execute(self, query, params=None):
        _CountingCursor.statements.append(query if isinstance(query, str) else query.as_string(self))
        return super().execute(query, params)


def test_statements_do_not_grow_with_the_task_tables(scratch_db):
    """One catalog statement reads the keys of every listed table; a table's inference runs at most three
    statements per data check (read only, timeout, check), however many tables are listed."""
    tables = 300
    script = ["create table t0 (id integer primary key);"]
    script += [f"create table t{i} (id integer primary key, t{i - 1}_id integer);" for i in range(1, tables)]
    script += ["insert into t0 select g from generate_series(1, 5) g;",
               "insert into t1 select g, g from generate_series(1, 5) g;"]
    run_sql(scratch_db, "".join(script))
    conn = psycopg2.connect(scratch_db, cursor_factory=_CountingCursor)
    try:
        refs, metas = _metas(conn, [f"public.t{i}" for i in range(tables)])
        _CountingCursor.statements = []
        index = relationships.load_candidate_keys(conn, refs)
        assert len(_CountingCursor.statements) == 1 and len(index.keys) == tables
        for i in (1, 150):
            _CountingCursor.statements = []
            inferred = relationships.infer_relationships(conn, metas[refs[i]], index, chinese=False)
            assert len(_CountingCursor.statements) == 3  # one candidate, one check
            assert [fk.ref_table for fk in inferred] == (["t0"] if i == 1 else [])  # t149 is empty
    finally:
        conn.close()


def test_naming_candidates_are_looked_up_not_scanned():
    """Proposing candidates against 10,000 tables' keys reads the index, not every table."""
    from chalicelib.pipeline.models import ColumnMeta, TableMeta

    index = relationships.KeyIndex()
    for i in range(10_000):
        ref = TableRef("public", f"dim_entity{i}")
        index.add(relationships.KeyColumn(ref, "id", "int4", "int4", "主键", "primary"))
        index.add(relationships.KeyColumn(ref, f"entity{i}_code", "varchar", "varchar", f"编码{i}", "named"))
    columns = [ColumnMeta(f"entity{i}_id", "integer", "int4", "base", None, True, None, None, ordinal=i)
               for i in range(0, 400, 4)]
    columns += [ColumnMeta(f"entity{i}_code", "text", "text", "base", None, True, None, f"编码{i}", ordinal=500 + i)
                for i in range(100)]
    meta = TableMeta(ref=TableRef("public", "fact"), comment=None, kind="table", columns=columns, primary_key=[],
                     foreign_keys=[], row_count=0, row_count_exact=True)
    started = time.monotonic()
    candidates = relationships.propose(meta, index)
    assert time.monotonic() - started < 1.0
    assert len(candidates) == 200
    first = candidates[0]
    assert (first.column.name, first.key.ref.name, first.key.column) == ("entity0_code", "dim_entity0", "entity0_code")


def test_a_tables_own_identifier_references_nothing(conn):
    """`ods.customers.customer_id` is the copy's own id, not a reference to another customers table with the same
    ids; a link table's part of a composite key is a reference, and never a target."""
    run_sql(conn.dsn, """
        create schema ods; create schema "Sales";
        create table ods.customers (customer_id bigint, name text);  -- no primary key
        create table "Sales".customers ("CustomerKey" integer primary key);
        create table territories (territory_id text primary key, name text);
        create table employee_territories (employee_id integer, territory_id text,
                                           primary key (employee_id, territory_id));
        insert into ods.customers select g, 'c' || g from generate_series(1, 10) g;
        insert into "Sales".customers select g from generate_series(1, 10) g;
        insert into territories select 't' || g, 'n' from generate_series(1, 12) g;
        insert into employee_territories select g, 't' || g from generate_series(1, 12) g;
    """)
    inferred = _infer(conn, ["ods.customers", "Sales.customers", "public.territories",
                             "public.employee_territories"])
    assert {k: v[:2] for k, v in inferred.items()} == {
        ("public.employee_territories", "territory_id"): ("public.territories", "territory_id")}


def test_northwind_without_its_foreign_keys(scratch_db, conn):
    """A real sample database (tests/fixtures/realdbs/northwind.sql) with every foreign key dropped: what is
    inferred is what was declared; only names that say nothing (`ship_via`, `reports_to`) and empty tables miss."""
    from pathlib import Path

    from tests.functional.test_realdbs_ddl import load_dump

    load_dump(scratch_db, Path(__file__).resolve().parents[1] / "fixtures" / "realdbs" / "northwind.sql")
    with conn.cursor() as cur:
        cur.execute("select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                    "where c.relkind = 'r' and n.nspname = 'public' order by 1")
        tables = [f"public.{name}" for (name,) in cur.fetchall()]
    _refs, metas = _metas(conn, tables)
    declared = {(ref.sql_name, fk.columns[0]): (TableRef(fk.ref_schema, fk.ref_table).sql_name, fk.ref_columns[0])
                for ref, meta in metas.items() for fk in meta.foreign_keys}
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("select conrelid::regclass::text, conname from pg_constraint where contype = 'f'")
        for relation, name in cur.fetchall():
            cur.execute(f'alter table {relation} drop constraint "{name}"')
    conn.commit()
    inferred = {k: v[:2] for k, v in _infer(conn, tables).items()}
    assert len(declared) == 13
    assert all(declared.get(key) == target for key, target in inferred.items()), set(inferred.items()) - set(
        declared.items())
    assert len(inferred) >= 9
    assert ("public.order_details", "product_id") in inferred and ("public.orders", "customer_id") in inferred
