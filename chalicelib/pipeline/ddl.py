"""ddl_generation for one table: sample rows, merge comments, confirm enums, render `.ddl` and `_detail.md`."""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from decimal import Decimal
from typing import Any, Protocol

import psycopg2
from psycopg2 import sql

from chalicelib.pipeline.models import CommentSuggestion, TableDoc, TableMeta, quote_ident

logger = logging.getLogger(__name__)

MAX_VALUE_CHARS = 100
# Tables estimated above this many rows are sampled with TABLESAMPLE and enum checks read a bounded prefix.
LARGE_TABLE_ROWS = 100_000
ENUM_SCAN_ROWS = 200_000
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
# Types whose values have no equality or are not meaningful as categories.
_NO_ENUM_TYPES = {"json", "xml", "bytea", "point", "polygon", "line", "lseg", "box", "path", "circle", "tsvector",
                  "vector", "jsonb"}


class CommentSuggester(Protocol):
    """The part of the LLM provider protocol (chalicelib.providers.llm.LLMProvider) this module uses."""

    def suggest_table_comments(
        self, meta: TableMeta, samples: list[dict], business_context: str
    ) -> CommentSuggestion: ...


# --------------------------------------------------------------------------------------------- values


def render_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str | None:
    """A database value as display text (None stays None), cut to `limit` characters."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        text = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    elif isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, bytes | bytearray | memoryview):
        text = f"<{len(bytes(value))} bytes>"
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _read(conn: psycopg2.extensions.connection, query: sql.Composable, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _select_list(meta: TableMeta) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c.name) for c in meta.columns)


# --------------------------------------------------------------------------------------------- sampling


def sample_rows(conn: psycopg2.extensions.connection, meta: TableMeta, limit: int) -> list[dict]:
    """Up to `limit` rows, values rendered as strings (None kept). Big tables are sampled with TABLESAMPLE."""
    if limit <= 0 or not meta.columns:
        return []
    table = sql.SQL(meta.ref.sql_name)
    rows: list[tuple] = []
    if meta.row_count > LARGE_TABLE_ROWS and meta.kind in ("table", "partitioned"):
        percent = min(100.0, max(0.01, limit * 20 * 100.0 / meta.row_count))
        try:
            rows = _read(conn, sql.SQL("select {} from {} tablesample system ({}) limit %s").format(
                _select_list(meta), table, sql.Literal(percent)), (limit,))
        except psycopg2.Error as exc:
            if not conn.autocommit:
                conn.rollback()
            logger.info("tablesample failed, using a plain limit", extra={"table": meta.ref.display_name,
                                                                          "error": str(exc).strip()})
            rows = []
    if len(rows) < limit:
        rows = _read(conn, sql.SQL("select {} from {} limit %s").format(_select_list(meta), table), (limit,))
    names = [c.name for c in meta.columns]
    return [{name: render_value(v) for name, v in zip(names, row, strict=True)} for row in rows]


# --------------------------------------------------------------------------------------------- enums


def confirm_enums(
    conn: psycopg2.extensions.connection, meta: TableMeta, candidates: list[str], max_distinct: int
) -> dict[str, list[str]]:
    """Candidate columns that really hold at most `max_distinct` distinct non-null values, with those values.

    Big tables are checked on a bounded prefix of rows, never with a full scan.
    """
    confirmed: dict[str, list[str]] = {}
    table = sql.SQL(meta.ref.sql_name)
    for name in dict.fromkeys(candidates):
        col = meta.column(name)
        if col is None or col.udt_name.lstrip("_") in _NO_ENUM_TYPES or col.type_kind == "array":
            continue
        ident = sql.Identifier(name)
        if meta.row_count > ENUM_SCAN_ROWS or not meta.row_count_exact:
            source = sql.SQL("(select {} from {} limit {}) s").format(ident, table, sql.Literal(ENUM_SCAN_ROWS))
        else:
            source = table
        query = sql.SQL("select distinct {} from {} where {} is not null order by 1 limit %s").format(
            ident, source, ident)
        try:
            values = [row[0] for row in _read(conn, query, (max_distinct + 1,))]
        except psycopg2.Error as exc:
            if not conn.autocommit:
                conn.rollback()
            logger.warning("enum check failed", extra={"table": meta.ref.display_name, "column": name,
                                                       "error": str(exc).strip()})
            continue
        if not values or len(values) > max_distinct:
            continue
        confirmed[name] = [render_value(v) or "" for v in values]
    return confirmed


# --------------------------------------------------------------------------------------------- merge


def _match_columns(meta: TableMeta, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map suggested names to real column names (exact first, then case-insensitive); return unknown ones."""
    exact = {c.name for c in meta.columns}
    folded: dict[str, str] = {}
    for c in meta.columns:
        folded.setdefault(c.name.casefold(), c.name)
    matched: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        key = str(name).strip().strip('"')
        if key in exact:
            matched[name] = key
        elif key.casefold() in folded:
            matched[name] = folded[key.casefold()]
        else:
            unknown.append(str(name))
    return matched, unknown


def merge_comments(meta: TableMeta, suggestion: CommentSuggestion) -> tuple[str | None, dict[str, str],
                                                                            dict[str, str], list[str]]:
    """(table_comment, column_comments, comment_sources, enum candidates): database comments win."""
    sources: dict[str, str] = {}
    table_comment = meta.comment
    if table_comment:
        sources[""] = "db"
    elif isinstance(suggestion.table_comment, str) and suggestion.table_comment.strip():
        table_comment = _one_line(suggestion.table_comment)
        sources[""] = "llm"

    suggested = {k: v for k, v in (suggestion.column_comments or {}).items()
                 if isinstance(v, str) and v.strip()}
    matched, unknown = _match_columns(meta, list(suggested))
    if unknown:
        logger.warning("LLM commented columns that do not exist; dropped",
                       extra={"table": meta.ref.display_name, "columns": unknown})
    from_llm: dict[str, str] = {}
    for key, column in matched.items():
        # An exact-name suggestion beats a case-insensitive one for the same column.
        if column not in from_llm or key == column:
            from_llm[column] = _one_line(suggested[key])

    comments: dict[str, str] = {}
    for col in meta.columns:
        if col.comment:
            comments[col.name] = col.comment
            sources[col.name] = "db"
        elif col.name in from_llm:
            comments[col.name] = from_llm[col.name]
            sources[col.name] = "llm"

    enum_matched, enum_unknown = _match_columns(meta, [str(c) for c in (suggestion.enum_candidates or [])])
    if enum_unknown:
        logger.warning("LLM named enum columns that do not exist; dropped",
                       extra={"table": meta.ref.display_name, "columns": enum_unknown})
    candidates = list(dict.fromkeys(enum_matched.values()))
    return table_comment, comments, sources, candidates


def build_table_doc(
    conn: psycopg2.extensions.connection | None,
    meta: TableMeta,
    llm: CommentSuggester,
    business_context: str,
    *,
    sample_limit: int = 20,
    enum_max_distinct: int = 20,
    lease: Callable[[], AbstractContextManager[psycopg2.extensions.connection]] | None = None,
) -> TableDoc:
    """Samples + one LLM call + enum confirmation for one table. PostgreSQL enum columns need no confirming.

    `lease`, when given, lends a connection for each database phase (the samples before the LLM call, the
    enum confirmation after it), so that no connection is held while the model answers; else `conn` serves
    throughout."""
    use = lease or (lambda: nullcontext(conn))
    with use() as phase_conn:
        samples = sample_rows(phase_conn, meta, sample_limit)
    suggestion = llm.suggest_table_comments(meta, samples, business_context or "")
    table_comment, comments, sources, candidates = merge_comments(meta, suggestion)
    enums: dict[str, list[str]] = {}
    for col in meta.columns:
        if col.type_kind == "enum" and col.enum_values:
            enums[col.name] = list(col.enum_values)
    to_check = [c for c in candidates if c not in enums]
    if to_check:
        with use() as phase_conn:
            enums.update(confirm_enums(phase_conn, meta, to_check, enum_max_distinct))
    # Keep the table's column order.
    enums = {c.name: enums[c.name] for c in meta.columns if c.name in enums}
    return TableDoc(
        meta=meta,
        table_comment=table_comment,
        column_comments=comments,
        comment_sources=sources,
        enums=enums,
        samples=samples,
    )


# --------------------------------------------------------------------------------------------- rendering

_SHORT_TYPES = [
    (re.compile(r"^character varying"), "varchar"),
    (re.compile(r"^character(?=\(|$|\[)"), "char"),
    (re.compile(r"^timestamp(\(\d+\))? without time zone"), r"timestamp\1"),
    (re.compile(r"^timestamp(\(\d+\))? with time zone"), r"timestamptz\1"),
    (re.compile(r"^time(\(\d+\))? without time zone"), r"time\1"),
    (re.compile(r"^time(\(\d+\))? with time zone"), r"timetz\1"),
]
_SERIAL = {"integer": "serial", "bigint": "bigserial", "smallint": "smallserial"}


def short_type(data_type: str) -> str:
    """format_type() output in the short spelling people write (`character varying(32)` -> `varchar(32)`)."""
    for pattern, repl in _SHORT_TYPES:
        data_type = pattern.sub(repl, data_type)
    return data_type


def is_chinese(*texts: str | None) -> bool:
    """True when any text contains CJK characters (the output language follows the business context)."""
    return any(t and _CJK.search(t) for t in texts)


def _doc_is_chinese(doc: TableDoc, business_context: str | None) -> bool:
    if business_context is not None and business_context.strip():
        return is_chinese(business_context)
    return is_chinese(doc.table_comment, *doc.column_comments.values())


def _column_type_and_default(col) -> tuple[str, str | None]:
    """Type and default as written in DDL. `nextval(...)` defaults become serial types (no sequence needed)."""
    if col.default and col.default.startswith("nextval(") and col.data_type in _SERIAL:
        return _SERIAL[col.data_type], None
    return short_type(col.data_type), col.default


def _fk_text(fk, chinese: bool) -> str:
    cols = ", ".join(fk.columns)
    target = f"{fk.ref_schema}.{fk.ref_table}({', '.join(fk.ref_columns)})"
    return f"{cols} 关联 {target}" if chinese else f"{cols} references {target}"


_DESCRIBE_LABELS = {
    True: {"table": "{} 表", "context": "{}（{}）", "pk": "主键 {}", "fk": "外键 {}", "fk_sep": "；",
           "enums": "枚举字段 {}", "enum_sep": "、", "rows_exact": "共 {} 行", "rows_est": "约 {} 行",
           "sep": "，", "end": "。"},
    False: {"table": "Table {}", "context": "{} ({})", "pk": "primary key {}", "fk": "foreign keys {}",
            "fk_sep": "; ", "enums": "enum columns {}", "enum_sep": ", ", "rows_exact": "{} rows",
            "rows_est": "about {} rows", "sep": "; ", "end": "."},
}


def describe_table(doc: TableDoc, business_context: str | None = None) -> str:
    """One-line description: the table comment plus keys, relations, enum columns and size."""
    chinese = _doc_is_chinese(doc, business_context)
    labels = _DESCRIBE_LABELS[chinese]
    meta = doc.meta
    context = _one_line(business_context)
    lead = _one_line(doc.table_comment) or labels["table"].format(meta.ref.name)
    parts = [labels["context"].format(lead, context) if context else lead]
    if meta.primary_key:
        parts.append(labels["pk"].format(", ".join(meta.primary_key)))
    if meta.foreign_keys:
        parts.append(labels["fk"].format(labels["fk_sep"].join(_fk_text(fk, chinese) for fk in meta.foreign_keys)))
    if doc.enums:
        parts.append(labels["enums"].format(labels["enum_sep"].join(doc.enums)))
    parts.append(labels["rows_exact" if meta.row_count_exact else "rows_est"].format(meta.row_count))
    return labels["sep"].join(parts) + labels["end"]


def _column_note(doc: TableDoc, name: str, chinese: bool) -> str:
    comment = _one_line(doc.column_comments.get(name))
    values = doc.enums.get(name)
    if values:
        joined = ("、" if chinese else ", ").join(_one_line(v) for v in values)
        extra = f"可选值：{joined}" if chinese else f"values: {joined}"
        comment = f"{comment}，{extra}" if comment and chinese else f"{comment}; {extra}" if comment else extra
    return comment


def render_ddl(doc: TableDoc, business_context: str | None = None) -> str:
    """Header comment lines and a `create table` PostgreSQL can execute as written.

    Foreign keys are listed in the header, not emitted as constraints (the referenced table may not exist where
    the DDL is replayed). The header language follows `business_context` (or the comments when it is not given).
    """
    chinese = _doc_is_chinese(doc, business_context)
    meta = doc.meta
    name_label, desc_label = ("中文名", "描述") if chinese else ("Name", "Description")
    lines = [
        f"-- {name_label}: {_one_line(doc.table_comment) or meta.ref.name}",
        f"-- {desc_label}: {describe_table(doc, business_context)}",
    ]
    for fk in meta.foreign_keys:
        lines.append(f"-- {'外键' if chinese else 'Foreign key'}: {_fk_text(fk, chinese)}")
    lines.append(f"create table {meta.ref.sql_name} (")
    body: list[tuple[str, str]] = []
    for col in meta.columns:
        col_type, default = _column_type_and_default(col)
        text = f"  {quote_ident(col.name)} {col_type}"
        if not col.nullable:
            text += " not null"
        if default is not None:
            text += f" default {default}"
        body.append((text, _column_note(doc, col.name, chinese)))
    if meta.primary_key:
        body.append((f"  primary key ({', '.join(quote_ident(c) for c in meta.primary_key)})", ""))
    for i, (text, note) in enumerate(body):
        comma = "," if i < len(body) - 1 else ""
        lines.append(f"{text}{comma}  -- {note}" if note else f"{text}{comma}")
    lines.append(");")
    return "\n".join(lines) + "\n"


def _md_examples(doc: TableDoc, name: str, count: int = 2) -> list[str]:
    seen: list[str] = []
    for row in doc.samples:
        value = row.get(name)
        if value is None:
            continue
        text = _one_line(str(value))
        if len(text) > 30:
            text = text[:29] + "…"
        if text and text not in seen:
            seen.append(text)
        if len(seen) >= count:
            break
    return seen


def render_md(doc: TableDoc, business_context: str | None = None) -> str:
    """The `{table}_detail.md` data dictionary (SPEC §4): heading, description, field list, notes."""
    chinese = _doc_is_chinese(doc, business_context)
    meta = doc.meta
    title = meta.ref.name if meta.ref.schema == "public" else meta.ref.display_name
    comment = _one_line(doc.table_comment)
    if chinese:
        heading = f"## {title}（{comment}）" if comment else f"## {title}"
    else:
        heading = f"## {title} ({comment})" if comment else f"## {title}"
    lines = [heading, describe_table(doc, business_context), "", "字段列表：" if chinese else "Fields:"]
    for col in meta.columns:
        col_type, _ = _column_type_and_default(col)
        line = f"- {col.name} ({col_type})"
        note = _one_line(doc.column_comments.get(col.name))
        if note:
            line += f" - {note}"
        flags = []
        if col.is_primary_key:
            flags.append("主键" if chinese else "primary key")
        if not col.nullable:
            flags.append("非空" if chinese else "not null")
        if flags:
            line += f" [{', '.join(flags)}]"
        examples = _md_examples(doc, col.name)
        if examples:
            line += f" [{'示例' if chinese else 'examples'}: {', '.join(examples)}]"
        lines.append(line)
    notes: list[str] = []
    if meta.primary_key:
        notes.append(f"- {'主键' if chinese else 'Primary key'}: {', '.join(meta.primary_key)}")
    for fk in meta.foreign_keys:
        notes.append(f"- {'外键' if chinese else 'Foreign key'}: {_fk_text(fk, chinese)}")
    for name, values in doc.enums.items():
        if chinese:
            notes.append(f"- {name} 为枚举字段，可选值：{'、'.join(_one_line(v) for v in values)}")
        else:
            notes.append(f"- {name} is an enum column, values: {', '.join(_one_line(v) for v in values)}")
    if notes:
        lines += ["", "字段补充说明：" if chinese else "Notes:", *notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- API views


def _base_type(col) -> str:
    """Type name without length/precision (`varchar`, `numeric`, `integer[]`)."""
    col_type, _ = _column_type_and_default(col)
    return re.sub(r"\(\d+(,\d+)?\)", "", col_type)


def table_info(doc: TableDoc) -> dict[str, Any]:
    """`table_info` of POST /database/table/ddl (SPEC §3.4)."""
    meta = doc.meta
    return {
        "table_name": meta.ref.name,
        "schema_name": meta.ref.schema,
        "full_name": meta.ref.display_name,
        "comment": doc.table_comment,
        "field_count": len(meta.columns),
        "row_count": meta.row_count,
    }


def fields(doc: TableDoc) -> list[dict[str, Any]]:
    """`fields` of POST /database/table/ddl (SPEC §3.4)."""
    return [
        {
            "column_name": col.name,
            "data_type": _base_type(col),
            "max_length": col.max_length,
            "is_nullable": col.nullable,
            "is_primary_key": col.is_primary_key,
            "comment": doc.column_comments.get(col.name),
        }
        for col in doc.meta.columns
    ]
