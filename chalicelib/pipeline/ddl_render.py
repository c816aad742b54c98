"""Render a TableDoc: the `.ddl` file (SQL PostgreSQL executes as written), the `_detail.md` data dictionary and
the views of POST /database/table/ddl. Every identifier is quoted where PostgreSQL needs it."""
from __future__ import annotations

import re
from typing import Any

from chalicelib.pipeline.models import ColumnMeta, ForeignKey, TableDoc, TableRef, quote_ident
from chalicelib.pipeline.text import collapse_whitespace

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_SHORT_TYPES = [
    (re.compile(r"^character varying"), "varchar"),
    (re.compile(r"^character(?=\(|$|\[)"), "char"),
    (re.compile(r"^timestamp(\(\d+\))? without time zone"), r"timestamp\1"),
    (re.compile(r"^timestamp(\(\d+\))? with time zone"), r"timestamptz\1"),
    (re.compile(r"^time(\(\d+\))? without time zone"), r"time\1"),
    (re.compile(r"^time(\(\d+\))? with time zone"), r"timetz\1"),
]
_SERIAL = {"integer": "serial", "bigint": "bigserial", "smallint": "smallserial"}
HEADER_ENUM_VALUES = 5  # values of an enum column shown in the DDL header (the column note lists them all)


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


def _column_type_and_default(col: ColumnMeta) -> tuple[str, str | None]:
    """Type and default as written in DDL. `nextval(...)` defaults become serial types (no sequence needed)."""
    if col.default and col.default.startswith("nextval(") and col.data_type in _SERIAL:
        return _SERIAL[col.data_type], None
    return short_type(col.data_type), col.default


def _idents(names: list[str]) -> str:
    return ", ".join(quote_ident(n) for n in names)


def _fk_text(fk: ForeignKey, chinese: bool) -> str:
    target = f"{TableRef(fk.ref_schema, fk.ref_table).sql_name}({_idents(fk.ref_columns)})"
    return f"{_idents(fk.columns)} 关联 {target}" if chinese else f"{_idents(fk.columns)} references {target}"


def _table_title(ref: TableRef) -> str:
    """The name in headings: the bare name in public, `schema.name` elsewhere, quoted where needed."""
    return quote_ident(ref.name) if ref.schema == "public" else ref.sql_name


_KIND_LABELS = {True: {"view": "视图", "materialized_view": "物化视图", "foreign": "外部表"},
                False: {"view": "view", "materialized_view": "materialized view", "foreign": "foreign table"}}
_DESCRIBE_LABELS = {
    True: {"table": "{} 表", "context": "{}（{}）", "pk": "主键 {}", "fk": "外键 {}", "fk_sep": "；",
           "enums": "枚举字段 {}", "enum_sep": "、", "rows_exact": "共 {} 行", "rows_est": "约 {} 行",
           "rows_view": "行数未统计（不执行视图）", "sep": "，", "end": "。"},
    False: {"table": "Table {}", "context": "{} ({})", "pk": "primary key {}", "fk": "foreign keys {}",
            "fk_sep": "; ", "enums": "enum columns {}", "enum_sep": ", ", "rows_exact": "{} rows",
            "rows_est": "about {} rows", "rows_view": "row count not computed (the view is not run)",
            "sep": "; ", "end": "."},
}


def describe_table(doc: TableDoc, business_context: str | None = None) -> str:
    """One-line description: the table comment plus its kind, keys, relations, enum columns and size."""
    chinese = _doc_is_chinese(doc, business_context)
    labels = _DESCRIBE_LABELS[chinese]
    meta = doc.meta
    context = collapse_whitespace(business_context)
    kind = _KIND_LABELS[chinese].get(meta.kind)
    if doc.table_comment:
        lead = collapse_whitespace(doc.table_comment)
    elif kind:  # never called a table when it is not one
        lead = f"{_table_title(meta.ref)} {kind}" if chinese else f"{kind.capitalize()} {_table_title(meta.ref)}"
    else:
        lead = labels["table"].format(_table_title(meta.ref))
    parts = [labels["context"].format(lead, context) if context else lead]
    if kind and doc.table_comment:
        parts.append(kind)
    if meta.primary_key:
        parts.append(labels["pk"].format(_idents(meta.primary_key)))
    if meta.foreign_keys:
        parts.append(labels["fk"].format(labels["fk_sep"].join(_fk_text(fk, chinese) for fk in meta.foreign_keys)))
    if doc.enums:
        parts.append(labels["enums"].format(labels["enum_sep"].join(quote_ident(c) for c in doc.enums)))
    if meta.kind == "view" or (meta.kind in ("materialized_view", "foreign") and not meta.row_count_exact):
        parts.append(labels["rows_view"])
    else:
        parts.append(labels["rows_exact" if meta.row_count_exact else "rows_est"].format(meta.row_count))
    return labels["sep"].join(parts) + labels["end"]


def _column_note(doc: TableDoc, name: str, chinese: bool) -> str:
    comment = collapse_whitespace(doc.column_comments.get(name))
    values = doc.enums.get(name)
    if values:
        joined = ("、" if chinese else ", ").join(collapse_whitespace(v) for v in values)
        extra = f"可选值：{joined}" if chinese else f"values: {joined}"
        comment = f"{comment}，{extra}" if comment and chinese else f"{comment}; {extra}" if comment else extra
    return comment


def _with_notes(body: list[tuple[str, str]], last: str) -> list[str]:
    """Body lines joined by commas, each line's note as a trailing `--` comment (after the comma)."""
    lines = []
    for i, (text, note) in enumerate(body):
        comma = "," if i < len(body) - 1 else ""
        lines.append(f"{text}{comma}  -- {note}" if note else f"{text}{comma}")
    lines.append(last)
    return lines


def render_ddl(doc: TableDoc, business_context: str | None = None) -> str:
    """Header comment lines and a statement PostgreSQL can execute as written.

    A table gives a `create table`; foreign keys are listed in the header, not emitted as constraints (the
    referenced table may not exist where the DDL is replayed). A view or materialized view gives a `create view`
    (`create materialized view … with no data`) of its columns with their exact types and no rows, so that it
    replays anywhere; its real definition is in the header. The header language follows `business_context`
    (or the comments when it is not given).
    """
    chinese = _doc_is_chinese(doc, business_context)
    meta = doc.meta
    name_label, desc_label = ("中文名", "描述") if chinese else ("Name", "Description")
    lines = [
        f"-- {name_label}: {collapse_whitespace(doc.table_comment) or _table_title(meta.ref)}",
        f"-- {desc_label}: {describe_table(doc, business_context)}",
    ]
    for fk in meta.foreign_keys:
        lines.append(f"-- {'外键' if chinese else 'Foreign key'}: {_fk_text(fk, chinese)}")
    lines += [f"-- {line}" for line in _retrieval_header(doc, chinese)]
    if meta.is_view:
        return "\n".join(lines + _view_lines(doc, chinese)) + "\n"
    if meta.kind == "foreign":
        lines.append("-- 外部表：以普通表的形式列出其字段" if chinese
                     else "-- Foreign table: its columns, written as an ordinary table")
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
        body.append((f"  primary key ({_idents(meta.primary_key)})", ""))
    return "\n".join(lines + _with_notes(body, ");")) + "\n"


def _inferred_text(fk: ForeignKey, chinese: bool) -> str:
    """An inferred relationship in words, with its evidence: never a constraint."""
    text = _fk_text(fk, chinese)
    evidence = collapse_whitespace(fk.evidence)
    if evidence:
        text += f"（依据：{evidence}）" if chinese else f" (evidence: {evidence})"
    return text


_LABEL_END = re.compile(r"[（(，,；;：:。]")


def _short(comment: str | None) -> str:
    """A comment's short name: up to its first bracket or separator ("状态（1正常 0停用）" -> "状态")."""
    text = collapse_whitespace(comment)
    return collapse_whitespace(_LABEL_END.split(text)[0]) or text


def _business_columns(doc: TableDoc, chinese: bool) -> str:
    """The commented columns by their short business names, in column order, each once; an enum column with
    its first values in brackets (all of them are in the column's own note)."""
    names: list[str] = []
    for col in doc.meta.columns:
        label = _short(doc.column_comments.get(col.name))
        if not label or any(n == label or n.startswith(label + ("（" if chinese else " (")) for n in names):
            continue
        values = [collapse_whitespace(v) for v in doc.enums.get(col.name, [])[:HEADER_ENUM_VALUES]]
        if values:
            label += f"（{'、'.join(values)}）" if chinese else f" ({', '.join(values)})"
        names.append(label)
    return ("、" if chinese else ", ").join(names)


def _retrieval_header(doc: TableDoc, chinese: bool) -> list[str]:
    """What a retriever matches a question against, ahead of the statement (header comments, never constraints):
    the relationships no constraint declares, with their evidence, and the columns by their business names
    with the values of the enum ones. (Measured by benchmarks/bench_retrieval.py: a separate line per enum
    column lowered recall on the English set; the values inside the columns line raised it on both.)"""
    lines = [f"{'推断关联' if chinese else 'Inferred relationship'}: {_inferred_text(fk, chinese)}"
             for fk in doc.meta.inferred_keys]
    columns = _business_columns(doc, chinese)
    if columns:
        lines.append(f"{'字段' if chinese else 'Columns'}: {columns}")
    return lines


def _view_lines(doc: TableDoc, chinese: bool) -> list[str]:
    meta = doc.meta
    materialized = meta.kind == "materialized_view"
    kind = _KIND_LABELS[chinese][meta.kind]
    if chinese:
        lines = [f"-- {kind}：下面的语句只列出它的字段和类型（不含数据）；它的定义是："]
    else:
        lines = [f"-- This is a {kind}: the statement below lists its columns and types (no rows); its definition:"]
    lines += [f"--   {line}" for line in (meta.definition or "").strip().splitlines() if line.strip()]
    lines.append(f"create {'materialized view' if materialized else 'view'} {meta.ref.sql_name} as select")
    body = [(f"  null::{short_type(col.data_type)} as {quote_ident(col.name)}", _column_note(doc, col.name, chinese))
            for col in meta.columns]
    return lines + _with_notes(body, "limit 0 with no data;" if materialized else "limit 0;")


def _md_examples(doc: TableDoc, name: str, count: int = 2) -> list[str]:
    seen: list[str] = []
    for row in doc.samples:
        value = row.get(name)
        if value is None:
            continue
        text = collapse_whitespace(str(value))
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
    title = _table_title(meta.ref)
    comment = collapse_whitespace(doc.table_comment)
    if chinese:
        heading = f"## {title}（{comment}）" if comment else f"## {title}"
    else:
        heading = f"## {title} ({comment})" if comment else f"## {title}"
    lines = [heading, describe_table(doc, business_context), "", "字段列表：" if chinese else "Fields:"]
    for col in meta.columns:
        col_type, _ = _column_type_and_default(col)
        line = f"- {quote_ident(col.name)} ({col_type})"
        note = collapse_whitespace(doc.column_comments.get(col.name))
        if note:
            line += f" - {note}"
        flags = []
        if col.is_primary_key:
            flags.append("主键" if chinese else "primary key")
        if not col.nullable and not meta.is_view:
            flags.append("非空" if chinese else "not null")
        if flags:
            line += f" [{', '.join(flags)}]"
        examples = _md_examples(doc, col.name)
        if examples:
            line += f" [{'示例' if chinese else 'examples'}: {', '.join(examples)}]"
        lines.append(line)
    notes: list[str] = []
    if meta.primary_key:
        notes.append(f"- {'主键' if chinese else 'Primary key'}: {_idents(meta.primary_key)}")
    for fk in meta.foreign_keys:
        notes.append(f"- {'外键' if chinese else 'Foreign key'}: {_fk_text(fk, chinese)}")
    for name, values in doc.enums.items():
        if chinese:
            notes.append(f"- {quote_ident(name)} 为枚举字段，可选值："
                         f"{'、'.join(collapse_whitespace(v) for v in values)}")
        else:
            notes.append(f"- {quote_ident(name)} is an enum column, values: "
                         f"{', '.join(collapse_whitespace(v) for v in values)}")
    if meta.is_view and meta.definition:
        notes.append(f"- {'定义' if chinese else 'Definition'}: `{collapse_whitespace(meta.definition)}`")
    if notes:
        lines += ["", "字段补充说明：" if chinese else "Notes:", *notes]
    if meta.inferred_keys:  # a labelled block, not a heading: the table's section stays one documentation row
        lines += ["", "推断关联（数据库未声明，不是约束）：" if chinese
                  else "Inferred relationships (not declared in the database, not constraints):"]
        lines += [f"- {_inferred_text(fk, chinese)}" for fk in meta.inferred_keys]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- API views


def _base_type(col: ColumnMeta) -> str:
    """Type name without length/precision (`varchar`, `numeric`, `integer[]`)."""
    col_type, _ = _column_type_and_default(col)
    return re.sub(r"\(\d+(,\d+)?\)", "", col_type)


def table_info(doc: TableDoc) -> dict[str, Any]:
    """`table_info` of POST /database/table/ddl (SPEC §3.4); `full_name` is accepted back as `table`."""
    meta = doc.meta
    return {
        "table_name": meta.ref.name,
        "schema_name": meta.ref.schema,
        "full_name": meta.ref.sql_name,
        "table_type": meta.kind,
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
