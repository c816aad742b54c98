"""Authentication of the deployed API, and the build-time check that a template cannot be built without it.

The template's `AuthMode` parameter (infra/resources.json) has no default, so CloudFormation refuses a deployment
that makes no choice; `check_auth_choice` refuses to build a merge template whose parameter lost that property
(a default, another value) or whose routes would be reachable without it. `rest_api_security` is what
infra/template.py merges into Chalice's API definition: both security schemes, and on every operation of every
route the one AuthMode picks (`Fn::If`):

- `api_key_authorizer`: a TOKEN Lambda authorizer (chalicelib/api/auth.py `api_key_authorizer`) reading the key
  from Secrets Manager; its answers are cached by API Gateway per token for AUTHORIZER_TTL_SECONDS.
- `sigv4`: IAM, API Gateway checks the SigV4 signature and the caller's execute-api:Invoke permission.

A refused request gets API Gateway's UNAUTHORIZED / ACCESS_DENIED gateway response: the 401 / 403 envelope of
infra/api_gateway.py.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chalice.utils import to_cfn_resource_name

from chalicelib.api.auth import AUTHORIZER_FUNCTION
from chalicelib.config import AUTH_MODES

AUTH_PARAMETER = "AuthMode"
AUTHORIZER_TTL_SECONDS = 60
AUTHORIZER_RESOURCE = to_cfn_resource_name(AUTHORIZER_FUNCTION)
API_KEY_SCHEME = "api_key_authorizer"
IAM_SCHEME = "sigv4"


class AuthChoiceMissing(ValueError):
    """The template would deploy an API without authentication."""


def security_definitions() -> dict[str, Any]:
    """Swagger 2.0 `securityDefinitions` of the API: the Lambda TOKEN authorizer and SigV4."""
    return {
        API_KEY_SCHEME: {
            "type": "apiKey", "name": "Authorization", "in": "header",
            "x-amazon-apigateway-authtype": "custom",
            "x-amazon-apigateway-authorizer": {
                "type": "token",
                "authorizerUri": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31"
                                             f"/functions/${{{AUTHORIZER_RESOURCE}.Arn}}/invocations"},
                "authorizerResultTtlInSeconds": AUTHORIZER_TTL_SECONDS,
                "identitySource": "method.request.header.Authorization",
            },
        },
        IAM_SCHEME: {"type": "apiKey", "name": "Authorization", "in": "header",
                     "x-amazon-apigateway-authtype": "awsSigv4"},
    }


def operation_security() -> dict[str, Any]:
    """The `security` of one operation: the scheme AuthMode chose."""
    return {"Fn::If": ["UseIamAuth", [{IAM_SCHEME: []}], [{API_KEY_SCHEME: []}]]}


def rest_api_security(routes: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The part of the API definition (DefinitionBody) that requires authentication on every route."""
    return {
        "securityDefinitions": security_definitions(),
        "paths": {path: {method.lower(): {"security": operation_security()} for method in methods}
                  for path, methods in routes.items()},
    }


def check_auth_choice(template: Mapping[str, Any], routes: Mapping[str, Sequence[str]]) -> None:
    """AuthChoiceMissing, saying why, unless the merge template makes every deployment choose an authentication
    and applies it to every route."""
    why = "an API deployed without it is open to anyone who finds its URL"
    parameter = (template.get("Parameters") or {}).get(AUTH_PARAMETER)
    if parameter is None:
        raise AuthChoiceMissing(f"the template has no {AUTH_PARAMETER} parameter (one of {', '.join(AUTH_MODES)}): "
                                f"{why}. Declare it in infra/resources.json without a Default.")
    if "Default" in parameter:
        raise AuthChoiceMissing(f"the {AUTH_PARAMETER} parameter has a Default ({parameter['Default']!r}): every "
                                f"deployment must choose {' or '.join(AUTH_MODES)} itself; {why}.")
    if sorted(parameter.get("AllowedValues") or []) != sorted(AUTH_MODES):
        raise AuthChoiceMissing(f"the {AUTH_PARAMETER} parameter must allow exactly {', '.join(AUTH_MODES)} (got "
                                f"{parameter.get('AllowedValues')}): any other value would leave the API without "
                                "authentication.")
    body = (((template.get("Resources") or {}).get("RestAPI") or {}).get("Properties") or {}).get(
        "DefinitionBody") or {}
    unprotected = sorted(f"{method} {path}" for path, methods in routes.items() for method in methods
                         if not ((body.get("paths") or {}).get(path, {}).get(method.lower()) or {}).get("security"))
    if unprotected:
        raise AuthChoiceMissing(f"routes without authentication: {', '.join(unprotected)}; {why}.")
