"""The response envelope (SPEC §3) and the one place where domain errors become HTTP responses."""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chalice import Response

from chalicelib import errors

JSON_TYPE = "application/json; charset=utf-8"
VALIDATION_ERROR_TYPE = "ValidationError"
logger = logging.getLogger("data_pipeline.api")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def json_response(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body, ensure_ascii=False, default=str), status_code=status,
                    headers={"Content-Type": JSON_TYPE, **(headers or {})})


def success(data: Any, message: str = "ok", status: int = 200) -> Response:
    return json_response({"success": True, "code": status, "message": message, "data": data}, status)


def failure(status: int, message: str, *, error_type: str, code: str, details: str | None = None,
            invalid_params: list[str] | None = None) -> Response:
    """The error envelope. Every 400 has `error.type` "ValidationError", as the original guide shows (its §2.2 and
    §9.2) and its clients expect; which validation failed is `error.code` (INVALID_EXECUTION_MODE, …)."""
    if status == 400:
        error_type = VALIDATION_ERROR_TYPE
    body = {
        "success": False,
        "code": status,
        "message": message,
        "error": {"type": error_type, "code": code, "details": details or message,
                  "invalid_params": invalid_params or [], "timestamp": _now()},
    }
    return json_response(body, status)


def error_response(exc: Exception) -> Response:
    """Map any exception to an envelope: domain errors keep their status/code, others are a generic 500."""
    if isinstance(exc, errors.DataPipelineError):
        if exc.status >= 500:
            logger.error("request failed: %s %s", exc.code, exc.message)
        return failure(exc.status, exc.message, error_type=type(exc).__name__, code=exc.code, details=exc.details,
                       invalid_params=exc.invalid_params)
    logger.exception("unexpected error while handling a request")
    return failure(500, "Internal server error", error_type="InternalError", code="INTERNAL_ERROR",
                   details="An unexpected error occurred; see the service logs.")


def handle_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Route decorator: whatever the view raises comes back as an envelope (Chalice would answer in its own format)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the single mapping point
            return error_response(exc)

    return wrapper
