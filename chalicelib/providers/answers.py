"""Reading a language model's answer: the JSON inside it (fences, prose and reasoning blocks around it), and the
parsing of each answer shape into domain objects. An unusable answer raises AnswerError, shown on the re-ask."""
from __future__ import annotations

import json
import logging
import re
from typing import Any

from chalicelib.pipeline.catalog_check import unknown_objects
from chalicelib.pipeline.models import CommentSuggestion, QAPair, TableDoc, Theme
from chalicelib.pipeline.schema_text import find_doc
from chalicelib.pipeline.sqltext import dedupe_key, referenced_tables
from chalicelib.pipeline.text import is_select_sql

logger = logging.getLogger(__name__)

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
# Answers that are an excuse rather than data must never become a comment or a SQL.
_APOLOGY = re.compile(
    r"(^\s*(i'?m sorry|sorry|i apologi[sz]e|as an ai|i cannot|i can'?t|unfortunately)\b)"
    r"|抱歉|对不起|无法提供|作为一个?AI",
    re.I,
)


def looks_like_apology(text: str) -> bool:
    return bool(_APOLOGY.search(text))


class AnswerError(ValueError):
    """An answer that cannot be used; the message is shown to the model on the re-ask."""


def strip_think(text: str) -> str:
    """Drop reasoning blocks (`<think>…</think>`), including an unterminated or unopened one."""
    text = _THINK_BLOCK.sub("", text)
    lower = text.lower()
    if "</think>" in lower:  # some servers drop the opening tag
        text = text[lower.rindex("</think>") + len("</think>"):]
    elif "<think>" in lower:  # cut off mid-thought: nothing after it is an answer
        text = text[: lower.index("<think>")]
    return text.strip()


def extract_json(text: str | None) -> Any:
    """The first JSON object/array in an answer: fenced ```json blocks first, then the whole text, then a scan."""
    if not text or not text.strip():
        raise AnswerError("the answer was empty")
    text = strip_think(text)
    candidates = [m.group(1).strip() for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            value = json.loads(candidate)
            if isinstance(value, dict | list):
                return value
        except ValueError:
            pass
        for match in re.finditer(r"[\[{]", candidate):
            try:
                value, _ = decoder.raw_decode(candidate, match.start())
            except ValueError:
                continue
            if isinstance(value, dict | list):
                return value
    raise AnswerError("no JSON object found in the answer")


def _require_object(value: Any, key: str) -> Any:
    if isinstance(value, list) and key in ("themes", "pairs", "repairs"):
        return value  # a bare list is the wanted list
    if not isinstance(value, dict):
        raise AnswerError(f"expected a JSON object with the key {key!r}")
    if key not in value:
        raise AnswerError(f"the JSON object has no key {key!r}")
    return value[key]


def _object_items(value: Any, key: str) -> list[dict[str, Any]]:
    """The objects of the answer's list under `key` (non-objects skipped)."""
    items = _require_object(value, key)
    if not isinstance(items, list):
        raise AnswerError(f"{key!r} must be a list")
    return [item for item in items if isinstance(item, dict)]


def _text(value: Any) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = " ".join(str(value).split())
        if text and not looks_like_apology(text):
            return text
    return None


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,，、]", value)]
    if not isinstance(value, list):
        return []
    return [t for t in (_text(v) for v in value) if t]


def parse_comment_answer(value: Any) -> CommentSuggestion:
    if not isinstance(value, dict):
        raise AnswerError("expected a JSON object with table_comment, columns and enum_candidates")
    columns = value.get("columns", value.get("column_comments"))
    if columns is None:
        raise AnswerError("the JSON object has no key 'columns'")
    if isinstance(columns, list):  # [{"name":…, "comment":…}] is a common variant
        columns = {c.get("name") or c.get("column"): c.get("comment") for c in columns if isinstance(c, dict)}
    if not isinstance(columns, dict):
        raise AnswerError("'columns' must be an object mapping column name to comment")
    comments = {str(k): t for k, v in columns.items() if k and (t := _text(v))}
    return CommentSuggestion(
        table_comment=_text(value.get("table_comment")),
        column_comments=comments,
        enum_candidates=_string_list(value.get("enum_candidates", [])),
    )


def parse_themes_answer(value: Any, count: int) -> list[Theme]:
    items = _object_items(value, "themes")
    themes = []
    for item in items:
        name = _text(item.get("topic_name") or item.get("name"))
        tables = _string_list(item.get("related_tables"))
        if not name or not tables:
            continue
        themes.append(Theme(
            topic_name=name,
            description=_text(item.get("description")) or "",
            related_tables=tables,
            biz_entities=_string_list(item.get("biz_entities")),
            biz_metrics=_string_list(item.get("biz_metrics")),
        ))
    if not themes:
        raise AnswerError("no usable theme (each needs topic_name and related_tables)")
    return themes[:count]


def parse_pairs_answer(value: Any, count: int) -> list[QAPair]:
    items = _object_items(value, "pairs")
    pairs = []
    for item in items:
        question, sql = _text(item.get("question")), item.get("sql")
        if question and isinstance(sql, str) and is_select_sql(sql):
            pairs.append(QAPair(question=question, sql=sql.strip()))
    if not pairs:
        raise AnswerError("no usable pair (each needs a question and a SELECT/WITH sql)")
    return pairs[:count]


def parse_repairs_answer(value: Any, indexes: set[int]) -> dict[int, str]:
    items = _object_items(value, "repairs")
    repairs: dict[int, str] = {}
    for item in items:
        try:
            index = int(item.get("index"))
        except (TypeError, ValueError):
            continue
        sql = item.get("sql")
        if index in indexes and isinstance(sql, str) and is_select_sql(sql):
            repairs[index] = sql.strip()
    return repairs


# -- the shapes, as JSON schemas (response_format where the endpoint accepts one) --------------------------------

_STRINGS = {"type": "array", "items": {"type": "string"}}
ANSWER_SCHEMAS: dict[str, dict[str, Any]] = {
    "comments": {"type": "object", "properties": {
        "table_comment": {"type": "string"},
        "columns": {"type": "object", "additionalProperties": {"type": "string"}},
        "enum_candidates": _STRINGS,
    }, "required": ["table_comment", "columns"]},
    "themes": {"type": "object", "properties": {"themes": {"type": "array", "items": {
        "type": "object", "properties": {
            "topic_name": {"type": "string"}, "description": {"type": "string"}, "related_tables": _STRINGS,
            "biz_entities": _STRINGS, "biz_metrics": _STRINGS,
        }, "required": ["topic_name", "related_tables"]}}}, "required": ["themes"]},
    "pairs": {"type": "object", "properties": {"pairs": {"type": "array", "items": {
        "type": "object", "properties": {"question": {"type": "string"}, "sql": {"type": "string"}},
        "required": ["question", "sql"]}}}, "required": ["pairs"]},
    "repair": {"type": "object", "properties": {"repairs": {"type": "array", "items": {
        "type": "object", "properties": {"index": {"type": "integer"}, "sql": {"type": "string"}},
        "required": ["index", "sql"]}}}, "required": ["repairs"]},
}


def response_format(kind: str, fmt: str) -> dict[str, Any] | None:
    """The `response_format` request field of a call kind in format `fmt` (None: plain text, nothing sent)."""
    if fmt == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": f"{kind}_answer", "schema": ANSWER_SCHEMAS[kind], "strict": False}}
    if fmt == "json_object":
        return {"type": "json_object"}
    return None


# -- pairs checked against the catalog ---------------------------------------------------------------------------

KNOWN_COLUMNS_SHOWN = 40  # of a table a flagged pair uses, in the re-ask


def unknown_in_pairs(pairs: list[QAPair], docs: list[TableDoc]) -> dict[int, list[str]]:
    """{position: what the pair's SQL names that the catalog does not have} for the pairs that name any."""
    found = {}
    for position, pair in enumerate(pairs):
        problems = unknown_objects(pair.sql, docs)
        if problems:
            found[position] = problems
    return found


def catalog_reask_text(pairs: list[QAPair], flagged: dict[int, list[str]], docs: list[TableDoc], lang: str) -> str:
    """The re-ask for the pairs whose SQL names unknown tables or columns: each with what is unknown, and the
    columns the tables it does name really have."""
    lines, tables = [], []
    for position, problems in flagged.items():
        pair = pairs[position]
        lines.append(json.dumps({"question": pair.question, "sql": pair.sql, "unknown": problems},
                                ensure_ascii=False))
        for schema, name in referenced_tables(pair.sql):
            doc = find_doc(f"{schema}.{name}" if schema else name, docs)
            if doc is not None and doc not in tables:
                tables.append(doc)
    known = "\n".join(f"{d.meta.ref.display_name}: {', '.join(c.name for c in d.meta.columns[:KNOWN_COLUMNS_SHOWN])}"
                      for d in tables)
    shape = '{"pairs": [{"question": "...", "sql": "SELECT ...;"}]}'
    if lang == "zh":
        return ("下面这些 SQL 使用了数据库中不存在的表或字段（unknown 列出了它们）：\n" + "\n".join(lines)
                + (f"\n\n这些表实际的字段：\n{known}" if known else "")
                + f"\n\n请只用上面给出的表和字段改写这些问题的 SQL，只输出改写后的这些对。输出格式：{shape}")
    return ("These SQL statements name tables or columns that do not exist (listed under unknown):\n"
            + "\n".join(lines) + (f"\n\nThe columns these tables really have:\n{known}" if known else "")
            + f"\n\nRewrite the SQL of these questions using only the tables and columns given; answer with the "
              f"rewritten pairs only. Answer format: {shape}")


def keep_resolved_pairs(first: list[QAPair], flagged: dict[int, list[str]], again: list[QAPair], docs: list[TableDoc],
                topic: str, count: int) -> list[QAPair]:
    """The first answer's pairs that resolve, then the re-asked ones that do (no SQL twice); every pair dropped
    for naming unknown objects is logged with them."""
    kept = [pair for position, pair in enumerate(first) if position not in flagged]
    for position, problems in flagged.items():
        logger.info("pair replaced by the catalog re-ask", extra={"theme": topic, "sql": first[position].sql[:200],
                                                                  "unknown": problems})
    still = unknown_in_pairs(again, docs)
    seen = {dedupe_key(pair.sql) for pair in kept}
    for position, pair in enumerate(again):
        if position in still:
            logger.warning("pair dropped: names unknown objects after the catalog re-ask",
                           extra={"theme": topic, "question": pair.question, "sql": pair.sql[:200],
                                  "unknown": still[position]})
            continue
        if dedupe_key(pair.sql) not in seen:
            seen.add(dedupe_key(pair.sql))
            kept.append(pair)
    return kept[:count]
