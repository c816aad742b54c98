"""The local stack enforces AWS's quotas and fails as AWS fails (infra/local/quotas.py): each quota trips, at its
real default where the test stays quick, else at a small limit set through its variable; its switch turns it off.

A tiny Chalice app stands in for the step Lambdas (the project's pipeline under a tripped quota:
tests/functional/test_reconcile.py)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from chalice import Chalice

from infra.local.lambdas import lambda_timeouts
from infra.local.quotas import QUOTAS, SWITCH, describe_quotas, limit
from infra.local.serve import start_api_server, stop_api_server
from infra.local.stack import ROOT, LocalStack

FUNCTIONS = ["quota_big", "quota_sleep", "quota_handler"]


def _quota_app() -> Chalice:
    app = Chalice(app_name="quota_app")

    @app.lambda_function(name="quota_big")
    def big(event, context):
        return {"blob": "x" * event["size"]}

    @app.lambda_function(name="quota_sleep")
    def sleep(event, context):
        time.sleep(event["seconds"])
        return {"slept": event["seconds"]}

    @app.lambda_function(name="quota_handler")
    def handler(event, context):
        return {"handled": event.get("error", {}).get("Error")}

    @app.route("/echo", methods=["POST"], content_types=["application/octet-stream"])
    def echo():
        return {"bytes": len(app.current_request.raw_body or b"")}

    @app.route("/slow")
    def slow():
        time.sleep(float(app.current_request.query_params["seconds"]))
        return {"slow": True}

    return app


CAUGHT = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handle"}]
MACHINE = {
    "StartAt": "Big",
    "States": {
        "Big": {"Type": "Task", "Resource": "${QuotaBigArn}", "ResultPath": "$.big", "Next": "Items",
                "Catch": CAUGHT},
        "Items": {
            "Type": "Map", "ItemsPath": "$.items", "ItemSelector": {"size.$": "$$.Map.Item.Value"},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Item", "States": {
                "Item": {"Type": "Task", "Resource": "${QuotaBigArn}", "End": True,
                         "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ItemFailed"}]},
                "ItemFailed": {"Type": "Pass", "Result": {"failed": True}, "End": True}}},
            "ResultPath": "$.items", "Next": "Sleep", "Catch": CAUGHT},
        "Sleep": {"Type": "Task", "Resource": "${QuotaSleepArn}", "Parameters": {"seconds.$": "$.sleep"},
                  "ResultPath": "$.slept", "End": True, "Catch": CAUGHT},
        "Handle": {"Type": "Task", "Resource": "${QuotaHandlerArn}", "ResultPath": "$.handled", "Next": "Failed"},
        "Failed": {"Type": "Fail", "Error": "Handled"},
    },
}


@pytest.fixture(scope="module")
def stack():
    with LocalStack(app_factory=_quota_app, function_names=FUNCTIONS, definition_text=json.dumps(MACHINE),
                    use_postgres=False, persist=False) as stack:
        yield stack


def _execute(stack, size=10, items=(), sleep=0) -> tuple[dict, list[dict]]:
    arn = stack.start_execution({"size": size, "items": list(items), "sleep": sleep})
    described = stack.wait_for_execution(arn, timeout=60)
    return described, stack.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def _entered(events: list[dict]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


# -- the switches ----------------------------------------------------------------------------------------------


def test_every_quota_is_on_by_default_and_each_switch_or_number_changes_it(monkeypatch):
    for quota in QUOTAS.values():
        monkeypatch.delenv(quota.env, raising=False)
    monkeypatch.delenv(SWITCH, raising=False)
    assert {name: limit(name) for name in QUOTAS} == {
        "state_payload": 262_144, "history_events": 25_000, "lambda_timeout": 1, "lambda_payload": 6_291_456,
        "dynamodb_item": 409_600, "api_timeout": 29, "api_payload": 10_485_760}
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_HISTORY_EVENTS", "50")
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_API_TIMEOUT_SECONDS", "off")
    assert limit("history_events") == 50 and limit("api_timeout") is None and limit("api_payload") == 10_485_760
    assert any("(DATA_PIPELINE_QUOTA_API_TIMEOUT_SECONDS)" in line and ": off" in line for line in describe_quotas())
    monkeypatch.setenv(SWITCH, "off")
    assert all(limit(name) is None for name in QUOTAS)
    monkeypatch.setenv(SWITCH, "on")
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_STATE_PAYLOAD_BYTES", "lots")
    with pytest.raises(ValueError, match="DATA_PIPELINE_QUOTA_STATE_PAYLOAD_BYTES must be off or a number"):
        limit("state_payload")
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_LAMBDA_TIMEOUT", "5")  # the functions' own timeouts, or none
    with pytest.raises(ValueError, match="DATA_PIPELINE_QUOTA_LAMBDA_TIMEOUT must be on or off"):
        limit("lambda_timeout")


# -- Step Functions ---------------------------------------------------------------------------------------------


def test_a_state_output_above_256_kib_fails_the_execution_and_states_all_does_not_catch_it(stack):
    described, events = _execute(stack, size=300_000)
    assert described["status"] == "FAILED"
    assert described["error"] == "States.DataLimitExceeded"
    assert "exceeding the maximum number of bytes service limit" in described["cause"]
    assert "Handle" not in _entered(events)  # the failure handler never ran, as on AWS

    below, _ = _execute(stack, size=250_000)  # the same state just under the quota
    assert below["status"] == "SUCCEEDED", below.get("cause")


def test_a_map_iteration_or_a_map_result_above_the_quota_fails_the_execution(stack):
    described, events = _execute(stack, items=[10, 300_000])  # one iteration's Lambda answers too much
    assert (described["status"], described["error"]) == ("FAILED", "States.DataLimitExceeded")
    assert "Handle" not in _entered(events) and "ItemFailed" not in _entered(events)
    described, events = _execute(stack, items=[100_000, 100_000, 100_000])  # each fits, the Map's result not
    assert (described["status"], described["error"]) == ("FAILED", "States.DataLimitExceeded")
    assert "Handle" not in _entered(events)


def test_with_the_quotas_off_no_payload_limit_applies(stack, monkeypatch):
    monkeypatch.setenv(SWITCH, "off")
    described, _ = _execute(stack, size=300_000)
    assert described["status"] == "SUCCEEDED", described.get("cause")


def test_an_execution_reaching_the_history_event_quota_fails(stack, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_HISTORY_EVENTS", "60")
    described, events = _execute(stack, items=[1] * 40)  # 40 iterations: about 200 events
    assert described["status"] == "FAILED"
    assert described["cause"] == "The execution reached the maximum number of history events (60)."
    assert events[-1]["type"] == "ExecutionFailed"
    assert "Handle" not in _entered(events)
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_HISTORY_EVENTS", "1000")
    assert _execute(stack, items=[1] * 40)[0]["status"] == "SUCCEEDED"


# -- Lambda -----------------------------------------------------------------------------------------------------


def test_lambda_timeouts_come_from_the_chalice_config():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))["stages"]["dev"]
    timeouts = lambda_timeouts()
    assert timeouts["*"] == config["lambda_timeout"]
    for name, settings in config["lambda_functions"].items():
        assert timeouts[name] == settings["lambda_timeout"]


def test_an_in_process_lambda_past_its_timeout_times_out_as_lambda_reports_it(stack, monkeypatch):
    monkeypatch.setitem(stack.dispatcher.timeouts, "quota_sleep", 1)
    started = time.monotonic()
    reply = stack.client("lambda").invoke(FunctionName="quota_sleep", Payload=json.dumps({"seconds": 3}))
    assert time.monotonic() - started < 2.5
    assert reply["FunctionError"] == "Unhandled"
    assert json.loads(reply["Payload"].read()) == {"errorType": "Sandbox.Timedout",
                                                   "errorMessage": "Task timed out after 1 seconds"}
    described, events = _execute(stack, sleep=3)  # in the state machine: the task's Catch sees the error name
    assert described["status"] == "FAILED" and "Handle" in _entered(events)
    handled = [e for e in events if e["type"] == "LambdaFunctionSucceeded"][-1]
    assert json.loads(handled["lambdaFunctionSucceededEventDetails"]["output"]) == {"handled": "Sandbox.Timedout"}


def test_lambda_payloads_above_6_mb_are_refused_both_ways(stack):
    lam = stack.client("lambda")
    reply = lam.invoke(FunctionName="quota_big", Payload=json.dumps({"size": 6_300_000}))
    assert reply["FunctionError"] == "Unhandled"
    assert json.loads(reply["Payload"].read()) == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291456 bytes)."}
    with pytest.raises(ClientError) as refused:
        lam.invoke(FunctionName="quota_big", Payload=json.dumps({"size": 1, "pad": "y" * 6_300_000}))
    assert refused.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


# -- DynamoDB ---------------------------------------------------------------------------------------------------


def test_a_dynamodb_item_above_400_kb_is_refused_on_put(stack):
    dynamodb = stack.client("dynamodb")
    item = {"task_id": {"S": "quota_put"}, "blob": {"S": "z" * (400 * 1024)}}
    with pytest.raises(ClientError) as refused:
        dynamodb.put_item(TableName=stack.table_name, Item=item)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["Error"]["Message"] == "Item size has exceeded the maximum allowed size"
    assert "Item" not in dynamodb.get_item(TableName=stack.table_name, Key={"task_id": {"S": "quota_put"}})
    item["blob"] = {"S": "z" * (390 * 1024)}
    dynamodb.put_item(TableName=stack.table_name, Item=item)


def test_a_nested_update_that_grows_an_item_past_the_quota_is_refused_and_changes_nothing(stack, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_DYNAMODB_ITEM_BYTES", "2000")
    dynamodb = stack.client("dynamodb")
    key = {"task_id": {"S": "quota_update"}}
    dynamodb.put_item(TableName=stack.table_name, Item={**key, "steps": {"M": {"a": {"M": {}}}}})

    def grow(size: int) -> None:
        dynamodb.update_item(TableName=stack.table_name, Key=key, UpdateExpression="SET steps.a.#r = :r",
                             ExpressionAttributeNames={"#r": "result"},
                             ExpressionAttributeValues={":r": {"S": "r" * size}})

    grow(1000)
    before = dynamodb.get_item(TableName=stack.table_name, Key=key, ConsistentRead=True)["Item"]
    with pytest.raises(ClientError) as refused:
        grow(2500)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["Error"]["Message"] == "Item size to update has exceeded the maximum allowed size"
    assert dynamodb.get_item(TableName=stack.table_name, Key=key, ConsistentRead=True)["Item"] == before
    new_key = {"task_id": {"S": "quota_new"}}
    with pytest.raises(ClientError):
        dynamodb.update_item(TableName=stack.table_name, Key=new_key, UpdateExpression="SET big = :r",
                             ExpressionAttributeValues={":r": {"S": "n" * 2500}})
    assert "Item" not in dynamodb.get_item(TableName=stack.table_name, Key=new_key, ConsistentRead=True)


# -- API Gateway ------------------------------------------------------------------------------------------------


@pytest.fixture
def api_url(stack):
    server = start_api_server(stack)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        stop_api_server(server)


def _http(url: str, data: bytes | None = None, timeout: float = 60) -> tuple[int, dict]:
    headers = {"Content-Type": "application/octet-stream"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_gateway_refuses_a_body_above_10_mb_with_a_413_envelope(api_url):
    status, body = _http(api_url + "/echo", b"a" * (10 * 1024 * 1024 + 1))
    assert status == 413 and body["code"] == 413 and body["success"] is False
    assert (body["error"]["type"], body["error"]["code"]) == ("PayloadTooLarge", "PAYLOAD_TOO_LARGE")
    assert _http(api_url + "/echo", b"a" * 1000) == (200, {"bytes": 1000})


def test_the_gateway_answers_504_when_the_integration_takes_longer_than_its_timeout(api_url, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_QUOTA_API_TIMEOUT_SECONDS", "1")
    started = time.monotonic()
    status, body = _http(api_url + "/slow?seconds=3")
    assert time.monotonic() - started < 2.5
    assert status == 504 and body["code"] == 504
    assert (body["error"]["type"], body["error"]["code"]) == ("GatewayTimeout", "INTEGRATION_TIMEOUT")
    assert _http(api_url + "/slow?seconds=0") == (200, {"slow": True})
