"""FROZEN BASELINE, not product code: the schema text the prompt builders showed a model before issue #14 item 2
(commit 0ec4b74: chalicelib/pipeline/schema_text.render_schema_text and chalicelib/pipeline/prompt_budget's
lean_doc / _truncated_doc / fit_schema_text, verbatim), for benchmarks/prompts_before.py. Do not edit."""
from __future__ import annotations

from dataclasses import replace

from chalicelib.pipeline.models import TableDoc, TableRef, quote_ident
from chalicelib.pipeline.prompt_budget import estimate_tokens


def render_schema_text(docs: list[TableDoc]) -> str:
    """Compact DDL-like text of the tables: columns, types, comments, enum values, keys."""
    blocks = []
    for doc in docs:
        meta = doc.meta
        head = f"create table {meta.ref.sql_name} ("
        if doc.table_comment or meta.comment:
            head += f"  -- {doc.table_comment or meta.comment}"
        lines = [head]
        for col in meta.columns:
            line = f"  {quote_ident(col.name)} {col.data_type}"  # quoted as SQL over it must write it
            if col.is_primary_key or col.name in meta.primary_key:
                line += " primary key"
            elif not col.nullable:
                line += " not null"
            notes = []
            comment = doc.column_comments.get(col.name) or col.comment
            if comment:
                notes.append(comment)
            values = doc.enums.get(col.name) or col.enum_values
            if values:
                notes.append("values: " + ", ".join(values[:20]))
            if notes:
                line += ",  -- " + "; ".join(notes)
            lines.append(line)
        for fk in meta.relationships:
            lines.append(
                f"  {'-- inferred: ' if fk.inferred else ''}foreign key ({', '.join(map(quote_ident, fk.columns))}) "
                f"references {TableRef(fk.ref_schema, fk.ref_table).sql_name} "
                f"({', '.join(map(quote_ident, fk.ref_columns))})"
            )
        lines.append(");")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def lean_doc(doc: TableDoc) -> TableDoc:
    """The doc without column comments and enum values: column names and types, keys, the table comment."""
    meta = replace(doc.meta, columns=[replace(c, comment=None, enum_values=None) for c in doc.meta.columns])
    return replace(doc, meta=meta, column_comments={}, enums={})


def _truncated_doc(doc: TableDoc, tokens: int) -> TableDoc | None:
    """The lean doc with as many leading columns as fit in `tokens` (None when not even one does)."""
    lean = lean_doc(doc)
    columns = lean.meta.columns
    low, high = 0, len(columns)
    while low < high:  # the most columns that fit
        middle = (low + high + 1) // 2
        candidate = replace(lean, meta=replace(lean.meta, columns=columns[:middle], foreign_keys=[], inferred_keys=[]))
        if estimate_tokens(render_schema_text([candidate])) <= tokens:
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return None
    return replace(lean, meta=replace(lean.meta, columns=columns[:low], foreign_keys=[], inferred_keys=[]))


def fit_schema_text(docs: list[TableDoc], tokens: int) -> tuple[str, list[TableDoc]]:
    """(schema text, docs shown) within `tokens`: the docs in order, each in full while the full text fits, then
    lean (no comments or values), the first one cut to its leading columns if nothing else fits; the rest are
    left out. The caller names the tables left out when it matters."""
    parts: list[str] = []
    shown: list[TableDoc] = []
    used = 0
    separator = estimate_tokens("\n\n")
    for doc in docs:
        room = tokens - used - (separator if parts else 0)
        if room < 16:
            break
        for candidate in (doc, lean_doc(doc)):
            text = render_schema_text([candidate])
            cost = estimate_tokens(text)
            if cost <= room:
                break
        else:
            if shown:
                continue  # a later, smaller table may still fit
            cut = _truncated_doc(doc, room)
            if cut is None:
                continue
            candidate, text = cut, render_schema_text([cut])
            cost = estimate_tokens(text)
        parts.append(text)
        shown.append(doc)
        used += cost + (separator if len(parts) > 1 else 0)
    return "\n\n".join(parts), shown


