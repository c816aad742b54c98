"""HTTP middleware: authentication (chalicelib/api/auth.py; not for the console's static files), a request body size
limit, X-Ray, the envelope."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Response

from chalicelib.api.auth import check_request
from chalicelib.api.console import is_public_route
from chalicelib.api.envelope import failure
from chalicelib.config import get_settings
from chalicelib.observability import traced

MAX_JSON_BODY_BYTES = 2 * 1024 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Chalice answers some requests itself, in its own {"Code", "Message"} shape: re-wrapped into the envelope with
# the (error.code, error.type) the local server and API Gateway give the same answer (infra/local/gateway.py).
_CHALICE_CODES = {
    "MethodNotAllowedError": ("METHOD_NOT_ALLOWED", "MethodNotAllowed"),
    "UnsupportedMediaType": ("UNSUPPORTED_MEDIA_TYPE", "UnsupportedMediaType"),
    "BadRequest": ("VALIDATION_ERROR", "ValidationError"),
    "BadRequestError": ("VALIDATION_ERROR", "ValidationError"),
    "NotFoundError": ("NOT_FOUND", "NotFound"),
    "InternalServerError": ("INTERNAL_ERROR", "InternalError"),
}


def max_body_bytes() -> int:
    """Uploads may carry settings.max_upload_bytes plus multipart framing; JSON bodies 2 MiB."""
    return max(MAX_JSON_BODY_BYTES, get_settings().max_upload_bytes + MULTIPART_OVERHEAD_BYTES)


def api_middleware(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Register with `app.register_middleware(api_middleware, "http")`."""
    headers = getattr(event, "headers", None) or {}
    refused = None if is_public_route(getattr(event, "path", None)) else check_request(
        headers, getattr(event, "context", None))
    if refused is not None:
        return refused
    limit = max_body_bytes()
    try:
        declared = int(headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit or (event is not None and len(event.raw_body or b"") > limit):
        return failure(413, f"Request body too large (limit {limit} bytes)", error_type="PayloadTooLarge",
                       code="PAYLOAD_TOO_LARGE")
    return as_envelope(traced(get_response, event))


def as_envelope(response: Any) -> Any:
    """A Chalice-made error (unknown method, its 415/400 checks, an error outside our views) in the envelope."""
    body = getattr(response, "body", None)
    status = getattr(response, "status_code", 200)
    if status < 400 or not isinstance(body, dict) or set(body) != {"Code", "Message"}:
        return response
    fallback = ("INTERNAL_ERROR", "InternalError") if status >= 500 else ("VALIDATION_ERROR", "ValidationError")
    code, error_type = _CHALICE_CODES.get(str(body["Code"]), fallback)
    message = "Internal server error" if status >= 500 else str(body["Message"])
    wrapped = failure(status, message, error_type=error_type, code=code)
    headers = {k: v for k, v in (response.headers or {}).items() if k.lower() != "content-type"}
    return Response(body=wrapped.body, status_code=status, headers={**wrapped.headers, **headers})
