"""The OpenAPI document: valid OpenAPI 3.1, generated from the routes Chalice has and the models that validate
them (a route without an operation, an operation without a route, a model its route does not use: a failure),
complete on error codes, served behind the same auth as the rest, describing what the API really answers, and
copied into the README's API table."""
from __future__ import annotations

import inspect
import json
import re
import typing
from typing import Any

import pytest
from chalice import Blueprint, Chalice
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from chalicelib import errors
from chalicelib.api import models, reference
from chalicelib.api.error_codes import ERROR_CODES
from chalicelib.api.openapi import api_operations, build_document, openapi_document
from chalicelib.api.operations import Operation, api_route
from tests.support.aws_api import api_environment, multipart, post_json

PREFIX = "/api/v0"
SPEC_CODES = ["TASK_NOT_FOUND", "TASK_ALREADY_RUNNING", "INVALID_EXECUTION_MODE", "MISSING_STEP_NAME",
              "INVALID_STEP_NAME", "FILE_NOT_FOUND", "DATABASE_CONNECTION_ERROR", "VECTOR_BACKUP_FAILED",
              "VECTOR_TRUNCATE_FAILED"]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for sub in cls.__subclasses__() for s in _subclasses(sub)]


def _resolve(node: Any, doc: dict[str, Any]) -> Any:
    """The schema with every local $ref inlined (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _resolve(target, doc)
        return {k: _resolve(v, doc) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, doc) for v in node]
    return node


def _operation_codes(doc: dict[str, Any]) -> dict[str, set[str]]:
    """error code -> the operations that name it (error responses, or the description for a run's failures)."""
    found: dict[str, set[str]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for code in re.findall(r"\b[A-Z][A-Z_]{3,}\b", json.dumps(op)):
                if code in ERROR_CODES:
                    found.setdefault(code, set()).add(f"{method.upper()} {path}")
    return found


def test_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": PREFIX}]


def test_every_route_is_documented_and_every_documented_path_exists(document):
    from app import app

    routes = {path[len(PREFIX):]: {m.lower() for m in methods}
              for path, methods in app.routes.items() if path.startswith(PREFIX + "/")}
    assert routes, "no API routes found"
    documented = {path: {m for m in item if m in HTTP_METHODS} for path, item in document["paths"].items()}
    assert sorted(set(routes) - set(documented)) == [], "routes missing from the OpenAPI document"
    assert sorted(set(documented) - set(routes)) == [], "documented paths that no route serves"
    for path, methods in routes.items():
        assert documented[path] == methods, path
    from chalicelib.api.console import is_public_route  # the console's static pages (tests/browser)

    assert all(path.startswith(PREFIX + "/") or is_public_route(path) for path in app.routes), "a route outside /api/v0"


def test_operations_are_complete(document):
    ids = []
    for path, item in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            ids.append(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, f"{method} {path}: path parameters"
            statuses = set(op["responses"])
            assert {"401", "405", "413", "500"} <= statuses, f"{method} {path}: {statuses}"
            assert any(s.startswith("2") for s in statuses), f"{method} {path}: no success response"
            if method == "post" and path != "/data_pipeline/tasks/{task_id}/cancel":
                assert "requestBody" in op, f"{method} {path}: body not documented"
    assert len(ids) == len(set(ids)), "operationId not unique"


def test_error_codes_are_documented(document):
    error = _resolve(document["components"]["schemas"]["ErrorEnvelope"], document)["properties"]["error"]
    enum = error["properties"]["code"]["enum"]
    for cls in _subclasses(errors.DataPipelineError):
        assert cls.code in ERROR_CODES and cls.code in enum, f"{cls.__name__}.code {cls.code} not documented"
        assert ERROR_CODES[cls.code][0] in (cls.status, 400), cls.__name__
    used = _operation_codes(document)
    for code in SPEC_CODES + ["VALIDATION_ERROR", "UNAUTHORIZED", "PAYLOAD_TOO_LARGE", "INTERNAL_ERROR",
                              "INVALID_TABLE_NAME", "TABLE_LIST_MISSING", "TASK_NOT_RUNNING", "NOT_FOUND",
                              "UNSUPPORTED_MEDIA_TYPE", "METHOD_NOT_ALLOWED", "BACKUP_NOT_FOUND",
                              "VECTOR_RESTORE_CONFLICT", "VECTOR_RESTORE_FAILED"]:
        assert code in used, f"{code} named by no operation"
    assert used["TASK_NOT_FOUND"] >= {f"GET {p}" for p in document["paths"] if p.endswith("{task_id}")}


# ---- one source: the routes and their models ---------------------------------------------------------------

def _app_operations() -> list[tuple[str, str, Operation, Any]]:
    """(path, method, operation, the view as written) of every API route of the project's app."""
    from app import app

    views = {(p[len(PREFIX):], m.lower()): inspect.unwrap(e.view_function)
             for p, ms in app.routes.items() if p.startswith(PREFIX + "/") for m, e in ms.items()}
    return [(path, method, spec, views[(path, method)]) for path, method, spec in api_operations(app.routes)]


def test_a_route_without_an_operation_fails_the_document():
    app = Chalice(app_name="probe")
    bp = Blueprint(__name__)

    @api_route(bp, "/documented", "GET", Operation("documented", "A documented route", "meta"))
    def documented():
        return {}

    @bp.route("/bare", methods=["GET"])
    def bare():
        return {}

    app.register_blueprint(bp, url_prefix=PREFIX)
    with pytest.raises(ValueError, match="GET /api/v0/bare declares no Operation"):
        build_document(app.routes)
    del app.routes[PREFIX + "/bare"]
    assert set(build_document(app.routes)["paths"]) == {"/documented"}


def test_every_operation_comes_from_a_route_and_uses_its_models(document):
    """The document is built from the routes, so it names exactly their operations; each view takes exactly the
    models its operation declares (the body model is what validates its body), and no request model is unused."""
    operations = _app_operations()
    assert {(path, method) for path, method, _, _ in operations} == {
        (path, method) for path, item in document["paths"].items() for method in item}
    used: list[type] = []
    for path, method, spec, view in operations:
        hints = typing.get_type_hints(view)
        params = set(inspect.signature(view).parameters)
        for arg, model in (("body", spec.body), ("params", spec.query)):
            assert (arg in params) == (model is not None), f"{method} {path}: `{arg}` vs {model}"
            if model is not None:
                assert hints.get(arg) is model, f"{method} {path}: {arg} is {hints.get(arg)}, not {model}"
                used.append(model)
        names = set(re.findall(r"{(\w+)}", path))
        assert names <= params, f"{method} {path}: the view does not take {names - params}"
        if method == "post" and spec.body is None and spec.upload is None:
            assert path.endswith("/cancel"), f"{method} {path}: a POST without a body model"
    declared = {m for m in vars(models).values() if isinstance(m, type) and issubclass(m, models.RequestModel)
                and m not in (models.RequestModel, models.QueryModel)}
    assert sorted(m.__name__ for m in declared - set(used)) == [], "request models no route uses"
    assert len(used) == len(set(used)), "a request model shared by two routes"


def test_routes_validate_with_their_models(client, document):
    """A wrong type in any field a body or query model declares is a 400 naming that field: the route really
    validates with the model the document shows."""
    task = "task_20000101_000000"
    for path, method, spec, _ in _app_operations():
        url = PREFIX + path.replace("{task_id}", task).replace("{filename}", "x.txt")
        if spec.body is not None:
            for name, prop in spec.body.model_json_schema(by_alias=True)["properties"].items():
                kinds = {prop.get("type")} | {option.get("type") for option in prop.get("anyOf", [])}
                wrong = ["a", "list"] if "object" in kinds else {"an": "object"}  # a map field takes an object
                res = client.http.request(method.upper(), url, headers={"Content-Type": "application/json"},
                                          body=json.dumps({name: wrong, "unknown_extra_field": 1}).encode())
                assert res.status_code == 400, (path, name, res.json_body)
                assert name in res.json_body["error"]["invalid_params"], (path, name, res.json_body)
                assert res.json_body["error"]["type"] == "ValidationError"
        if spec.query is not None:
            for name in spec.query.model_json_schema()["properties"]:
                res = client.http.get(f"{url}?{name}=%20%21%21")
                assert res.status_code == 400, (path, name, res.json_body)
                assert res.json_body["error"]["invalid_params"] == [name], (path, name, res.json_body)


def test_every_invalid_field_is_named_with_a_clear_message(client):
    res = post_json(client, f"{PREFIX}/data_pipeline/tasks/query", {"page": 0, "page_size": "20", "status": "x",
                                                                    "task_name": 7})
    assert res.status_code == 400
    error = res.json_body["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["type"] == "ValidationError"
    assert error["invalid_params"] == ["page", "page_size", "status", "task_name"]
    assert res.json_body["message"] == ("page must be at least 1; page_size must be an integer; status must be one "
                                        "of: pending, in_progress, completed, failed, cancelled, partial_completed; "
                                        "task_name must be a string")
    res = post_json(client, f"{PREFIX}/database/table/ddl", {"table": "   "})
    assert res.status_code == 400 and res.json_body["message"] == "table must not be empty"
    res = post_json(client, f"{PREFIX}/database/table/ddl", {})
    assert res.status_code == 400 and res.json_body["message"] == "missing required parameter: table"


def test_the_readme_api_table_is_the_document(document):
    text = reference.README.read_text(encoding="utf-8")
    assert reference.readme_block(document) in text, "run: python -m chalicelib.api.openapi --write-readme"
    table = reference.render_table(document)
    for path, item in document["paths"].items():
        for method in item:
            assert f"`{method.upper()} {path}`" in table


# ---- served, and describing the real answers --------------------------------------------------------------

@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


def _check(document: dict[str, Any], path: str, method: str, response) -> dict[str, Any]:
    """The response matches the documented status and schema of the operation."""
    op = document["paths"][path][method]
    status = str(response.status_code)
    assert status in op["responses"], f"{method} {path}: undocumented status {status}"
    content = op["responses"][status].get("content", {})
    body = response.json_body
    schema = _resolve(content["application/json"]["schema"], document)
    OAS31Validator(schema).validate(body)
    return body


def test_served_as_json_and_behind_the_api_key(client, monkeypatch, document):
    res = client.http.get(f"{PREFIX}/openapi.json")
    assert res.status_code == 200 and res.headers["Content-Type"].startswith("application/json")
    assert res.json_body == document
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "k-123")
    res = client.http.get(f"{PREFIX}/openapi.json")
    assert res.status_code == 401 and res.json_body["error"]["code"] == "UNAUTHORIZED"
    _check(document, "/openapi.json", "get", res)
    res = client.http.get(f"{PREFIX}/openapi.json", headers={"Authorization": "Bearer k-123"})
    assert res.status_code == 200 and res.json_body["openapi"] == document["openapi"]


def test_chalice_level_errors_come_in_the_envelope(client, document):
    res = client.http.delete(f"{PREFIX}/data_pipeline/tasks")
    body = _check(document, "/data_pipeline/tasks", "get", res)
    assert res.status_code == 405 and body["code"] == 405 and body["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in res.headers.get("Allow", "")


def test_real_answers_match_the_document(client, document):
    tasks = f"{PREFIX}/data_pipeline/tasks"
    created = post_json(client, tasks, {"task_name": "doc", "db_connection": "postgresql://u:pw-x@localhost:5432/d"})
    task_id = _check(document, "/data_pipeline/tasks", "post", created)["data"]["task_id"]
    _check(document, "/data_pipeline/tasks", "post", post_json(client, tasks, {"task_name": 5}))
    _check(document, "/data_pipeline/tasks", "post", post_json(client, tasks, b"[1"))
    _check(document, "/data_pipeline/tasks", "get", client.http.get(f"{tasks}?limit=3"))
    _check(document, "/data_pipeline/tasks", "get", client.http.get(f"{tasks}?limit=x"))
    _check(document, "/data_pipeline/tasks/query", "post", post_json(client, f"{tasks}/query", {"task_name": "d"}))
    t = "/data_pipeline/tasks/{task_id}"
    _check(document, t, "get", client.http.get(f"{tasks}/{task_id}"))
    _check(document, t, "get", client.http.get(f"{tasks}/task_20000101_000000"))
    _check(document, t + "/execute", "post", post_json(client, f"{tasks}/{task_id}/execute", {}))
    _check(document, t + "/execute", "post", post_json(client, f"{tasks}/{task_id}/execute",
                                                         {"execution_mode": "step"}))
    _check(document, t + "/cancel", "post", post_json(client, f"{tasks}/{task_id}/cancel", {}))
    headers, body = multipart("tables.txt", b"public.a\nods.b\n")
    _check(document, t + "/upload-table-list", "post",
           client.http.post(f"{tasks}/{task_id}/upload-table-list", headers=headers, body=body))
    headers, body = multipart("tables.csv", b"a")
    res = client.http.post(f"{tasks}/{task_id}/upload-table-list", headers=headers, body=body)
    assert res.status_code == 415
    _check(document, t + "/upload-table-list", "post", res)
    _check(document, t + "/table-list", "post", post_json(client, f"{tasks}/{task_id}/table-list",
                                                           {"table_names": ["x", "s.y"], "business_context": "c"}))
    _check(document, t + "/table-list", "post", post_json(client, f"{tasks}/{task_id}/table-list",
                                                           {"table_names": ["bad name;"]}))
    _check(document, t + "/table-list-info", "get", client.http.get(f"{tasks}/{task_id}/table-list-info"))
    files = _check(document, t + "/files", "get", client.http.get(f"{tasks}/{task_id}/files"))["data"]["files"]
    assert {"table_list.txt", "data_pipeline.log"} <= {f["file_name"] for f in files}
    res = client.http.get(f"{tasks}/{task_id}/files/table_list.txt")
    assert res.status_code == 200 and "200" in document["paths"][t + "/files/{filename}"]["get"]["responses"]
    _check(document, t + "/files/{filename}", "get", client.http.get(f"{tasks}/{task_id}/files/nope.txt"))
    _check(document, t + "/files/{filename}", "get", client.http.get(f"{tasks}/{task_id}/files/..%2Fx"))
    _check(document, t + "/files/vector_bak/{filename}", "get",
           client.http.get(f"{tasks}/{task_id}/files/vector_bak/x.csv"))
    logs = _check(document, t + "/logs", "get", client.http.get(f"{tasks}/{task_id}/logs?level=info"))
    assert logs["data"]["total"] >= 1
    _check(document, t + "/logs/query", "post", post_json(client, f"{tasks}/{task_id}/logs/query",
                                                           {"keyword": "table", "sort_order": "asc"}))
    _check(document, t + "/logs/query", "post", post_json(client, f"{tasks}/{task_id}/logs/query", {"page": 0}))
    _check(document, "/database/tables", "post", post_json(client, f"{PREFIX}/database/tables",
                                                            {"db_connection": "mysql://x"}))
    _check(document, "/database/table/ddl", "post", post_json(client, f"{PREFIX}/database/table/ddl", {}))
    assert "pw-x" not in json.dumps(client.http.get(f"{tasks}/{task_id}").json_body)


def test_database_answers_match_the_document(client, document, demo_db_url):
    res = post_json(client, f"{PREFIX}/database/tables", {"db_connection": demo_db_url, "schema": "public"})
    assert res.status_code == 200
    tables = _check(document, "/database/tables", "post", res)["data"]["tables"]
    res = post_json(client, f"{PREFIX}/database/table/ddl", {"db_connection": demo_db_url, "table": tables[0]})
    assert res.status_code == 200
    _check(document, "/database/table/ddl", "post", res)
    res = post_json(client, f"{PREFIX}/database/table/ddl", {"db_connection": demo_db_url, "table": "public.nope"})
    assert res.status_code == 404
    _check(document, "/database/table/ddl", "post", res)
    unreachable = "postgresql://u:pw-y@127.0.0.1:1/d"
    res = post_json(client, f"{PREFIX}/database/tables", {"db_connection": unreachable})
    assert res.status_code == 500 and "pw-y" not in res.body.decode()
    _check(document, "/database/tables", "post", res)
