"""The heuristic provider's column-name knowledge, read once from data/*.json, and the comments it gives.

A name is split into words; whole names, last words and composable words map to Chinese/English labels.
Nothing is guessed for a name that is not in the vocabulary.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Vocabulary:
    exact_columns: dict[str, tuple[str, str]]  # whole column name -> (Chinese, English)
    suffixes: dict[str, tuple[str, str]]  # a name's last word -> (Chinese, English)
    words_zh: dict[str, str]  # words that compose into Chinese labels
    soft_delete: frozenset[str]
    audit_time: frozenset[str]  # soft-delete markers included
    audit_user: frozenset[str]
    enum_words: frozenset[str]
    not_measure_words: frozenset[str]
    table_prefixes: tuple[str, ...]  # in the order they are tried


def _read(name: str) -> dict:
    with open(DATA_DIR / name, encoding="utf-8") as handle:
        return json.load(handle)


@functools.cache
def get_vocabulary() -> Vocabulary:
    """The vocabulary, loaded on first use and kept for the process (a warm Lambda reads the files once)."""
    labels, roles = _read("labels.json"), _read("column_roles.json")
    pair = {key: (zh, en) for key, (zh, en) in labels["exact_columns"].items()}
    suffixes = {key: (zh, en) for key, (zh, en) in labels["suffixes"].items()}
    soft_delete = frozenset(roles["soft_delete"])
    return Vocabulary(
        exact_columns=pair,
        suffixes=suffixes,
        words_zh=dict(labels["words_zh"]),
        soft_delete=soft_delete,
        audit_time=frozenset(roles["audit_time"]) | soft_delete,
        audit_user=frozenset(roles["audit_user"]),
        enum_words=frozenset(roles["enum_words"]),
        not_measure_words=frozenset(roles["not_measure_words"]),
        table_prefixes=tuple(roles["table_prefixes"]),
    )


def split_words(name: str) -> list[str]:
    """`serviceAreaName` / `service_area_name` -> ["service", "area", "name"] (lower case)."""
    return [w for w in re.split(r"[_\W]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if w]


def _compose_zh(words: list[str]) -> str | None:
    known = get_vocabulary().words_zh
    parts = [known.get(w) for w in words]
    return "".join(parts) if parts and all(parts) else None  # type: ignore[arg-type]


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def guess_column_comment(name: str, zh: bool) -> str | None:
    """A comment from the column name alone, or None when the name means nothing known."""
    vocabulary = get_vocabulary()
    lowered = name.lower()
    if lowered in vocabulary.exact_columns:
        return vocabulary.exact_columns[lowered][0 if zh else 1]
    words = split_words(name)
    if not words:
        return None
    last = words[-1]
    if last not in vocabulary.suffixes:
        if zh:
            return _compose_zh(words)
        return None
    suffix_zh, suffix_en = vocabulary.suffixes[last]
    prefix = words[:-1]
    if not prefix:
        return suffix_zh if zh else _capitalised(suffix_en)
    if zh:
        composed = _compose_zh(prefix)
        return f"{composed}{suffix_zh}" if composed else suffix_zh
    return _capitalised(" ".join(prefix) + " " + suffix_en)


def guess_table_comment(name: str, zh: bool) -> str | None:
    """A table comment from its name without a known prefix (`bss_service_area` -> 服务区), or None."""
    stem = name.lower()
    for prefix in get_vocabulary().table_prefixes:
        if stem.startswith(prefix) and len(stem) > len(prefix):
            stem = stem[len(prefix):]
            break
    words = split_words(stem)
    if zh:
        return _compose_zh(words)
    text = " ".join(words)
    return _capitalised(text) if text else None
