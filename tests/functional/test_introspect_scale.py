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
