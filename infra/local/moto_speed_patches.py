"""Patches that take CPU out of the moto server's request path without changing what it answers (measured with
py-spy on the GIL of the local stack during benchmarks/bench_complete_run.py: moto's own work, serialised by one
GIL, is what a local run waits for between its LLM rounds):

- the ASL grammar parse of a state machine's definition, redone by moto for every execution (a quarter of a
  second of ANTLR for this project's definition), is kept per definition text; the evaluation components are
  still built fresh for each execution from the parse tree, so executions share nothing that changes;
- JSONPath expressions (moto builds a new ply parser for every path it reads, on every state) are parsed once;
- an UpdateItem that asks for no old values (ReturnValues NONE or ALL_NEW, the project's only kinds) no longer
  deep-copies and serialises the whole item beforehand just to compute old values nobody reads, and one that
  asks for none (NONE) does not serialise the updated item either;
- a ProjectionExpression converts only the attributes it names, once per path (moto converted the whole item
  once per path: a step's projected read of its task cost eight times a read of the whole item);
- DynamoType's size, conversion and deep copy visit each value once (moto's redo their subtree at every level);
- DynamoDB answers are turned into plain values by a direct walk for the common nodes;
- a ConditionExpression's document paths are read in place, and an UpdateExpression text is parsed once;
- a timestamp moto keeps as text (an S3 key's LastModified) is converted to a given answer format once, not
  parsed back with dateutil in every answer that carries it.

Each patch returns a function undoing it; applying one twice does nothing the second time.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


def cache_moto_asl_parse_trees() -> Callable[[], None]:
    """AmazonStateLanguageParser.parse with the syntax tree kept per definition (syntax errors included: the
    same text fails the same way); the Preprocessor still builds new evaluation components every time."""
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    parser_class = asl_parser.AmazonStateLanguageParser
    original = parser_class.__dict__["parse"]
    if getattr(original.__func__, "_data_pipeline_cache", False):
        return lambda: None
    trees: dict[str, Any] = {}
    lock = threading.Lock()

    def tree_of(definition: str) -> Any:
        with lock:
            found = trees.get(definition)
        if found is None:
            listener = asl_parser.SyntaxErrorListener()
            lexer = asl_parser.ASLLexer(asl_parser.InputStream(definition))
            parser = asl_parser.ASLParser(asl_parser.CommonTokenStream(lexer))
            parser.removeErrorListeners()
            parser.addErrorListener(listener)
            found = (parser.state_machine(), list(listener.errors))
            with lock:
                trees[definition] = found
        return found

    def parse(definition: str) -> tuple[Any, Any]:
        tree, errors = tree_of(definition)
        if errors:
            raise asl_parser.ASLParserException(errors=errors)
        return Preprocessor().visit(tree), tree

    parse._data_pipeline_cache = True  # type: ignore[attr-defined]
    parser_class.parse = staticmethod(parse)  # type: ignore[method-assign]

    def undo() -> None:
        parser_class.parse = original  # type: ignore[method-assign]

    return undo


def memoize_moto_json_paths() -> Callable[[], None]:
    """moto's Step Functions JSONPath reads (`extract_json`) parse each path with a freshly built ply parser; a
    parsed jsonpath_ng expression holds no state of its own, so each path text is parsed once."""
    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.parse
    if getattr(original, "_data_pipeline_memo", False):
        return lambda: None
    memo = functools.lru_cache(maxsize=4096)(original)

    def parse(path: str) -> Any:
        return memo(path)

    parse._data_pipeline_memo = True  # type: ignore[attr-defined]
    json_path.parse = parse

    def undo() -> None:
        json_path.parse = original

    return undo


class _NoOldValues:
    """What moto's UpdateItem handler gets instead of a deep copy of the item when no old value is asked for:
    no old attributes (it compares the new ones against them only to answer ReturnValues *_OLD/UPDATED_NEW)."""

    def to_json(self) -> dict[str, Any]:
        return {"Attributes": {}}


class _CopyModule:
    """Stands in for the `copy` module in moto.dynamodb.responses: inside an UpdateItem that reads no old values
    (per thread), its deepcopy of the item is skipped."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._local = threading.local()

    def deepcopy(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._local, "skip", False) and value is not None:
            self._local.skip = False  # the first copy only: the item's, taken before the update
            return _NoOldValues()
        return self._module.deepcopy(value, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class _AnswerlessBackend:
    """The DynamoDB backend as moto's UpdateItem handler sees it when the request asks for no values
    (ReturnValues NONE): the update is the backend's own, but the item it hands back is serialised only to be
    dropped from the answer, so the handler gets one with no attributes to serialise."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def update_item(self, *args: Any, **kwargs: Any) -> Any:
        self._backend.update_item(*args, **kwargs)
        return _NoOldValues()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


NEEDS_NO_OLD_VALUES = (None, "NONE", "ALL_NEW")
NEEDS_NO_VALUES = (None, "NONE")


def skip_moto_update_item_copies() -> Callable[[], None]:
    """moto's UpdateItem deep-copies and serialises the whole stored item before every update, to compute the
    old values of ReturnValues ALL_OLD / UPDATED_OLD / UPDATED_NEW, and serialises the whole updated item after
    it, for the new values of ALL_NEW / UPDATED_NEW. With NONE or ALL_NEW (what the project asks for) nothing
    reads the old ones: the copy is skipped; with NONE nothing reads the new ones either: the item is not
    serialised. The backend's own copy (its undo, which the item-size quota relies on) is untouched."""
    from moto.dynamodb import responses

    handler = responses.DynamoHandler
    original = handler.update_item
    if getattr(original, "_data_pipeline_skip", False):
        return lambda: None
    original_copy = responses.copy
    original_backend = handler.__dict__["dynamodb_backend"]
    stand_in = _CopyModule(original_copy)

    def update_item(self: Any) -> Any:
        stand_in._local.skip = self.body.get("ReturnValues") in NEEDS_NO_OLD_VALUES
        stand_in._local.answerless = self.body.get("ReturnValues") in NEEDS_NO_VALUES
        try:
            return original(self)
        finally:
            stand_in._local.skip = stand_in._local.answerless = False

    def dynamodb_backend(self: Any) -> Any:
        backend = original_backend.fget(self)
        return _AnswerlessBackend(backend) if getattr(stand_in._local, "answerless", False) else backend

    update_item._data_pipeline_skip = True  # type: ignore[attr-defined]
    handler.update_item = update_item  # type: ignore[method-assign]
    handler.dynamodb_backend = property(dynamodb_backend)  # type: ignore[assignment]
    responses.copy = stand_in  # type: ignore[assignment]

    def undo() -> None:
        handler.update_item = original  # type: ignore[method-assign]
        handler.dynamodb_backend = original_backend  # type: ignore[assignment]
        responses.copy = original_copy

    return undo


def project_moto_items_by_attribute() -> Callable[[], None]:
    """moto's Item.project (a ProjectionExpression of GetItem, Query, Scan, and of index projections) turns the
    whole item into Python values once per projected path: a step's read of twelve small attributes of the task
    item cost eight times a read of the whole item. Each path only ever looks at its own top-level attribute,
    so only that attribute is converted, still afresh for each path (moto merges each path's answer into the
    previous ones, which may alias the values it took)."""
    import re

    from botocore.utils import merge_dicts
    from moto.dynamodb.models import dynamo_type
    from moto.dynamodb.models.utilities import find_nested_key

    item_class = dynamo_type.Item
    original = item_class.project
    if getattr(original, "_data_pipeline_project", False):
        return lambda: None
    list_element = re.compile(r"(.+)\[(\d+)\]$")  # find_nested_key's own reading of `name[i]`

    def project(self: Any, projection_expressions: list[list[str]]) -> Any:
        result: dict[str, Any] = {}
        for expr in projection_expressions:
            head = list_element.match(expr[0])
            name = head.group(1) if head else expr[0]
            attribute = self.attrs.get(name)
            source = {} if attribute is None else {name: dynamo_type.deserializer.deserialize(
                attribute.to_regular_json())}
            merge_dicts(result, find_nested_key(expr, source))
        return item_class(hash_key=self.hash_key, range_key=self.range_key,
                          attrs=dynamo_type.serializer.serialize(result)["M"])

    project._data_pipeline_project = True  # type: ignore[attr-defined]
    item_class.project = project  # type: ignore[method-assign]

    def undo() -> None:
        item_class.project = original  # type: ignore[method-assign]

    return undo


def linear_moto_dynamo_values() -> Callable[[], None]:
    """Three walks of moto's DynamoType, which every item size check, every UpdateItem (its undo copy and its
    answer) and every projection goes through. Two redo the work below them at every level of nesting:
    `size()` wraps every map value in a new DynamoType, which copies its whole subtree before sizing it, and
    `to_regular_json()` deep-copies its whole value before converting each child, which deep-copies its own
    again; both are rewritten to visit each value once, with the same arithmetic and the same result.
    `__deepcopy__` goes through `copy.deepcopy`'s dispatch for every child; it now copies DynamoType children
    directly, with the same memo (shared values stay shared in the copy, as with moto's)."""
    from moto.dynamodb.models import dynamo_type

    value_class = dynamo_type.DynamoType
    originals = tuple(value_class.__dict__[name] for name in ("size", "to_regular_json", "__deepcopy__"))
    if getattr(originals[0], "_data_pipeline_linear", False):
        return lambda: None
    bytesize = dynamo_type.bytesize
    sets = (dynamo_type.DDBType.STRING_SET, dynamo_type.DDBType.NUMBER_SET, dynamo_type.DDBType.BINARY_SET)
    deepcopy = dynamo_type.copy.deepcopy
    b64decode = dynamo_type.base64.b64decode

    def size(self: Any) -> int:
        kind, value = self.type, self.value
        if kind == "N":
            return len(str(value))
        if kind in sets:
            return sum(value_class({kind[0]: v}).size() for v in value)
        if kind == "L":
            return sum(v.size() for v in value)
        if kind == "M":
            return sum(bytesize(k) + (v.size() if type(v) is value_class else value_class(v).size())
                       for k, v in value.items())
        if isinstance(value, bool):
            return 1
        return bytesize(value)

    def to_regular_json(self: Any) -> dict[str, Any]:
        value = self.value
        if isinstance(value, dict):
            value = {k: v.to_regular_json() if isinstance(v, value_class) else deepcopy(v) for k, v in value.items()}
        elif isinstance(value, list):
            value = [v.to_regular_json() if isinstance(v, value_class) else deepcopy(v) for v in value]
        else:
            value = deepcopy(value)
        if self.type == "B" and isinstance(value, str):
            value = b64decode(value)
        return {self.type: value}

    def copy_value(self: Any, memo: dict[int, Any]) -> Any:
        found = memo.get(id(self))
        if found is not None:
            return found
        result = self.__class__.__new__(self.__class__)
        memo[id(self)] = result
        kind, value = self.type, self.value
        result.type = kind
        if kind == "L":
            result.value = [copy_value(v, memo) if type(v) is value_class else deepcopy(v, memo) for v in value]
        elif kind == "M":
            result.value = {k: copy_value(v, memo) if type(v) is value_class else deepcopy(v, memo)
                            for k, v in value.items()}
        elif kind in sets:
            result.value = list(value)
        else:
            result.value = value
        return result

    size._data_pipeline_linear = True  # type: ignore[attr-defined]
    value_class.size = size  # type: ignore[method-assign]
    value_class.to_regular_json = to_regular_json  # type: ignore[method-assign]
    value_class.__deepcopy__ = copy_value  # type: ignore[method-assign]

    def undo() -> None:
        value_class.size, value_class.to_regular_json, value_class.__deepcopy__ = originals  # type: ignore[method-assign]

    return undo


def direct_moto_dynamodb_answers() -> Callable[[], None]:
    """moto turns every DynamoDB answer (a GetItem's whole item, a Query's page) into plain values with a
    recursive `dynamo_to_dict` that imports DynamoType and asks each string and number for a `to_json` method
    before returning it as it is: that walk was most of a GetItem of the task item. The common nodes (plain
    scalars, dicts, lists, non-binary DynamoTypes) take a direct path; anything else (binary values, datetimes,
    models with `to_json`, subclasses) still goes through moto's own function."""
    from moto.dynamodb import responses
    from moto.dynamodb.models import utilities
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = utilities.dynamo_to_dict
    if getattr(original, "_data_pipeline_direct", False):
        return lambda: None
    plain = (str, int, float, bool, type(None))

    def dynamo_to_dict(obj: Any) -> Any:
        kind = type(obj)
        if kind in plain:
            return obj
        if kind is DynamoType and obj.type not in ("B", "BS"):
            return {obj.type: dynamo_to_dict(obj.value)}
        if kind is dict:
            return {k: dynamo_to_dict(v) for k, v in obj.items()}
        if kind is list:
            return [dynamo_to_dict(v) for v in obj]
        return original(obj)  # its own recursion comes back here through the module's name

    dynamo_to_dict._data_pipeline_direct = True  # type: ignore[attr-defined]
    utilities.dynamo_to_dict = dynamo_to_dict
    responses.dynamo_to_dict = dynamo_to_dict

    def undo() -> None:
        utilities.dynamo_to_dict = original
        responses.dynamo_to_dict = original

    return undo


def read_moto_condition_paths_in_place() -> Callable[[], None]:
    """A ConditionExpression's document path (`attribute_not_exists(progress.#s.#c.#k0)`) is read by moto
    through DynamoType.child_attr, which wraps the child in a new DynamoType and so copies its whole subtree at
    every step: a batch's progress write copied the task's whole progress map to test one key. The condition
    only reads the value's type and its cast value (the path's first step already hands over the stored
    attribute itself), so the path is walked in place; the values it reads are the same."""
    from moto.dynamodb import comparisons
    from moto.dynamodb.models.dynamo_type import DynamoType

    path_class = comparisons.AttributePath
    original = path_class._get_attr
    if getattr(original, "_data_pipeline_in_place", False):
        return lambda: None

    def child(attr: Any, key: Any) -> Any:  # DynamoType.child_attr without the copy
        if isinstance(key, str) and attr.is_map() and key in attr.value:
            found = attr.value[key]
        elif isinstance(key, int) and attr.is_list() and 0 <= key < len(attr.value):
            found = attr.value[key]
        else:
            return None
        return found if type(found) is DynamoType else DynamoType(found)

    def _get_attr(self: Any, item: Any) -> Any:
        if item is None or self.path[0] not in item.attrs:
            return None
        attr = item.attrs[self.path[0]]
        for name in self.path[1:]:
            attr = child(attr, name)
            if attr is None:
                return None
        return attr

    _get_attr._data_pipeline_in_place = True  # type: ignore[attr-defined]
    path_class._get_attr = _get_attr  # type: ignore[method-assign]

    def undo() -> None:
        path_class._get_attr = original  # type: ignore[method-assign]

    return undo


def memoize_moto_update_expressions() -> Callable[[], None]:
    """moto parses an UpdateExpression twice per UpdateItem (handler and backend) with its hand-written
    tokenizer and parser, and the project's expressions repeat from call to call (values and names are
    placeholders). A parsed expression is only read (placeholders listed) or deep-copied before it is validated
    and executed (moto's Validator works on its own copy), so each text is parsed once; a text that does not
    parse still fails every time, the same way."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    original = UpdateExpressionParser.__dict__["make"]
    if getattr(original.__func__, "_data_pipeline_memo", False):
        return lambda: None

    @functools.lru_cache(maxsize=1024)
    def parsed(cls: Any, expression: str) -> Any:
        return original.__func__(cls, expression)

    def make(cls: Any, expression: str) -> Any:
        return parsed(cls, expression)

    make._data_pipeline_memo = True  # type: ignore[attr-defined]
    UpdateExpressionParser.make = classmethod(make)  # type: ignore[method-assign,assignment]

    def undo() -> None:
        UpdateExpressionParser.make = original  # type: ignore[method-assign]

    return undo


def memoize_moto_timestamp_texts() -> Callable[[], None]:
    """moto keeps some timestamps as text (an S3 key's LastModified) and its response serializer parses that text
    back with botocore's dateutil-based parser for every answer before formatting it: half the server's CPU for
    a ListObjectsV2 page (0.2 ms a key, measured with py-spy). The conversion of a given text to a given format
    always gives the same answer, so it is kept per (text, format), bounded; a datetime or a number is converted
    as before, and a text that does not parse fails every time, the same way (failures are not kept)."""
    from moto.core.serialize import TimestampSerializer

    original = TimestampSerializer.__dict__["_convert_timestamp_to_str"]
    if getattr(original, "_data_pipeline_memo", False):
        return lambda: None
    # The conversion reads no state of the serializer (its converters are its methods, the formats constants).
    converter = TimestampSerializer(TimestampSerializer.TIMESTAMP_FORMAT_ISO8601)

    @functools.lru_cache(maxsize=8192)
    def converted(value: str, timestamp_format: str) -> Any:
        return original(converter, value, timestamp_format)

    def convert(self: Any, value: Any, timestamp_format: str) -> Any:
        if type(value) is str:
            return converted(value, timestamp_format)
        return original(self, value, timestamp_format)

    convert._data_pipeline_memo = True  # type: ignore[attr-defined]
    TimestampSerializer._convert_timestamp_to_str = convert  # type: ignore[method-assign]

    def undo() -> None:
        TimestampSerializer._convert_timestamp_to_str = original  # type: ignore[method-assign]

    return undo
