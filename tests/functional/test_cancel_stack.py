"""Honest cancel on the local stack (issue 12, item 5): the state machine executed by moto, the step Lambdas
invoked through the Lambda API. A cancel while ddl_generation waits for the LLM stops the execution; the steps
after it never run, and a step Lambda invoked for the cancelled task afterwards writes nothing."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.stores.tasks import TaskStore
from tests.functional.test_pipeline_llm import _new_task, _use_llm, good_responder
from tests.support.llm_stub import StubAnswer

pytestmark = pytest.mark.slow


def _wait(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_cancel_during_a_step_stops_the_run_and_later_invocations_write_nothing(pipeline, pipeline_stack, llm_stub,
                                                                               monkeypatch):
    _use_llm(monkeypatch, llm_stub, timeout=20, retries=0)
    llm_stub.default = lambda request: StubAnswer(content=good_responder(request), delay=1.5)
    task_id = _new_task(pipeline, pipeline_stack, ["public.bss_company", "public.bss_service_area"])
    pipeline.execute(task_id)
    _wait(lambda: len(llm_stub.chat_requests) >= 1)  # ddl_generation is waiting for its comments

    cancelled = pipeline.request("POST", f"/api/v0/data_pipeline/tasks/{task_id}/cancel", {}, expect=200)
    assert cancelled["data"]["status"] == "cancelled"
    arn = TaskStore().get_task(task_id)["execution"]["execution_arn"]
    # AWS reports ABORTED; moto's executor, stopped inside a Map, ends the execution FAILED (an AttributeError in its
    # Map abort path). Either way it no longer runs.
    assert pipeline_stack.wait_for_execution(arn, timeout=30)["status"] in ("ABORTED", "FAILED")

    _wait(lambda: llm_stub.active == 0)  # the Lambda that was in flight has had its answers
    time.sleep(1.0)
    status = pipeline.status(task_id)
    assert status["status"] == "cancelled"
    assert status["step_status"]["qa_generation"] == "pending"  # never started
    files = pipeline.files(task_id)
    assert not any(name.endswith("_pair.json") for name in files)

    # a late delivery of a step Lambda of that execution writes nothing
    before = pipeline.files(task_id)
    response = pipeline_stack.client("lambda").invoke(
        FunctionName="step_qa_themes", Payload=json.dumps({"task_id": task_id, "execution_id": arn}).encode())
    payload = json.loads(response["Payload"].read())
    assert response.get("FunctionError") and payload["errorType"] == "TaskCancelled", payload
    assert pipeline.files(task_id) == before
    assert pipeline.status(task_id)["step_status"]["qa_generation"] == "pending"
