"""Prompts within the token budget end to end: 10,000 synthetic tables through the domain (qa.extract_themes,
qa.generate_theme_pairs, validation's repair call) and the real OpenAIProvider / `openai` client against the local
OpenAI-compatible stub, which records every request: every one is under the budget, whatever it asks."""
# ruff: noqa: S608 - the SQL here is fixture text over generated identifiers
from __future__ import annotations

import dataclasses
import json
import re

from chalicelib.config import get_settings
from chalicelib.pipeline import qa
from chalicelib.pipeline.models import ColumnMeta, RepairRequest, TableMeta, TableRef
from chalicelib.pipeline.prompt_budget import estimate_messages
from chalicelib.providers.openai_chat import OpenAIProvider
from tests.unit.test_prompt_budget import ZH, synthetic_docs

CONTEXT_TOKENS, ANSWER_TOKENS = 32768, 4096
_NAME = re.compile(r"^(biz\d\d\.t\d{5}_service_area_daily_summary)\b", re.M)
_CREATE = re.compile(r"^create table (\S+) \(", re.M)


def _user(request: dict) -> str:
    return request["messages"][1]["content"]


def responder(request: dict) -> str:
    """A model that reads what it is shown: themes of the tables it sees, pairs over them, no repairs."""
    prompt = _user(request)
    if "候选业务主题" in prompt:  # merge round: keep five candidates' tables
        candidates = [json.loads(line) for line in prompt.splitlines() if line.startswith('{"index"')]
        themes = [{"topic_name": f"合并主题{i}", "description": "合并", "related_tables": c["related_tables"][:5],
                   "biz_entities": ["服务区"], "biz_metrics": ["营收"]} for i, c in enumerate(candidates[:5])]
        return json.dumps({"themes": themes}, ensure_ascii=False)
    if "业务主题" in prompt:
        tables = _NAME.findall(prompt) or _CREATE.findall(prompt)
        themes = [{"topic_name": f"主题{tables[i]}", "description": "分片主题", "related_tables": tables[i:i + 8],
                   "biz_entities": ["服务区"], "biz_metrics": ["营收"]} for i in range(0, 40, 8)]
        return json.dumps({"themes": themes}, ensure_ascii=False)
    if "请生成" in prompt:
        return json.dumps({"pairs": [{"question": f"{t}有多少行？", "sql": f"SELECT count(*) FROM {t};"}
                                     for t in _CREATE.findall(prompt)[:10]]}, ensure_ascii=False)
    if "EXPLAIN 时报错" in prompt:
        return json.dumps({"repairs": []})
    columns = re.findall(r"^- (\w+) \(", prompt, re.M)
    return json.dumps({"table_comment": "宽表", "columns": {c: "测量值" for c in columns}, "enum_candidates": []},
                      ensure_ascii=False)


def test_ten_thousand_tables_every_request_under_the_budget(llm_stub):
    docs = synthetic_docs(10_000)
    llm_stub.default = responder
    settings = dataclasses.replace(get_settings(), llm_base_url=llm_stub.base_url, llm_api_key="k",
                                   llm_model="stub-model", llm_timeout_seconds=30.0, llm_max_retries=0,
                                   llm_max_concurrency=4, llm_context_tokens=CONTEXT_TOKENS,
                                   llm_answer_tokens=ANSWER_TOKENS)
    llm = OpenAIProvider(settings)

    themes = qa.extract_themes(llm, docs, ZH, 5)
    theme_calls = len(llm_stub.chat_requests)
    assert len(themes) == 5 and all(t.related_tables for t in themes)
    assert theme_calls > 10  # the summary did not fit: asked in parts, then merged
    known = {d.meta.ref.display_name for d in docs}
    assert all(name in known for t in themes for name in t.related_tables)

    pairs = qa.generate_theme_pairs(llm, themes[0], docs, ZH, 10)
    assert pairs and all(p.sql.startswith("SELECT count(*) FROM biz") for p in pairs)

    requests = [RepairRequest(i, f"问题{i}", f"SELECT nope FROM {docs[i].meta.ref.sql_name};",
                              'column "nope" does not exist') for i in range(20)]
    assert llm.repair_sql(requests, docs) == {}

    wide = TableMeta(ref=TableRef("public", "wide"), comment=None, kind="table", primary_key=[], foreign_keys=[],
                     row_count=1, row_count_exact=True,
                     columns=[ColumnMeta(f"c{n:04d}_measurement_with_a_long_name", "numeric(14,2)", "numeric", "base",
                                         None, True, None, None)  # no database comment: every column is asked
                              for n in range(1600)])
    suggestion = llm.suggest_table_comments(wide, [], ZH)
    assert len(suggestion.column_comments) == 1600

    sizes = [estimate_messages(r["messages"]) for r in llm_stub.chat_requests]
    limit = CONTEXT_TOKENS - ANSWER_TOKENS
    print(f"prompt sizes (estimated tokens): {len(sizes)} requests, max {max(sizes)}, budget {limit}; "
          f"themes {theme_calls} calls")
    assert max(sizes) <= limit
    repair_prompts = [_user(r) for r in llm_stub.chat_requests if "EXPLAIN 时报错" in _user(r)]
    assert len(repair_prompts) == 1
    # Only the failing statements' tables (and the closest names for none here): 20 of the 10,000.
    assert len(_CREATE.findall(repair_prompts[0])) == 20
