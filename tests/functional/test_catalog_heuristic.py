"""The heuristic provider's pairs on the demo database pass the same catalog check as a model's (every table and
column they name resolves) and sql_validation's catalog, EXPLAIN and empty-date-range checks."""
from __future__ import annotations

import psycopg2

from chalicelib.pipeline import qa
from chalicelib.pipeline.catalog_check import unknown_objects
from chalicelib.pipeline.ddl import build_table_doc
from chalicelib.pipeline.introspect import introspect_tables, list_tables
from chalicelib.pipeline.models import TableRef
from chalicelib.pipeline.validation import validate_pairs
from chalicelib.providers.heuristic import HeuristicProvider

ZH = "高速公路服务区管理系统"


def test_heuristic_pairs_pass_the_catalog_check(demo_db_url):
    provider = HeuristicProvider()
    conn = psycopg2.connect(demo_db_url)
    try:
        names = list_tables(conn, ["public"], None)
        refs = [TableRef("public", name.split(".", 1)[1].strip('"')) for name in names]
        found, problems = introspect_tables(conn, refs, exact_count_threshold=100_000)
        assert not problems
        docs = [build_table_doc(conn, found[ref], provider, ZH) for ref in refs]
    finally:
        conn.close()
    themes = qa.extract_themes(provider, docs, ZH, 5)
    pairs = qa.merge_pairs([qa.generate_theme_pairs(provider, t, docs, ZH, 10) for t in themes])
    assert len(pairs) >= 20
    assert {p.sql: unknown_objects(p.sql, docs) for p in pairs if unknown_objects(p.sql, docs)} == {}
    report = validate_pairs(demo_db_url, pairs, llm=None, docs=docs, enable_repair=False, max_rounds=0,
                            timeout_ms=5000)
    assert [(r.original_sql, r.error) for r in report.results if not r.valid_before] == []
