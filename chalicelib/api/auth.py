"""Who may call the API: the Bearer API key (the local stack's or one kept in Secrets Manager), or IAM.

Deployed, the template's AuthMode parameter chooses (infra/resources.json, no default):
- `SecretsManagerKey`: API Gateway calls the `api_key_authorizer` Lambda (below) with the Authorization header;
  it compares the Bearer token with the key read from Secrets Manager (DATA_PIPELINE_API_KEY =
  `secretsmanager:<arn>`, cached for DATA_PIPELINE_SECRET_CACHE_SECONDS, so a rotated key takes over without a
  redeploy). The API Lambda checks the key again (`check_request`), in case a route ever lacks the authorizer.
- `IAM`: API Gateway verifies the SigV4 signature (execute-api:Invoke); the API Lambda only checks that the
  request carries the caller's IAM identity.
Locally (`make serve`) DATA_PIPELINE_API_KEY may be empty: the API is then open, and only there. Deployed
without a key or IAM, every request is refused (AUTH_NOT_CONFIGURED). Keys are compared in constant time.
"""
from __future__ import annotations

import hmac
import logging
from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.envelope import failure
from chalicelib.config import Settings, get_settings
from chalicelib.errors import SecretUnavailable

log = logging.getLogger(__name__)

AUTHORIZER_FUNCTION = "api_key_authorizer"
auth_bp = Blueprint(__name__)


def is_authorized(authorization: str | None, api_key: str) -> bool:
    """`Authorization: Bearer <key>` names `api_key` (constant-time comparison of the UTF-8 bytes)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or not api_key:
        return False
    return hmac.compare_digest(token.strip().encode("utf-8"), api_key.encode("utf-8"))


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, dict):  # a plain dict (Lambda events) is case-sensitive
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _iam_identity(request_context: Any) -> str | None:
    identity = (request_context or {}).get("identity") or {}
    return identity.get("userArn") or identity.get("caller")


def check_request(headers: Any, request_context: Any, settings: Settings | None = None) -> Response | None:
    """None when the request may go on, else the envelope to answer (401, or 500 when auth is not configured)."""
    try:
        settings = settings or get_settings()
    except SecretUnavailable as exc:  # which one is logged (secrets.py), not told to an unauthenticated caller
        return failure(500, "A secret of the configuration could not be read; requests are refused until it can",
                       error_type="InternalError", code=exc.code)
    if settings.auth_mode == "IAM":
        if _iam_identity(request_context):
            return None
        return _unauthorized("An IAM-signed request (SigV4, execute-api:Invoke) is required")
    if settings.api_key:
        if is_authorized(_header(headers, "authorization"), settings.api_key):
            return None
        return _unauthorized("A valid API key is required (Authorization: Bearer <key>)")
    if settings.local_stack and settings.auth_mode is None:
        return None
    log.error("auth not configured", extra={"auth_mode": settings.auth_mode})
    return failure(500, "Authentication is not configured on this deployment (DATA_PIPELINE_AUTH_MODE and "
                        "DATA_PIPELINE_API_KEY); every request is refused", error_type="InternalError",
                   code="AUTH_NOT_CONFIGURED")


def _unauthorized(message: str) -> Response:
    return failure(401, message, error_type="Unauthorized", code="UNAUTHORIZED")


def authorize_token(event: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """A TOKEN authorizer's answer: an Allow policy for the whole API when the Bearer key is right. Anything else
    raises `Exception("Unauthorized")`, which API Gateway answers with its UNAUTHORIZED gateway response (the 401
    envelope of infra/api_gateway.py)."""
    try:
        api_key = (settings or get_settings()).api_key
    except SecretUnavailable:
        log.exception("api key unavailable")
        raise
    if not api_key:
        log.error("auth not configured", extra={"reason": "DATA_PIPELINE_API_KEY is empty"})
        raise Exception("Unauthorized")
    if not is_authorized(event.get("authorizationToken"), api_key):
        raise Exception("Unauthorized")
    return {"principalId": "api-key", "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": _api_wide(event.get("methodArn", ""))}]}}


def _api_wide(method_arn: str) -> str:
    """arn:…:execute-api:region:account:api-id/stage/VERB/path → …/api-id/stage/*: API Gateway caches the
    answer per token, so it must hold for every route, not only the first one called."""
    parts = method_arn.split("/")
    return "/".join(parts[:2] + ["*"]) if len(parts) >= 2 else method_arn


@auth_bp.lambda_function(name=AUTHORIZER_FUNCTION)
def api_key_authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda TOKEN authorizer of the deployed API (AuthMode SecretsManagerKey)."""
    from chalicelib.observability import get_tracer

    return get_tracer().capture_method(authorize_token)(event)


def describe_local_auth(settings: Settings | None = None) -> str:
    """One line for `make serve`'s banner: how this server authenticates callers."""
    settings = settings or get_settings()
    if settings.auth_mode == "IAM":
        return "authentication: IAM (SigV4 identity required)"
    if settings.api_key:
        return "authentication: Bearer API key (DATA_PIPELINE_API_KEY)"
    return ("authentication: none: DATA_PIPELINE_API_KEY is empty, so the API is open to anyone who can reach "
            "this port (allowed only on the local stack)")
