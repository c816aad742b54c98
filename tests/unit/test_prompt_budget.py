"""Every prompt kind stays under the context budget at 1,000 and 10,000 synthetic tables, through the real prompt
builders; the token estimate is conservative by construction; repairs see only the tables the failing SQL uses."""
# ruff: noqa: S608 - the SQL here is fixture text over generated identifiers
from __future__ import annotations

import random

import pytest

from chalicelib.pipeline.models import ColumnMeta, ForeignKey, RepairRequest, TableDoc, TableMeta, TableRef, Theme
from chalicelib.pipeline.prompt_budget import (
    PromptBudget,
    clip_to_tokens,
    estimate_messages,
    estimate_tokens,
    fit_schema_text,
    select_repair_docs,
)
from chalicelib.pipeline.sqltext import referenced_tables
from chalicelib.providers import prompts

BUDGET = PromptBudget(context_tokens=32768, answer_tokens=4096)
ZH = "高速公路服务区经营管理与车流分析"
EN = "A retail group with regions, sites, items, orders and order lines"


def _col(name: str, data_type: str = "character varying(64)", comment: str | None = None,
         enum: list[str] | None = None) -> ColumnMeta:
    return ColumnMeta(name=name, data_type=data_type, udt_name="varchar", type_kind="enum" if enum else "base",
                      max_length=None, nullable=True, default=None, comment=comment, enum_values=enum)


def synthetic_docs(count: int, *, seed: int = 7, wide_every: int = 97) -> list[TableDoc]:
    """`count` tables in 20 schemas: FK chains inside each schema, Chinese comments on most tables and columns,
    enum-like values, and every `wide_every`-th table 120 columns wide."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        schema = f"biz{i % 20:02d}"
        ref = TableRef(schema, f"t{i:05d}_service_area_daily_summary")
        width = 120 if i % wide_every == 0 else rng.randint(6, 14)
        columns = [_col("id", "bigint")]
        columns += [_col(f"col_{n:03d}_amount_value", "numeric(14,2)", comment=f"第{n}项金额（元）" if n % 3 else None)
                    for n in range(1, width)]
        columns.append(_col("state", comment="状态", enum=["开放", "关闭", "维修中", "筹建"]))
        fks = []
        if i >= 20:
            parent = TableRef(f"biz{(i - 20) % 20:02d}", f"t{i - 20:05d}_service_area_daily_summary")
            fks.append(ForeignKey(f"fk_{i}", ["col_001_amount_value"], parent.schema, parent.name, ["id"]))
        meta = TableMeta(ref=ref, comment=f"服务区第{i}号日汇总表" if i % 4 else None, kind="table", columns=columns,
                         primary_key=["id"], foreign_keys=fks, row_count=100, row_count_exact=True)
        # The value profile ddl_generation writes: the ranges of the amounts, a few values of the text columns.
        docs.append(TableDoc(meta=meta, table_comment=f"服务区日汇总{i}", column_comments={"id": "主键"},
                             comment_sources={}, enums={"state": ["开放", "关闭"]},
                             samples=[{c.name: "示例值" * 5 for c in columns} for _ in range(3)],
                             column_values={"state": ["开放", "关闭", "维修中"]},
                             value_ranges={c.name: ["0.00", "1234567.89"] for c in columns[1:-1]}))
    return docs


def _size(prompt: str, lang: str) -> int:
    return estimate_messages([{"role": "system", "content": prompts.SYSTEM_PROMPTS[lang]},
                              {"role": "user", "content": prompt}])


@pytest.fixture(scope="module", params=[1_000, 10_000])
def docs(request):
    return synthetic_docs(request.param)


@pytest.mark.parametrize("context", [ZH, EN])
def test_every_prompt_kind_stays_under_the_budget(docs, context):
    lang = prompts.prompt_language(context)
    limit = BUDGET.prompt_tokens
    sizes: dict[str, list[int]] = {}

    # Column comments: an ordinary table and a wide one with many sample rows.
    for doc in (docs[1], docs[0]):
        samples = [{c.name: "很长的样例值" * 20 for c in doc.meta.columns} for _ in range(20)]
        for prompt in prompts.comments_prompts(doc.meta, samples, context, lang, BUDGET):
            sizes.setdefault("comments", []).append(_size(prompt, lang))

    # Themes: the whole database, in parts when it does not fit; every table in exactly one part.
    theme_asks = prompts.theme_prompts(docs, context, 5, lang, BUDGET)
    sizes["themes"] = [_size(p, lang) for p in theme_asks]
    names = [d.meta.ref.display_name for d in docs]
    assert sum(p.count(name + " ") + p.count(name + "\n") for p in theme_asks for name in names[:50]) >= 50
    assert len(theme_asks) > 1  # 1,000 tables of this size do not fit one 28k prompt
    # The merge of many candidate themes, each naming many tables.
    candidates = [Theme(f"主题{i}", "说明" * 30, names[i:i + 60], ["服务区"], ["营收"])
                  for i in range(len(theme_asks) * 5)]
    groups = prompts.merge_theme_groups(candidates, context, 5, lang, BUDGET)
    sizes["merge"] = [_size(p, lang) for _, p in groups]
    assert sum(len(themes) for themes, _ in groups) == len(candidates)

    # Pairs: a theme naming 400 tables, and the fallback of a theme whose tables are unknown (every doc).
    theme = Theme("车流与营收", "服务区车流量与营收的关系" * 40, names[:400], ["服务区"] * 50, ["车流量"] * 50)
    sizes["pairs"] = [_size(prompts.pairs_prompt(theme, docs[:400], context, 10, lang, BUDGET), lang),
                      _size(prompts.pairs_prompt(theme, docs, context, 10, lang, BUDGET), lang)]

    # Repairs: 20 failing statements over a few tables each, one with a long error.
    requests = [RepairRequest(i, f"问题{i}", f"SELECT count(*) FROM {docs[i * 7].meta.ref.sql_name} a "
                                            f"JOIN {docs[i * 7 + 1].meta.ref.sql_name} b ON a.id = b.id;",
                              "column does not exist " * (200 if i == 3 else 1)) for i in range(20)]
    batches, skipped = prompts.repair_prompts(requests, docs, lang, BUDGET)
    assert not skipped and sorted(r.index for b, _ in batches for r in b) == list(range(20))
    sizes["repair"] = [_size(p, lang) for _, p in batches]

    for kind, values in sizes.items():
        assert values, kind
        assert max(values) <= limit, (kind, max(values), limit)


def test_repair_prompt_shows_only_the_tables_the_failing_sql_uses():
    docs = synthetic_docs(1_000)
    used = [docs[10], docs[11]]
    sql = (f"SELECT a.col_001_amount_value FROM {used[0].meta.ref.sql_name} a JOIN {used[1].meta.ref.sql_name} b "
           "ON b.id = a.id WHERE a.nope = 1;")
    typo = "SELECT count(*) FROM biz05.t00025_service_area_daily_sumary;"  # a misspelt table
    broken = f"SELECT sum( FROM {docs[12].meta.ref.sql_name} WHERE"  # does not parse: read by the scanner
    batches, _ = prompts.repair_prompts([RepairRequest(0, "q", sql, 'column a.nope does not exist'),
                                         RepairRequest(1, "q", typo, "relation does not exist"),
                                         RepairRequest(2, "q", broken, "syntax error")], docs, "zh", BUDGET)
    (_, prompt), = batches
    shown = {d.meta.ref.sql_name for d in docs if f"create table {d.meta.ref.sql_name} (" in prompt}
    assert {docs[10].meta.ref.sql_name, docs[11].meta.ref.sql_name, docs[12].meta.ref.sql_name} <= shown
    assert "biz05.t00025_service_area_daily_summary" in shown
    assert len(shown) <= 6  # the three named, the closest names to the typo: never the database
    assert select_repair_docs([RepairRequest(0, "q", "SELECT 1;", "x")], docs) == []


def test_referenced_tables_reads_the_parse_tree_and_the_scanner():
    sql = ('WITH d AS (SELECT 1 FROM bss.t1) SELECT * FROM d JOIN public.bss_company c ON true, s2."Odd" '
           "WHERE x IN (SELECT 1 FROM t3);")
    assert referenced_tables(sql) == [("bss", "t1"), ("public", "bss_company"), ("s2", "Odd"), (None, "t3")]
    assert referenced_tables("select sum( from public.bss_area a where") == [("public", "bss_area")]


def test_estimate_is_conservative_by_construction():
    samples = ["服务区名称", "SELECT count(*) FROM public.bss_company WHERE delete_ts IS NULL;",
               '{"a": [1, 2, 3], "b": "x"}', "Business context: a group of ten business units.", "12345678901",
               "naïve café — ok", "\n\n\n  indented", ""]
    for text in samples:
        assert estimate_tokens(text) <= len(text)  # cutting by characters is always safe
    assert estimate_tokens("服务区名称") == 5  # one per CJK character
    assert estimate_tokens('{"a": 1}') >= 6  # punctuation-dense JSON is not under-counted
    for a in samples:
        for b in samples:
            assert estimate_tokens(a + b) <= estimate_tokens(a) + estimate_tokens(b)
    long = "服务区" * 1000
    assert estimate_tokens(clip_to_tokens(long, 100)) <= 100


def test_fit_schema_text_prefers_full_then_lean_then_leaves_out():
    docs = synthetic_docs(60, wide_every=1000)
    full = estimate_tokens(fit_schema_text(docs[:1], 10_000)[0])
    text, shown = fit_schema_text(docs, full * 3)
    assert estimate_tokens(text) <= full * 3 and 3 <= len(shown) < len(docs)
    assert "第1项金额" in text.split("\n\n")[0]  # the first table in full, with its comments
    tiny, shown = fit_schema_text(synthetic_docs(1, wide_every=1), 200)  # one 120-column table in 200 tokens
    assert shown and estimate_tokens(tiny) <= 200 and "col_001_amount_value" in tiny


def test_a_table_too_wide_for_one_prompt_is_asked_in_parts_of_its_columns():
    # PostgreSQL's maximum of columns, every other one with a database comment (those are not asked about).
    columns = [_col(f"c{n:04d}_measurement_with_a_long_name",
                    comment=f"第{n}个测量值，单位与口径见说明书第{n}页" if n % 2 else None) for n in range(1600)]
    meta = TableMeta(ref=TableRef("public", "wide"), comment=None, kind="table", columns=columns, primary_key=[],
                     foreign_keys=[], row_count=1, row_count_exact=True)
    samples = [{c.name: "值" * 30 for c in columns}] * 5
    asks = prompts.comments_prompts(meta, samples, ZH, "zh", BUDGET)
    assert len(asks) > 1
    assert max(_size(p, "zh") for p in asks) <= BUDGET.prompt_tokens
    listed = [line.split()[1] for p in asks for line in p.splitlines() if line.startswith("- c")]
    assert listed == [c.name for c in columns if not c.comment]  # every uncommented column once, in order
    assert all("(part " in p for p in asks)


def test_the_budget_comes_from_the_settings(monkeypatch):
    from chalicelib.config import get_settings

    monkeypatch.setenv("LLM_CONTEXT_TOKENS", "8192")
    monkeypatch.setenv("LLM_ANSWER_TOKENS", "2048")
    budget = PromptBudget.from_settings(get_settings())
    assert budget.prompt_tokens == 6144
    docs = synthetic_docs(300)
    asks = prompts.theme_prompts(docs, ZH, 5, "zh", budget)
    assert len(asks) > 1 and max(_size(p, "zh") for p in asks) <= 6144
    theme = Theme("主题", "说明", [d.meta.ref.display_name for d in docs[:50]], [], [])
    assert _size(prompts.pairs_prompt(theme, docs[:50], ZH, 10, "zh", budget), "zh") <= 6144
