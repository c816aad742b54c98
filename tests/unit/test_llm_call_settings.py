"""OpenAIProvider's model settings through the real `openai` client and the local stub: temperature and max_tokens
per call kind, response_format negotiated per endpoint, context-length errors shrinking the prompt, and generated
pairs checked against the catalog (re-asked once, naming the unknown objects)."""
from __future__ import annotations

import dataclasses
import logging

import pytest

from chalicelib import errors
from chalicelib.config import get_settings
from chalicelib.pipeline.models import ColumnMeta, RepairRequest, TableDoc, TableMeta, TableRef, Theme
from chalicelib.providers.openai_chat import OpenAIProvider

ZH = "高速公路服务区运营管理"
COMMENTS = {"table_comment": "服务区", "columns": {"id": "主键"}, "enum_candidates": []}


def _col(name: str, data_type: str = "character varying(64)") -> ColumnMeta:
    return ColumnMeta(name, data_type, data_type, "base", None, True, None, None)


def _doc(name: str, columns: list[str], samples: int = 0) -> TableDoc:
    meta = TableMeta(ref=TableRef("public", name), comment=None, kind="table",
                     columns=[_col("id", "integer")] + [_col(c) for c in columns], primary_key=["id"],
                     foreign_keys=[], row_count=samples, row_count_exact=True)
    rows = [{"id": str(n), **{c: f"{c} 的样例取值 {n} " + "长" * 40 for c in columns}} for n in range(samples)]
    return TableDoc(meta=meta, table_comment=None, column_comments={}, comment_sources={}, enums={}, samples=rows)


AREA = _doc("bss_service_area", ["service_area_name", "service_state", "company_id"], samples=20)
WIDE = [_doc(f"bss_table_{n}", [f"measure_{n}_{k}" for k in range(12)]) for n in range(6)]
THEME = Theme("服务区分析", "d", ["public.bss_service_area"])


def _provider(stub, **overrides) -> OpenAIProvider:
    settings = dict(llm_base_url=stub.base_url, llm_api_key="k", llm_model="stub-model", llm_timeout_seconds=5.0,
                    llm_max_retries=0, llm_max_concurrency=4)
    settings.update(overrides)
    return OpenAIProvider(dataclasses.replace(get_settings(), **settings))


def _formats(stub) -> list[str]:
    return [(r.get("response_format") or {}).get("type", "text") for r in stub.chat_requests]


# -- temperature and max_tokens per call kind -------------------------------------------------------------------


def test_temperature_and_max_tokens_per_call_kind(llm_stub):
    llm_stub.script(COMMENTS, {"themes": [{"topic_name": "t", "related_tables": ["public.bss_service_area"]}]},
                    {"pairs": [{"question": "q", "sql": "SELECT id FROM public.bss_service_area;"}]},
                    {"repairs": [{"index": 0, "sql": "SELECT id FROM public.bss_service_area;"}]})
    provider = _provider(llm_stub, llm_max_tokens=(("repair", 700),))
    provider.suggest_table_comments(AREA.meta, AREA.samples, ZH)
    provider.extract_themes([AREA], ZH, 1)
    provider.generate_pairs(THEME, [AREA], ZH, 1)
    provider.repair_sql([RepairRequest(0, "q", "SELECT nme FROM public.bss_service_area", "no nme")], [AREA])
    sent = [(r["temperature"], r["max_tokens"]) for r in llm_stub.chat_requests]
    assert sent == [(0.2, 4096), (0.3, 4096), (0.7, 4096), (0.0, 700)]


def test_call_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLM_TEMPERATURE_PAIRS", "0.9")
    monkeypatch.setenv("LLM_MAX_TOKENS_THEMES", "1500")
    monkeypatch.setenv("LLM_MAX_TOKENS_PAIRS", "999999")  # never above LLM_ANSWER_TOKENS
    monkeypatch.setenv("LLM_RESPONSE_FORMAT", "json_object")
    settings = get_settings()
    assert settings.llm_call_settings("pairs") == (0.9, 4096)
    assert settings.llm_call_settings("themes") == (0.3, 1500)
    assert settings.llm_call_settings("repair") == (0.0, 4096)
    assert settings.llm_response_format == "json_object"
    monkeypatch.setenv("LLM_RESPONSE_FORMAT", "yaml")
    with pytest.raises(ValueError, match="LLM_RESPONSE_FORMAT"):
        get_settings()


# -- response_format negotiation --------------------------------------------------------------------------------


def test_json_schema_where_the_endpoint_accepts_it(llm_stub):
    llm_stub.script({"pairs": [{"question": "q", "sql": "SELECT id FROM public.bss_service_area;"}]})
    _provider(llm_stub).generate_pairs(THEME, [AREA], ZH, 1)
    (request,) = llm_stub.chat_requests
    wanted = request["response_format"]
    assert wanted["type"] == "json_schema"
    assert wanted["json_schema"]["schema"]["required"] == ["pairs"]


def test_json_mode_after_a_refused_schema_and_remembered(llm_stub):
    llm_stub.response_formats = {"json_object"}
    llm_stub.script(COMMENTS, COMMENTS)
    assert _provider(llm_stub).suggest_table_comments(AREA.meta, [], ZH).table_comment == "服务区"
    assert _formats(llm_stub) == ["json_schema", "json_object"]
    # Another provider of the process, same endpoint and model: JSON mode at once.
    assert _provider(llm_stub).suggest_table_comments(AREA.meta, [], ZH).table_comment == "服务区"
    assert _formats(llm_stub) == ["json_schema", "json_object", "json_object"]


def test_plain_text_last_and_the_parser_reads_it(llm_stub):
    llm_stub.response_formats = set()
    llm_stub.script("好的：```json\n" + '{"table_comment": "服务区", "columns": {}}' + "\n```", COMMENTS)
    provider = _provider(llm_stub, llm_model="text-only-model")
    assert provider.suggest_table_comments(AREA.meta, [], ZH).table_comment == "服务区"
    provider.suggest_table_comments(AREA.meta, [], ZH)
    assert _formats(llm_stub) == ["json_schema", "json_object", "text", "text"]
    assert "response_format" not in llm_stub.chat_requests[-1]


def test_a_configured_format_is_where_trying_starts(llm_stub):
    llm_stub.script(COMMENTS)
    _provider(llm_stub, llm_model="forced", llm_response_format="text").suggest_table_comments(AREA.meta, [], ZH)
    assert _formats(llm_stub) == ["text"]


def test_another_bad_request_is_not_taken_for_a_format_refusal(llm_stub):
    llm_stub.script({"status": 400})
    with pytest.raises(errors.LLMError, match="HTTP 400"):
        _provider(llm_stub).suggest_table_comments(AREA.meta, [], ZH)
    assert len(llm_stub.chat_requests) == 1


# -- context length ---------------------------------------------------------------------------------------------


def test_context_length_error_shrinks_the_samples_and_succeeds(llm_stub, caplog):
    llm_stub.script(COMMENTS)
    provider = _provider(llm_stub)
    provider.suggest_table_comments(AREA.meta, AREA.samples, ZH)
    full = llm_stub.prompt_tokens(llm_stub.chat_requests[0])
    llm_stub.context_limit = int(full * 0.7)
    llm_stub.default = lambda request: COMMENTS  # the smaller budget may split the columns over several prompts
    with caplog.at_level(logging.WARNING, logger="chalicelib.providers.openai_chat"):
        assert provider.suggest_table_comments(AREA.meta, AREA.samples, ZH).table_comment == "服务区"
    refused, *accepted = llm_stub.chat_requests[1:]
    assert llm_stub.prompt_tokens(refused) == full and accepted
    values = refused["messages"][-1]["content"].count("的样例取值")
    for request in accepted:  # each prompt sent after the refusal fits, with fewer sample values
        assert llm_stub.prompt_tokens(request) <= llm_stub.context_limit
        assert request["messages"][-1]["content"].count("的样例取值") < values
    assert any("smaller one" in r.getMessage() for r in caplog.records)


def test_context_length_error_shrinks_to_fewer_tables(llm_stub):
    theme = Theme("宽表", "d", [d.meta.ref.display_name for d in WIDE])
    answer = {"pairs": [{"question": "q", "sql": "SELECT id FROM public.bss_table_0;"}]}
    llm_stub.script(answer)
    provider = _provider(llm_stub)
    provider.generate_pairs(theme, WIDE, ZH, 1)
    full = llm_stub.prompt_tokens(llm_stub.chat_requests[0])
    llm_stub.context_limit = int(full * 0.5)
    llm_stub.script(answer)
    assert [p.sql for p in provider.generate_pairs(theme, WIDE, ZH, 1)] == ["SELECT id FROM public.bss_table_0;"]
    first, last = (r["messages"][-1]["content"] for r in (llm_stub.chat_requests[0], llm_stub.chat_requests[-1]))
    assert last.count("create table") < first.count("create table") == len(WIDE)


def test_context_length_gives_up_after_bounded_shrinks(llm_stub):
    # A prompt large enough to be shrunk twice above the 512-token floor (the six wide tables' pair prompt).
    llm_stub.context_limit = 5
    provider = _provider(llm_stub, llm_context_shrinks=2)
    theme = Theme("宽表", "d", [d.meta.ref.display_name for d in WIDE])
    with pytest.raises(errors.LLMError) as info:
        provider.generate_pairs(theme, WIDE, ZH, 1)
    message = str(info.value)
    assert "context length" in message and "after 2 smaller prompt(s)" in message
    assert len(llm_stub.chat_requests) == 3


def test_context_length_stops_at_the_smallest_prompt(llm_stub):
    # A small prompt reaches the 512-token floor after one shrink: giving up there, not asking the same again.
    llm_stub.context_limit = 5
    provider = _provider(llm_stub, llm_context_shrinks=2)
    with pytest.raises(errors.LLMError) as info:
        provider.suggest_table_comments(AREA.meta, AREA.samples, ZH)
    assert "after 1 smaller prompt(s)" in str(info.value)
    first, *shrunk = (llm_stub.prompt_tokens(r) for r in llm_stub.chat_requests)
    assert shrunk and all(tokens < first for tokens in shrunk)  # one smaller round (its parts), then the error


# -- pairs checked against the catalog --------------------------------------------------------------------------


def test_unknown_column_is_reasked_with_that_column_named(llm_stub):
    good = {"question": "服务区有多少个", "sql": "SELECT count(*) FROM public.bss_service_area;"}
    llm_stub.script({"pairs": [good, {"question": "各状态服务区数",
                                      "sql": "SELECT area_state, count(*) FROM public.bss_service_area GROUP BY 1;"}]},
                    {"pairs": [{"question": "各状态服务区数", "sql": "SELECT service_state, count(*) FROM "
                                                                   "public.bss_service_area GROUP BY 1;"}]})
    pairs = _provider(llm_stub).generate_pairs(THEME, [AREA], ZH, 10)
    assert [p.sql for p in pairs] == [good["sql"], "SELECT service_state, count(*) FROM public.bss_service_area "
                                                   "GROUP BY 1;"]
    reask = llm_stub.chat_requests[1]["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert "unknown column area_state" in reask[-1]["content"]
    assert "service_state" in reask[-1]["content"]  # the table's real columns are shown


def test_still_unknown_after_the_reask_is_dropped_with_a_logged_reason(llm_stub, caplog):
    bad = {"question": "公司", "sql": "SELECT c.company_name FROM public.bss_company c;"}
    llm_stub.script({"pairs": [bad]}, {"pairs": [bad]})
    with caplog.at_level(logging.INFO):
        assert _provider(llm_stub).generate_pairs(THEME, [AREA], ZH, 10) == []
    assert len(llm_stub.chat_requests) == 2
    dropped = [r for r in caplog.records if r.getMessage() == "pair dropped: names unknown objects after the "
                                                             "catalog re-ask"]
    assert len(dropped) == 1 and dropped[0].unknown == ["unknown table public.bss_company"]
