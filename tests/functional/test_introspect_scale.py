"""Bulk introspection keeps a constant number of statements from 5 to 1,000 tables, counts included."""
from __future__ import annotations

import psycopg2.extensions
import pytest

from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import TableRef

pytestmark = pytest.mark.slow


class CountingCursor(psycopg2.extensions.cursor):
    statements: list[str] = []

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's signature
        CountingCursor.statements.append(query if isinstance(query, str) else query.as_string(self))
        return super().execute(query, vars)


@pytest.fixture(scope="module")
def thousand(pg_url):
    from tests.conftest import create_database, drop_database

    url = create_database(pg_url, "t_introspect_scale")
    conn = connect(url)
    conn.autocommit = True
    refs = []
    with conn.cursor() as cur:
        cur.execute('create schema "Scale"; create type "Scale".mood as enum (\'ok\', \'meh\')')
        script = []
        for i in range(1000):
            ref = TableRef("Scale" if i % 2 else "public", f"T{i}" if i % 5 == 0 else f"t{i}")
            cols = "id int primary key, v text, m \"Scale\".mood, n numeric(8,2)"
            if i % 4 == 3:
                cols += f", parent_id int references {refs[-1].sql_name} (id)"
            script.append(f"create table {ref.sql_name} ({cols})")
            script.append(f"comment on table {ref.sql_name} is 'table {i}'")
            script.append(f"insert into {ref.sql_name} (id) select g from generate_series(1, {i % 7}) g")  # noqa: S608
            refs.append(ref)
            if len(script) >= 300:
                cur.execute(";".join(script))
                script.clear()
        if script:
            cur.execute(";".join(script))
        # Never analyzed and larger than the threshold allows to count: estimated from its size instead.
        cur.execute("create table public.big (id int, pad text) with (autovacuum_enabled = false);"
                    "insert into public.big select g, repeat('x', 40) from generate_series(1, 20000) g")
    conn.close()
    yield url, refs
    drop_database(pg_url, "t_introspect_scale")


def test_statement_count_is_constant_from_5_to_1000_tables(thousand):
    url, refs = thousand
    conn = connect(url)
    conn.cursor_factory = CountingCursor
    try:
        def run(tables):
            CountingCursor.statements = []
            found, errors = introspect_tables(conn, tables, exact_count_threshold=1000)
            assert not errors and len(found) == len(tables)
            return found, len(CountingCursor.statements)

        _, five = run(refs[:5])
        found, all_1000 = run(refs)
        assert five <= all_1000 <= 5  # resolve, columns, constraints, two batched counts of 500
        assert all(meta.row_count_exact and meta.row_count == i % 7 for i, meta in enumerate(found[r] for r in refs))
        assert all(len(found[r].columns) == (5 if i % 4 == 3 else 4) for i, r in enumerate(refs))
        assert found[refs[3]].foreign_keys[0].ref_table == refs[2].name
        assert found[refs[10]].comment == "table 10" and found[refs[10]].primary_key == ["id"]

        big, statements = run([TableRef("public", "big")])
        assert statements == 3  # no count(*), no per-table EXPLAIN
        meta = big[TableRef("public", "big")]
        assert not meta.row_count_exact and 5_000 < meta.row_count < 80_000
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    finally:
        conn.close()


def _buffers(plan: dict) -> int:
    """Shared buffers (hit + read) of a plan node and everything under it."""
    return plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)


def test_resolving_a_name_reads_a_few_index_pages_not_the_catalog(thousand):
    """What one name costs must not grow with the database: the plan step resolves 10,000 names (in chunks of
    1,000) in a 10,000-table catalog, and a scan of pg_class or pg_type per name made it quadratic (30 s there).
    Measured in buffers, not seconds: per name, far fewer pages than pg_class has, also with an enum type created
    after every table (a merge join over pg_type would read all the tables' row types to reach it)."""

    from chalicelib.pipeline.introspect import _RESOLVE_SQL, _resolve_params
    from chalicelib.pipeline.names import as_table_name

    url, refs = thousand
    conn = connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("create type public.late_mood as enum ('a', 'b'); "
                        "create table public.late_enum (id int primary key, m public.late_mood)")
            cur.execute("select pg_relation_size('pg_catalog.pg_class') / current_setting('block_size')::int")
            catalog_pages = cur.fetchone()[0]

            def buffers(names):
                cur.execute("explain (analyze, buffers, format json) " + _RESOLVE_SQL,
                            _resolve_params([as_table_name(ref) for ref in names]))
                return _buffers(cur.fetchone()[0][0]["Plan"])

            names = refs[:200] + [TableRef("public", "late_enum")]
            few, many = buffers(names[:21]), buffers(names)
            assert catalog_pages > 40  # a catalog of a thousand tables (and their indexes and row types)
            assert many / len(names) < catalog_pages / 2, (many, catalog_pages)  # was above catalog_pages
            assert many < few * 20  # linear in the names (10x the names), whatever the catalog holds
            cur.execute("drop table public.late_enum; drop type public.late_mood")
    finally:
        conn.close()
