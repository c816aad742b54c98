"""Patches that take CPU out of the moto server's request path without changing what it answers (measured with
py-spy on the GIL of the local stack during benchmarks/bench_complete_run.py: moto's own work, serialised by one
GIL, is what a local run waits for between its LLM rounds):

- the ASL grammar parse of a state machine's definition, redone by moto for every execution (a quarter of a
  second of ANTLR for this project's definition), is kept per definition text; the evaluation components are
  still built fresh for each execution from the parse tree, so executions share nothing that changes;
- JSONPath expressions (moto builds a new ply parser for every path it reads, on every state) are parsed once;
- an UpdateItem that asks for no old values (ReturnValues NONE or ALL_NEW, the project's only kinds) no longer
  deep-copies and serialises the whole item beforehand just to compute old values nobody reads;
- a projected read converts the item to plain JSON once, not once per projected attribute.

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


NEEDS_NO_OLD_VALUES = (None, "NONE", "ALL_NEW")


def skip_moto_update_item_copies() -> Callable[[], None]:
    """moto's UpdateItem deep-copies and serialises the whole stored item before every update, to compute the
    old values of ReturnValues ALL_OLD / UPDATED_OLD / UPDATED_NEW. With NONE or ALL_NEW (what the project asks
    for) nothing reads them: the copy is skipped. The backend's own copy (its undo, which the item-size quota
    relies on) is untouched."""
    from moto.dynamodb import responses

    handler = responses.DynamoHandler
    original = handler.update_item
    if getattr(original, "_data_pipeline_skip", False):
        return lambda: None
    original_copy = responses.copy
    stand_in = _CopyModule(original_copy)

    def update_item(self: Any) -> Any:
        stand_in._local.skip = self.body.get("ReturnValues") in NEEDS_NO_OLD_VALUES
        try:
            return original(self)
        finally:
            stand_in._local.skip = False

    update_item._data_pipeline_skip = True  # type: ignore[attr-defined]
    handler.update_item = update_item  # type: ignore[method-assign]
    responses.copy = stand_in  # type: ignore[assignment]

    def undo() -> None:
        handler.update_item = original  # type: ignore[method-assign]
        responses.copy = original_copy

    return undo


def project_moto_items_once() -> Callable[[], None]:
    """moto's Item.project (a GetItem, Query or Scan with a ProjectionExpression) converts the whole item to plain
    JSON once per projected attribute: a GetItem of twelve attributes of a 30 KB task item cost ten times the
    GetItem of all of it. The item is converted once per call; each attribute is still looked up in, and merged
    from, that same plain-JSON item, so the answer is the one moto gives."""
    from moto.dynamodb.models import dynamo_type

    item_class = dynamo_type.Item
    original = item_class.project
    if getattr(original, "_data_pipeline_once", False):
        return lambda: None

    def project(self: Any, projection_expressions: list[list[str]]) -> Any:
        regular = self.to_regular_json()
        result: dict[str, Any] = {}
        for expr in projection_expressions:
            dynamo_type.merge_dicts(result, dynamo_type.find_nested_key(expr, regular))
        return item_class(hash_key=self.hash_key, range_key=self.range_key,
                          attrs=dynamo_type.serializer.serialize(result)["M"])

    project._data_pipeline_once = True  # type: ignore[attr-defined]
    item_class.project = project  # type: ignore[method-assign]

    def undo() -> None:
        item_class.project = original  # type: ignore[method-assign]

    return undo
