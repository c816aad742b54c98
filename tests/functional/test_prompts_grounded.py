"""Prompts grounded in the data (issue #14 item 2), through the real OpenAIProvider / `openai` client against the
local stub, on the demo highway database: the comment prompt carries distinct values per column, never rows, and
asks only for what the database does not say; the theme and pair prompts carry real values and the data's date
ranges; the pair prompt asks for Chinese aliases, filters inside the ranges and the shapes of #10, with two
examples built from the task's own tables that run on the database; every prompt states the JSON keys it wants."""
from __future__ import annotations

import dataclasses
import json
import re

import jsonschema
import psycopg2
import pytest

from benchmarks import prompts_before
from chalicelib.config import get_settings
from chalicelib.pipeline import ddl
from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import CommentSuggestion, TableRef, Theme
from chalicelib.pipeline.prompt_budget import PromptBudget, estimate_tokens
from chalicelib.providers import answers, prompts
from chalicelib.providers.heuristic import HeuristicProvider
from chalicelib.providers.openai_chat import OpenAIProvider
from infra.local.demo_db import DEMO_BUSINESS_CONTEXT, DEMO_TABLES
from tests.conftest import run_sql

ZH = DEMO_BUSINESS_CONTEXT
EN = "Highway service area operations"
THEME_TABLES = ["bss_business_day_data", "bss_service_area", "bss_branch", "bss_company"]


def _provider(stub) -> OpenAIProvider:
    return OpenAIProvider(dataclasses.replace(get_settings(), llm_base_url=stub.base_url, llm_api_key="k",
                                              llm_model="stub-model", llm_timeout_seconds=10.0, llm_max_retries=0))


def _user(request: dict) -> str:
    return request["messages"][-1]["content"]


def _metas(url: str, names: list[str]):
    conn = connect(url)
    try:
        found, problems = introspect_tables(conn, [TableRef("public", n) for n in names], exact_count_threshold=10**6)
    finally:
        conn.close()
    assert not problems
    return {meta.ref.name: meta for meta in found.values()}


@pytest.fixture(scope="module")
def demo_docs(demo_db_url):
    """The demo tables' docs as ddl_generation builds them (heuristic comments, value profiles)."""
    metas = _metas(demo_db_url, [t.split(".")[-1] for t in DEMO_TABLES])
    conn = connect(demo_db_url)
    try:
        provider = HeuristicProvider()
        return {name: ddl.build_table_doc(conn, meta, provider, ZH) for name, meta in metas.items()}
    finally:
        conn.close()


def _one(url: str, query: str):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchone()
    finally:
        conn.close()


def test_comment_prompt_sends_distinct_values_not_rows_and_asks_only_uncommented_columns(demo_db_url, llm_stub):
    meta = _metas(demo_db_url, ["bss_branch"])["bss_branch"]
    llm_stub.script({"table_comment": "档口信息", "columns": {"product_brand": "品牌", "branch_name": "不该要"},
                     "enum_candidates": ["category"]})
    conn = connect(demo_db_url)
    try:
        doc = ddl.build_table_doc(conn, meta, _provider(llm_stub), ZH)
    finally:
        conn.close()
    (request,) = llm_stub.chat_requests
    prompt = _user(request)
    column_lines = {m.group(1): m.group(0) for m in re.finditer(r"^- (\w+) \(.*$", prompt, re.M)}
    uncommented = [c.name for c in meta.columns if not c.comment]
    assert list(column_lines) == uncommented  # only what the database does not say, in order
    assert "branch_name（档口名称）" in prompt  # commented columns named, as context, not asked
    brands = {r[0] for r in _query_all(demo_db_url, "select distinct product_brand from bss_branch")}
    shown = re.findall(r"'([^']*)'", column_lines["product_brand"].split("): ", 1)[1])
    assert set(shown) <= brands and len(shown) == len(set(shown)) == min(5, len(brands))
    assert '{"id"' not in prompt and "样例数据" not in prompt  # no rows
    # The database comment still wins over what the model said.
    assert doc.column_comments["branch_name"] == "档口名称" and doc.column_comments["product_brand"] == "品牌"
    assert doc.enums["category"]


def _query_all(url: str, query: str) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()
    finally:
        conn.close()


def test_fully_commented_tables_ask_for_the_table_comment_only_or_nothing(scratch_db, llm_stub):
    run_sql(scratch_db, """
        create table lanes (code text, kind text);
        comment on column lanes.code is '车道编码'; comment on column lanes.kind is '车道类型';
        insert into lanes select 'L' || g, (array['ETC', 'MTC'])[1 + g % 2] from generate_series(1, 30) g;
        create table gates (code text, kind text);
        comment on table gates is '收费站';
        comment on column gates.code is '编码'; comment on column gates.kind is '类型';
        insert into gates select 'G' || g, (array['主线', '匝道', '省界'])[1 + g % 3] from generate_series(1, 30) g;
    """)
    metas = _metas(scratch_db, ["lanes", "gates"])
    llm_stub.script({"table_comment": "车道", "columns": {}, "enum_candidates": []})
    conn = connect(scratch_db)
    try:
        lanes = ddl.build_table_doc(conn, metas["lanes"], _provider(llm_stub), ZH)
        gates = ddl.build_table_doc(conn, metas["gates"], _provider(llm_stub), ZH)
    finally:
        conn.close()
    (request,) = llm_stub.chat_requests  # gates: nothing left to ask, no call
    prompt = _user(request)
    assert "所有字段都已有注释，columns 填 {}" in prompt and not re.search(r"^- \w+ \(", prompt, re.M)
    assert lanes.table_comment == "车道" and lanes.comment_sources[""] == "llm"
    assert gates.table_comment == "收费站" and gates.comment_sources == {"": "database", "code": "database",
                                                                        "kind": "database"}
    assert gates.enums == {"kind": ["主线", "匝道", "省界"]}  # enum candidates from the value profile instead


def test_theme_prompt_carries_real_values_and_date_ranges(demo_docs, demo_db_url, llm_stub):
    llm_stub.script({"themes": [{"topic_name": "营收", "description": "d", "related_tables": ["public.bss_branch"],
                                 "biz_entities": ["档口"], "biz_metrics": ["营收"]}]})
    _provider(llm_stub).extract_themes(list(demo_docs.values()), ZH, 1)
    prompt = _user(llm_stub.chat_requests[0])
    low, high = _one(demo_db_url, "select min(oper_date), max(oper_date) from bss_business_day_data")
    assert f"oper_date date,  -- 统计日期; range: {low} .. {high}" in prompt
    area = demo_docs["bss_service_area"].column_values["service_area_name"][0]
    assert f"e.g. '{area}'" in prompt
    for key in prompts.ANSWER_SCHEMAS["themes"]["properties"]["themes"]["items"]["required"]:
        assert f'"{key}"' in prompt.splitlines()[-1]


def test_pair_prompt_carries_values_ranges_aliases_shapes_and_examples_from_the_schema(demo_docs, demo_db_url,
                                                                                      llm_stub):
    theme = Theme("服务区营收", "各服务区与档口的营收", [f"public.{t}" for t in THEME_TABLES], ["服务区"], ["营收"])
    llm_stub.script({"pairs": [{"question": "各服务区营收？", "sql": "SELECT 1;"}]})
    pairs = _provider(llm_stub).generate_pairs(theme, list(demo_docs.values()), ZH, 5)
    assert pairs
    prompt = _user(llm_stub.chat_requests[0])
    low, high = _one(demo_db_url, "select min(oper_date), max(oper_date) from bss_business_day_data")
    assert f"- public.bss_business_day_data.oper_date: {low} .. {high}" in prompt  # the data's date range
    assert f"数据截止于 {high}" in prompt and "不要使用 CURRENT_DATE" in prompt  # the data ended in the past
    assert "SELECT 的每一列都用中文别名（如 AS " in prompt
    for shape in ("连接 2–3 张表", "WITH（CTE）", "窗口函数", "占比", "环比"):
        assert shape in prompt
    assert "public.bss_business_day_data.service_no = public.bss_service_area.service_area_no （外键）" in prompt
    names = {r[0] for r in _query_all(demo_db_url, "select service_area_name from bss_service_area")}
    assert any(f"'{name}'" in prompt for name in names)  # real values
    examples = [json.loads(line) for line in prompt.split("示例（取自这些表）：\n", 1)[1].splitlines()
                if line.startswith('{"question"')]
    assert len(examples) == 2
    assert " JOIN " in examples[1]["sql"] and re.search(r" AS [\u4e00-\u9fff]+", examples[0]["sql"])
    assert any(f"'{name}'" in examples[0]["sql"] for name in names | {v for d in demo_docs.values()
                                                                      for vs in d.column_values.values() for v in vs})
    conn = psycopg2.connect(demo_db_url)
    try:
        with conn.cursor() as cur:
            for example in examples:  # they run, and return rows: the dates lie inside the data
                cur.execute(example["sql"])
                assert cur.fetchall(), example
    finally:
        conn.close()
    assert '"question"' in prompt.splitlines()[-1] and '"sql"' in prompt.splitlines()[-1]


def test_english_pair_prompt_has_no_chinese_alias_rule(demo_docs, llm_stub):
    theme = Theme("Revenue", "revenue by area", [f"public.{t}" for t in THEME_TABLES], [], [])
    llm_stub.script({"pairs": [{"question": "Revenue?", "sql": "SELECT 1;"}]})
    _provider(llm_stub).generate_pairs(theme, list(demo_docs.values()), EN, 5)
    prompt = _user(llm_stub.chat_requests[0])
    assert "中文别名" not in prompt and "readable alias (AS total_" in prompt
    assert "the data ends on" in prompt and "Examples (from these tables):" in prompt


def test_the_comment_prompt_is_a_fraction_of_the_rows_prompt(demo_db_url):
    """The issue's measure: 20 sample rows were about 90% of a 26-column table's comment prompt."""
    meta = _metas(demo_db_url, ["bss_business_day_data"])["bss_business_day_data"]
    conn = connect(demo_db_url)
    try:
        samples = ddl.sample_rows(conn, meta, 20)
    finally:
        conn.close()
    budget = PromptBudget()
    before = sum(estimate_tokens(p) for p in prompts_before.comments_prompts(meta, samples, ZH, "zh", budget))
    after = sum(estimate_tokens(p) for p in prompts.comments_prompts(meta, samples, ZH, "zh", budget))
    assert len(meta.columns) == 26 and after * 4 < before, (before, after)


@pytest.mark.parametrize("kind,answer,parse", [
    ("comments", {"table_comment": None, "columns": {"a": "甲"}, "enum_candidates": ["a"]},
     answers.parse_comment_answer),
    ("themes", {"themes": [{"topic_name": "t", "description": "d", "related_tables": ["public.a"],
                            "biz_entities": [], "biz_metrics": []}]}, lambda v: answers.parse_themes_answer(v, 1)),
    ("pairs", {"pairs": [{"question": "q", "sql": "SELECT 1;"}]}, lambda v: answers.parse_pairs_answer(v, 1)),
    ("repairs", {"repairs": [{"index": 0, "sql": "SELECT 1;"}]}, lambda v: answers.parse_repairs_answer(v, {0})),
])
def test_the_stated_answer_schemas_are_what_the_parsers_read(kind, answer, parse):
    jsonschema.validate(answer, prompts.ANSWER_SCHEMAS[kind])
    assert parse(answer)
    for lang in ("zh", "en"):
        stated = prompts.answer_format(kind, lang)
        assert all(f'"{key}"' in stated for key in prompts.ANSWER_SCHEMAS[kind]["required"])
    assert isinstance(parse(answer), CommentSuggestion) == (kind == "comments")
