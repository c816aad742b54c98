"""catalog_check: every table and column a generated SQL names, resolved the way PostgreSQL resolves them."""
from __future__ import annotations

import pytest

from chalicelib.pipeline.catalog_check import date_filters, unknown_objects
from chalicelib.pipeline.models import ColumnMeta, TableDoc, TableMeta, TableRef


def _doc(schema: str, name: str, columns: list[tuple[str, str]]) -> TableDoc:
    cols = [ColumnMeta(n, t, t, "base", None, True, None, None) for n, t in columns]
    meta = TableMeta(ref=TableRef(schema, name), comment=None, kind="table", columns=cols, primary_key=[],
                     foreign_keys=[], row_count=1, row_count_exact=True)
    return TableDoc(meta=meta, table_comment=None, column_comments={}, comment_sources={}, enums={}, samples=[])


DOCS = [
    _doc("public", "orders", [("id", "integer"), ("customer_id", "integer"), ("order_date", "date"),
                              ("amount", "numeric(10,2)"), ("created_ts", "timestamp without time zone")]),
    _doc("public", "customers", [("id", "integer"), ("name", "text"), ("delete_ts", "timestamp")]),
    _doc("sales", "Region", [("RegionId", "integer"), ("Name", "text")]),
]

RESOLVING = [
    "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY 1",
    "WITH t AS (SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id) "
    "SELECT c.name, t.total FROM t JOIN public.customers c ON c.id = t.customer_id ORDER BY total DESC",
    'SELECT "RegionId", r."Name" FROM sales."Region" r',
    "SELECT s.total FROM (SELECT sum(amount) total FROM orders) s",
    "SELECT c.*, r.n FROM customers c, LATERAL (SELECT count(*) n FROM orders o WHERE o.customer_id = c.id) r",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r",
    "SELECT id, rank() OVER (PARTITION BY customer_id ORDER BY amount DESC) AS rk FROM orders",
    "SELECT date_trunc('month', order_date) AS m, count(*) FROM orders GROUP BY m ORDER BY m",
    "SELECT public.orders.id FROM public.orders",
    "SELECT g.d, d2 FROM generate_series(1, 3) g(d), generate_series(1, 2) AS d2",
    "SELECT relname FROM pg_class",
    "SELECT id FROM orders UNION SELECT id FROM customers ORDER BY id",
    "SELECT name, 'x' AS label FROM customers WHERE id = ANY(ARRAY[1, 2]) AND name ILIKE '%a%' AND delete_ts IS NULL",
    "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id)",
    "SELECT id FROM orders JOIN customers USING (id)",
    "SELECT count(*), now(), CURRENT_DATE FROM orders",
    "SELECT row_to_json(c) FROM customers c",
    "SELECT x.a FROM (VALUES (1), (2)) AS x(a)",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FILTER (WHERE amount > 0) FROM orders",
    "WITH m AS (SELECT customer_id, amount, lag(amount) OVER w AS prev FROM orders WINDOW w AS (ORDER BY id)) "
    "SELECT customer_id, round(100.0 * (amount - prev) / NULLIF(prev, 0), 2) AS growth FROM m",
]


@pytest.mark.parametrize("sql", RESOLVING)
def test_valid_shapes_are_not_flagged(sql):
    assert unknown_objects(sql, DOCS) == []


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT o.amout FROM orders o", ["unknown column o.amout (public.orders has no column amout)"]),
    ("SELECT * FROM ghost", ["unknown table ghost"]),
    ("SELECT x.id FROM orders o", ["unknown table or alias x (in x.id)"]),
    ('SELECT regionid FROM sales."Region"', ['unknown column regionid (not in sales."Region")']),
    ("SELECT id FROM sales.region", ["unknown table sales.region"]),
    ("SELECT name FROM customers WHERE id IN (SELECT buyer_id FROM orders)",
     ["unknown column buyer_id (not in public.orders, public.customers)"]),
    ("WITH t AS (SELECT id FROM orders) SELECT t.amount FROM t", ["unknown column t.amount (t has no column amount)"]),
])
def test_unknown_objects_are_named(sql, expected):
    assert unknown_objects(sql, DOCS) == expected


def test_nothing_to_check_against_or_unparsable():
    assert unknown_objects("SELECT nope FROM ghost", []) == []
    assert unknown_objects("SELEC id FROM", DOCS) == []  # EXPLAIN reports what does not parse


def test_date_filters():
    found = date_filters("SELECT count(*) FROM orders o WHERE o.order_date >= CURRENT_DATE - 30 "
                         "AND '2030-01-01' < created_ts AND amount > 5 "
                         "AND order_date BETWEEN '2020-01-01' AND DATE '2020-02-01'", DOCS)
    assert [(f.column, f.op, f.values, f.relative_to_now) for f in found] == [
        ("order_date", ">=", [], True),
        ("created_ts", ">", ["2030-01-01"], False),
        ("order_date", "between", ["2020-01-01", "2020-02-01"], False),
    ]
