"""The heuristic provider's pairs on the demo highway database and on every public sample database
(tests/fixtures/realdbs): built from TableDocs as ddl_generation builds them, through the product's own SQL
validation (EXPLAIN in read-only transactions, no repair) — all valid — and with the shapes the brief asks for
where the schema allows them: joins along the relationships, window functions, CTEs, soft-delete filters on every
table of a query that has one."""
from __future__ import annotations

import re
import uuid

import psycopg2
import pytest

from chalicelib.pipeline import qa
from chalicelib.pipeline.ddl import build_table_doc
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import TableDoc, TableRef
from chalicelib.pipeline.sqltext import referenced_tables
from chalicelib.pipeline.validation import validate_pairs
from chalicelib.providers.heuristic import HeuristicProvider
from chalicelib.providers.heuristic.columns import soft_delete_column
from tests.conftest import create_database, drop_database
from tests.functional.test_realdbs_ddl import REALDBS, load_dump

CONTEXTS = {
    "highway_demo": "高速公路服务区管理系统",
    "northwind.sql": "Northwind Traders: an import-export food wholesaler",
    "periodic_table.sql": "The periodic table of the chemical elements",
    "happiness_index.sql": "World Happiness Report 2019",
}


def _docs(url: str, context: str) -> list[TableDoc]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                        "where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') "
                        "order by 1, 2")
            refs = [TableRef(schema, name) for schema, name in cur.fetchall()]
        found, problems = introspect_tables(conn, refs, exact_count_threshold=100_000)
        assert not problems
        return [build_table_doc(conn, found[ref], HeuristicProvider(), context) for ref in refs]
    finally:
        conn.close()


@pytest.fixture(scope="module", params=sorted(CONTEXTS))
def database(request, pg_url):
    if request.param == "highway_demo":
        from infra.local.demo_db import load_demo_database

        name = f"hw_{uuid.uuid4().hex[:8]}"
        url = create_database(pg_url, name)
        load_demo_database(url)
    else:
        name = f"real_{uuid.uuid4().hex[:8]}"
        url = create_database(pg_url, name)
        load_dump(url, REALDBS / request.param)
    yield request.param, url, _docs(url, CONTEXTS[request.param])
    drop_database(pg_url, name)


def _pairs(docs: list[TableDoc], context: str) -> list:
    provider = HeuristicProvider()
    themes = qa.extract_themes(provider, docs, context, 5)
    return [pair for theme in themes for pair in qa.generate_theme_pairs(provider, theme, docs, context, 10)]


def test_every_heuristic_pair_validates(database):
    name, url, docs = database
    pairs = _pairs(docs, CONTEXTS[name])
    assert len(pairs) >= 10
    report = validate_pairs(url, pairs, llm=None, docs=docs, enable_repair=False, max_rounds=0, timeout_ms=10_000)
    invalid = [(r.original_sql, r.error) for r in report.results if not r.valid_before]
    assert invalid == []
    # Every table a query reads that has a soft-delete column is filtered on it.
    by_name = {(d.meta.ref.schema, d.meta.ref.name): d for d in docs}
    for pair in pairs:
        for schema, table in referenced_tables(pair.sql):
            doc = by_name[(schema or "public", table)]
            column = soft_delete_column(doc.meta)
            if column:
                assert f".{column} IS NULL" in pair.sql, pair.sql


def test_shapes_beyond_single_table_templates(database):
    name, _url, docs = database
    if name not in ("highway_demo", "northwind.sql"):
        pytest.skip("a one-table database has nothing to join")
    pairs = _pairs(docs, CONTEXTS[name])
    sqls = [p.sql for p in pairs]
    assert any(s.count(" JOIN ") == 2 for s in sqls), "no three-table join"
    assert any(" OVER (" in s for s in sqls), "no window function"
    assert any("share_pct" in s for s in sqls), "no share of a total"
    if name == "highway_demo":  # Chinese business context: Chinese questions, no raw column name of a commented one
        assert any(s.startswith("WITH ") for s in sqls), "no CTE"
        assert any(re.search(r">= '\d{4}-\d{2}-01' AND [\w.]+ < '\d{4}-\d{2}-01'", s) for s in sqls), "no date filter"
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in p.question) for p in pairs)
        commented = {c for d in docs for c, text in d.column_comments.items() if text and "_" in c}
        for pair in pairs:
            assert not [c for c in commented if c in pair.question], pair.question
