"""The project's state machine (infra/data_pipeline.asl.json) run by LocalStack with stand-in step handlers.

The stand-ins speak the step contract (event and result shapes) so that the definition's paths, branches,
Map fan-outs, retries and failure handling are checked independently of the real handlers.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from collections import defaultdict

import boto3
import pytest
from chalice import Chalice

from infra.local.stack import LocalStack
from infra.template import STEP_FUNCTION_NAMES


class TransientError(Exception):
    pass


class SqlBroken(Exception):
    pass


# -- the project's state machine, driven by contract stand-ins of the step handlers ----------------------------


def _write_items(event: dict, map_name: str, items: list) -> dict:
    """What a plan step returns for a Distributed Map: its items in an S3 manifest, where its results go."""
    bucket = os.environ["DATA_PIPELINE_BUCKET"]
    base = f"tasks/{event['task_id']}/work/maps/{map_name}"
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{base}/items.json", Body=json.dumps(items).encode())
    return {"items": {"Bucket": bucket, "Key": f"{base}/items.json"},
            "results": {"Bucket": bucket, "Prefix": f"{base}/results"}, "count": len(items)}


def map_outputs(reference: dict) -> list:
    """The child outputs a Distributed Map's ResultWriter left in S3 (manifest, then its SUCCEEDED files)."""
    s3 = boto3.client("s3")
    manifest = json.loads(s3.get_object(Bucket=reference["Bucket"], Key=reference["Key"])["Body"].read())
    outputs = []
    for entry in manifest["ResultFiles"]["SUCCEEDED"]:
        children = json.loads(s3.get_object(Bucket=reference["Bucket"], Key=entry["Key"])["Body"].read())
        outputs += [json.loads(child["Output"]) for child in children]
    return outputs


class ContractApp:
    """Chalice handlers with the step contract's shapes; records every event by function name."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict]] = defaultdict(list)
        self.flaky_failures = 0
        self._lock = threading.Lock()

    def build(self) -> Chalice:
        app = Chalice(app_name="stack_contract")
        for name in STEP_FUNCTION_NAMES:
            app.lambda_function(name=name)(self._handler(name))
        return app

    def _handler(self, name: str):
        def handler(event, context):
            with self._lock:
                self.events[name].append(event)
            return getattr(self, name)(event)

        return handler

    def step_prepare(self, event):
        step = event["execution_mode"] == "step"
        truncate = bool(event["truncate_vector_tables"])
        names = ("ddl_generation", "qa_generation", "sql_validation", "training_load")
        return {
            "execution_mode": event["execution_mode"],
            "backup": truncate or bool(event["backup_vector_tables"]),
            "truncate": truncate,
            "run": {n: (n == event["step_name"]) if step else True for n in names},
            "ddl_max_concurrency": 2,
            "qa_max_concurrency": 2,
        }

    def step_vector_backup(self, event):
        return {"counts": {"langchain_pg_embedding": 3}}

    def step_vector_truncate(self, event):
        return {"rows_removed": event["results"]["vector_backup"]["counts"]["langchain_pg_embedding"]}

    def step_ddl_plan(self, event):
        tables = [{"schema": "public", "name": n} for n in ("a", "b", "bad", "c")]
        return {**_write_items(event, "ddl", [tables[i:i + 2] for i in range(0, 4, 2)]), "missing": 1}

    def step_ddl_tables(self, event):
        if any(t["name"] == "bad" for t in event["tables"]):
            raise RuntimeError("LLM answered nonsense")
        return {"tables": [{"table": t["name"], "ok": True} for t in event["tables"]], "llm_usage": {"calls": 1}}

    def step_ddl_merge(self, event):
        return {"ok": 2, "failed": 3}

    def step_qa_themes(self, event):
        return {"themes": [{"index": 0}, {"index": 1}], "llm_usage": {"calls": 1}}

    def step_qa_theme(self, event):
        return {"index": event["theme_index"], "pairs": 10, "llm_usage": {"calls": 1}}

    def step_qa_merge(self, event):
        return {"pair_file": "qs_demo_20250101_000000_pair.json"}

    def step_sql_validation_plan(self, event):
        if event["plan"]["execution_mode"] == "step":
            raise SqlBroken("relation public.x does not exist")
        return {**_write_items(event, "validation", [{"index": 0}, {"index": 1}, {"index": 2}]), "max_concurrency": 2}

    def step_sql_validation_batch(self, event):
        if event["batch_index"] == 1:
            raise RuntimeError("database went away")
        return {"index": event["batch_index"], "total": 10, "valid_after": 10}

    def step_sql_validation_merge(self, event):
        return {"pairs_kept": 20, "batches": len(map_outputs(event["results"]))}

    def step_training_load(self, event):
        if self.flaky_failures:
            self.flaky_failures -= 1
            raise TransientError("connection reset")
        return {"sql": 20}

    def step_finalize(self, event):
        return {"status": "completed"}

    def step_handle_failure(self, event):
        return {"status": "failed", "error": event["error"]["Error"]}


@pytest.fixture(scope="module")
def contract():
    contract = ContractApp()
    with LocalStack(app_factory=contract.build, use_postgres=False, persist=False) as stack:
        yield stack, contract


def _run(stack, **execution) -> dict:
    payload = {"task_id": f"task_{uuid.uuid4().hex[:8]}", "execution_mode": "complete", "step_name": None,
               "backup_vector_tables": False, "truncate_vector_tables": False, **execution}
    return stack.wait_for_execution(stack.start_execution(payload), timeout=90)


def test_complete_run_goes_through_every_step(contract):
    stack, app = contract
    app.events.clear()
    app.flaky_failures = 1
    described = _run(stack, truncate_vector_tables=True)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    output = json.loads(described["output"])
    assert set(app.events) == set(STEP_FUNCTION_NAMES) - {"step_handle_failure"}
    assert output["results"]["vector_truncate"] == {"rows_removed": 3}
    assert len(app.events["step_training_load"]) == 2  # retried after the TransientError
    assert output["final"] == {"status": "completed"}

    (merge,) = app.events["step_ddl_merge"]
    assert merge["missing"] == 1  # a count: the plan's {table: reason} stays in S3
    # The Map passes the merge a reference to its results in S3, never the results themselves.
    assert set(merge["results"]) == {"Bucket", "Key"}
    results = map_outputs(merge["results"])
    assert results[0]["tables"] == [{"table": "a", "ok": True}, {"table": "b", "ok": True}]
    failed = results[1]
    assert failed["failed"] is True and [t["name"] for t in failed["tables"]] == ["bad", "c"]
    assert failed["error"]["Error"] == "RuntimeError"
    assert {e["theme_index"] for e in app.events["step_qa_theme"]} == {0, 1}
    (qa_merge,) = app.events["step_qa_merge"]
    assert qa_merge["themes_usage"] == {"calls": 1} and len(qa_merge["results"]) == 2
    assert sorted(e["batch_index"] for e in app.events["step_sql_validation_batch"]) == [0, 1, 2]
    (validation_merge,) = app.events["step_sql_validation_merge"]
    ok_0, failed_1, ok_2 = map_outputs(validation_merge["results"])
    assert ok_0 == {"index": 0, "total": 10, "valid_after": 10} and ok_2["index"] == 2
    assert failed_1["failed"] is True and failed_1["batch_index"] == 1
    assert failed_1["error"]["Error"] == "RuntimeError"
    assert output["validation"] == {"pairs_kept": 20, "batches": 3}
    for name, events in app.events.items():
        assert all(e["task_id"] == events[0]["task_id"] for e in events), name


def test_a_failing_step_ends_in_the_failure_handler(contract):
    stack, app = contract
    app.events.clear()
    described = _run(stack, execution_mode="step", step_name="sql_validation")
    assert described["status"] == "FAILED"
    assert described["error"] == "StepFailed"
    assert json.loads(described["cause"])["errorType"] == "SqlBroken"
    assert set(app.events) == {"step_prepare", "step_sql_validation_plan", "step_handle_failure"}
    (handled,) = app.events["step_handle_failure"]
    assert handled["error"]["Error"] == "SqlBroken"
    assert handled["execution_id"].endswith(described["executionArn"].rsplit(":", 1)[1])
