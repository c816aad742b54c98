"""Step Lambdas log to CloudWatch with the invocation's keys (powertools' inject_lambda_context)."""
from __future__ import annotations

from chalicelib.steps.blueprint import with_lambda_context
from chalicelib.tasklog import lambda_logger
from infra.local.lambdas import LambdaContext


def test_a_step_invocation_puts_the_lambda_context_on_its_records():
    seen: dict = {}

    def handler(event, context):
        seen.update(lambda_logger().get_current_keys())  # the keys every record of this invocation carries
        return {"ok": True}

    context = LambdaContext("step_ddl_tables", 60)
    assert with_lambda_context(handler)({"task_id": "task_20250101_000000"}, context) == {"ok": True}
    assert seen["function_name"] == "step_ddl_tables"
    assert seen["function_request_id"] == context.aws_request_id
    assert seen["function_arn"] == context.invoked_function_arn and "cold_start" in seen


def test_a_handler_called_without_a_lambda_context_runs_as_it_is():
    assert with_lambda_context(lambda event, context: event["x"] * 2)({"x": 21}, None) == 42
