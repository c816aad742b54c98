"""qa: theme validation, pair normalisation, dedupe, file naming and JSON rendering."""
from __future__ import annotations

import json

from chalicelib.pipeline import qa
from chalicelib.pipeline.models import (
    ColumnMeta,
    CommentSuggestion,
    LLMUsage,
    QAPair,
    TableDoc,
    TableMeta,
    TableRef,
    Theme,
)


def _doc(schema: str, name: str, comment: str | None = None) -> TableDoc:
    meta = TableMeta(ref=TableRef(schema, name), comment=comment, kind="table",
                     columns=[ColumnMeta("id", "integer", "int4", "base", None, False, None, None, True)],
                     primary_key=["id"], foreign_keys=[], row_count=0, row_count_exact=True)
    return TableDoc(meta=meta, table_comment=comment, column_comments={}, comment_sources={}, enums={}, samples=[])


DOCS = [_doc("public", "bss_company", "公司"), _doc("public", "bss_service_area", "服务区"),
        _doc("ods", "bss_company"), _doc("public", "CarFlow")]


class ScriptedProvider:
    """An injected fake: answers what the test says (the real providers are tested on their own)."""

    name = "scripted"

    def __init__(self, themes=None, pairs=None):
        self.usage = LLMUsage(provider=self.name)
        self._themes, self._pairs = themes or [], pairs or []
        self.calls = []

    def suggest_table_comments(self, meta, samples, business_context) -> CommentSuggestion:
        raise AssertionError("not used")

    def extract_themes(self, docs, business_context, count):
        self.calls.append(("themes", count))
        return list(self._themes)

    def generate_pairs(self, theme, docs, business_context, count):
        self.calls.append(("pairs", theme.topic_name, count))
        return list(self._pairs)

    def repair_sql(self, requests, docs):
        return {}


def test_extract_themes_keeps_only_real_tables():
    provider = ScriptedProvider(themes=[
        Theme("营收\n分析", " 服务区 营收 ", ["bss_service_area", "public.nowhere", '"public"."bss_company"',
                                           "bss_service_area"], ["服务区"], ["营收"]),
        Theme("幽灵主题", "d", ["ghost_table", "other.ghost"]),
        Theme("ODS", "d", ["ods.bss_company", "carflow"]),
        Theme("Extra", "d", ["public.CarFlow"]),
    ])
    themes = qa.extract_themes(provider, DOCS, "ctx", 3)
    assert [t.topic_name for t in themes] == ["营收 分析", "ODS", "Extra"]
    assert themes[0].related_tables == ["public.bss_service_area", "public.bss_company"]
    assert themes[0].description == "服务区 营收"
    # The bare "carflow" matches the only CarFlow case-insensitively.
    assert themes[1].related_tables == ["ods.bss_company", 'public."CarFlow"']  # quoted as shown everywhere
    assert provider.calls == [("themes", 3)]


def test_ambiguous_bare_name_prefers_public():
    provider = ScriptedProvider(themes=[Theme("t", "d", ["bss_company"])])
    assert qa.extract_themes(provider, DOCS, "ctx", 5)[0].related_tables == ["public.bss_company"]


def test_generate_theme_pairs_normalises_and_drops():
    provider = ScriptedProvider(pairs=[
        QAPair("多少个\n服务区？", "select count(*)\n  from bss_service_area\n;;  "),
        QAPair("空", "   "),
        QAPair("写入", "DELETE FROM bss_company;"),
        QAPair("", "SELECT 1;"),
        QAPair("CTE", "  WITH x AS (SELECT 'a  b' AS v)\tSELECT v FROM x"),
        QAPair("dangerous prose", "Sorry, I cannot write this query."),
    ])
    theme = Theme("t", "d", ["public.bss_company"])
    pairs = qa.generate_theme_pairs(provider, theme, DOCS, "ctx", 10)
    assert pairs == [
        QAPair("多少个 服务区？", "select count(*) from bss_service_area;"),
        QAPair("CTE", "WITH x AS (SELECT 'a  b' AS v) SELECT v FROM x;"),
    ]
    assert provider.calls == [("pairs", "t", 10)]


def test_normalize_sql_keeps_literals():
    assert qa.normalize_sql("SELECT 'a;\nb' ;") == "SELECT 'a; b';"
    assert qa.normalize_sql('SELECT "Mixed  Name" FROM t') == 'SELECT "Mixed  Name" FROM t;'
    assert qa.normalize_sql("update t set a = 1") is None
    assert qa.normalize_sql("") is None


def test_merge_pairs_dedupes_on_normalised_sql():
    groups = [
        [QAPair("a", "SELECT COUNT(*) FROM t;"), QAPair("b", "SELECT name FROM t WHERE s = 'X';")],
        [QAPair("a2", "select  count(*)\nfrom T"), QAPair("b2", "SELECT name FROM t WHERE s = 'x';"),
         QAPair("c", 'SELECT "Name" FROM t;'), QAPair("c2", 'SELECT "name" FROM t;')],
    ]
    merged = qa.merge_pairs(groups)
    # Case outside quotes and whitespace/';' do not matter; literals and quoted identifiers keep their case.
    assert [p.question for p in merged] == ["a", "b", "b2", "c", "c2"]
    assert qa.sql_dedupe_key("SELECT  A FROM 'X' ;") == "select a from 'X'"


def test_pair_file_name():
    assert qa.pair_file_name("highway_db", "20250701_143052") == "qs_highway_db_20250701_143052_pair.json"
    assert qa.pair_file_name("my db/../x", "20250701_143052") == "qs_my_db_.._x_20250701_143052_pair.json"


def test_render_pairs_json_is_utf8_and_indented():
    text = qa.render_pairs_json([QAPair("服务区有多少个？", "SELECT COUNT(*) FROM t;")])
    assert "服务区有多少个？" in text and "\\u" not in text
    assert text.startswith('[\n  {\n    "question"')
    assert json.loads(text) == [{"question": "服务区有多少个？", "sql": "SELECT COUNT(*) FROM t;"}]
