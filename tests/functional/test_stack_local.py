"""LocalStack: moto's Step Functions runs state machines whose Lambda tasks are Chalice handlers in this process.

Stand-in Chalice apps keep these tests independent of the real step handlers: one tiny machine exercising the
dispatch (Choice, Map with a caught item, Catch -> failure handler), and the project's own ASL driven by
handlers that speak the step contract (event and result shapes), to check its paths and branches.
"""
from __future__ import annotations

import json

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

    return app


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


@pytest.fixture(scope="module")
def tiny_stack():
    stack = LocalStack(app_factory=_tiny_app, function_names=["tiny_plan", "tiny_item", "tiny_boom", "tiny_failure"],
                       definition_text=json.dumps(TINY_MACHINE), use_postgres=False)
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
    assert names == {"tiny_plan", "tiny_item", "tiny_boom", "tiny_failure"}
