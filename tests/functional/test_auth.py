"""Authentication (#12 item 1): the Lambda authorizer and the API's own check, with the key in (moto) Secrets
Manager; IAM mode; an empty key answers only on the local stack."""
from __future__ import annotations

import hmac
import json
import time

import boto3
import pytest

from chalicelib import secrets
from chalicelib.api import auth
from chalicelib.config import get_settings
from tests.support.aws_api import api_environment

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/api/GET/api/v0/data_pipeline/tasks"
SECRET_NAME = "data-pipeline/api-key"


@pytest.fixture
def client(monkeypatch, tmp_path):
    secrets.clear_cache()
    with api_environment(monkeypatch, tmp_path) as test_client:
        yield test_client
    secrets.clear_cache()


@pytest.fixture
def key_in_secrets_manager(client, monkeypatch):
    """The deployed SecretsManagerKey setup: DATA_PIPELINE_API_KEY references the secret, not in a Lambda."""
    arn = boto3.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString="first-key-0123")["ARN"]
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", f"secretsmanager:{arn}")
    monkeypatch.setenv("DATA_PIPELINE_AUTH_MODE", "SecretsManagerKey")
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")
    return arn


def _token_event(token: str | None) -> dict:
    event = {"type": "TOKEN", "methodArn": METHOD_ARN}
    if token is not None:
        event["authorizationToken"] = token
    return event


def test_authorizer_allows_the_right_key_for_the_whole_api(key_in_secrets_manager):
    answer = auth.api_key_authorizer(_token_event("Bearer first-key-0123"), None)
    statement = answer["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke"
    # API Gateway caches the answer per token: it must cover every route, not only the first one called.
    assert statement["Resource"] == "arn:aws:execute-api:us-east-1:123456789012:abc123/api/*"


@pytest.mark.parametrize("token", [None, "", "Bearer wrong", "Bearer ", "first-key-0123", "Basic first-key-0123",
                                   "Bearer first-key-01234", "Bearer first-key-012"])
def test_authorizer_refuses_anything_else_as_unauthorized(key_in_secrets_manager, token):
    with pytest.raises(Exception, match="^Unauthorized$"):
        auth.api_key_authorizer(_token_event(token), None)


def test_a_rotated_key_takes_over_when_the_cache_expires(key_in_secrets_manager, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_SECRET_CACHE_SECONDS", "0.5")
    assert auth.authorize_token(_token_event("Bearer first-key-0123"))
    boto3.client("secretsmanager").put_secret_value(SecretId=key_in_secrets_manager, SecretString="second-key-4567")
    assert auth.authorize_token(_token_event("Bearer first-key-0123"))  # still cached: no redeploy, no call
    time.sleep(0.6)
    assert auth.authorize_token(_token_event("Bearer second-key-4567"))
    with pytest.raises(Exception, match="^Unauthorized$"):
        auth.authorize_token(_token_event("Bearer first-key-0123"))


def test_keys_are_compared_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    assert auth.is_authorized("Bearer k3y", "k3y") and not auth.is_authorized("Bearer nope", "k3y")
    assert calls == [(b"k3y", b"k3y"), (b"nope", b"k3y")]


def test_the_api_checks_the_secrets_manager_key_too_and_answers_401_in_the_envelope(client, key_in_secrets_manager):
    refused = client.http.get("/api/v0/data_pipeline/tasks", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    body = json.loads(refused.body)
    assert body["success"] is False and body["error"]["code"] == "UNAUTHORIZED"
    allowed = client.http.get("/api/v0/data_pipeline/tasks", headers={"Authorization": "Bearer first-key-0123"})
    assert allowed.status_code == 200, allowed.body


def test_a_deployment_without_key_or_iam_refuses_every_request(client, monkeypatch):
    monkeypatch.delenv("DATA_PIPELINE_API_KEY", raising=False)
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")
    reply = client.http.get("/api/v0/data_pipeline/tasks")
    assert reply.status_code == 500
    assert json.loads(reply.body)["error"]["code"] == "AUTH_NOT_CONFIGURED"
    with pytest.raises(Exception, match="^Unauthorized$"):
        auth.authorize_token(_token_event("Bearer anything"))
    monkeypatch.setenv("DATA_PIPELINE_AUTH_MODE", "SecretsManagerKey")
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "1")  # a key mode without a key is refused even locally
    assert client.http.get("/api/v0/data_pipeline/tasks").status_code == 500


def test_an_empty_key_leaves_only_the_local_stack_open(client, monkeypatch):
    monkeypatch.delenv("DATA_PIPELINE_API_KEY", raising=False)
    monkeypatch.delenv("DATA_PIPELINE_LOCAL", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert client.http.get("/api/v0/data_pipeline/tasks").status_code == 200
    assert "open" in auth.describe_local_auth() and "local stack" in auth.describe_local_auth()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "data_pipeline-dev")  # the Lambda runtime: not local
    assert client.http.get("/api/v0/data_pipeline/tasks").status_code == 500


def test_iam_mode_needs_the_identity_api_gateway_verified(monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_AUTH_MODE", "IAM")
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")
    monkeypatch.delenv("DATA_PIPELINE_API_KEY", raising=False)
    settings = get_settings()
    signed = {"identity": {"userArn": "arn:aws:iam::123456789012:user/ci", "caller": "AIDAEXAMPLE"}}
    assert auth.check_request({}, signed, settings) is None
    refused = auth.check_request({"authorization": "Bearer anything"}, {"identity": {}}, settings)
    assert refused.status_code == 401 and json.loads(refused.body)["error"]["code"] == "UNAUTHORIZED"


def test_an_unreadable_key_secret_is_a_500_naming_the_problem_never_an_open_door(client, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "secretsmanager:data-pipeline/missing")
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")
    reply = client.http.get("/api/v0/data_pipeline/tasks", headers={"Authorization": "Bearer x"})
    assert reply.status_code == 500
    assert json.loads(reply.body)["error"]["code"] == "SECRET_UNAVAILABLE"


def test_make_serve_says_how_it_authenticates(monkeypatch):
    from infra.local.serve import startup_banner

    class Stack:
        endpoint_url, databases, persist, enforce_quotas = "http://127.0.0.1:1", None, False, True

    monkeypatch.delenv("DATA_PIPELINE_API_KEY", raising=False)
    assert "authentication: none" in startup_banner(Stack())
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "k")
    assert "authentication: Bearer API key" in startup_banner(Stack())


def test_the_guides_bearer_header_still_works_locally(client, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "local-key")
    ok = client.http.get("/api/v0/data_pipeline/tasks", headers={"Authorization": "Bearer local-key"})
    assert ok.status_code == 200
    assert client.http.get("/api/v0/data_pipeline/tasks").status_code == 401


def test_the_authorizer_is_a_function_of_the_app():
    import app

    assert auth.AUTHORIZER_FUNCTION in app.app.handler_map
