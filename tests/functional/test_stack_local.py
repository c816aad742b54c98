"""LocalStack: moto's Step Functions runs state machines whose Lambda tasks are Chalice handlers, run in this
process or in warm worker processes (`lambda_workers`): every test of the machine runs in both modes.

Stand-in Chalice apps keep these tests independent of the real step handlers: one tiny machine exercising the
dispatch (Choice, Map with a caught item, Catch -> failure handler), and the project's own ASL driven by
handlers that speak the step contract (event and result shapes), to check its paths and branches.
"""
from __future__ import annotations

import json
import os
import time

import pytest
from chalice import Chalice

from infra.local.stack import LocalStack


class TransientError(Exception):
    pass


class SqlBroken(Exception):
    pass


def _tiny_app() -> Chalice:
    app = Chalice(app_name="stack_tiny")

    @app.lambda_function(name="tiny_plan")
    def plan(event, context):
        return {"items": event["items"], "remaining_ms": context.get_remaining_time_in_millis()}

    @app.lambda_function(name="tiny_item")
    def item(event, context):
        if event["value"] == "bad":
            raise ValueError("this item is broken")
        return {"value": event["value"].upper(), "task_id": event["task_id"]}

    @app.lambda_function(name="tiny_boom")
    def boom(event, context):
        raise SqlBroken("column x does not exist")

    @app.lambda_function(name="tiny_failure")
    def failure(event, context):
        return {"recorded": event["error"]["Error"]}

    @app.lambda_function(name="tiny_env")
    def env(event, context):
        return {"pid": os.getpid(), "value": os.environ.get(event["name"])}

    @app.lambda_function(name="tiny_exit")
    def exit_now(event, context):
        os._exit(3)

    @app.lambda_function(name="tiny_sleep")
    def sleep(event, context):
        time.sleep(event["seconds"])
        return {"slept": event["seconds"]}

    return app


TINY_FUNCTIONS = ["tiny_plan", "tiny_item", "tiny_boom", "tiny_failure", "tiny_env", "tiny_exit", "tiny_sleep"]


TINY_MACHINE = {
    "StartAt": "Plan",
    "States": {
        "Plan": {"Type": "Task", "Resource": "${TinyPlanArn}", "ResultPath": "$.plan", "Next": "Explode?"},
        "Explode?": {"Type": "Choice", "Choices": [{"Variable": "$.explode", "BooleanEquals": True, "Next": "Boom"}],
                     "Default": "Items"},
        "Items": {
            "Type": "Map", "ItemsPath": "$.plan.items", "MaxConcurrencyPath": "$.concurrency",
            "ItemSelector": {"task_id.$": "$.task_id", "value.$": "$$.Map.Item.Value"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Item",
                "States": {
                    "Item": {"Type": "Task", "Resource": "${TinyItemArn}", "End": True,
                             "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ItemFailed"}]},
                    "ItemFailed": {"Type": "Pass", "End": True,
                                   "Parameters": {"failed": True, "value.$": "$.value", "error.$": "$.error"}},
                },
            },
            "ResultPath": "$.items", "End": True,
        },
        "Boom": {"Type": "Task", "Resource": "${TinyBoomArn}", "ResultPath": "$.boom", "End": True,
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "HandleFailure"}]},
        "HandleFailure": {"Type": "Task", "Resource": "${TinyFailureArn}", "ResultPath": "$.failure", "Next": "Failed"},
        "Failed": {"Type": "Fail", "Error": "StepFailed", "CausePath": "$.error.Cause"},
    },
}


@pytest.fixture(scope="module", params=[0, 2], ids=["in-process", "workers"])
def tiny_stack(request):
    stack = LocalStack(app_factory=_tiny_app, function_names=TINY_FUNCTIONS, definition_text=json.dumps(TINY_MACHINE),
                       use_postgres=False, lambda_workers=request.param, persist=False)
    with stack:
        yield stack


def test_map_reports_the_failing_item_and_runs_the_others(tiny_stack):
    arn = tiny_stack.start_execution({"task_id": "task_1", "items": ["a", "bad", "c"], "explode": False,
                                      "concurrency": 2})
    described = tiny_stack.wait_for_execution(arn, timeout=60)
    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["plan"]["remaining_ms"] > 0
    assert output["items"][0] == {"value": "A", "task_id": "task_1"}
    assert output["items"][2] == {"value": "C", "task_id": "task_1"}
    failed = output["items"][1]
    assert failed["failed"] is True and failed["value"] == "bad"
    assert failed["error"]["Error"] == "ValueError"
    assert json.loads(failed["error"]["Cause"])["errorMessage"] == "this item is broken"


def test_an_error_is_caught_and_handed_to_the_failure_handler(tiny_stack):
    arn = tiny_stack.start_execution({"task_id": "task_2", "items": [], "explode": True, "concurrency": 1})
    described = tiny_stack.wait_for_execution(arn, timeout=60)
    assert described["status"] == "FAILED"
    assert described["error"] == "StepFailed"
    assert json.loads(described["cause"]) == {"errorType": "SqlBroken", "errorMessage": "column x does not exist"}
    events = tiny_stack.sfn.get_execution_history(executionArn=arn)["events"]
    succeeded = [e for e in events if e["type"] == "LambdaFunctionSucceeded"]
    assert any('"recorded":"SqlBroken"' in e["lambdaFunctionSucceededEventDetails"]["output"].replace(" ", "")
               for e in succeeded)


def test_the_stack_sets_the_environment_and_creates_the_resources(tiny_stack):
    import os

    assert os.environ["AWS_ENDPOINT_URL"] == tiny_stack.endpoint_url
    assert os.environ["DATA_PIPELINE_STATE_MACHINE_ARN"] == tiny_stack.state_machine_arn
    table = tiny_stack.client("dynamodb").describe_table(TableName=tiny_stack.table_name)["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"by_created", "by_status"}
    assert tiny_stack.client("s3").head_bucket(Bucket=tiny_stack.bucket)
    names = {f["FunctionName"] for f in tiny_stack.client("lambda").list_functions()["Functions"]}
    assert names == set(TINY_FUNCTIONS)


def _invoke(stack: LocalStack, name: str, event: dict) -> tuple[dict, str | None]:
    reply = stack.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
    return json.loads(reply["Payload"].read()), reply.get("FunctionError")


workers_only = pytest.mark.parametrize("tiny_stack", [2], ids=["workers"], indirect=True)


@workers_only
def test_workers_run_in_their_own_processes_with_the_current_environment(tiny_stack, monkeypatch):
    worker_stack = tiny_stack
    monkeypatch.setenv("TINY_SETTING", "set after the workers started")
    answers = [_invoke(worker_stack, "tiny_env", {"name": "TINY_SETTING"}) for _ in range(3)]
    assert all(error is None for _, error in answers)
    assert {a["value"] for a, _ in answers} == {"set after the workers started"}
    assert all(a["pid"] != os.getpid() for a, _ in answers)
    monkeypatch.delenv("TINY_SETTING")
    assert _invoke(worker_stack, "tiny_env", {"name": "TINY_SETTING"})[0]["value"] is None


@workers_only
def test_a_worker_that_dies_fails_its_invocation_and_is_replaced(tiny_stack):
    worker_stack = tiny_stack
    pids_before = {p.process.pid for p in worker_stack.dispatcher.workers._all}
    payload, error = _invoke(worker_stack, "tiny_exit", {})
    assert error == "Unhandled" and payload["errorType"] == "Runtime.ExitError"
    assert len(worker_stack.dispatcher.workers._all) == worker_stack.lambda_workers
    assert {p.process.pid for p in worker_stack.dispatcher.workers._all} != pids_before
    answers = [_invoke(worker_stack, "tiny_env", {"name": "PATH"}) for _ in range(4)]  # the pool still serves
    assert all(error is None and a["value"] for a, error in answers)


@workers_only
def test_a_worker_past_its_timeout_is_killed_and_the_invocation_times_out(tiny_stack, monkeypatch):
    worker_stack = tiny_stack
    monkeypatch.setitem(worker_stack.dispatcher.timeouts, "tiny_sleep", 1)
    monkeypatch.setattr("infra.local.lambdas.KILL_GRACE_SECONDS", 0.5)
    payload, error = _invoke(worker_stack, "tiny_sleep", {"seconds": 30})
    assert error == "Unhandled" and payload["errorType"] == "Sandbox.Timedout"
    assert payload["errorMessage"] == "Task timed out after 1 seconds"
    assert _invoke(worker_stack, "tiny_sleep", {"seconds": 0})[0] == {"slept": 0}


def test_dynamodb_answers_keep_every_attribute_type(tiny_stack):
    """Plain results skip moto's serializer (fast path); binary values and timestamps still go through it."""
    dynamodb = tiny_stack.client("dynamodb")
    item = {"task_id": {"S": "types_1"}, "blob": {"B": b"\x00\xffbytes"}, "n": {"N": "1.50"},
            "chinese": {"S": "高速服务区"}, "flags": {"SS": ["a", "b"]},
            "nested": {"M": {"l": {"L": [{"NULL": True}]}}}}
    dynamodb.put_item(TableName=tiny_stack.table_name, Item=item)
    got = dynamodb.get_item(TableName=tiny_stack.table_name, Key={"task_id": {"S": "types_1"}}, ConsistentRead=True)
    assert got["Item"]["blob"] == {"B": b"\x00\xffbytes"}
    assert {k: v for k, v in got["Item"].items() if k not in ("blob", "flags")} == \
        {k: v for k, v in item.items() if k not in ("blob", "flags")}
    assert sorted(got["Item"]["flags"]["SS"]) == ["a", "b"]
    described = dynamodb.describe_table(TableName=tiny_stack.table_name)["Table"]
    assert described["CreationDateTime"].year >= 2024  # a datetime, serialised by moto's own serializer
