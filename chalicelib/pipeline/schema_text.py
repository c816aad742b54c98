"""The tables as the domain and the providers name and describe them: finding a table by a written name, a
theme's tables, and the compact DDL-like schema text shown to a language model."""
from __future__ import annotations

import re

from chalicelib.pipeline.models import TableDoc, TableRef, Theme, quote_ident


def _unquote(part: str) -> str:
    """`"we""ird"` -> `we"ird` (a quoted identifier as PostgreSQL reads it); other text as it is."""
    if len(part) >= 2 and part[0] == part[-1] == '"':
        return part[1:-1].replace('""', '"')
    return part.strip('"')


def find_doc(name: str, docs: list[TableDoc]) -> TableDoc | None:
    """The doc a (possibly quoted, possibly schema-less) table name refers to, or None."""
    cleaned = name.strip().strip(";").strip()
    parts = [_unquote(p.strip()) for p in re.split(r'\.(?=(?:[^"]*"[^"]*")*[^"]*$)', cleaned)]
    if len(parts) == 2:
        schema, table = parts
        exact = [d for d in docs if d.meta.ref.schema == schema and d.meta.ref.name == table]
        if exact:
            return exact[0]
        lowered = [d for d in docs if d.meta.ref.schema.lower() == schema.lower()
                   and d.meta.ref.name.lower() == table.lower()]
        return lowered[0] if len(lowered) == 1 else None
    if len(parts) != 1 or not parts[0]:
        return None
    table = parts[0]
    for candidates in (
        [d for d in docs if d.meta.ref.name == table and d.meta.ref.schema == "public"],
        [d for d in docs if d.meta.ref.name == table],
        [d for d in docs if d.meta.ref.name.lower() == table.lower()],
    ):
        if len(candidates) == 1:
            return candidates[0]
    return None


def select_theme_docs(theme: Theme, docs: list[TableDoc]) -> list[TableDoc]:
    """The docs of a theme's tables (in the theme's order); all docs when none of its tables is known."""
    chosen: list[TableDoc] = []
    for name in theme.related_tables:
        doc = find_doc(name, docs)
        if doc is not None and doc not in chosen:
            chosen.append(doc)
    return chosen or list(docs)


VALUES_SHOWN = 3  # of a column's profiled values (TableDoc.column_values), in the schema text
VALUE_CHARS = 24  # each cut to this many characters
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d)[ T]\d\d:\d\d")


def _literal(value: str) -> str:
    text = value if len(value) <= VALUE_CHARS else value[:VALUE_CHARS - 1] + "…"
    return "'" + text.replace("'", "''") + "'"


def _day(value: str) -> str:
    """A timestamp's date (`2023-04-02 02:03:00` -> `2023-04-02`): the range of a timestamp column by day."""
    match = _TIMESTAMP.match(value)
    return match.group(1) if match else value


def render_schema_text(docs: list[TableDoc]) -> str:
    """Compact DDL-like text of the tables: columns, types, comments, enum values, a few real values (`e.g. 'x'`)
    and the data's range (`range: min .. max`) where profiled, keys."""
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
            elif doc.column_values.get(col.name):
                shown = doc.column_values[col.name][:VALUES_SHOWN]
                if any(len(v) > VALUE_CHARS for v in shown):  # free text, not categories: one is enough
                    shown = shown[:1]
                notes.append("e.g. " + ", ".join(_literal(v) for v in shown))
            if doc.value_ranges.get(col.name):
                low, high = (_day(v) for v in doc.value_ranges[col.name][:2])
                notes.append(f"range: {low} .. {high}")
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
