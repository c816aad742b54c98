"""The moto patches that take CPU out of the local stack's request path answer exactly what moto answers: the
cached ASL parse still builds fresh evaluation components (and fails the same way on a bad definition), memoized
JSONPaths read the same values, and an UpdateItem that skips the pre-update copy still answers every ReturnValues
kind as moto does (the old values of ALL_OLD / UPDATED_OLD / UPDATED_NEW are still computed); projections, item
sizes, value conversions and copies, and the answers built from them are moto's, on the same requests with and
without the patches; timestamps kept as text convert as moto converts them, and a listing answers as moto's while
parsing each distinct text once."""
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


# -- DynamoDB values: projections, size and copies walked once, answers built directly ----------------------

VALUE_PATCHES = (speed.project_moto_items_by_attribute, speed.linear_moto_dynamo_values,
                 speed.direct_moto_dynamodb_answers)


def _nested(depth: int) -> dict:
    value: dict = {"S": "leaf"}
    for level in range(depth):
        value = {"M": {f"k{level}": value, "n": {"N": str(level)}, "l": {"L": [{"S": "é"}, {"BOOL": True}]}}}
    return value


ITEM = {
    "pk": {"S": "a"}, "sk": {"N": "1"}, "g": {"S": "group"},
    "m": {"M": {"x": {"L": [{"S": "x0"}, {"M": {"y": {"N": "2.50"}}}]}, "z": {"NULL": True}, "名": {"S": "值"}}},
    "l": {"L": [{"S": "l0"}, {"M": {"x": {"S": "l1x"}, "w": {"N": "3"}}}, {"L": [{"N": "4"}]}]},
    "ss": {"SS": ["b", "a"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": [b"\x00\x01", b"\xff"]},
    "b": {"B": b"\x00bin\xff"}, "t": {"BOOL": False}, "deep": _nested(12), "empty": {"M": {}},
}
PROJECTIONS = ("m.x[1].y", "l[1].x, l[2]", "m, m.x[0]", "m.x[0], m", "#n, absent, ss, bs, b", "deep.k11.k10.n",
               "l[7], m.nope.x", "pk, sk")


def _table_holding_item(ddb, name: str) -> None:
    """A table keyed by `pk` alone holding ITEM (without the sort and index keys)."""
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    ddb.put_item(TableName=name, Item={k: v for k, v in ITEM.items() if k not in ("sk", "g")})


def _dynamodb_answers(monkeypatch) -> list:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    answers: list = []
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": k} for n, k in
                                  (("pk", "S"), ("sk", "N"), ("g", "S"))],
            GlobalSecondaryIndexes=[{"IndexName": "by_g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["m", "b"]}}])
        ddb.put_item(TableName="t", Item=ITEM)
        ddb.put_item(TableName="t", Item={**ITEM, "sk": {"N": "2"}, "l": {"L": []}})
        key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
        answers.append(ddb.get_item(TableName="t", Key=key)["Item"])
        for projection in PROJECTIONS:
            names = {"#n": "名"} if "#n" in projection else {}
            answers.append(ddb.get_item(TableName="t", Key=key, ProjectionExpression=projection,
                                        **({"ExpressionAttributeNames": names} if names else {})).get("Item"))
        answers.append(ddb.query(TableName="t", KeyConditionExpression="pk = :a", ProjectionExpression="l[1], m.z",
                                 ExpressionAttributeValues={":a": {"S": "a"}})["Items"])
        answers.append(ddb.query(TableName="t", IndexName="by_g", KeyConditionExpression="g = :g",
                                 ExpressionAttributeValues={":g": {"S": "group"}})["Items"])
        answers.append(ddb.scan(TableName="t", ProjectionExpression="deep.k11, bs")["Items"])
        for kind in ("ALL_NEW", "UPDATED_NEW", "UPDATED_OLD", "ALL_OLD", "NONE"):
            answers.append(ddb.update_item(
                TableName="t", Key=key, ReturnValues=kind,
                UpdateExpression="SET m.x[1].y = :v, deep.k11.k10.n = :v, l[5] = :b REMOVE m.z ADD ss :s",
                ExpressionAttributeValues={":v": {"N": "7"}, ":b": {"B": b"\x02"}, ":s": {"SS": [kind]}},
            ).get("Attributes"))
        answers.append(ddb.get_item(TableName="t", Key=key)["Item"])
    return answers


def test_dynamodb_answers_are_moto_answers(monkeypatch):
    undo = [patch() for patch in VALUE_PATCHES]
    try:
        patched = _dynamodb_answers(monkeypatch)
    finally:
        for step in reversed(undo):
            step()
    assert patched == _dynamodb_answers(monkeypatch)
    assert patched[0]["b"] == {"B": b"\x00bin\xff"} and patched[1] == {"m": {"M": {"x": {"L": [
        {"M": {"y": {"N": "2.50"}}}]}}}}  # the comparison is of real answers, binary ones included


def test_a_projection_converts_only_the_attributes_it_names():
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    class Unreadable(DynamoType):
        def to_regular_json(self):
            raise AssertionError("an attribute the projection does not name was converted")

    item = Item(DynamoType({"S": "a"}), None, {"pk": {"S": "a"}, "small": {"M": {"x": {"S": "y"}}}})
    dict.__setitem__(item.attrs, "big", Unreadable({"S": "x" * 1000}))
    with pytest.raises(AssertionError):
        item.project([["small", "x"]])  # moto converts the whole item for every path
    undo = speed.project_moto_items_by_attribute()
    try:
        projected = item.project([["small", "x"], ["pk"]])
    finally:
        undo()
    assert projected.to_json() == {"Attributes": {"small": {"M": {"x": {"S": "y"}}}, "pk": {"S": "a"}}}


def _values() -> list:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return [DynamoType(value) for value in (*ITEM.values(), {"B": "AAE="}, {"S": ""}, {"L": []}, {"NULL": True})]


def test_value_walks_answer_as_moto(monkeypatch):
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType

    shared = DynamoType({"M": {"x": {"S": "shared"}}})
    holder = DynamoType({"M": {}})
    holder.value.update(a=shared, b=shared)

    def walk() -> list:
        values = [*_values(), holder]
        copies = [copy.deepcopy(value) for value in values]
        held = copies[-1]
        answer = [[v.size() for v in values], [v.to_regular_json() for v in values],
                  [c.to_json() for c in copies], [c == v for c, v in zip(copies, values, strict=True)],
                  [c is v for c, v in zip(copies, values, strict=True)], held.value["a"] is held.value["b"],
                  held.value["a"] is shared]
        for changed in copies:  # a copy is a copy: changing it leaves the original as it was
            if isinstance(changed.value, list):
                changed.value.append("9")
        return [*answer, [v.to_json() for v in values]]

    undo = speed.linear_moto_dynamo_values()
    try:
        patched = walk()
    finally:
        undo()
    assert patched == walk()
    assert patched[5] is True and patched[6] is False  # a shared value stays shared in the copy, and is a copy

def _count_dynamo_values(monkeypatch) -> list:
    """A list that grows by one for every DynamoType moto builds from now on (the test's monkeypatch undoes it)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    built: list = []
    original_init = DynamoType.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(DynamoType, "__init__", counting_init)
    return built


def test_size_wraps_no_value_again(monkeypatch):
    from moto.dynamodb.models.dynamo_type import DynamoType

    value = DynamoType(_nested(20))
    built = _count_dynamo_values(monkeypatch)
    moto_size = value.size()
    moto_built = len(built)
    undo = speed.linear_moto_dynamo_values()
    try:
        built.clear()
        assert value.size() == moto_size
    finally:
        undo()
    assert built == [] and moto_built > 1000  # moto re-wraps every subtree at every level


def test_direct_answers_convert_as_moto():
    from datetime import UTC, datetime

    from moto.dynamodb.models import utilities
    from moto.dynamodb.models.dynamo_type import Item

    item = Item(_values()[0], None, ITEM)
    objects = [{"Item": item.attrs, "Count": 2, "Ratio": 0.5, "More": None, "Flag": True},
               {"Items": [item, item.attrs["b"], item.attrs["bs"]], "When": datetime(2026, 12, 1, tzinfo=UTC)},
               [item.attrs["deep"], "text", 3]]

    undo = speed.direct_moto_dynamodb_answers()
    try:
        patched = [utilities.dynamo_to_dict(obj) for obj in objects]
    finally:
        undo()
    assert patched == [utilities.dynamo_to_dict(obj) for obj in objects]
    assert patched[1]["Items"][1] == {"B": b"\x00bin\xff"}


CONDITIONS = (
    "attribute_exists(m.x[1].y)", "attribute_not_exists(m.x[1].y)", "attribute_exists(l[9])", "m.x[1].y = :n",
    "m.x[1].y < :n", "attribute_type(l[1], :m)", "begins_with(m.x[0], :p)", "contains(ss, :p)", "size(l[1]) = :two",
    "deep.k11.k10.n = :n", "attribute_exists(deep.k11.nope.n)", "attribute_not_exists(m.#n.x)", "l[2][0] = :four",
    "m.x[0] IN (:p, :q)", "m.x[1].y BETWEEN :one AND :n", "NOT attribute_exists(t.x)",
)


def _condition_answers(monkeypatch) -> list:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    answers: list = []
    values = {":n": {"N": "2.5"}, ":m": {"S": "M"}, ":p": {"S": "x0"}, ":q": {"S": "b"}, ":two": {"N": "2"},
              ":four": {"N": "4"}, ":one": {"N": "1"}}
    with mock_aws():
        ddb = boto3.client("dynamodb")
        _table_holding_item(ddb, "c")
        for i, condition in enumerate(CONDITIONS):
            used = {k: v for k, v in values.items() if k in condition}
            extra = {"ExpressionAttributeNames": {"#n": "名"}} if "#n" in condition else {}
            try:
                ddb.update_item(TableName="c", Key={"pk": {"S": "a"}}, UpdateExpression="SET hits = :i",
                                ConditionExpression=condition, **extra,
                                ExpressionAttributeValues={**used, ":i": {"N": str(i)}})
                answers.append((condition, "written"))
            except ddb.exceptions.ConditionalCheckFailedException:
                answers.append((condition, "refused"))
        answers.append(ddb.get_item(TableName="c", Key={"pk": {"S": "a"}})["Item"])
    return answers


def test_conditions_on_document_paths_decide_as_moto(monkeypatch):
    undo = speed.read_moto_condition_paths_in_place()
    try:
        patched = _condition_answers(monkeypatch)
    finally:
        undo()
    assert patched == _condition_answers(monkeypatch)
    decisions = {answer for _condition, answer in patched[:-1]}
    assert decisions == {"written", "refused"}  # both outcomes are compared


def test_a_condition_path_copies_no_subtree(monkeypatch):
    from moto.dynamodb.comparisons import AttributePath
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    item = Item(DynamoType({"S": "a"}), None, {"pk": {"S": "a"}, "deep": _nested(20)})
    path = AttributePath(["deep", "k19", "k18", "n"])
    built = _count_dynamo_values(monkeypatch)
    moto_value = path.expr(item)
    moto_built = len(built)
    undo = speed.read_moto_condition_paths_in_place()
    try:
        built.clear()
        assert path.expr(item) == moto_value and path.get_type(item) == "N"
    finally:
        undo()
    assert built == [] and moto_built > 100  # moto copied the subtree under each step of the path


def _none_update_answers(monkeypatch) -> tuple[list, int]:
    from moto.dynamodb.models.dynamo_type import Item

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    serialised = []
    original_to_json = Item.to_json

    def counting_to_json(self, *args, **kwargs):
        serialised.append(1)
        return original_to_json(self, *args, **kwargs)

    answers = []
    with mock_aws():
        ddb = boto3.client("dynamodb")
        _table_holding_item(ddb, "n")
        monkeypatch.setattr(Item, "to_json", counting_to_json)
        for extra in ({}, {"ReturnValues": "NONE"}, {"ReturnConsumedCapacity": "TOTAL"}):
            answer = ddb.update_item(TableName="n", Key={"pk": {"S": "a"}}, UpdateExpression="SET m.x[0] = :v",
                                     ExpressionAttributeValues={":v": {"S": str(extra)}}, **extra)
            answers.append({k: v for k, v in answer.items() if k != "ResponseMetadata"})
        counted = len(serialised)
        monkeypatch.setattr(Item, "to_json", original_to_json)
        answers.append(ddb.get_item(TableName="n", Key={"pk": {"S": "a"}})["Item"])
    return answers, counted


def test_an_update_asking_for_no_values_answers_as_moto_without_serialising_the_item(monkeypatch):
    undo = speed.skip_moto_update_item_copies()
    try:
        patched, patched_serialised = _none_update_answers(monkeypatch)
    finally:
        undo()
    moto, moto_serialised = _none_update_answers(monkeypatch)
    assert patched == moto and patched[-1]["m"]["M"]["x"]["L"][0] == {"S": str({"ReturnConsumedCapacity": "TOTAL"})}
    assert patched_serialised == 0 and moto_serialised >= 3  # moto serialised the whole item for each update


def _tree(node) -> object:
    """A parsed expression as nested (type, children) tuples, values by their repr: what an update could change."""
    from moto.dynamodb.parsing.ast_nodes import Node

    if not isinstance(node, Node):
        return repr(node)
    return (type(node).__name__, tuple(_tree(child) for child in node.children or ()))


def _parse_afresh(text: str):
    from moto.dynamodb.parsing.expressions import ExpressionTokenizer, UpdateExpressionParser

    return UpdateExpressionParser(ExpressionTokenizer.make_list(text)).parse()


def test_memoized_update_expressions_update_as_moto_and_stay_as_parsed(monkeypatch):
    from moto.dynamodb.exceptions import InvalidUpdateExpression
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    undo = speed.memoize_moto_update_expressions()
    try:
        text = "SET m.x[1].y = :v, deep.k11.k10.n = :v, l[5] = :b REMOVE m.z ADD ss :s"  # _dynamodb_answers' own
        tree = UpdateExpressionParser.make(text)
        patched = _dynamodb_answers(monkeypatch)
        assert UpdateExpressionParser.make(text) is tree
        failures = []
        for _ in range(2):
            with pytest.raises(InvalidUpdateExpression) as caught:
                UpdateExpressionParser.make("SET = :v")
            failures.append((type(caught.value), str(caught.value)))
    finally:
        undo()
    assert patched == _dynamodb_answers(monkeypatch)  # the same expression ran five times on the cached tree
    assert failures[0] == failures[1] and _tree(tree) == _tree(_parse_afresh(text))  # no update changed it



TIMESTAMP_TEXTS = ("2026-12-02T00:57:04.000Z", "2026-12-02T00:57:04Z", "2026-12-02T00:57:04.123456Z",
                   "2026-12-02T08:57:04+08:00", "2026-12-02", "1796171020", "Wed, 02 Dec 2026 00:57:04 GMT")
TIMESTAMP_FORMATS = ("iso8601", "iso8601_zeroed", "rfc822", "unixtimestamp")


def test_memoized_timestamp_texts_convert_as_moto():
    from datetime import UTC, datetime

    from moto.core.serialize import TimestampSerializer

    serializer = TimestampSerializer(TimestampSerializer.TIMESTAMP_FORMAT_ISO8601)
    values = [*TIMESTAMP_TEXTS, datetime(2026, 12, 2, 0, 57, 4, 500, tzinfo=UTC), 1796171020]
    expected = {(v, f): serializer._convert_timestamp_to_str(v, f) for v in values for f in TIMESTAMP_FORMATS}
    undo = speed.memoize_moto_timestamp_texts()
    try:
        assert speed.memoize_moto_timestamp_texts()() is None  # applied once: the second call patches nothing
        for _round in range(2):  # the second round answers from the memo
            assert {(v, f): serializer._convert_timestamp_to_str(v, f)
                    for v in values for f in TIMESTAMP_FORMATS} == expected
        for _round in range(2):  # a text that does not parse fails every time
            with pytest.raises(ValueError):
                serializer._convert_timestamp_to_str("not a time", "iso8601")
    finally:
        undo()
    assert "_data_pipeline_memo" not in vars(TimestampSerializer._convert_timestamp_to_str)


def test_a_listing_answers_as_moto_and_parses_each_text_once(monkeypatch):
    """The same three ListObjectsV2 pages over the same keys, without the patch and with it."""
    from moto.core import serialize

    parsed = []
    real = serialize.parse_to_aware_datetime
    monkeypatch.setattr(serialize, "parse_to_aware_datetime", lambda value: parsed.append(value) or real(value))

    def listing() -> tuple[list[dict], int]:
        parsed.clear()
        pages = [s3.list_objects_v2(Bucket="listing-bucket", Prefix="tasks/t/")["Contents"] for _ in range(3)]
        return [item for page in pages for item in page], sum(isinstance(value, str) for value in parsed)

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="listing-bucket")
        for i in range(5):
            s3.put_object(Bucket="listing-bucket", Key=f"tasks/t/files/{i}.ddl", Body=b"x" * i)
        plain, plain_parses = listing()
        undo = speed.memoize_moto_timestamp_texts()
        try:
            patched, patched_parses = listing()
        finally:
            undo()
    assert patched == plain and len(plain) == 15
    assert plain_parses >= 15  # moto parses every key's text in every answer
    assert patched_parses == len({item["LastModified"] for item in plain})  # one parse per distinct text
