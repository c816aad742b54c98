"""Observability (#12 item 9): every step Lambda publishes one EMF blob per invocation (read back here from
stdout as CloudWatch would), X-Ray tracing is off outside Lambda, and the template traces and alarms."""
from __future__ import annotations

import json

import pytest

from chalicelib.errors import LLMRateLimited, TaskNotFound
from chalicelib.observability import NAMESPACE, get_tracer, instrument_step
from infra.template import STATE_MACHINE_RESOURCE, STEP_FUNCTION_NAMES, build_merge_template, function_resources


def _emf_blobs(text: str) -> list[dict]:
    blobs = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


def _values(blob: dict, *names: str) -> tuple:
    """EMF keeps a metric's values as a list; each is added once per invocation here."""
    found = []
    for name in names:
        value = blob[name]
        assert isinstance(value, list) and len(value) == 1, (name, value)
        found.append(value[0])
    return tuple(found)


def _metric_names(blob: dict) -> set[str]:
    return {m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


@pytest.fixture
def metrics_on(monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_METRICS", "1")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)


def test_a_ddl_batch_reports_tables_llm_calls_tokens_and_duration(metrics_on, capsys):
    result = {"tables": [{"table": "public.a", "ok": True}, {"table": "public.b", "ok": True},
                         {"table": "public.c", "ok": False, "error": "permission denied"}],
              "llm_usage": {"provider": "openai-compatible", "calls": 4, "prompt_tokens": 1200,
                            "completion_tokens": 300, "seconds": 2.5, "retries": 1}}
    handler = instrument_step("step_ddl_tables", lambda event, context: result)
    assert handler({"task_id": "task_20250627_143052"}, None) is result
    [blob] = _emf_blobs(capsys.readouterr().out)
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert ["function", "service"] in [sorted(d) for d in blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"]]
    assert blob["function"] == "step_ddl_tables"
    assert _values(blob, "TablesProcessed", "TablesFailed") == (2, 1)
    assert _values(blob, "LlmCalls", "LlmTokens", "LlmRetries") == (4, 1500, 1)
    assert _values(blob, "StepDuration")[0] >= 0 and "StepDuration" in _metric_names(blob)
    assert blob["task_id"] == "task_20250627_143052"  # metadata, not a dimension
    assert "task_id" not in blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]


def test_validation_and_qa_counts(metrics_on, capsys):
    instrument_step("step_sql_validation_batch",
                    lambda e, c: {"index": 0, "total": 40, "valid_after": 37, "repaired": 5})({"task_id": "t"}, None)
    instrument_step("step_qa_theme", lambda e, c: {"index": 1, "pairs": 10, "llm_usage": {}})({"task_id": "t"}, None)
    validation, qa = _emf_blobs(capsys.readouterr().out)
    assert _values(validation, "PairsValidated", "PairsValid", "PairsRepaired") == (40, 37, 5)
    assert _values(qa, "PairsGenerated") == (10,) and "LlmCalls" not in qa


def test_a_failed_llm_step_counts_an_llm_error_and_still_raises(metrics_on, capsys):
    def failing(event, context):
        raise LLMRateLimited("the LLM endpoint kept answering 429")

    with pytest.raises(LLMRateLimited):
        instrument_step("step_qa_themes", failing)({"task_id": "t"}, None)
    [blob] = _emf_blobs(capsys.readouterr().out)
    assert _values(blob, "StepErrors", "LlmErrors") == (1, 1) and blob["error_type"] == "LLMRateLimited"


def test_the_local_stack_writes_no_metrics_by_default(monkeypatch, capsys):
    monkeypatch.delenv("DATA_PIPELINE_METRICS", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.delenv("DATA_PIPELINE_LOCAL", raising=False)
    instrument_step("step_finalize", lambda e, c: {"ok": True})({"task_id": "t"}, None)
    assert _emf_blobs(capsys.readouterr().out) == []


def test_the_app_s_step_lambdas_are_instrumented(metrics_on, capsys):
    import app

    for name in STEP_FUNCTION_NAMES:
        with pytest.raises(TaskNotFound):  # refused before any AWS call: no such task id
            app.app.handler_map[name]({"task_id": "not-a-task"}, None)
        [blob] = _emf_blobs(capsys.readouterr().out)
        assert blob["function"] == name and _values(blob, "StepErrors") == (1,), name


def test_tracing_is_off_outside_lambda(monkeypatch):
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    assert get_tracer().disabled


def test_the_template_traces_every_lambda_and_alarms_on_failed_executions():
    template = build_merge_template()
    resources = template["Resources"]
    for logical_id in function_resources():
        assert resources[logical_id]["Properties"]["Tracing"] == "Active", logical_id
    assert resources["RestAPI"]["Properties"]["TracingEnabled"] is True
    assert resources[STATE_MACHINE_RESOURCE]["Properties"]["TracingConfiguration"] == {"Enabled": True}
    alarms = [r["Properties"] for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
    failed = [a for a in alarms if (a["Namespace"], a["MetricName"]) == ("AWS/States", "ExecutionsFailed")]
    assert len(failed) == 1
    assert failed[0]["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": STATE_MACHINE_RESOURCE}}]
    tracing_roles = {r["Ref"] for r in resources["TracingPolicy"]["Properties"]["Roles"]}
    assert {"ApiHandlerRole", "StepLambdaRole", "StateMachineRole"} <= tracing_roles


_TRACE_PROBE = r'''
import json, os, socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sock.settimeout(10)
os.environ.update({"LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "step_finalize",
                   "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                   "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:%d" % sock.getsockname()[1], "DATA_PIPELINE_METRICS": "0"})
from types import SimpleNamespace
from chalice import Response
from chalicelib.observability import get_tracer, instrument_step, traced
from infra.local.lambdas import LambdaContext

def finalize(event, context):
    return {"ok": True}

assert not get_tracer().disabled
instrument_step("step_finalize", finalize)({"task_id": "t"}, LambdaContext("step_finalize", 60))
request = SimpleNamespace(method="GET", path="/api/v0/data_pipeline/tasks",
                          context={"resourcePath": "/api/v0/data_pipeline/tasks"})
traced(lambda event: Response(body={}, status_code=200), request)
for _ in range(2):
    data, _ = sock.recvfrom(65536)
    document = json.loads(data.decode().split("\n", 1)[1])
    print(json.dumps({"name": document["name"], "annotations": document.get("annotations", {})}))
'''


def test_in_lambda_each_step_and_request_is_an_xray_subsegment(tmp_path):
    """The real X-Ray SDK, as in Lambda (trace header, daemon address), sending to a UDP socket standing in for
    the daemon: the step handler and the HTTP request each arrive as a subsegment."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_XRAY"))}
    env["PYTHONPATH"] = str(root)
    result = subprocess.run([sys.executable, "-c", _TRACE_PROBE], cwd=root, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [d["name"] for d in documents] == ["## finalize", "## GET /api/v0/data_pipeline/tasks"]
    assert documents[0]["annotations"]["Service"] == "data_pipeline"
    assert documents[1]["annotations"]["status_code"] == 200
