"""Reading a language model's answer: the JSON inside it (fences, prose and reasoning blocks around it), and the
parsing of each answer shape into domain objects. An unusable answer raises AnswerError, shown on the re-ask."""
from __future__ import annotations

import json
import re
from typing import Any

from chalicelib.pipeline.models import CommentSuggestion, QAPair, Theme
from chalicelib.pipeline.text import is_select_sql

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
