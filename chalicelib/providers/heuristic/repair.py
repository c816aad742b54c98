"""Mechanical SQL repair of the heuristic provider: a misspelt column or table named by PostgreSQL's error is
replaced with the closest real name (difflib), a missing ';' added. What it cannot fix it leaves alone."""
from __future__ import annotations

import difflib
import re

from chalicelib.pipeline.models import RepairRequest, TableDoc, quote_ident
from chalicelib.pipeline.text import collapse_whitespace, is_select_sql

_MISSING_COLUMN = re.compile(r'column "?(?:(?P<qual>[\w$]+)\.)?(?P<name>[^"\s]+)"? does not exist', re.I)
_MISSING_TABLE = re.compile(r'relation "(?P<name>[^"]+)" does not exist', re.I)


def _closest(name: str, candidates: list[str]) -> str | None:
    exact = [c for c in candidates if c.lower() == name.lower()]
    if exact:
        return exact[0]
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not match:
        match = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=1, cutoff=0.6)
        if match:
            return next(c for c in candidates if c.lower() == match[0])
        return None
    return match[0]


def _tables_in_sql(sql: str, docs: list[TableDoc]) -> list[TableDoc]:
    lowered = sql.lower()
    found = [d for d in docs if re.search(rf"(?<![\w$]){re.escape(d.meta.ref.name.lower())}(?![\w$])", lowered)]
    return found or docs


def _replace_identifier(sql: str, old: str, new: str, qualifier: str | None = None) -> str:
    """Replace an identifier (bare or double-quoted; after `qualifier.` when given) with the real, quoted name."""
    head = f"{qualifier}." if qualifier else ""
    prefix = rf'(?:{re.escape(qualifier)}|"{re.escape(qualifier)}")\.' if qualifier else r"(?<![\w$])"
    pattern = re.compile(rf'{prefix}(?:"{re.escape(old)}"|{re.escape(old)})(?![\w$"])')
    return pattern.sub(lambda _m: head + quote_ident(new), sql)


def _repair_one(sql: str, error: str, docs: list[TableDoc]) -> str | None:
    fixed = collapse_whitespace(sql)
    column = _MISSING_COLUMN.search(error or "")
    if column:
        name, qual = column.group("name"), column.group("qual")
        candidates = sorted({c.name for d in _tables_in_sql(fixed, docs) for c in d.meta.columns})
        best = _closest(name, candidates)
        if best is None:
            return None
        fixed = _replace_identifier(fixed, name, best, qual)
    table = _MISSING_TABLE.search(error or "")
    if table:
        missing = table.group("name")
        names = {d.meta.ref.name: d for d in docs}
        qualifier, _, bare = missing.rpartition(".")
        best = _closest(bare, sorted(names))
        if best is None:
            return None
        fixed = _replace_identifier(fixed, bare, best, qualifier or None)
    fixed = fixed.rstrip().rstrip(";").rstrip() + ";"
    return fixed


def repair_mechanically(requests: list[RepairRequest], docs: list[TableDoc]) -> dict[int, str]:
    """index -> repaired SQL for the requests it could fix (a SELECT/WITH that differs from the original)."""
    repairs: dict[int, str] = {}
    for request in requests:
        fixed = _repair_one(request.sql, request.error, docs)
        if fixed and fixed != request.sql and is_select_sql(fixed):
            repairs[request.index] = fixed
    return repairs
