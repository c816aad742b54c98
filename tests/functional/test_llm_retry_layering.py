"""Retries where they belong: the openai client retries a little, quickly, inside the Lambda; a throttled or
unavailable model then propagates (LLMRateLimited / LLMTimeout) out of the DDL Lambda to the state machine's
Retry instead of failing tables for good; an error retrying cannot fix (HTTP 400) fails only its table, naming
the cause. The real openai client against the local stub, the DDL Lambda invoked through moto's Lambda API."""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.functional.test_pipeline_llm import _new_task, _run, _use_llm, good_responder
from tests.support.llm_stub import StubAnswer

pytestmark = pytest.mark.slow

TABLES = ["public.bss_company", "public.bss_service_area"]


def _ddl_batch_event(pipeline, pipeline_stack, monkeypatch) -> tuple[str, dict]:
    """A task whose ddl_generation ran once (heuristic provider), and the event of its first DDL batch as the
    state machine sends it."""
    from chalicelib.stores.tasks import TaskStore

    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    task_id = _new_task(pipeline, pipeline_stack, TABLES)
    status = _run(pipeline, task_id, execution_mode="step", step_name="ddl_generation")
    assert status["step_status"]["ddl_generation"] == "completed", status.get("error_message")
    execution_id = TaskStore().get_task(task_id)["execution"]["execution_id"]
    tables = [{"schema": "public", "name": name.split(".", 1)[1]} for name in TABLES]
    return task_id, {"task_id": task_id, "execution_id": execution_id, "tables": {"index": 0, "tables": tables}}


def _invoke(stack, function: str, event: dict) -> tuple[dict, str | None]:
    """(payload, FunctionError or None) of a step Lambda invoked through the Lambda API, as the state machine
    invokes it."""
    response = stack.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode("utf-8"))
    return json.loads(response["Payload"].read()), response.get("FunctionError")


def _table_records(task_id: str) -> dict:
    from chalicelib.api.task_view import public_task_view
    from chalicelib.stores.tasks import TaskStore

    return public_task_view(TaskStore().get_task(task_id))["progress"]["ddl_generation"]


def test_a_burst_of_429s_makes_the_ddl_lambda_raise_llm_rate_limited(pipeline, pipeline_stack, llm_stub,
                                                                     monkeypatch):
    task_id, event = _ddl_batch_event(pipeline, pipeline_stack, monkeypatch)
    before = _table_records(task_id)
    _use_llm(monkeypatch, llm_stub, retries=2)
    llm_stub.default = lambda request: StubAnswer(status=429, headers={"Retry-After": "0.05"})
    started = time.monotonic()
    payload, function_error = _invoke(pipeline_stack, "step_ddl_tables", event)
    elapsed = time.monotonic() - started
    assert function_error == "Unhandled"
    assert payload["errorType"] == "LLMRateLimited", payload  # the name the state machine's Retry matches
    assert "HTTP 429" in payload["errorMessage"] and "after 3 attempts" in payload["errorMessage"]
    # Each table's call tried three times, quickly (Retry-After 0.05 s), and no longer.
    assert len(llm_stub.chat_requests) == 3 * len(TABLES)
    assert elapsed < 10
    # No table was marked failed for good: the progress is what the heuristic run left.
    after = _table_records(task_id)
    assert after["failed"] == before["failed"] == 0
    assert all(record.get("ok") for record in after["tables"].values()), after["tables"]


def test_a_long_retry_after_is_not_slept_in_the_lambda(pipeline, pipeline_stack, llm_stub, monkeypatch):
    task_id, event = _ddl_batch_event(pipeline, pipeline_stack, monkeypatch)
    _use_llm(monkeypatch, llm_stub, retries=2)
    llm_stub.default = lambda request: StubAnswer(status=429, headers={"Retry-After": "30"})
    started = time.monotonic()
    payload, function_error = _invoke(pipeline_stack, "step_ddl_tables", event)
    assert function_error and payload["errorType"] == "LLMRateLimited", payload
    assert time.monotonic() - started < 5  # the state machine waits, not the Lambda
    assert len(llm_stub.chat_requests) == len(TABLES)  # one request per table: a 30 s wait is not for the client


def test_a_server_error_burst_raises_llm_timeout_naming_the_status(pipeline, pipeline_stack, llm_stub, monkeypatch):
    task_id, event = _ddl_batch_event(pipeline, pipeline_stack, monkeypatch)
    _use_llm(monkeypatch, llm_stub, retries=1)
    llm_stub.default = lambda request: StubAnswer(status=503, headers={"Retry-After": "0"})
    payload, function_error = _invoke(pipeline_stack, "step_ddl_tables", event)
    assert function_error and payload["errorType"] == "LLMTimeout", payload
    assert "HTTP 503 after 2 attempts" in payload["errorMessage"]
    assert _table_records(task_id)["failed"] == 0


def test_a_bad_request_fails_only_its_table_naming_the_cause(pipeline, pipeline_stack, llm_stub, monkeypatch):
    task_id, event = _ddl_batch_event(pipeline, pipeline_stack, monkeypatch)
    _use_llm(monkeypatch, llm_stub, retries=2)

    def responder(request: dict):
        prompt = request["messages"][-1]["content"]
        if re.search(r"表：public\.bss_company\n", prompt):
            return StubAnswer(json_body={"error": {"message": "context_length_exceeded: prompt too long",
                                                   "type": "invalid_request_error"}}, status=400)
        return good_responder(request)

    llm_stub.default = responder
    payload, function_error = _invoke(pipeline_stack, "step_ddl_tables", event)
    assert function_error is None, payload
    results = {item["table"]: item for item in payload["tables"]}
    assert results["public.bss_service_area"]["ok"] is True
    failed = results["public.bss_company"]
    assert failed["ok"] is False
    assert "HTTP 400" in failed["error"] and "context_length_exceeded" in failed["error"]
    # Not retried as it was: a context-length 400 is asked again only with smaller prompts, a bounded number of times.
    company_calls = [r for r in llm_stub.chat_requests if "表：public.bss_company\n" in r["messages"][-1]["content"]]
    assert 1 < len(company_calls) <= 4
    records = _table_records(task_id)["tables"]
    assert records["public.bss_company"]["ok"] is False and "HTTP 400" in records["public.bss_company"]["error"]
    assert records["public.bss_service_area"]["ok"] is True
