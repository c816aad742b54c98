"""OpenAIProvider through the real `openai` client against the local stub (no mocks)."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from chalicelib import errors
from chalicelib.config import get_settings
from chalicelib.pipeline.models import (
    ColumnMeta,
    ForeignKey,
    RepairRequest,
    TableDoc,
    TableMeta,
    TableRef,
    Theme,
)
from chalicelib.providers.answers import extract_json, strip_think
from chalicelib.providers.factory import get_llm_provider
from chalicelib.providers.heuristic import HeuristicProvider
from chalicelib.providers.openai_chat import OpenAIProvider
from tests.support.llm_stub import StubAnswer

SECRET = "sk-test-secret-key-123"
ZH = "高速公路服务区运营管理"


def _col(name: str, data_type: str = "character varying(32)", udt: str = "varchar", **kw) -> ColumnMeta:
    return ColumnMeta(name=name, data_type=data_type, udt_name=udt, type_kind="base", max_length=None,
                      nullable=kw.pop("nullable", True), default=None, comment=kw.pop("comment", None), **kw)


META = TableMeta(
    ref=TableRef("public", "bss_service_area"),
    comment=None,
    kind="table",
    columns=[
        _col("id", is_primary_key=True, nullable=False),
        _col("service_area_name", "character varying(255)"),
        _col("service_state", "character varying(50)"),
        _col("company_id"),
        _col("pay_sum", "numeric(19,4)", "numeric"),
    ],
    primary_key=["id"],
    foreign_keys=[ForeignKey("fk_company", ["company_id"], "public", "bss_company", ["id"])],
    row_count=3,
    row_count_exact=True,
)
SAMPLES = [{"id": "1", "service_area_name": "庐山服务区", "service_state": "开放", "company_id": "c1",
            "pay_sum": "1.5"}]
DOC = TableDoc(meta=META, table_comment="服务区", column_comments={"service_area_name": "服务区名称"},
               comment_sources={}, enums={"service_state": ["开放", "关闭"]}, samples=SAMPLES)
GOOD_COMMENTS = {
    "table_comment": "服务区信息",
    "columns": {"id": "主键", "service_area_name": "服务区名称", "service_state": "营业状态",
                "invented_column": "编造的字段"},
    "enum_candidates": ["service_state"],
}


def _settings(stub, **overrides):
    base = dict(llm_base_url=stub.base_url, llm_api_key=SECRET, llm_model="stub-model", llm_timeout_seconds=5.0,
                llm_max_retries=2, llm_max_concurrency=4)
    base.update(overrides)
    return dataclasses.replace(get_settings(), **base)


def _provider(stub, **overrides) -> OpenAIProvider:
    return OpenAIProvider(_settings(stub, **overrides))


def test_good_comment_answer(llm_stub):
    llm_stub.script(GOOD_COMMENTS)
    provider = _provider(llm_stub)
    suggestion = provider.suggest_table_comments(META, SAMPLES, ZH)
    assert suggestion.table_comment == "服务区信息"
    assert suggestion.column_comments["service_state"] == "营业状态"
    # The provider only parses: dropping invented columns is the DDL step's job.
    assert suggestion.column_comments["invented_column"] == "编造的字段"
    assert suggestion.enum_candidates == ["service_state"]
    request = llm_stub.chat_requests[0]
    assert request["model"] == "stub-model"
    prompt = request["messages"][-1]["content"]
    assert "业务背景" in prompt and "bss_service_area" in prompt and "庐山服务区" in prompt
    assert llm_stub.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"
    assert provider.name == "openai-compatible:stub-model"
    assert provider.usage.calls == 1 and provider.usage.retries == 0
    assert provider.usage.prompt_tokens > 0 and provider.usage.completion_tokens > 0
    assert provider.usage.seconds >= 0


def test_english_prompt_without_cjk(llm_stub):
    llm_stub.script(GOOD_COMMENTS)
    _provider(llm_stub).suggest_table_comments(META, SAMPLES, "Highway service areas")
    prompt = llm_stub.chat_requests[0]["messages"][-1]["content"]
    assert prompt.startswith("Business context: Highway service areas")


def test_fenced_json_with_prose_and_think(llm_stub):
    answer = ("<think>The user wants comments. 抱歉 I will think {\"not\": \"this\"}</think>\n"
              "Sure! Here it is:\n```json\n" + '{"table_comment": "服务区", "columns": {"id": "主键"}, '
              '"enum_candidates": []}' + "\n```\nHope this helps.")
    llm_stub.script(answer)
    suggestion = _provider(llm_stub).suggest_table_comments(META, SAMPLES, ZH)
    assert suggestion.table_comment == "服务区"
    assert suggestion.column_comments == {"id": "主键"}


def test_malformed_then_good_reasks_once(llm_stub):
    llm_stub.script("I think the table stores service areas.", GOOD_COMMENTS)
    provider = _provider(llm_stub)
    suggestion = provider.suggest_table_comments(META, SAMPLES, ZH)
    assert suggestion.table_comment == "服务区信息"
    assert len(llm_stub.chat_requests) == 2
    reask = llm_stub.chat_requests[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "I think the table stores service areas."}
    assert "no JSON object found" in reask[-1]["content"]
    assert provider.usage.calls == 2


def test_malformed_twice_is_bad_answer(llm_stub):
    llm_stub.script("抱歉，我无法完成这个任务。", '{"columns": ')
    with pytest.raises(errors.LLMBadAnswer) as info:
        _provider(llm_stub).suggest_table_comments(META, SAMPLES, ZH)
    message = str(info.value)
    assert "stub-model" in message and "127.0.0.1" in message
    assert SECRET not in message
    assert len(llm_stub.chat_requests) == 2


def test_apology_never_becomes_a_comment(llm_stub):
    llm_stub.script({"table_comment": "Sorry, I cannot determine this table.",
                     "columns": {"id": "抱歉，无法判断", "service_state": "状态"}, "enum_candidates": []})
    suggestion = _provider(llm_stub).suggest_table_comments(META, SAMPLES, "context")
    assert suggestion.table_comment is None
    assert suggestion.column_comments == {"service_state": "状态"}


def test_wrong_shape_reasks(llm_stub):
    llm_stub.script({"themes": "none"}, {"themes": [{"topic_name": "营收分析", "description": "d",
                                                     "related_tables": ["public.bss_service_area"],
                                                     "biz_entities": ["服务区"], "biz_metrics": ["营收"]}]})
    themes = _provider(llm_stub).extract_themes([DOC], ZH, 3)
    assert [t.topic_name for t in themes] == ["营收分析"]
    assert "'themes' must be a list" in llm_stub.chat_requests[1]["messages"][-1]["content"]


def test_generate_pairs_and_schema_text(llm_stub):
    llm_stub.script({"pairs": [
        {"question": "服务区有多少个？", "sql": "SELECT COUNT(*) FROM public.bss_service_area;"},
        {"question": "删除", "sql": "DELETE FROM public.bss_service_area;"},
        {"question": "营收前10", "sql": "WITH t AS (SELECT 1) SELECT * FROM t;"},
    ]})
    theme = Theme("服务区分析", "d", ["public.bss_service_area"])
    pairs = _provider(llm_stub).generate_pairs(theme, [DOC], ZH, 10)
    assert [p.question for p in pairs] == ["服务区有多少个？", "营收前10"]  # non-SELECT dropped
    prompt = llm_stub.chat_requests[0]["messages"][-1]["content"]
    assert "create table public.bss_service_area (" in prompt
    assert "values: 开放, 关闭" in prompt
    assert "foreign key (company_id) references public.bss_company (id)" in prompt
    assert "PostgreSQL" in prompt


def test_repair_sql_batched(llm_stub):
    llm_stub.script({"repairs": [{"index": 7, "sql": "SELECT service_area_name FROM public.bss_service_area;"},
                                 {"index": 99, "sql": "SELECT 1;"}, {"index": 8, "sql": "DROP TABLE x;"}]})
    requests = [RepairRequest(7, "服务区名称", "SELECT nme FROM public.bss_service_area;",
                              'column "nme" does not exist'),
                RepairRequest(8, "x", "SELECT x;", 'column "x" does not exist')]
    repairs = _provider(llm_stub).repair_sql(requests, [DOC])
    assert repairs == {7: "SELECT service_area_name FROM public.bss_service_area;"}
    prompt = llm_stub.chat_requests[0]["messages"][-1]["content"]
    assert '"index": 7' in prompt and 'column \\"nme\\" does not exist' in prompt


def test_rate_limited_then_ok_counts_retries(llm_stub):
    llm_stub.script(StubAnswer(status=429, headers={"Retry-After": "0"}), GOOD_COMMENTS)
    provider = _provider(llm_stub)
    started = time.monotonic()
    provider.suggest_table_comments(META, SAMPLES, ZH)
    assert time.monotonic() - started < 2
    assert provider.usage.retries == 1 and provider.usage.calls == 2


def test_rate_limited_for_good(llm_stub):
    llm_stub.script(*[StubAnswer(status=429, headers={"Retry-After": "0"})] * 3)
    provider = _provider(llm_stub)
    with pytest.raises(errors.LLMRateLimited) as info:
        provider.suggest_table_comments(META, SAMPLES, ZH)
    assert "429" in str(info.value) and "after 3 attempts" in str(info.value)
    # The client retried (LLM_MAX_RETRIES=2); the counters are what the endpoint really received.
    assert provider.usage.calls == len(llm_stub.chat_requests) == 3 and provider.usage.retries == 2


def test_retry_after_is_honoured_by_the_client(llm_stub):
    # A server-directed wait (here 20 ms) replaces the client's own backoff, which starts at 0.5 s.
    llm_stub.script(StubAnswer(status=429, headers={"Retry-After": "0.02"}), StubAnswer(status=503), GOOD_COMMENTS)
    provider = _provider(llm_stub)
    assert provider.suggest_table_comments(META, SAMPLES, ZH).table_comment == "服务区信息"
    times = [r["time"] for r in llm_stub.requests]
    assert len(times) == 3
    assert times[1] - times[0] < 0.3 <= times[2] - times[1]
    assert [r["headers"]["x-stainless-retry-count"] for r in llm_stub.requests] == ["0", "1", "2"]
    assert provider.usage.calls == 3 and provider.usage.retries == 2


def test_backoff_and_retry_after_are_capped_inside_the_lambda(llm_stub):
    # The client's own backoff (0.5 s, then 1 s) is cut to the configured cap ...
    llm_stub.script(StubAnswer(status=500), StubAnswer(status=502), GOOD_COMMENTS)
    provider = _provider(llm_stub, llm_max_retry_wait_seconds=0.1)
    provider.suggest_table_comments(META, SAMPLES, ZH)
    times = [r["time"] for r in llm_stub.requests]
    assert len(times) == 3
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.3
    # ... and a server asking for a longer pause than the cap is not waited for: raised at once, for the
    # state machine's Retry to wait outside the Lambda.
    llm_stub.script(StubAnswer(status=429, headers={"Retry-After": "1"}), GOOD_COMMENTS)
    started = time.monotonic()
    with pytest.raises(errors.LLMRateLimited):
        provider.suggest_table_comments(META, SAMPLES, ZH)
    assert time.monotonic() - started < 0.5 and len(llm_stub.requests) == 4
    assert provider.suggest_table_comments(META, SAMPLES, ZH).table_comment == "服务区信息"


def test_transient_errors_are_retryable_classes_and_a_bad_request_is_not(llm_stub):
    llm_stub.script(*[StubAnswer(status=503, headers={"Retry-After": "0"})] * 3)
    with pytest.raises(errors.LLMTimeout) as info:
        _provider(llm_stub).suggest_table_comments(META, SAMPLES, ZH)
    assert "HTTP 503 after 3 attempts" in str(info.value)
    llm_stub.script(StubAnswer(status=400))
    with pytest.raises(errors.LLMError) as info:
        _provider(llm_stub).suggest_table_comments(META, SAMPLES, ZH)
    assert type(info.value) is errors.LLMError and "HTTP 400" in str(info.value)


def test_each_provider_counts_its_own_retries(llm_stub):
    # Providers share one client per endpoint; a retry made for one is never counted by another.
    busy, calm = _provider(llm_stub), _provider(llm_stub)
    llm_stub.script(StubAnswer(status=500, headers={"Retry-After": "0.01"}), GOOD_COMMENTS)
    busy.suggest_table_comments(META, SAMPLES, ZH)
    llm_stub.script(GOOD_COMMENTS)
    calm.suggest_table_comments(META, SAMPLES, ZH)
    assert (busy.usage.calls, busy.usage.retries) == (2, 1)
    assert (calm.usage.calls, calm.usage.retries) == (1, 0)


def test_server_errors_exhaust_retries(llm_stub):
    llm_stub.script(*[StubAnswer(status=500)] * 3)
    provider = _provider(llm_stub)
    with pytest.raises(errors.LLMError) as info:
        provider.suggest_table_comments(META, SAMPLES, ZH)
    message = str(info.value)
    assert "HTTP 500" in message and "127.0.0.1" in message and "stub-model" in message
    assert SECRET not in message
    assert len(llm_stub.chat_requests) == 3
    assert provider.usage.retries == 2


def test_client_error_is_not_retried(llm_stub):
    llm_stub.script(StubAnswer(status=401))
    with pytest.raises(errors.LLMError) as info:
        _provider(llm_stub).suggest_table_comments(META, SAMPLES, ZH)
    assert "HTTP 401" in str(info.value)
    assert len(llm_stub.chat_requests) == 1


def test_hang_past_timeout(llm_stub):
    llm_stub.script(StubAnswer(content=GOOD_COMMENTS, delay=10), StubAnswer(content=GOOD_COMMENTS, delay=10))
    provider = _provider(llm_stub, llm_timeout_seconds=0.5, llm_max_retries=1)
    started = time.monotonic()
    with pytest.raises(errors.LLMTimeout) as info:
        provider.suggest_table_comments(META, SAMPLES, ZH)
    assert time.monotonic() - started < 5
    assert "0.5 s" in str(info.value)
    assert provider.usage.retries == 1


def test_connection_refused_is_llm_error():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = dataclasses.replace(get_settings(), llm_base_url=f"http://127.0.0.1:{port}/v1", llm_max_retries=1,
                                   llm_api_key=SECRET)
    with pytest.raises(errors.LLMError) as info:
        OpenAIProvider(settings).suggest_table_comments(META, SAMPLES, ZH)
    assert f"127.0.0.1:{port}" in str(info.value) and "could not be reached" in str(info.value)


def test_concurrency_bound(llm_stub):
    llm_stub.default = lambda request: StubAnswer(content=GOOD_COMMENTS, delay=0.3)
    provider = _provider(llm_stub, llm_max_concurrency=2)
    threads = [threading.Thread(target=provider.suggest_table_comments, args=(META, SAMPLES, ZH)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(llm_stub.chat_requests) == 6
    assert llm_stub.max_active == 2
    assert provider.usage.calls == 6


def test_get_llm_provider_picks_by_base_url(llm_stub):
    assert isinstance(get_llm_provider(dataclasses.replace(get_settings(), llm_base_url=None)), HeuristicProvider)
    provider = get_llm_provider(_settings(llm_stub))
    assert isinstance(provider, OpenAIProvider)


def test_extract_json_variants():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Here: [1, 2] and more') == [1, 2]
    assert extract_json("```json\n{\"a\": [1]}\n```") == {"a": [1]}
    assert extract_json('text {broken then {"b": 2}') == {"b": 2}
    assert strip_think("<think>a</think> b") == "b"
    assert strip_think("reasoning...</think>{\"x\": 1}") == '{"x": 1}'
    assert strip_think("<think>never finished") == ""
