"""One declaration per HTTP operation: the Chalice route, its request models (validated here, at the edge), its
response model, status and error codes. The OpenAPI document (chalicelib.api.openapi) and the README's API table
are generated from the same declarations, found through the app's routes."""
from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalice import Blueprint, Response
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from chalicelib import errors
from chalicelib.api.envelope import handle_errors, success
from chalicelib.api.models import QueryModel, RequestModel

# Chalice would answer a foreign Content-Type with its own (non-envelope) 415; bodies are checked by us instead.
ANY_CONTENT_TYPE = ["*/*"]


@dataclass(frozen=True)
class Operation:
    """What the document says about one route. `response` is the model of the envelope's `data`; `raw` the
    OpenAPI responses of a route that answers outside the envelope (file downloads, the document itself)."""

    op_id: str
    summary: str
    tag: str
    message: str = "ok"
    response: type[BaseModel] | None = None
    status: int = 200
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)
    body: type[RequestModel] | None = None
    query: type[QueryModel] | None = None
    description: str | None = None
    raw: dict[str, Any] | None = None
    upload: dict[str, Any] | None = None
    headers: tuple[dict[str, Any], ...] = ()


def _error_classes() -> dict[str, type[errors.ValidationError]]:
    found: dict[str, type[errors.ValidationError]] = {"DATABASE_CONNECTION_ERROR": errors.InvalidConnectionString}
    pending = [errors.ValidationError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


_ERROR_CLASSES = _error_classes()


def _message(name: str, error: dict[str, Any]) -> str:
    """Our own field errors (their type is an API error code) say it already; pydantic's get the API's words."""
    kind = error["type"]
    if kind in _ERROR_CLASSES:
        return error["msg"]
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(name=name, **(error.get("ctx") or {}))
    return f"{name}: {error['msg']}"


_MESSAGES = {
    "missing": "missing required parameter: {name}",
    "string_type": "{name} must be a string",
    "string_too_short": "{name} must not be empty",
    "string_too_long": "{name} must be at most {max_length} characters",
    "bool_type": "{name} must be a boolean (true or false)",
    "int_type": "{name} must be an integer",
    "int_parsing": "{name} must be an integer",
    "int_from_float": "{name} must be an integer",
    "greater_than_equal": "{name} must be at least {ge}",
    "less_than_equal": "{name} must be at most {le}",
    "list_type": "{name} must be a list",
    "model_type": "request body must be a JSON object",
}


def validation_error(exc: PydanticValidationError) -> errors.ValidationError:
    """pydantic's errors as the API's 400: every failing field named, the first one's specific code."""
    names: list[str] = []
    messages: list[str] = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "body"
        names.append(name)
        messages.append(_message(name, error))
    cls = _ERROR_CLASSES.get(exc.errors()[0]["type"], errors.ValidationError) if exc.errors() else \
        errors.ValidationError
    return cls("; ".join(dict.fromkeys(messages)), invalid_params=list(dict.fromkeys(names)))


def parse_json_object(raw: bytes | str | None) -> dict[str, Any]:
    """The body as a JSON object; no body at all is `{}`. Anything else must be JSON: a body of only
    whitespace is not (it is a 400, as any other invalid JSON)."""
    if raw is None or len(raw) == 0:
        return {}
    try:
        body = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.ValidationError(f"request body is not valid JSON: {exc}", invalid_params=["body"]) from None
    if not isinstance(body, dict):
        raise errors.ValidationError("request body must be a JSON object", invalid_params=["body"])
    return body


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise validation_error(exc) from None


def api_route(blueprint: Blueprint, path: str, method: str, spec: Operation) -> Callable[[Callable], Callable]:
    """Register `view` as the route: its `body` / `params` arguments arrive validated by the operation's models,
    what it returns is the envelope's `data` (a Response goes out as it is), every error becomes an envelope."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        wants = inspect.signature(view).parameters

        @functools.wraps(view)
        def run(**uri_params: Any) -> Any:
            request = blueprint.current_request
            if spec.body is not None:
                uri_params["body"] = validate(spec.body, parse_json_object(request.raw_body))
            if spec.query is not None:
                uri_params["params"] = validate(spec.query, dict(request.query_params or {}))
            if "request" in wants:
                uri_params["request"] = request
            result = view(**uri_params)
            return result if isinstance(result, Response) else success(result, spec.message, spec.status)

        run.operation = spec  # type: ignore[attr-defined]
        content_types = ANY_CONTENT_TYPE if method == "POST" else ["application/json"]
        blueprint.route(path, methods=[method], content_types=content_types)(handle_errors(run))
        return view

    return register
