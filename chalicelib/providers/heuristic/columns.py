"""What the heuristic provider reads from a table's columns: measures, dates, soft-delete markers, the column
that names a row, enum-like columns, and short labels for questions and themes."""
from __future__ import annotations

import re

from chalicelib.pipeline.models import ColumnMeta, TableDoc, TableMeta
from chalicelib.pipeline.text import collapse_whitespace
from chalicelib.providers.heuristic.vocabulary import get_vocabulary, split_words

# PostgreSQL type names (udt_name), not vocabulary: they do not vary with the business.
_NUMERIC_UDT = {"int2", "int4", "int8", "numeric", "float4", "float8", "money"}
_TEXT_UDT = {"varchar", "text", "bpchar", "citext", "name"}
_DATE_UDT = {"date", "timestamp", "timestamptz"}
# A comment's short name ends at the first bracket or separator: "状态（1正常 0停用）" -> "状态".
_LABEL_STOPS = "（(，,；;：:"
_NOT_ENUM_TEXT_WORDS = {"name", "id", "code", "no", "remark", "description"}


def is_numeric(col: ColumnMeta) -> bool:
    return col.udt_name in _NUMERIC_UDT


def is_text(col: ColumnMeta) -> bool:
    return col.udt_name in _TEXT_UDT or col.type_kind == "enum"


def is_date(col: ColumnMeta) -> bool:
    return col.udt_name in _DATE_UDT


def is_audit_user(name: str) -> bool:
    """Who touched a row: low-cardinality in samples ("admin"), but never a business dimension."""
    return name.lower() in get_vocabulary().audit_user


def fk_columns(meta: TableMeta) -> set[str]:
    return {c for fk in meta.relationships for c in fk.columns}


def measure_columns(meta: TableMeta) -> list[ColumnMeta]:
    """Numeric columns that measure something (not keys, codes, coordinates or enum-like numbers)."""
    not_measures = get_vocabulary().not_measure_words
    keys = set(meta.primary_key) | fk_columns(meta)
    result = []
    for col in meta.columns:
        words = split_words(col.name)
        if not is_numeric(col) or col.name in keys or col.is_primary_key or not words:
            continue
        if words[-1] in not_measures or words[0] in not_measures and len(words) == 1:
            continue
        result.append(col)
    return result


def date_columns(meta: TableMeta) -> list[ColumnMeta]:
    """Date/timestamp columns, business dates first, audit timestamps after, soft-delete markers never."""
    vocabulary = get_vocabulary()
    cols = [c for c in meta.columns if is_date(c) and c.name not in vocabulary.soft_delete]
    return sorted(cols, key=lambda c: (c.name.lower() in vocabulary.audit_time, c.ordinal))


def soft_delete_column(meta: TableMeta) -> str | None:
    markers = get_vocabulary().soft_delete
    return next((c.name for c in meta.columns if c.name in markers), None)


def label_column(meta: TableMeta, enums: dict[str, list[str]] | None = None) -> ColumnMeta | None:
    """The column that names a row: `name`/`*_name`, else a title-like text column, else an enum column."""
    text_cols = [c for c in meta.columns if is_text(c) and c.name not in meta.primary_key and not is_audit_user(c.name)]
    for predicate in (
        lambda c: c.name.lower() == "name",
        lambda c: split_words(c.name)[-1:] == ["name"],
        lambda c: split_words(c.name)[-1:] in (["title"], ["label"]),
        lambda c: c.name in (enums or {}),
    ):
        found = [c for c in text_cols if predicate(c)]
        if found:
            return found[0]
    return None


def enum_candidates(meta: TableMeta, samples: list[dict]) -> list[str]:
    """Enum types, enum-like names, and text columns with few distinct values in the samples."""
    enum_words = get_vocabulary().enum_words
    keys = set(meta.primary_key) | fk_columns(meta)
    found = []
    for col in meta.columns:
        if col.name in keys or is_date(col) or is_audit_user(col.name):
            continue
        words = split_words(col.name)
        if col.type_kind == "enum" or (words and words[-1] in enum_words):
            found.append(col.name)
            continue
        if not is_text(col) or (words and words[-1] in _NOT_ENUM_TEXT_WORDS):
            continue
        values = [row.get(col.name) for row in samples if row.get(col.name) not in (None, "")]
        if len(values) >= 4 and len(set(values)) <= min(10, len(values) // 2):
            found.append(col.name)
    return found


def short_label(comment: str, stops: str = _LABEL_STOPS) -> str:
    """The comment up to its first bracket or separator, on one line ("" when nothing is left)."""
    return collapse_whitespace(re.split(f"[{re.escape(stops)}]", comment)[0])


def table_label(doc: TableDoc) -> str:
    """How questions and themes call a table: its comment's short name, else its name."""
    comment = doc.table_comment or doc.meta.comment
    if comment:
        return short_label(comment, _LABEL_STOPS + "。") or doc.meta.ref.name
    return doc.meta.ref.name
