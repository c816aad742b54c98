"""qa_generation through OpenAIProvider and the stub: prompts in, validated themes and pairs out."""
from __future__ import annotations

import dataclasses
import json

import openai

from chalicelib.config import get_settings
from chalicelib.pipeline import qa
from chalicelib.pipeline.models import ColumnMeta, TableDoc, TableMeta, TableRef
from chalicelib.providers.openai_chat import OpenAIProvider
from tests.support.llm_stub import hash_embedding


def _doc(name: str, comment: str) -> TableDoc:
    meta = TableMeta(ref=TableRef("public", name), comment=comment, kind="table",
                     columns=[ColumnMeta("id", "integer", "int4", "base", None, False, None, None, True),
                              ColumnMeta("pay_sum", "numeric(19,4)", "numeric", "base", None, True, None, "支付总额")],
                     primary_key=["id"], foreign_keys=[], row_count=10, row_count_exact=True)
    return TableDoc(meta=meta, table_comment=comment, column_comments={"pay_sum": "支付总额"}, comment_sources={},
                    enums={}, samples=[])


DOCS = [_doc("bss_business_day_data", "营业日数据"), _doc("bss_service_area", "服务区")]


def _responder(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    if "业务主题" in prompt:
        return json.dumps({"themes": [
            {"topic_name": "营收分析", "description": "营收", "related_tables": ["bss_business_day_data", "bss_ghost"],
             "biz_entities": ["服务区"], "biz_metrics": ["支付总额"]},
            {"topic_name": "幽灵", "description": "x", "related_tables": ["public.bss_ghost"]},
            {"topic_name": "服务区概况", "description": "概况", "related_tables": ["public.bss_service_area"]},
        ]}, ensure_ascii=False)
    topic = prompt.split("主题：", 1)[1].split("\n", 1)[0]
    pairs = [
        {"question": f"{topic}：总数", "sql": "SELECT COUNT(*)\nFROM public.bss_business_day_data"},
        {"question": f"{topic}：合计", "sql": "select sum(pay_sum) from public.bss_business_day_data;"},
    ]
    return "<think>plan</think>```json\n" + json.dumps({"pairs": pairs}, ensure_ascii=False) + "\n```"


def test_qa_flow_with_openai_provider(llm_stub):
    llm_stub.default = _responder
    settings = dataclasses.replace(get_settings(), llm_base_url=llm_stub.base_url, llm_model="qwen-stub")
    provider = OpenAIProvider(settings)
    themes = qa.extract_themes(provider, DOCS, "高速公路服务区", 5)
    assert [(t.topic_name, t.related_tables) for t in themes] == [
        ("营收分析", ["public.bss_business_day_data"]),
        ("服务区概况", ["public.bss_service_area"]),
    ]
    groups = [qa.generate_theme_pairs(provider, t, DOCS, "高速公路服务区", 10) for t in themes]
    assert groups[0][0].sql == "SELECT COUNT(*) FROM public.bss_business_day_data;"
    merged = qa.merge_pairs(groups)
    # Both themes produced the same two SQL statements: the second copies are dropped.
    assert [p.question for p in merged] == ["营收分析：总数", "营收分析：合计"]
    # The pair prompt carries only the theme's tables.
    pair_prompt = llm_stub.chat_requests[2]["messages"][-1]["content"]
    assert "bss_service_area" in pair_prompt and "bss_business_day_data" not in pair_prompt
    assert provider.usage.calls == 3 and provider.usage.prompt_tokens > 0
    assert provider.usage.to_dict()["provider"] == "openai-compatible:qwen-stub"


def test_stub_embeddings_are_deterministic(llm_stub):
    client = openai.OpenAI(base_url=llm_stub.base_url, api_key="x", max_retries=0)
    first = client.embeddings.create(model="e", input=["服务区", "revenue"])
    second = client.embeddings.create(model="e", input=["服务区"], encoding_format="float")
    assert len(first.data) == 2 and len(first.data[0].embedding) == llm_stub.embedding_dim
    assert abs(first.data[0].embedding[0] - second.data[0].embedding[0]) < 1e-6
    assert second.data[0].embedding == hash_embedding("服务区", llm_stub.embedding_dim)
    assert first.usage.prompt_tokens > 0
    paths = [r["path"] for r in llm_stub.requests]
    assert paths == ["/v1/embeddings", "/v1/embeddings"]
