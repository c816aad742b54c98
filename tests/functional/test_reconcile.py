"""No task left hanging: an execution that ends without the state machine recording it — aborted through
StopExecution, or failed by a quota no Catch handles (States.DataLimitExceeded) — leaves its task `failed`
with the cause within seconds, through the EventBridge rule and the reconcile Lambda of infra/resources.json
(delivered by the local stack, infra/local/events.py), and the task executes again. Status reads reconcile
too when the event never arrives (chalicelib/api/task_service.py `reconcile_stale_task`)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from chalicelib.steps.reconcile import RECONCILE_FUNCTION
from chalicelib.stores.tasks import TaskStore
from infra.local.demo_db import DEMO_BUSINESS_CONTEXT
from infra.local.events import EVENT_FUNCTION_NAMES, rules_from_template
from infra.template import RESOURCES_PATH, logical_id_for
from tests.support.llm_stub import StubAnswer

pytestmark = pytest.mark.slow

TABLES = ["public.bss_company"]


def _task(pipeline) -> str:
    task_id = pipeline.create_task(business_context=DEMO_BUSINESS_CONTEXT, task_name="reconcile")
    pipeline.upload_tables(task_id, TABLES)
    return task_id


def _execution_arn(task_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arn = (TaskStore().get_task(task_id).get("execution") or {}).get("execution_arn")
        if arn:
            return arn
        time.sleep(0.05)
    raise TimeoutError(f"{task_id} has no execution ARN")


def _wait_failed(pipeline, task_id: str, timeout: float) -> tuple[dict, float]:
    started = time.monotonic()
    status = pipeline.wait(task_id, timeout=timeout)
    return status, time.monotonic() - started


def _wait_in_process_lambdas(timeout: float = 60) -> None:
    """In-process Lambdas run on after a timeout or an abort (as a Lambda behind an aborted execution does):
    let them end before the next execution of the same task."""
    deadline = time.monotonic() + timeout
    while any(t.name.startswith("lambda-") and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "an in-process Lambda is still running"
        time.sleep(0.1)


def _states_entered(stack, arn: str) -> list[str]:
    events = stack.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def test_the_rule_and_its_lambda_are_wired_in_the_template_and_the_app(pipeline_stack):
    resources = json.loads(RESOURCES_PATH.read_text(encoding="utf-8"))["Resources"]
    rule = resources["ExecutionEndedRule"]["Properties"]
    assert rule["EventPattern"]["detail"] == {"status": ["FAILED", "TIMED_OUT", "ABORTED"],
                                              "stateMachineArn": [{"Ref": "DataPipelineStateMachine"}]}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [logical_id_for(RECONCILE_FUNCTION), "Arn"]}
    permission = resources["ExecutionEndedRulePermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["ExecutionEndedRule", "Arn"]}
    assert EVENT_FUNCTION_NAMES == (RECONCILE_FUNCTION,)
    assert RECONCILE_FUNCTION in pipeline_stack.app.handler_map
    (local,) = rules_from_template(EVENT_FUNCTION_NAMES, pipeline_stack.state_machine_arn)
    assert local.functions == (RECONCILE_FUNCTION,)
    ended = {"source": "aws.states", "detail-type": "Step Functions Execution Status Change",
             "detail": {"status": "ABORTED", "stateMachineArn": pipeline_stack.state_machine_arn}}
    assert local.pattern.matches_event(ended)
    assert not local.pattern.matches_event({**ended, "detail": {**ended["detail"], "status": "SUCCEEDED"}})


def test_an_aborted_execution_fails_its_task_within_seconds_and_the_task_runs_again(
        pipeline, pipeline_stack, llm_stub, monkeypatch):
    # A model that takes 6 s per answer keeps ddl_generation running while the execution is stopped: the task
    # is failed long before that Lambda returns (StopExecution ends the execution at once, as on AWS).
    monkeypatch.setenv("LLM_BASE_URL", llm_stub.base_url)
    monkeypatch.setenv("LLM_API_KEY", "test-key")
    monkeypatch.setenv("LLM_MAX_RETRIES", "0")
    llm_stub.default = lambda request: StubAnswer(content="{}", delay=6)
    task_id = _task(pipeline)
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")
    arn = _execution_arn(task_id)
    deadline = time.monotonic() + 30
    while not llm_stub.chat_requests:  # the step is inside its LLM call
        assert time.monotonic() < deadline, "ddl_generation never called the model"
        time.sleep(0.05)

    pipeline_stack.sfn.stop_execution(executionArn=arn, error="Operator", cause="stopped by hand")
    status, waited = _wait_failed(pipeline, task_id, timeout=10)
    assert status["status"] == "failed" and waited < 3
    assert status["error_message"] == "execution ABORTED: Operator: stopped by hand"
    assert status["step_status"]["ddl_generation"] == "failed"
    assert pipeline_stack.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert any("task marked failed" in r["message"] and "ABORTED" in r["message"] for r in pipeline.logs(task_id))

    _wait_in_process_lambdas()
    monkeypatch.delenv("LLM_BASE_URL")  # the heuristic provider from here on
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")  # 202, not 409
    again = pipeline.wait(task_id, timeout=120)
    assert again["status"] in ("completed", "partial_completed"), again.get("error_message")
    assert again["step_status"]["ddl_generation"] == "completed"

    # The old execution's event delivered again (EventBridge delivers at least once) changes nothing now.
    answer, error = pipeline_stack.invoke_lambda(RECONCILE_FUNCTION, {"detail": {
        "executionArn": arn, "name": arn.rsplit(":", 1)[-1], "status": "ABORTED", "input": json.dumps(
            {"task_id": task_id})}})
    assert error is None and answer["changed"] is False
    assert pipeline.status(task_id)["status"] == again["status"]


def test_a_state_payload_over_the_quota_fails_the_task_not_left_running_and_it_runs_again(
        pipeline, pipeline_stack, monkeypatch):
    # Prepare's result alone is larger than 400 bytes: the execution fails with States.DataLimitExceeded,
    # which no Catch of the machine handles (HandleFailure never runs): only the rule fails the task.
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_STATE_PAYLOAD_BYTES", "400")
    task_id = _task(pipeline)
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")
    arn = _execution_arn(task_id)
    status, waited = _wait_failed(pipeline, task_id, timeout=30)
    described = pipeline_stack.sfn.describe_execution(executionArn=arn)
    assert (described["status"], described["error"]) == ("FAILED", "States.DataLimitExceeded")
    assert "HandleFailure" not in _states_entered(pipeline_stack, arn)
    assert status["status"] == "failed"
    assert status["error_message"].startswith("execution FAILED: States.DataLimitExceeded: The state/task ")
    assert "exceeding the maximum number of bytes service limit" in status["error_message"]

    monkeypatch.delenv("DATA_PIPELINE_QUOTA_STATE_PAYLOAD_BYTES")
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")
    again = pipeline.wait(task_id, timeout=120)
    assert again["step_status"]["ddl_generation"] == "completed", again.get("error_message")


def test_a_status_read_reconciles_a_task_whose_event_never_arrived(pipeline, pipeline_stack, monkeypatch):
    monkeypatch.setattr(pipeline_stack.events, "rules", [])  # EventBridge delivers nothing
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_STATE_PAYLOAD_BYTES", "400")
    task_id = _task(pipeline)
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")
    arn = _execution_arn(task_id)
    pipeline_stack.wait_for_execution(arn, timeout=30)
    monkeypatch.setenv("DATA_PIPELINE_RECONCILE_AFTER_SECONDS", "3600")
    assert pipeline.status(task_id)["status"] == "in_progress"  # within the bound the item is trusted
    listed = pipeline.request("GET", "/api/v0/data_pipeline/tasks?limit=5", expect=200)["data"]["tasks"]
    assert next(t for t in listed if t["task_id"] == task_id)["status"] == "in_progress"

    monkeypatch.setenv("DATA_PIPELINE_RECONCILE_AFTER_SECONDS", "0")
    listed = pipeline.request("GET", "/api/v0/data_pipeline/tasks?limit=5", expect=200)["data"]["tasks"]
    mine = next(t for t in listed if t["task_id"] == task_id)
    assert mine["status"] == "failed" and "States.DataLimitExceeded" in mine["error_message"]
    assert pipeline.status(task_id)["status"] == "failed"
    monkeypatch.delenv("DATA_PIPELINE_QUOTA_STATE_PAYLOAD_BYTES")
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")  # 202: runs again
    assert pipeline.wait(task_id, timeout=120)["step_status"]["ddl_generation"] == "completed"


def test_an_execution_stopped_before_its_worker_thread_started_is_aborted(pipeline, pipeline_stack, monkeypatch):
    # moto builds an execution's environment in its worker thread; a StopExecution arriving first answered 500
    # (seen under load: `'NoneType' object has no attribute 'set_stop'`). Here the thread is held back on purpose.
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original = ExecutionWorker._get_evaluation_environment

    def slow_start(self):
        time.sleep(0.5)
        return original(self)

    monkeypatch.setattr(ExecutionWorker, "_get_evaluation_environment", slow_start)
    task_id = _task(pipeline)
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")
    arn = _execution_arn(task_id)
    pipeline_stack.sfn.stop_execution(executionArn=arn, error="Operator", cause="stopped at once")
    assert pipeline_stack.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    status, _ = _wait_failed(pipeline, task_id, timeout=10)
    assert status["error_message"] == "execution ABORTED: Operator: stopped at once"
    _wait_in_process_lambdas()
