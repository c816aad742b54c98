"""The request schemas of the OpenAPI document say what the server accepts (what a fuzzer generates from them is
accepted by the same validators the routes use, what they refuse is refused), and the document's links lead from a
created task into every task route."""
from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from chalicelib import errors
from chalicelib.api import model_fields, models
from chalicelib.api.openapi import file_name_pattern, openapi_document
from chalicelib.api.operations import validate
from chalicelib.pipeline.tablelist import parse_table_name
from chalicelib.stores.files import safe_file_name

FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def _component(document: dict[str, Any], name: str) -> dict[str, Any]:
    return {**document["components"]["schemas"][name], "$defs": document["components"]["schemas"]}


def test_created_task_links_into_every_task_route(document):
    ops = {op["operationId"]: (path, op) for path, item in document["paths"].items() for op in item.values()}
    links = document["paths"]["/data_pipeline/tasks"]["post"]["responses"]["201"]["links"]
    task_routes = {op_id for op_id, (path, _) in ops.items() if "{task_id}" in path}
    assert task_routes | {"listVectorBackups", "restoreVectorBackup"} <= set(links), set(links)
    for op_id, link in links.items():
        assert link["operationId"] == op_id in ops
        path, op = ops[op_id]
        names = {f"{p['in']}.{p['name']}" for p in op.get("parameters", [])} | {
            f"path.{n}" for n in re.findall(r"{(\w+)}", path)}
        assert set(link.get("parameters", {})) <= names, (op_id, link)
        assert all(v == "$response.body#/data/task_id" for v in link.get("parameters", {}).values()
                   if not v.startswith("$request")), link
    # The answer the links read from holds what they name.
    created = document["components"]["schemas"]["TaskCreated"]
    assert "task_id" in created["properties"] and "task_id" in created.get("required", [])
    files = document["paths"]["/data_pipeline/tasks/{task_id}/files"]["get"]["responses"]["200"]["links"]
    assert files["downloadFile"]["parameters"]["path.filename"] == "$response.body#/data/files/0/file_name"


@pytest.mark.parametrize(("model", "body"), [
    (models.QueryTasksRequest, {"page": None, "page_size": None, "status": None}),
    (models.LogQueryRequest, {"page": None, "sort_by": None, "start_time": None}),
    (models.CreateTaskRequest, {"enable_sql_validation": None, "task_name": None}),
    (models.RestoreRequest, {"task_id": "task_20250627_143052", "tables": None, "truncate_before_restore": None}),
])
def test_null_is_in_the_schema_of_every_optional_field_the_server_reads_as_absent(document, model, body):
    schema = _component(document, model.__name__)
    Draft202012Validator(schema).validate(body)  # failed before: page/page_size/booleans had no null
    validate(model, body)
    for name in set(schema["properties"]) - set(schema.get("required", [])):
        Draft202012Validator(schema).validate({**body, name: None})


def test_integral_json_numbers_are_integers_as_the_schema_says():
    assert validate(models.QueryTasksRequest, {"page": 2.0, "page_size": 10.0}).page == 2
    for bad in (2.5, True, "2"):
        with pytest.raises(errors.ValidationError):
            validate(models.QueryTasksRequest, {"page": bad})


@FAST
@given(st.from_regex(model_fields.TIME_PATTERN, fullmatch=True))
def test_every_time_the_schema_allows_is_accepted(value):
    assert validate(models.LogQueryRequest, {"start_time": value, "end_time": value}).start_time


@FAST
@given(st.from_regex(models.TABLE_NAME_ITEM_PATTERN, fullmatch=True))
def test_every_table_name_the_schema_allows_is_accepted(value):
    text = value.strip()
    if text and not text.startswith(("#", "--")):
        parse_table_name(text)


@FAST
@given(st.from_regex(file_name_pattern(), fullmatch=True).filter(lambda v: len(v) <= 255))
def test_every_file_name_the_schema_allows_is_accepted(value):
    assert safe_file_name(value) == value


@pytest.mark.parametrize("name", ["a\x01b.txt", "x\u200b.txt", "..", "a/b", "a%2fb", " . "])
def test_file_names_the_server_refuses_are_outside_the_schema(name):
    assert not re.match(file_name_pattern(), name)
    with pytest.raises(errors.ValidationError):
        safe_file_name(name)


@FAST
@given(st.from_regex(models._VECTOR_TABLE_LIST, fullmatch=True))
def test_every_restore_table_list_the_schema_allows_is_accepted(value):
    assert validate(models.RestoreRequest, {"task_id": "task_20250627_143052", "tables": value}).tables


def test_step_mode_without_a_step_is_outside_the_schema(document):
    schema = Draft202012Validator(_component(document, "ExecuteRequest"))
    assert not schema.is_valid({"execution_mode": "step"})
    assert not schema.is_valid({"execution_mode": "step", "step_name": ""})
    assert schema.is_valid({"execution_mode": "step", "step_name": "ddl_generation"})
    assert schema.is_valid({"execution_mode": "complete"})
    with pytest.raises(errors.ValidationError, match="step_name"):
        validate(models.ExecuteRequest, {"execution_mode": "step"})


def test_a_table_name_list_keeps_a_name_or_is_outside_the_schema(document):
    schema = Draft202012Validator(_component(document, "TableNamesRequest"))
    assert not schema.is_valid({"table_names": []})
    assert not schema.is_valid({"table_names": ["# only a comment", " "]})
    assert not schema.is_valid({"table_names": ["j|x"]})
    assert schema.is_valid({"table_names": ["# c", "public.bss_company", '"Order Lines"']})
