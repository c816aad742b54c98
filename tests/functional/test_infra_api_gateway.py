"""What API Gateway answers by itself comes back in the envelope (issue 8, finding 8, deployed part): the
gateway responses and the per-path 405 mocks merged into Chalice's RestAPI, rendered the way API Gateway
substitutes `$context` values, and the local server answering the same envelope."""
from __future__ import annotations

import json
import re

import pytest

from chalicelib.api.envelope import failure
from infra.api_gateway import GATEWAY_RESPONSES
from infra.template import api_routes, build_merge_template

# https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html
DOCUMENTED_TYPES = {
    "ACCESS_DENIED": 403, "API_CONFIGURATION_ERROR": 500, "AUTHORIZER_CONFIGURATION_ERROR": 500,
    "AUTHORIZER_FAILURE": 500, "BAD_REQUEST_PARAMETERS": 400, "BAD_REQUEST_BODY": 400, "DEFAULT_4XX": None,
    "DEFAULT_5XX": None, "EXPIRED_TOKEN": 403, "INTEGRATION_FAILURE": 504, "INTEGRATION_TIMEOUT": 504,
    "INVALID_API_KEY": 403, "INVALID_SIGNATURE": 403, "MISSING_AUTHENTICATION_TOKEN": 403, "QUOTA_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413, "RESOURCE_NOT_FOUND": 404, "THROTTLED": 429, "UNAUTHORIZED": 401,
    "UNSUPPORTED_MEDIA_TYPE": 415, "WAF_FILTERED": 403,
}
CONTEXT = {  # what API Gateway substitutes (messageString comes quoted, as a JSON string)
    "$context.error.messageString": json.dumps('Missing "Authentication" Token'),
    "$context.error.responseType": "DEFAULT_4XX",
    "$context.httpMethod": "TRACE",
    "$context.requestTime": "01/Dec/2026:08:15:07 +0000",
}
ENVELOPE_KEYS = set(json.loads(failure(400, "x", error_type="T", code="C").body))
ERROR_KEYS = set(json.loads(failure(400, "x", error_type="T", code="C").body)["error"])


def _render(template: str) -> dict:
    for name, value in sorted(CONTEXT.items(), key=lambda item: -len(item[0])):
        template = template.replace(name, value)
    assert "$context" not in template, template
    return json.loads(template)


@pytest.fixture(scope="module")
def definition_body():
    return build_merge_template()["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]


def test_every_gateway_response_type_is_an_envelope(definition_body):
    responses = definition_body["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == set(DOCUMENTED_TYPES)
    for response_type, response in responses.items():
        assert response["responseParameters"]["gatewayresponse.header.Content-Type"] == \
            "'application/json; charset=utf-8'"
        body = _render(response["responseTemplates"]["application/json"])
        assert set(body) == ENVELOPE_KEYS and set(body["error"]) == ERROR_KEYS, response_type
        assert body["success"] is False and body["error"]["details"] == 'Missing "Authentication" Token'
        if DOCUMENTED_TYPES[response_type] is None:  # the fallbacks keep API Gateway's status
            assert "statusCode" not in response
        else:
            assert body["code"] == int(response["statusCode"]), response_type
        if body["code"] == 400:
            assert body["error"]["type"] == "ValidationError"


def test_no_route_is_a_404_not_found_envelope(definition_body):
    response = definition_body["x-amazon-apigateway-gateway-responses"]["MISSING_AUTHENTICATION_TOKEN"]
    assert response["statusCode"] == "404"
    body = _render(response["responseTemplates"]["application/json"])
    assert body["code"] == 404 and body["error"]["code"] == "NOT_FOUND" and body["error"]["type"] == "NotFound"
    assert "TRACE" in body["message"]


def test_every_path_answers_the_methods_it_lacks_with_a_405_envelope(definition_body):
    routes = api_routes()
    assert routes, "the app has routes"
    for path, methods in routes.items():
        mock = definition_body["paths"][path]["x-amazon-apigateway-any-method"]
        assert {p["name"] for p in mock["parameters"]} == set(re.findall(r"\{([^}]+)\}", path))
        integration = mock["x-amazon-apigateway-integration"]
        assert integration["type"] == "mock" and integration["requestTemplates"]["application/json"] == \
            '{"statusCode": 405}'
        answer = integration["responses"]["default"]
        assert answer["statusCode"] == "405"
        assert answer["responseParameters"]["method.response.header.Allow"] == f"'{', '.join(sorted(methods))}'"
        body = _render(answer["responseTemplates"]["application/json"])
        assert body["code"] == 405 and body["error"]["type"] == "MethodNotAllowed"
        assert body["error"]["code"] == "METHOD_NOT_ALLOWED" and path in body["message"]


def test_the_local_server_answers_what_api_gateway_answers(definition_body):
    """Same message for the same method and path, locally (infra/local/gateway.py) and deployed."""
    from chalice.config import Config

    from infra.local.gateway import EnvelopeGateway
    from infra.local.stack import load_repo_app

    gateway = EnvelopeGateway(load_repo_app(), Config())
    path = "/api/v0/data_pipeline/tasks/{task_id}/files"
    local = gateway.handle_request("TRACE", "/api/v0/data_pipeline/tasks/task_1/files?x=1", {}, None)
    local_body = json.loads(local["body"])
    deployed = definition_body["paths"][path]["x-amazon-apigateway-any-method"]
    answer = deployed["x-amazon-apigateway-integration"]["responses"]["default"]
    deployed_body = _render(answer["responseTemplates"]["application/json"])
    assert local["statusCode"] == 405 and local["headers"]["Allow"] == answer["responseParameters"][
        "method.response.header.Allow"].strip("'")
    for body in (local_body, deployed_body):
        body["error"].pop("timestamp")
    assert local_body == deployed_body
    missing = gateway.handle_request("GET", "/api/v0/nothing", {}, None)
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["error"]["code"] == \
        GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"][2]
