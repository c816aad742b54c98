"""Table names as users write them, and how they resolve to catalog relations (one rule for every entry point).

A table list is stored before any database is reachable, so a parsed name keeps how it was written: each part
is either *literal* (written quoted, or written so that PostgreSQL's folding cannot change it) or *folding*
(written unquoted with ASCII upper case: `SalesOrder`). Against the catalog a literal part matches only itself;
a folding part matches itself exactly or its PostgreSQL folding (`salesorder`); when both exist the name is
ambiguous and resolution says so, naming both. Unquoted parts PostgreSQL itself would reject (`public.2019`)
are literal: they resolve when the catalog has exactly that name. The SQL that applies the rule to many names
at once is in chalicelib.pipeline.introspect (one statement, whatever the number of names).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chalicelib.pipeline.models import TableRef, quote_ident

DEFAULT_SCHEMA = "public"
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# What PostgreSQL accepts unquoted (its lexer: a letter, `_` or any non-ASCII character first).
_PG_UNQUOTED = re.compile(r"^[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*$")


def fold_identifier(text: str) -> str:
    """PostgreSQL's folding of an unquoted identifier: ASCII letters to lower case, nothing else changed."""
    return text.translate(_ASCII_UPPER)


def folds(text: str, quoted: bool) -> bool:
    """Whether a part written this way may also mean its folded form (unquoted, valid unquoted, has A-Z)."""
    return not quoted and bool(_PG_UNQUOTED.match(text)) and fold_identifier(text) != text


@dataclass(frozen=True)
class TableName:
    """A `schema.table` as written in a table list or a request: the parts (quotes removed, `""` unescaped) and,
    per part, whether PostgreSQL's folding may apply. Resolved against a catalog it becomes a TableRef."""

    schema: str
    name: str
    fold_schema: bool = False
    fold_name: bool = False

    @classmethod
    def parsed(cls, schema: str, schema_quoted: bool, name: str, name_quoted: bool) -> TableName:
        return cls(schema, name, folds(schema, schema_quoted), folds(name, name_quoted))

    @classmethod
    def exact(cls, ref: TableRef) -> TableName:
        """The name that resolves to exactly `ref` (both parts literal)."""
        return cls(ref.schema, ref.name)

    @property
    def text(self) -> str:
        """Canonical spelling, faithful to what was written: a folding part as written (`SalesOrder`), a literal
        part quoted where PostgreSQL needs it (`"SalesOrder"`, `"2019"`, `bss_company`). Parsing it again gives
        this same name."""
        return f"{_render_part(self.schema, self.fold_schema)}.{_render_part(self.name, self.fold_name)}"

    # TableRef's spelling, for callers that handle both (table-list views, logs).
    sql_name = text
    display_name = text

    def schema_candidates(self) -> list[str | None]:
        """[exact, folded or None]: the catalog spellings this schema part may stand for."""
        return [self.schema, fold_identifier(self.schema) if self.fold_schema else None]

    def name_candidates(self) -> list[str | None]:
        return [self.name, fold_identifier(self.name) if self.fold_name else None]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "name": self.name, "fold_schema": self.fold_schema,
                "fold_name": self.fold_name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableName:
        return cls(data["schema"], data["name"], bool(data.get("fold_schema")), bool(data.get("fold_name")))


def _render_part(text: str, folding: bool) -> str:
    return text if folding else quote_ident(text)


def as_table_name(item: TableName | TableRef) -> TableName:
    """A TableRef (a catalog name already) stands for itself, literally."""
    return item if isinstance(item, TableName) else TableName.exact(item)


class TableProblem(str):
    """Why a name did not resolve (a str: it is logged and stored as its message); `kind` is one of
    "missing", "ambiguous" or "forbidden", so the API can answer 404, 400 or 403-like accordingly."""

    kind: str

    def __new__(cls, message: str, kind: str) -> TableProblem:
        problem = super().__new__(cls, message)
        problem.kind = kind
        return problem


def _join_names(refs: list[TableRef]) -> str:
    names = [ref.sql_name for ref in refs]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def ambiguous_problem(written: TableName, matches: list[TableRef]) -> TableProblem:
    return TableProblem(
        f"table name {written.text} is ambiguous: it matches {_join_names(matches)}; "
        f"quote the name to choose one (e.g. {matches[0].sql_name})", "ambiguous")


def missing_problem(written: TableName, schema_exists: bool, similar: list[TableRef]) -> TableProblem:
    message = f"table {written.text} does not exist"
    if not schema_exists:
        message += f" (schema {_render_part(written.schema, written.fold_schema)} not found)"
    if similar:
        message += f"; names differing only in case: {_join_names(similar)}"
    return TableProblem(message, "missing")


def forbidden_problem(ref: TableRef) -> TableProblem:
    return TableProblem(f"permission denied: cannot read table {ref.sql_name}", "forbidden")
