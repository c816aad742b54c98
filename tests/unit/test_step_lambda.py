"""Step Lambdas log to CloudWatch with the invocation's keys (powertools' inject_lambda_context)."""
from __future__ import annotations

import json

from chalicelib.steps.blueprint import with_lambda_context
from chalicelib.tasklog import TaskLogger
from infra.local.lambdas import LambdaContext


class _NoFiles:
    def put_bytes(self, task_id, name, data, content_type=None):
        pass


def test_records_of_a_step_carry_the_lambda_context_and_the_task(capsys):
    def handler(event, context):
        with TaskLogger(event["task_id"], step="ddl_generation", files=_NoFiles()) as log:
            log.info("table done", table="public.bss_company", seconds=0.5)
        return {"ok": True}

    context = LambdaContext("step_ddl_tables", 60)
    assert with_lambda_context(handler)({"task_id": "task_20250101_000000"}, context) == {"ok": True}
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    record = next(r for r in records if r.get("message") == "table done")
    assert record["function_name"] == "step_ddl_tables"
    assert record["function_request_id"] == context.aws_request_id
    assert "cold_start" in record
    assert record["task_id"] == "task_20250101_000000" and record["table"] == "public.bss_company"
