"""The moto patches that take CPU out of the local stack's request path answer exactly what moto answers: the
cached ASL parse still builds fresh evaluation components (and fails the same way on a bad definition), memoized
JSONPaths read the same values, and an UpdateItem that skips the pre-update copy still answers every ReturnValues
kind as moto does (the old values of ALL_OLD / UPDATED_OLD / UPDATED_NEW are still computed)."""
from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from infra.local import moto_speed_patches as speed
from infra.template import render_definition, step_substitutions


@pytest.fixture
def patched(request):
    undo = [speed.cache_moto_asl_parse_trees(), speed.memoize_moto_json_paths(), speed.skip_moto_update_item_copies()]
    yield
    for step in reversed(undo):
        step()


def test_the_cached_parse_builds_fresh_components_from_one_tree(patched):
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    definition = render_definition(step_substitutions(
        lambda name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}"))
    first, tree = AmazonStateLanguageParser.parse(definition)
    second, same_tree = AmazonStateLanguageParser.parse(definition)
    assert same_tree is tree and second is not first  # executions share the tree, never the components
    assert type(second) is type(first)
    assert sorted(first.states.states) == sorted(second.states.states) and "DdlTables" in first.states.states


def test_a_bad_definition_fails_the_same_way_every_time(patched):
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

    bad = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Nxt": "B"}}})
    messages = []
    for _ in range(2):
        with pytest.raises(ASLParserException) as caught:
            AmazonStateLanguageParser.parse(bad)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "Nxt" in messages[0]


def test_memoized_json_paths_read_the_same_values(patched):
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    data = {"task_id": "t1", "plan": {"steps": ["ddl_generation", "qa_generation"]}, "items": [{"n": 1}, {"n": 2}]}
    for _ in range(2):
        assert extract_json("$.task_id", data) == "t1"
        assert extract_json("$.plan.steps", data) == ["ddl_generation", "qa_generation"]
        assert extract_json("$.items[*].n", data) == [1, 2]


@pytest.mark.parametrize("undo_patch", [False, True], ids=["patched", "moto"])
def test_update_item_answers_every_return_values_kind_as_moto(monkeypatch, undo_patch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    undo = speed.skip_moto_update_item_copies()
    if undo_patch:
        undo()
    try:
        with mock_aws():
            ddb = boto3.client("dynamodb")
            ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                             BillingMode="PAY_PER_REQUEST")
            ddb.put_item(TableName="t", Item={"k": {"S": "a"}, "n": {"N": "1"}, "m": {"M": {"x": {"S": "old"}}}})
            answers = {}
            for i, kind in enumerate(("NONE", "ALL_NEW", "ALL_OLD", "UPDATED_OLD", "UPDATED_NEW")):
                answer = ddb.update_item(TableName="t", Key={"k": {"S": "a"}}, ReturnValues=kind,
                                         UpdateExpression="SET n = :n, m.x = :x",
                                         ExpressionAttributeValues={":n": {"N": str(i + 2)}, ":x": {"S": f"v{i}"}})
                answers[kind] = answer.get("Attributes")
            missing = ddb.update_item(TableName="t", Key={"k": {"S": "new"}}, UpdateExpression="SET n = :n",
                                      ExpressionAttributeValues={":n": {"N": "7"}}, ReturnValues="ALL_NEW")
    finally:
        undo()
    assert answers["NONE"] is None
    assert answers["ALL_NEW"] == {"k": {"S": "a"}, "n": {"N": "3"}, "m": {"M": {"x": {"S": "v1"}}}}
    assert answers["ALL_OLD"] == {"k": {"S": "a"}, "n": {"N": "3"}, "m": {"M": {"x": {"S": "v1"}}}}
    assert answers["UPDATED_OLD"] == {"n": {"N": "4"}, "m": {"M": {"x": {"S": "v2"}}}}
    assert answers["UPDATED_NEW"] == {"n": {"N": "6"}, "m": {"M": {"x": {"S": "v4"}}}}
    assert missing["Attributes"] == {"k": {"S": "new"}, "n": {"N": "7"}}


PROJECTIONS = [
    "a", "a, b", "m.x", "m, m.x", "m.x, m", "m.y.z, m.x, m", "l[1], l[0].q", "l, l[1]", "ss, n, absent",
    "#p.#c.t1, #p.#c, #p.done", "m.nope, nope.deeper", "m.y, m.y.z, m.y.w[0]",
]


def _projected_answers(undo_patch: bool) -> list:
    undo = speed.project_moto_items_once()
    if undo_patch:
        undo()
    try:
        with mock_aws():
            ddb = boto3.client("dynamodb")
            ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                             BillingMode="PAY_PER_REQUEST")
            item = {"k": {"S": "a"}, "a": {"S": "字"}, "b": {"N": "1.50"}, "n": {"NULL": True},
                    "ss": {"SS": ["x", "y"]}, "bin": {"B": b"\x00\x01"},
                    "m": {"M": {"x": {"S": "old"}, "y": {"M": {"z": {"BOOL": True}, "w": {"L": [{"N": "3"}]}}}}},
                    "l": {"L": [{"S": "first"}, {"M": {"q": {"N": "2"}}}]},
                    "p": {"M": {"c": {"M": {"t1": {"M": {"ok": {"BOOL": True}}}, "t2": {"S": "x"}}},
                                "done": {"N": "9"}}}}
            ddb.put_item(TableName="t", Item=item)
            answers = []
            for expression in PROJECTIONS:
                names = {k: v for k, v in {"#p": "p", "#c": "c"}.items() if k in expression}
                kwargs = {"ExpressionAttributeNames": names} if names else {}
                answers.append(ddb.get_item(TableName="t", Key={"k": {"S": "a"}}, ProjectionExpression=expression,
                                            **kwargs).get("Item"))
                answers.append(ddb.scan(TableName="t", ProjectionExpression=expression, **kwargs)["Items"])
            answers.append(ddb.get_item(TableName="t", Key={"k": {"S": "a"}})["Item"])  # the item is unchanged
    finally:
        undo()
    return answers


def test_a_projection_answers_what_moto_answers(moto_env):
    patched, unpatched = _projected_answers(False), _projected_answers(True)
    assert patched == unpatched
    assert patched[PROJECTIONS.index("m, m.x") * 2] == {"m": {"M": {"x": {"S": "old"}, "y": {"M": {
        "z": {"BOOL": True}, "w": {"L": [{"N": "3"}]}}}}}}
    assert patched[PROJECTIONS.index("l[1], l[0].q") * 2] == {"l": {"L": [{"M": {"q": {"N": "2"}}}]}}
    assert patched[-1]["m"]["M"]["x"] == {"S": "old"}


@pytest.fixture
def moto_env(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
