"""The LLM path through the real state machine when the model misbehaves: server errors, malformed answers,
apologies and write statements (the real openai client against the local stub)."""
from __future__ import annotations

import json

import psycopg2
import pytest

from tests.functional.test_pipeline_llm import (
    API_KEY,
    REPAIRABLE,
    VALID_1,
    _new_task,
    _pair_file,
    _prompt,
    _repair_items,
    _run,
    _use_llm,
    good_responder,
    kind_of,
)
from tests.support.llm_stub import StubAnswer

pytestmark = pytest.mark.slow


# -- 4. server errors, malformed answers, apologies and write statements -----------------------------------------


def _task_with_ddl(pipeline, pipeline_stack, monkeypatch, tables: list[str]) -> str:
    """A task whose ddl_generation ran with the heuristic provider (no LLM configured)."""
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    task_id = _new_task(pipeline, pipeline_stack, tables)
    status = _run(pipeline, task_id, execution_mode="step", step_name="ddl_generation")
    assert status["step_status"]["ddl_generation"] == "completed", status.get("error_message")
    return task_id


def test_server_errors_and_malformed_answers_fail_theme_extraction(pipeline, pipeline_stack, llm_stub, monkeypatch):
    task_id = _task_with_ddl(pipeline, pipeline_stack, monkeypatch, ["public.bss_company", "public.bss_service_area"])
    _use_llm(monkeypatch, llm_stub, retries=2)
    # A server that keeps failing: transient for the client (3 attempts per Lambda) and for the state machine
    # (LLMTimeout, which its Retry may repeat), then the step fails naming the status.
    llm_stub.default = lambda request: StubAnswer(status=500, headers={"Retry-After": "0"})
    status = _run(pipeline, task_id, execution_mode="step", step_name="qa_generation")
    assert status["status"] == "failed"
    assert status["step_status"] == {"ddl_generation": "completed", "qa_generation": "failed",
                                     "sql_validation": "pending", "training_load": "pending"}
    assert status["error_message"].startswith("LLM_TIMEOUT:")
    assert "HTTP 500 after 3 attempts" in status["error_message"]
    assert API_KEY not in status["error_message"]
    assert not [n for n, f in pipeline.files(task_id).items() if f["is_primary"]]
    assert len(llm_stub.chat_requests) % 3 == 0 and llm_stub.chat_requests
    llm_stub.default = good_responder

    # Two unusable answers in a row (the first and the re-ask): LLMBadAnswer, nothing produced.
    llm_stub.script("Here are some themes: revenue, traffic. Hope this helps!", '{"themes": "revenue"')
    status = _run(pipeline, task_id, execution_mode="step", step_name="qa_generation")
    assert status["status"] == "failed"
    assert status["step_status"]["qa_generation"] == "failed"
    assert status["error_message"].startswith("LLM_BAD_ANSWER:")
    assert "unusable answer for themes twice" in status["error_message"]
    reask = llm_stub.chat_requests[-1]["messages"]
    assert reask[-2]["role"] == "assistant" and "你的回答无法使用" in reask[-1]["content"]
    assert not [n for n, f in pipeline.files(task_id).items() if f["is_primary"]]
    errors = pipeline.logs(task_id, level="ERROR")
    assert any("LLMBadAnswer" in r["message"] or "unusable answer" in r["message"] for r in errors)

    # Two empty answers (the message without content, then an empty string): the same clean failure.
    llm_stub.script(StubAnswer(json_body={"id": "x", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}]}), "")
    status = _run(pipeline, task_id, execution_mode="step", step_name="qa_generation")
    assert status["status"] == "failed" and status["step_status"]["qa_generation"] == "failed"
    assert status["error_message"].startswith("LLM_BAD_ANSWER:")
    assert "unusable answer for themes twice: the answer was empty" in status["error_message"]
    assert not [n for n, f in pipeline.files(task_id).items() if f["is_primary"]]

    # Healthy again: the same step completes.
    status = _run(pipeline, task_id, execution_mode="step", step_name="qa_generation")
    assert status["step_status"]["qa_generation"] == "completed", status.get("error_message")
    assert status["status"] == "partial_completed"


SENTINEL = "public.g_llm_sentinel"
DELETE_ALL = "DELETE FROM public.g_llm_sentinel;"
DELETE_CTE = "WITH d AS (DELETE FROM public.g_llm_sentinel RETURNING *) SELECT count(*) FROM d;"
COUNT_THEN_DELETE = "SELECT count(*) FROM public.g_llm_sentinel; DELETE FROM public.g_llm_sentinel;"
DELETE_RETURNING = "DELETE FROM public.g_llm_sentinel RETURNING 1;"


def hostile_responder(request: dict) -> str:
    """Themes are fine; one theme's pairs mix apologies and writes with good SQL; the other theme only apologises;
    repairs try to slip a DELETE in."""
    kind = kind_of(request)
    prompt = _prompt(request)
    if kind == "pairs" and "主题：车流分析" in prompt:
        return "抱歉，我无法完成这个请求。"
    if kind == "pairs":
        return json.dumps({"pairs": [
            {"question": "抱歉，我无法回答这个问题。", "sql": "SELECT 1;"},
            {"question": "清空哨兵表", "sql": DELETE_ALL},
            {"question": "删除后统计哨兵", "sql": DELETE_CTE},
            {"question": "统计后清空哨兵", "sql": COUNT_THEN_DELETE},
            {"question": "服务区有多少个？", "sql": "Sorry, I can't write SQL for that."},
            {"question": "各管理公司分别有多少个服务区？", "sql": VALID_1},
            {"question": "目前开放的服务区有多少个？", "sql": REPAIRABLE},
        ]}, ensure_ascii=False)
    if kind == "repair":
        return json.dumps({"repairs": [{"index": item["index"], "sql": DELETE_RETURNING}
                                       for item in _repair_items(prompt)]}, ensure_ascii=False)
    return good_responder(request)


@pytest.fixture
def sentinel(pipeline_stack):
    with psycopg2.connect(pipeline_stack.db_url) as conn, conn.cursor() as cur:
        cur.execute(f"drop table if exists {SENTINEL}; create table {SENTINEL} (id int primary key)")
        cur.execute(f"insert into {SENTINEL} select generate_series(1, 3)")
    yield
    with psycopg2.connect(pipeline_stack.db_url) as conn, conn.cursor() as cur:
        cur.execute(f"drop table if exists {SENTINEL}")


def test_apologies_and_write_statements_never_reach_the_pair_file(pipeline, pipeline_stack, llm_stub, monkeypatch,
                                                                  sentinel):
    task_id = _task_with_ddl(pipeline, pipeline_stack, monkeypatch,
                             ["public.bss_company", "public.bss_service_area", "public.bss_car_day_count"])
    _use_llm(monkeypatch, llm_stub, retries=0)
    llm_stub.default = hostile_responder
    status = _run(pipeline, task_id, execution_mode="step", step_name="qa_generation")
    assert status["step_status"]["qa_generation"] == "completed", status.get("error_message")
    qa = status["results"]["qa_generation"]
    # The theme whose answers were only apologies failed twice (answer + re-ask) and was skipped, not fatal.
    assert list(qa["themes_failed"]) == ["车流分析"]
    assert "LLM_BAD_ANSWER" in qa["themes_failed"]["车流分析"]
    name, pairs = _pair_file(pipeline, task_id)
    assert [p["sql"] for p in pairs] == [VALID_1, REPAIRABLE]
    text = pipeline.file_text(task_id, name)
    assert "g_llm_sentinel" not in text and "抱歉" not in text and "Sorry" not in text
    dropped = [r["message"] for r in pipeline.logs(task_id)
               if r["logger"] == "QuestionSQLGenerator" and r["message"].startswith("pair dropped")]
    # A plain DELETE and the apology as SQL never parse as a SELECT (the provider leaves them out); a DELETE in a
    # CTE and a second statement look like SELECT/WITH and are dropped by qa's read-only check.
    assert sorted(dropped) == ["pair dropped: data-modifying statement DELETE inside a WITH query",
                               "pair dropped: more than one statement (only a single query is allowed)"]

    status = _run(pipeline, task_id, execution_mode="step", step_name="sql_validation")
    assert status["step_status"]["sql_validation"] == "completed", status.get("error_message")
    name, pairs = _pair_file(pipeline, task_id)
    assert [p["sql"] for p in pairs] == [VALID_1]  # the DELETE "repair" was refused, the pair dropped
    assert "g_llm_sentinel" not in pipeline.file_text(task_id, name)
    with psycopg2.connect(pipeline_stack.db_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from public.g_llm_sentinel")
        assert cur.fetchone()[0] == 3
        cur.execute("select n_tup_del from pg_stat_user_tables where relid = %s::regclass", (SENTINEL,))
        assert cur.fetchone()[0] == 0
