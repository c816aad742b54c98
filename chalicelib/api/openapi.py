"""The OpenAPI 3.1 document of the API, served at /api/v0/openapi.json, generated: the paths and operations from
the app's routes (each declares its chalicelib.api.operations.Operation), the schemas from the pydantic models
that validate the requests (chalicelib.api.models) and describe the answers (chalicelib.api.models_responses).

    python -m chalicelib.api.openapi                 # print the document
    python -m chalicelib.api.openapi --write-readme  # regenerate the API table in README.md

Authentication: the document is served behind the same Bearer key as every other route (the HTTP middleware
applies to all routes alike). It describes no secret, but it maps the whole attack surface, and a client that
may call the API has the key anyway; an operator who wants it public can fetch it once and host it elsewhere.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

from chalice import Blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalicelib.api.envelope import json_response
from chalicelib.api.error_codes import ALWAYS, ERROR_CODES, STATUS_TEXT
from chalicelib.api.models_responses import ErrorEnvelope
from chalicelib.api.operations import Operation, api_route

openapi_bp = Blueprint(__name__)

API_VERSION = "0.1.0"
PREFIX = "/api/v0"
REF = "#/components/schemas/{model}"
TASK_ID_PATTERN = r"^task_[0-9]{8}_[0-9]{6}(_[0-9]{1,4})?$"


@functools.cache
def _control_class() -> str:
    """A regex character class of every control and format character (Unicode Cc, Cf): what
    chalicelib.stores.files.safe_file_name refuses in a name. Built from the running Python's Unicode tables."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x110000):
        if unicodedata.category(chr(code)) in ("Cc", "Cf"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))

    def char(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


def file_name_pattern() -> str:
    """No `/`, `\\`, `%` (encoded tricks), `..`, control or format character; not only dots and spaces. Built when
    the document is (0.6 s of Unicode tables: not at import, not on a Lambda's cold start)."""
    return rf"^(?!.*\.\.)(?=.*[^\s.])[^/\\%{_control_class()}]+$"


def _path_parameters() -> dict[str, dict[str, Any]]:
    return {
        "task_id": {"name": "task_id", "in": "path", "required": True, "description": "the task id",
                    "schema": {"type": "string", "pattern": TASK_ID_PATTERN, "examples": ["task_20250627_143052"]}},
        "filename": {"name": "filename", "in": "path", "required": True,
                     "description": "a plain file name (URL-encoded); `..`, `/`, `\\`, control characters and "
                                    "encoded variants are refused",
                     "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": file_name_pattern(),
                                "examples": ["table_list.txt"]}},
    }


DESCRIPTION = (
    "Turns a PostgreSQL database into Question-SQL training data. Every answer except file downloads and this "
    "document is the envelope `{success, code, message, data}`; failures carry `error{type, code, details, "
    "invalid_params, timestamp}` and `code` equals the HTTP status; `error.type` is `ValidationError` for every "
    "400. When DATA_PIPELINE_API_KEY is set every route, this one included, needs `Authorization: Bearer <key>`. "
    "A server error never carries a stack trace or a password.")


def api_operations(routes: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, str, Operation]]:
    """(path below /api/v0, lower-case method, operation) of every API route; a route without one is a bug."""
    for full_path, methods in routes.items():
        if not full_path.startswith(PREFIX + "/"):
            continue
        for method, entry in methods.items():
            spec = getattr(entry.view_function, "operation", None)
            if not isinstance(spec, Operation):
                raise ValueError(f"route {method} {full_path} declares no Operation (register it with api_route)")
            yield full_path[len(PREFIX):], method.lower(), spec


# ---- schemas ----------------------------------------------------------------------------------------------

def _models(operations: list[tuple[str, str, Operation]]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ErrorEnvelope": ErrorEnvelope}
    for _, _, spec in operations:
        for model in (spec.body, spec.query, spec.response):
            if model is not None:
                if found.get(model.__name__, model) is not model:
                    raise ValueError(f"two models named {model.__name__}")
                found[model.__name__] = model
    return list(found.values())


def _error_codes_in(schema: Any) -> list[str]:
    """The specific error codes a request model's field types declare (`x-error-code`)."""
    if isinstance(schema, dict):
        own = [schema["x-error-code"]] if "x-error-code" in schema else []
        return own + [c for value in schema.values() for c in _error_codes_in(value)]
    if isinstance(schema, list):
        return [c for value in schema for c in _error_codes_in(value)]
    return []


def _envelope(data: dict[str, Any], status: int) -> dict[str, Any]:
    return {"type": "object", "required": ["success", "code", "message", "data"], "properties": {
        "success": {"type": "boolean", "const": True}, "code": {"type": "integer", "const": status},
        "message": {"type": "string"}, "data": data}}


def _error_responses(spec: Operation, request_codes: list[str], validated: bool) -> dict[str, Any]:
    """The envelope with `code` = status and `error.code` one of the listed codes, per error status."""
    extra = {status: list(codes) for status, codes in spec.errors.items()}
    if validated or request_codes:
        extra[400] = request_codes + extra.get(400, [])
    out: dict[str, Any] = {}
    for status in sorted(set(extra) | {401, 405, 413, 500}):
        codes = list(dict.fromkeys(ALWAYS.get(status, []) + extra.get(status, [])))
        lines = "; ".join(f"`{c}`: {ERROR_CODES[c][1]}" for c in codes)
        schema = {"allOf": [{"$ref": REF.format(model="ErrorEnvelope")}, {"type": "object", "properties": {
            "code": {"type": "integer", "const": status},
            "error": {"type": "object", "properties": {"code": {"type": "string", "enum": codes}}}}}]}
        out[str(status)] = {"description": f"{STATUS_TEXT[status]}. Error codes: {lines}",
                            "content": {"application/json": {"schema": schema}}}
    return out


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value is text or absent, never JSON null: `anyOf [X, null]` becomes X."""
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}
    return {k: v for k, v in schema.items() if not (k == "default" and v is None)}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    params = []
    for name, prop in schema["properties"].items():
        prop = _not_null({k: v for k, v in prop.items() if k not in ("title", "description")})
        text = schema["properties"][name].get("description", name.replace("_", " "))
        params.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                       "allowEmptyValue": True, "schema": prop, "description": f"{text} (empty: the default)"})
    return params


def _operation(path: str, spec: Operation, refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": spec.op_id, "summary": spec.summary, "tags": [spec.tag]}
    if spec.description:
        op["description"] = spec.description
    params = [param for name, param in _path_parameters().items() if "{" + name + "}" in path]
    params += list(spec.headers) + (_query_parameters(spec.query) if spec.query else [])
    if params:
        op["parameters"] = params
    request_codes: list[str] = []
    if spec.body is not None:
        schema = spec.body.model_json_schema()
        request_codes = _error_codes_in(schema)
        required = bool(schema.get("required"))
        op["requestBody"] = {"required": required, "description": (spec.body.__doc__ or "").strip() + (
            "" if required else " No body at all is `{}`."), "content": {
                "application/json": {"schema": refs[spec.body.__name__]}}}
    elif spec.upload is not None:
        op["requestBody"] = {"required": True, **spec.upload}
    if spec.query is not None:
        request_codes += _error_codes_in(spec.query.model_json_schema())
    if spec.raw is not None:
        responses = dict(spec.raw)
    else:
        data = refs[spec.response.__name__] if spec.response else {}
        responses = {str(spec.status): {"description": spec.message, "content": {
            "application/json": {"schema": _envelope(data, spec.status)}}}}
    validated = spec.body is not None or spec.query is not None or spec.upload is not None
    op["responses"] = {**responses, **_error_responses(spec, list(dict.fromkeys(request_codes)), validated)}
    return op


# ---- links: how one answer feeds the next request (clients and stateful fuzzers follow them) ---------------

TASK_ID_FROM_CREATE = "$response.body#/data/task_id"


def _link(operation_id: str, description: str, parameters: dict[str, str] | None = None,
          body: dict[str, str] | None = None) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": operation_id, "description": description}
    if parameters:
        link["parameters"] = parameters
    if body:
        link["requestBody"] = body
    return link


def _success(op: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for status, r in op["responses"].items() if status.startswith("2")), None)


def _add_links(paths: dict[str, dict[str, Any]]) -> None:
    """createTask's `task_id` → every task route (the path parameter, the vector routes' `task_id`); a task's file
    list → its downloads; the task list → the listed task."""
    ops = {op["operationId"]: (path, op) for path, item in paths.items() for op in item.values()}
    links: dict[str, dict[str, Any]] = {}
    for op_id, (path, op) in ops.items():
        if "{task_id}" in path:
            links[op_id] = _link(op_id, "the created task", {"path.task_id": TASK_ID_FROM_CREATE})
        elif any(p.get("in") == "query" and p["name"] == "task_id" for p in op.get("parameters", [])):
            links[op_id] = _link(op_id, "the created task's backups", {"query.task_id": TASK_ID_FROM_CREATE})
        elif op_id == "restoreVectorBackup":
            links[op_id] = _link(op_id, "restore the created task's latest backup", body={
                "task_id": TASK_ID_FROM_CREATE, "on_conflict": "skip"})
    _set_links(ops.get("createTask"), links)
    task_id_of_request = {"path.task_id": "$request.path.task_id"}
    _set_links(ops.get("listFiles"), {
        name: _link(name, "the first listed file", {**task_id_of_request,
                                                     "path.filename": "$response.body#/data/files/0/file_name"})
        for name in ("downloadFile",) if name in ops})
    _set_links(ops.get("listTasks"), {
        name: _link(name, "the first listed task", {"path.task_id": "$response.body#/data/tasks/0/task_id"})
        for name in ("getTask", "listFiles", "getLogs") if name in ops})


def _set_links(entry: tuple[str, dict[str, Any]] | None, links: dict[str, dict[str, Any]]) -> None:
    response = _success(entry[1]) if entry else None
    if response is not None and links:
        response["links"] = links


def build_document(routes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The document of an app's routes (`app.routes`)."""
    operations = list(api_operations(routes))
    models = _models(operations)
    keys, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    refs = {model.__name__: keys[(model, "validation")] for model in models}
    paths: dict[str, dict[str, Any]] = {}
    for path, method, spec in operations:
        paths.setdefault(path, {})[method] = _operation(path, spec, refs)
    _add_links(paths)
    tags = list(dict.fromkeys(spec.tag for _, _, spec in operations))
    return {
        "openapi": "3.1.0",
        "info": {"title": "data_pipeline API", "version": API_VERSION, "description": DESCRIPTION},
        "servers": [{"url": PREFIX}],
        "security": [{"bearerAuth": []}, {}],
        "tags": [{"name": name} for name in tags],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description":
                                               "required only when DATA_PIPELINE_API_KEY is configured"}},
        },
    }


_SERVED: dict[int, dict[str, Any]] = {}


def served_document() -> dict[str, Any]:
    """The document of the app this blueprint is registered in, built once per app."""
    app = openapi_bp.current_app
    if id(app) not in _SERVED:
        _SERVED[id(app)] = build_document(app.routes)
    return _SERVED[id(app)]


@api_route(openapi_bp, "/openapi.json", "GET", Operation(
    "openapi", "This document", "meta", raw={"200": {
        "description": "the OpenAPI 3.1 document (not wrapped in the envelope)",
        "content": {"application/json": {"schema": {"type": "object"}}}}}))
def openapi_json():
    return json_response(served_document(), 200)


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document of the project's app (callers may change it, e.g. the fuzzer's examples)."""
    from app import app  # the wiring module: imported only by this command-line and test entry point

    return copy.deepcopy(build_document(app.routes))


def main(argv: list[str] | None = None) -> int:
    from chalicelib.api import reference

    parser = argparse.ArgumentParser(prog="python -m chalicelib.api.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--write-readme", action="store_true", help="regenerate the API table in README.md")
    args = parser.parse_args(argv)
    document = openapi_document()
    if args.write_readme:
        text = reference.README.read_text(encoding="utf-8")
        reference.README.write_text(reference.readme_with_reference(text, document), encoding="utf-8")
        print(f"wrote the API reference into {reference.README}")
    else:
        json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
