"""The review routes' request schemas say exactly what their validators accept: bodies schemathesis generates from
the served document (the fuzzer's own generator, positive and negative) are accepted, respectively refused, by the
same validation the routes run. The fuzz test (tests/heavy/test_fuzz.py) found a NUL in a schema-valid question and
a table name outside the name grammar; the schemas now state both rules in a regex every engine reads alike."""
from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

from chalicelib import errors
from chalicelib.api import models, review_models
from chalicelib.api.openapi import openapi_document
from chalicelib.api.operations import validate
from chalicelib.pipeline.tablelist import parse_table_names

ROUTES = {
    ("put", "/data_pipeline/tasks/{task_id}/pairs"): review_models.SavePairsRequest,
    ("post", "/data_pipeline/tasks/{task_id}/tables/comments"): review_models.TableCommentsRequest,
    ("post", "/data_pipeline/tasks/{task_id}/sql/validate"): review_models.ValidateSqlRequest,
}
EXAMPLES = settings(max_examples=80, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@pytest.fixture(scope="module")
def operations() -> dict[tuple[str, str], Any]:
    schema = schemathesis.openapi.from_dict(openapi_document())
    return {(op.method, op.path): op for op in (r.ok() for r in schema.get_all_operations())
            if (op.method, op.path) in ROUTES}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _accepted(model: type, body: Any) -> bool:
    try:
        parsed = validate(model, body)
    except errors.DataPipelineError:
        return False
    if isinstance(parsed, review_models.TableCommentsRequest):
        assert len(parse_table_names([parsed.table])) == 1  # what the route does next: one name, never a refusal
    return True


def _bodies(operation: Any, mode: GenerationMode) -> list[Any]:
    """Bodies schemathesis draws for `operation` in `mode` (negative: only cases whose body is the negative part;
    a lone surrogate is not text, no pattern every regex engine reads can state it, and the server refuses it on
    every route: the generator drew none in any run seen)."""
    drawn: list[Any] = []

    @EXAMPLES
    @given(operation.as_strategy(generation_mode=mode))
    def draw(case):
        body = case.meta.components.get(ParameterLocation.BODY) if case.meta is not None else None
        if mode is GenerationMode.NEGATIVE and (body is None or not body.mode.is_negative):
            return  # the path parameter was the negative part, the body a valid one
        if any(_LONE_SURROGATE.search(s) for s in _strings(case.body)):
            return
        drawn.append(case.body)

    draw()
    assert drawn, "the generator drew no body"
    return drawn


@pytest.mark.parametrize("route", list(ROUTES), ids=lambda r: r[1].rsplit("/", 1)[-1])
def test_every_body_the_schema_allows_is_accepted(operations, route):
    refused = [b for b in _bodies(operations[route], GenerationMode.POSITIVE) if not _accepted(ROUTES[route], b)]
    assert not refused, refused[:3]


@pytest.mark.parametrize("route", list(ROUTES), ids=lambda r: r[1].rsplit("/", 1)[-1])
def test_every_body_the_schema_refuses_is_refused(operations, route):
    accepted = [b for b in _bodies(operations[route], GenerationMode.NEGATIVE) if _accepted(ROUTES[route], b)]
    assert not accepted, accepted[:3]


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "ok \ud800"])
def test_nul_and_lone_surrogates_are_refused_in_every_text_field(text):
    for body in ({"sql": text}, {"base_version": 1, "author": text, "pairs": []},
                 {"base_version": 1, "author": "x", "pairs": [{"question": text, "sql": "SELECT 1"}]},
                 {"table": "t", "table_comment": text}, {"table": "t", "column_comments": {"c": text}}):
        model = review_models.ValidateSqlRequest if "sql" in body else review_models.SavePairsRequest \
            if "pairs" in body else review_models.TableCommentsRequest
        with pytest.raises(errors.ValidationError, match="NUL or unpaired surrogate|unicode string"):
            validate(model, body)


@pytest.mark.parametrize("text", ["\x85", "\xa0", "\u3000 \u2028", "\t"])
def test_text_of_only_white_space_is_outside_the_schema_and_refused(text):
    assert not re.fullmatch(review_models._STORABLE_TEXT_PATTERN, text)
    with pytest.raises(errors.ValidationError):
        validate(review_models.ValidateSqlRequest, {"sql": text})


@pytest.mark.parametrize("text", ["\ufeff", "\x1c", "\u200b"])
def test_characters_the_trimming_keeps_are_text(text):
    # ECMA's \s counts U+FEFF as white space and Python's str.strip removes U+001C; pydantic keeps both.
    assert re.fullmatch(review_models._STORABLE_TEXT_PATTERN, text)
    assert validate(review_models.ValidateSqlRequest, {"sql": text}).sql == text


@settings(max_examples=200, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.from_regex(models.TABLE_NAME_PATTERN, fullmatch=True))
def test_every_table_name_the_schema_allows_names_one_table(name):
    parsed = validate(review_models.TableCommentsRequest, {"table": name})
    assert len(parse_table_names([parsed.table])) == 1


@pytest.mark.parametrize("name", ['"OrderDetailsArchive2019Q4_LongName"', 'sales."Customer Demographics Of 2024"',
                                  '"' + "X" * 63 + '"', "服务区", 'public."服务区 档口"'])
def test_long_quoted_mixed_case_names_are_one_table(name):
    # A quoted mixed-case name of up to 63 ASCII characters is a PostgreSQL name the review routes must reach.
    assert re.fullmatch(models.TABLE_NAME_PATTERN, name) and re.fullmatch(models.TABLE_NAME_ITEM_PATTERN, name)
    parsed = validate(review_models.TableCommentsRequest, {"table": name})
    assert len(parse_table_names([parsed.table])) == 1


@pytest.mark.parametrize("name", ["", "a.b.c", "a,b", "# c", "\xa0", "a\xa0b", "\x1cabc", '""', "x" * 64])
def test_table_names_outside_the_grammar_are_refused_by_name(name):
    assert not re.fullmatch(models.TABLE_NAME_PATTERN, name)
    with pytest.raises(errors.DataPipelineError) as caught:
        validate(review_models.TableCommentsRequest, {"table": name})
    assert caught.value.code in ("INVALID_TABLE_NAME", "VALIDATION_ERROR")
