"""introspection: columns, types, keys, comments and row counts of 1,000 generated tables.

- project:  `chalicelib.pipeline.introspect.introspect_tables` (bulk catalog queries, batched exact counts)
- baseline: the usual per-table loop: for every table, information_schema queries for the columns (with
            their comments), the table comment, the primary key and the foreign keys, then `count(*)`

Both read the same tables on the same connection settings and must agree on every column, key and count.
The number of SQL statements each issues is printed too.

    python -m benchmarks.bench_introspection [--tables N]
"""
from __future__ import annotations

import argparse
import time

import psycopg2
from psycopg2 import sql

from benchmarks.common import report
from benchmarks.pgtemp import CountingCursor, bench_database
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import TableRef

SCHEMAS = ("public", "sales", "ops")
# Tables from every tenth one on get 2,000 rows and ANALYZE: above the threshold, estimated not counted.
EXACT_COUNT_THRESHOLD = 1_000

_COLUMN_KINDS = (
    ("amount", "numeric(12,2)"),
    ("title", "varchar(80)"),
    ("note", "text"),
    ("created_at", "timestamp without time zone default now()"),
    ("day", "date"),
    ("active", "boolean not null default true"),
    ("state", "ops.state"),
    ("attrs", "jsonb"),
    ("tags", "text[]"),
    ("qty", "bigint"),
)


def build_schema(url: str, count: int) -> list[TableRef]:
    """`count` tables over three schemas: mixed types, an enum, primary and foreign keys, comments, rows."""
    conn = psycopg2.connect(url)
    refs: list[TableRef] = []
    pending: list[sql.Composable] = []
    with conn, conn.cursor() as cur:
        for schema in SCHEMAS[1:]:
            cur.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        cur.execute("create type ops.state as enum ('open', 'closed', 'void')")
    for i in range(count):
        schema = SCHEMAS[i % len(SCHEMAS)]
        ref = TableRef(schema, f"t{i:04d}_{'Mixed' if i % 7 == 0 else 'plain'}")
        cols = [sql.SQL("id integer primary key")]
        for j in range(3 + i % 6):
            name, kind = _COLUMN_KINDS[(i + j) % len(_COLUMN_KINDS)]
            cols.append(sql.SQL("{} {}").format(sql.Identifier(f"{name}_{j}"), sql.SQL(kind)))
        if i and i % 3 == 0:
            parent = refs[i - 1]
            cols.append(sql.SQL("parent_id integer references {} (id)").format(sql.SQL(parent.sql_name)))
        statements = [
            sql.SQL("create table {} ({})").format(sql.SQL(ref.sql_name), sql.SQL(", ").join(cols)),
            sql.SQL("comment on table {} is {}").format(sql.SQL(ref.sql_name), sql.Literal(f"生成的表 {i}")),
            sql.SQL("comment on column {}.id is {}").format(sql.SQL(ref.sql_name), sql.Literal("主键")),
        ]
        rows = 2000 if i % 10 == 9 else i % 25
        statements.append(sql.SQL("insert into {} (id) select g from generate_series(1, {}) g").format(
            sql.SQL(ref.sql_name), sql.Literal(rows)))
        pending.extend(statements)
        refs.append(ref)
        if len(pending) >= 200 or i == count - 1:  # one round trip and one transaction per ~50 tables
            with conn, conn.cursor() as cur:
                cur.execute(sql.SQL(";\n").join(pending))
            pending.clear()
    conn.autocommit = True
    with conn.cursor() as cur:
        for ref in refs[9::10]:
            cur.execute(sql.SQL("analyze {}").format(sql.SQL(ref.sql_name)))
    conn.close()
    return refs


def per_table_loop(conn, refs: list[TableRef]) -> dict[TableRef, dict]:
    """The per-table way: five queries per table."""
    found: dict[TableRef, dict] = {}
    with conn.cursor() as cur:
        for ref in refs:
            cur.execute(
                "select c.column_name, c.data_type, c.udt_name, c.is_nullable, c.column_default, "
                "       col_description(format('%%I.%%I', c.table_schema, c.table_name)::regclass, c.ordinal_position) "
                "  from information_schema.columns c where c.table_schema = %s and c.table_name = %s "
                " order by c.ordinal_position",
                (ref.schema, ref.name),
            )
            columns = [row[0] for row in cur.fetchall()]
            cur.execute("select obj_description(format('%%I.%%I', %s::text, %s::text)::regclass, 'pg_class')",
                        (ref.schema, ref.name))
            comment = cur.fetchone()[0]
            cur.execute(
                "select k.column_name from information_schema.table_constraints t "
                "  join information_schema.key_column_usage k on k.constraint_schema = t.constraint_schema "
                "   and k.constraint_name = t.constraint_name "
                " where t.table_schema = %s and t.table_name = %s and t.constraint_type = 'PRIMARY KEY' "
                " order by k.ordinal_position",
                (ref.schema, ref.name),
            )
            primary_key = [row[0] for row in cur.fetchall()]
            cur.execute(
                "select k.column_name, u.table_schema, u.table_name, u.column_name "
                "  from information_schema.table_constraints t "
                "  join information_schema.key_column_usage k on k.constraint_schema = t.constraint_schema "
                "   and k.constraint_name = t.constraint_name "
                "  join information_schema.constraint_column_usage u on u.constraint_schema = t.constraint_schema "
                "   and u.constraint_name = t.constraint_name "
                " where t.table_schema = %s and t.table_name = %s and t.constraint_type = 'FOREIGN KEY'",
                (ref.schema, ref.name),
            )
            foreign_keys = [row[0] for row in cur.fetchall()]
            cur.execute(sql.SQL("select count(*) from {}").format(sql.SQL(ref.sql_name)))
            count = cur.fetchone()[0]
            found[ref] = {"columns": columns, "comment": comment, "primary_key": primary_key,
                          "foreign_keys": foreign_keys, "row_count": count}
    conn.rollback()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_introspection")
    parser.add_argument("--tables", type=int, default=1000)
    args = parser.parse_args(argv)
    with bench_database("bench_introspection") as url:
        started = time.perf_counter()
        refs = build_schema(url, args.tables)
        setup_s = time.perf_counter() - started

        conn = psycopg2.connect(url, cursor_factory=CountingCursor)
        try:
            introspect_tables(conn, refs[:5], exact_count_threshold=EXACT_COUNT_THRESHOLD)  # warm the catalog cache
            per_table_loop(conn, refs[:5])
            CountingCursor.count = 0
            started = time.perf_counter()
            found, missing = introspect_tables(conn, refs, exact_count_threshold=EXACT_COUNT_THRESHOLD)
            project_s = time.perf_counter() - started
            project_statements = CountingCursor.count

            CountingCursor.count = 0
            introspect_tables(conn, refs[:5], exact_count_threshold=EXACT_COUNT_THRESHOLD)
            five_statements = CountingCursor.count

            CountingCursor.count = 0
            started = time.perf_counter()
            expected = per_table_loop(conn, refs)
            baseline_s = time.perf_counter() - started
            baseline_statements = CountingCursor.count
        finally:
            conn.close()

    assert not missing and len(found) == len(refs)
    for ref, meta in found.items():
        want = expected[ref]
        assert [c.name for c in meta.columns] == want["columns"], ref
        assert meta.comment == want["comment"] and meta.primary_key == want["primary_key"], ref
        assert sorted(c for fk in meta.foreign_keys for c in fk.columns) == sorted(want["foreign_keys"]), ref
        if meta.row_count_exact:
            assert meta.row_count == want["row_count"], ref
        else:
            assert want["row_count"] >= EXACT_COUNT_THRESHOLD and meta.row_count > 0, ref
    exact = sum(m.row_count_exact for m in found.values())
    report(
        "introspection", project_s, "s", baseline_s, baseline_s / project_s,
        f"  introspection: statements {project_statements} for {len(refs)} tables "
        f"({five_statements} for 5 tables) vs {baseline_statements} for the per-table loop; "
        f"{exact} exact counts, {len(refs) - exact} catalog estimates; schema built in {setup_s:.1f} s",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
