"""Parse and validate table lists (uploaded `.txt` files or JSON lists) into `TableName`s.

Double-quoted parts are kept exactly (`""` escapes a quote); unquoted parts are what PostgreSQL's lexer reads
as one identifier (letters, digits, `_`, `$` and any non-ASCII character: `public.服务区`) and remember that they
were unquoted, so that resolution (chalicelib.pipeline.names) can match the catalog
exactly first and by PostgreSQL's folding second. At most 63 bytes per part.
"""
from __future__ import annotations

import re

from chalicelib.errors import InvalidTableName, ValidationError
from chalicelib.pipeline.models import TableRef
from chalicelib.pipeline.names import DEFAULT_SCHEMA, TableName

# At most this many tables per list: the size a complete run is measured to finish locally under AWS's quotas
# (benchmarks/bench_wide_run.py). Nothing in the state machine grows with it (the fan-outs are Distributed Maps
# over S3 manifests); what does is linear: the plan's introspection (1,000 names per round) and the S3 files.
MAX_TABLES = 10_000
MAX_IDENT_BYTES = 63

# PostgreSQL's identifier characters (scan.l: ident_start/ident_cont, every non-ASCII character included); a
# leading digit is accepted too: `public.2019` then must match the catalog exactly (chalicelib.pipeline.names).
_UNQUOTED = re.compile(r"[A-Za-z0-9_$\u0080-\U0010ffff]+")


class _EntryError(Exception):
    """Why one entry is not a valid table name (wrapped into InvalidTableName with its position)."""


def _parse_part(text: str, pos: int) -> tuple[str, bool, int]:
    """Read one identifier starting at `pos`; return (name, quoted, position after it)."""
    if pos >= len(text):
        raise _EntryError("a name part is empty")
    if text[pos] == '"':
        out: list[str] = []
        i = pos + 1
        while True:
            if i >= len(text):
                raise _EntryError("unterminated quoted identifier")
            ch = text[i]
            if ch == '"':
                if i + 1 < len(text) and text[i + 1] == '"':
                    out.append('"')
                    i += 2
                    continue
                i += 1
                break
            out.append(ch)
            i += 1
        name = "".join(out)
        if not name:
            raise _EntryError("a quoted identifier is empty")
        if "\x00" in name:
            raise _EntryError("identifiers cannot contain NUL characters")
        quoted = True
    else:
        match = _UNQUOTED.match(text, pos)
        if not match:
            bad = text[pos]
            raise _EntryError(
                f"unexpected character {bad!r}; unquoted names contain only letters, digits, _ and $ "
                "(quote other names with double quotes, e.g. \"Order Lines\")"
            )
        name = match.group(0)
        quoted = False
        i = match.end()
    if len(name.encode("utf-8")) > MAX_IDENT_BYTES:
        raise _EntryError(f"identifier {name!r} is longer than {MAX_IDENT_BYTES} bytes")
    return name, quoted, i


def parse_table_name(entry: str) -> TableName:
    """One `schema.table`, bare `table` (schema public) or quoted name. Raises InvalidTableName."""
    try:
        return _parse_entry(entry.strip())
    except _EntryError as exc:
        raise InvalidTableName(f"invalid table name {entry.strip()!r}: {exc}") from None


def _parse_entry(text: str) -> TableName:
    if not text:
        raise _EntryError("the name is empty")
    parts: list[tuple[str, bool]] = []
    pos = 0
    while True:
        name, quoted, pos = _parse_part(text, pos)
        parts.append((name, quoted))
        if pos == len(text):
            break
        if text[pos] != ".":
            raise _EntryError(f"unexpected character {text[pos]!r} after {name!r}")
        pos += 1
    if len(parts) > 2:
        raise _EntryError("expected `schema.table` or `table` (database-qualified names are not supported)")
    if len(parts) == 1:
        return TableName.parsed(DEFAULT_SCHEMA, True, *parts[0])
    return TableName.parsed(*parts[0], *parts[1])


def _split_line(line: str) -> list[str]:
    """Split a line at commas outside double quotes and drop a trailing `#` / `--` comment."""
    entries: list[str] = []
    current: list[str] = []
    in_quotes = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == '"':
            in_quotes = not in_quotes  # a doubled "" toggles twice, which is what we want
        elif not in_quotes and (ch == "#" or line.startswith("--", i)):
            break
        elif not in_quotes and ch == ",":
            entries.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    entries.append("".join(current))
    return [e.strip() for e in entries if e.strip()]


def _dedupe(refs: list[TableName]) -> list[TableName]:
    seen: set[TableName] = set()
    out = []
    for ref in refs:
        if ref not in seen:
            seen.add(ref)
            out.append(ref)
    if len(out) > MAX_TABLES:
        raise ValidationError(f"the table list names {len(out):,} tables; at most {MAX_TABLES:,} are allowed "
                              "(the largest list a complete run is verified to finish within AWS's quotas)")
    return out


def parse_table_list(text: str) -> list[TableName]:
    """Tables from a table-list file: one per line or comma-separated; comments and blank lines ignored.

    Returns them in order, duplicates removed. An empty list is returned as is (the caller decides).
    """
    refs: list[TableName] = []
    for line_no, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        for entry in _split_line(raw):
            try:
                refs.append(_parse_entry(entry))
            except _EntryError as exc:
                raise InvalidTableName(
                    f"invalid table name {entry!r} on line {line_no}: {exc}",
                    invalid_params=["table_list_file"],
                ) from None
    return _dedupe(refs)


def parse_table_names(names: list[str]) -> list[TableName]:
    """Tables from a JSON list (`table_names`): same rules, one name per item; blank items ignored."""
    refs: list[TableName] = []
    for index, name in enumerate(names, start=1):
        if not isinstance(name, str):
            raise InvalidTableName(f"table name #{index} must be a string, got {type(name).__name__}",
                                   invalid_params=["table_names"])
        entry = name.strip()
        if not entry or entry.startswith("#") or entry.startswith("--"):
            continue
        try:
            refs.append(_parse_entry(entry))
        except _EntryError as exc:
            raise InvalidTableName(f"invalid table name {entry!r} (item {index}): {exc}",
                                   invalid_params=["table_names"]) from None
    return _dedupe(refs)


def render_table_list(refs: list[TableName | TableRef]) -> str:
    """Canonical table-list text, one `schema.table` per line: names as written (a TableRef, a catalog name,
    quoted where PostgreSQL needs it); parsing it gives the same names back."""
    return "".join(f"{ref.sql_name}\n" for ref in refs)
