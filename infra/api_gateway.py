"""What API Gateway answers by itself, in the envelope: merged into the REST API's definition by infra/template.py.

- `gateway_responses()`: the `x-amazon-apigateway-gateway-responses` of the API. No route (API Gateway's
  MISSING_AUTHENTICATION_TOKEN) is a 404 `NOT_FOUND` envelope; throttling, a body too large, an integration
  timeout … are envelopes with their own status and code.
- `method_not_allowed_methods()`: an `x-amazon-apigateway-any-method` MOCK per path answering the methods the
  path's routes lack with a 405 `METHOD_NOT_ALLOWED` envelope and `Allow` (API Gateway prefers a path's own
  methods to ANY, so the real routes are untouched).

They sit in the OpenAPI definition rather than in AWS::ApiGateway::GatewayResponse resources: SAM rewrites an
AWS::Serverless::Api from its definition on each deployment, which drops gateway responses kept outside it
(aws/serverless-application-model#390, #623). The local server answers the same way (infra/local/gateway.py).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

JSON_CONTENT_TYPE = "'application/json; charset=utf-8'"
_PATH_PARAMETER = re.compile(r"\{([^}+]+)\+?\}")

# type: (HTTP status, error.type, error.code, message). Every documented response type is listed with its
# status so the envelope's `code` is the status sent; DEFAULT_4XX / DEFAULT_5XX only catch types AWS may add
# later and keep the status API Gateway chose (their `code` then says 400 / 500: gateway response templates are
# not processed by VTL, so the status cannot be read into the body).
GATEWAY_RESPONSES: dict[str, tuple[int | None, str, str, str]] = {
    "MISSING_AUTHENTICATION_TOKEN": (404, "NotFound", "NOT_FOUND",
                                     "Not found: no route for $context.httpMethod on this path"),
    "RESOURCE_NOT_FOUND": (404, "NotFound", "NOT_FOUND", "Not found"),
    "BAD_REQUEST_PARAMETERS": (400, "ValidationError", "VALIDATION_ERROR", "Invalid request parameters"),
    "BAD_REQUEST_BODY": (400, "ValidationError", "VALIDATION_ERROR", "Invalid request body"),
    "UNAUTHORIZED": (401, "Unauthorized", "UNAUTHORIZED", "A valid API key is required"),
    "ACCESS_DENIED": (403, "Forbidden", "ACCESS_DENIED", "Access denied"),
    "INVALID_API_KEY": (403, "Forbidden", "INVALID_API_KEY", "Invalid API key"),
    "INVALID_SIGNATURE": (403, "Forbidden", "INVALID_SIGNATURE", "Invalid request signature"),
    "EXPIRED_TOKEN": (403, "Forbidden", "EXPIRED_TOKEN", "Expired token"),
    "WAF_FILTERED": (403, "Forbidden", "WAF_FILTERED", "Request blocked"),
    "REQUEST_TOO_LARGE": (413, "PayloadTooLarge", "PAYLOAD_TOO_LARGE", "Request body too large"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "UnsupportedMediaType", "UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"),
    "THROTTLED": (429, "TooManyRequests", "THROTTLED", "Too many requests"),
    "QUOTA_EXCEEDED": (429, "TooManyRequests", "QUOTA_EXCEEDED", "Request quota exceeded"),
    "API_CONFIGURATION_ERROR": (500, "InternalError", "INTERNAL_ERROR", "Internal server error"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "InternalError", "INTERNAL_ERROR", "Internal server error"),
    "AUTHORIZER_FAILURE": (500, "InternalError", "INTERNAL_ERROR", "Internal server error"),
    "INTEGRATION_FAILURE": (504, "GatewayTimeout", "INTEGRATION_FAILURE", "The API backend did not answer"),
    "INTEGRATION_TIMEOUT": (504, "GatewayTimeout", "INTEGRATION_TIMEOUT", "The API backend did not answer in time"),
    "DEFAULT_4XX": (None, "ValidationError", "$context.error.responseType", "Request refused"),
    "DEFAULT_5XX": (None, "InternalError", "$context.error.responseType", "Internal server error"),
}


def envelope_template(status: int, error_type: str, code: str, message: str, details: str) -> str:
    """The envelope (chalicelib/api/envelope.py `failure`) as a template. `details` is inserted as is: a JSON
    value or a `$context…String` variable that API Gateway substitutes already quoted."""
    head = json.dumps({"success": False, "code": status, "message": message}, ensure_ascii=False)[:-1]
    error = json.dumps({"type": error_type, "code": code}, ensure_ascii=False)[:-1]
    return (f'{head}, "error": {error}, "details": {details}, "invalid_params": [], '
            '"timestamp": "$context.requestTime"}}')


def gateway_responses() -> dict[str, Any]:
    """`x-amazon-apigateway-gateway-responses`: every gateway response type answered in the envelope."""
    responses = {}
    for response_type, (status, error_type, code, message) in GATEWAY_RESPONSES.items():
        body_status = status if status is not None else (400 if response_type == "DEFAULT_4XX" else 500)
        response: dict[str, Any] = {
            "responseParameters": {"gatewayresponse.header.Content-Type": JSON_CONTENT_TYPE},
            "responseTemplates": {"application/json": envelope_template(
                body_status, error_type, code, message, "$context.error.messageString")},
        }
        if status is not None:
            response["statusCode"] = str(status)
        responses[response_type] = response
    return responses


def method_not_allowed_methods(routes: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """{path: {"x-amazon-apigateway-any-method": MOCK 405}} for the API's paths ({path: its methods})."""
    paths = {}
    for path, methods in routes.items():
        allowed = ", ".join(sorted(methods))
        message = f"Method $context.httpMethod is not allowed on {path} (allowed: {allowed})"
        template = envelope_template(405, "MethodNotAllowed", "METHOD_NOT_ALLOWED", message,
                                     json.dumps(message, ensure_ascii=False))
        paths[path] = {"x-amazon-apigateway-any-method": {
            "parameters": [{"name": name, "in": "path", "required": True, "type": "string"}
                           for name in _PATH_PARAMETER.findall(path)],  # declared as Chalice does for its own
            "produces": ["application/json"],
            "responses": {"405": {"description": "method not allowed",
                                  "headers": {"Allow": {"type": "string"}, "Content-Type": {"type": "string"}}}},
            "x-amazon-apigateway-integration": {
                "type": "mock",
                "passthroughBehavior": "when_no_templates",
                "requestTemplates": {"application/json": '{"statusCode": 405}'},
                "responses": {"default": {
                    "statusCode": "405",
                    "responseParameters": {"method.response.header.Allow": f"'{allowed}'",
                                           "method.response.header.Content-Type": JSON_CONTENT_TYPE},
                    "responseTemplates": {"application/json": template},
                }},
            },
        }}
    return paths


def rest_api_merge(routes: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What infra/template.py merges into Chalice's `RestAPI` resource (a deep merge: Chalice keeps its paths)."""
    return {"Properties": {"DefinitionBody": {
        "x-amazon-apigateway-gateway-responses": gateway_responses(),
        "paths": method_not_allowed_methods(routes),
    }}}
