"""SQL text read by PostgreSQL's own parser and scanner (pglast = libpg_query), never by regexes.

- `check_read_only`: why a string is not exactly one read-only query (None when it is): the gate every
  generated, repaired or edited SQL passes before anything reaches a database.
- `normalize_sql`: one line, comments removed, whitespace between tokens collapsed, one trailing ';'.
- `dedupe_key`: equal keys mean the same query text up to case outside quotes, whitespace and ';'.

The scanner is the server's: a `--` comment ends at `\\n` or `\\r`, `/* */` nests, dollar quotes, `E''` and
`U&''` strings are what PostgreSQL says they are.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pglast import parser
from pglast.parser import ParseError

# Functions with effects outside the query (sleeping, sessions, files, large objects, settings, sequences,
# transaction ids, notifications, remote connections, advisory locks, replication, index maintenance, statistics
# resets) or that run SQL text of their own (query_to_xml, ts_stat). Matched on the function's own name whatever
# schema qualifies it (`pg_catalog.set_config`); PostgreSQL folds unquoted names, the parse tree holds the folded
# form. A user-defined function that writes is not known here: the read-only transaction and a role with only
# SELECT are the backstops for it.
SIDE_EFFECT_FUNCTIONS = frozenset({
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_rotate_logfile_old",
    "pg_stat_file", "pg_logdir_ls", "set_config", "nextval", "setval", "currval", "lastval",
    "txid_current", "txid_current_if_assigned", "pg_current_xact_id", "pg_current_xact_id_if_assigned",
    "pg_export_snapshot", "pg_log_backend_memory_contexts", "pg_switch_wal", "pg_promote",
    "pg_start_backup", "pg_stop_backup", "pg_backup_start", "pg_backup_stop", "pg_notify",
    "pg_import_system_collations", "pg_stat_statements_reset", "pg_truncate_visibility_map",
    "brin_summarize_new_values", "brin_summarize_range", "brin_desummarize_range", "gin_clean_pending_list",
    "ts_stat", "pg_prewarm",
})
SIDE_EFFECT_PREFIXES = (
    "pg_sleep", "lo_", "dblink", "pg_advisory", "pg_try_advisory", "pg_stat_reset", "pg_read_file",
    "pg_read_binary_file", "pg_ls_", "pg_file_", "pg_create_", "pg_drop_replication", "pg_copy_",
    "pg_replication_", "pg_logical_", "pg_wal_replay_", "query_to_xml", "cursor_to_xml", "table_to_xml",
    "schema_to_xml", "database_to_xml",
)
_WRITES = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}
_LOCKS = {"LCS_FORUPDATE": ("FOR UPDATE", "FOR UPDATE"), "LCS_FORNOKEYUPDATE": ("FOR UPDATE", "FOR NO KEY UPDATE"),
          "LCS_FORSHARE": ("FOR SHARE", "FOR SHARE"), "LCS_FORKEYSHARE": ("FOR SHARE", "FOR KEY SHARE")}
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_QUOTED = frozenset({"SCONST", "USCONST", "BCONST", "XCONST", "UIDENT"})


def is_side_effect_function(name: str) -> bool:
    return name in SIDE_EFFECT_FUNCTIONS or name.startswith(SIDE_EFFECT_PREFIXES)


def _parse_error(exc: ParseError) -> str:
    return str(exc.args[0] if exc.args else exc)


def _statement_word(node_type: str) -> str:
    word = node_type.removesuffix("Stmt")
    return {"Select": "SELECT", "Explain": "EXPLAIN", "VariableSet": "SET", "Copy": "COPY"}.get(word, word.upper())


def walk_tree(node: Any) -> Iterator[tuple[str, Any]]:
    """(key, value) of every mapping entry in the parse tree, depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                yield key, value
                stack.append(value)
        elif isinstance(current, list):
            stack.extend(current)


def _function_name(call: dict[str, Any]) -> str:
    parts = [part.get("String", {}).get("sval", "") for part in call.get("funcname", [])]
    return parts[-1] if parts else ""


_FLAGGED = (*_WRITES, "intoClause", "LockingClause")  # besides FuncCall, the keys check_read_only looks for
_JSON = json.JSONDecoder()


_ONE_SELECT = '"stmts":[{"stmt":{"SelectStmt":'  # how libpg_query writes a tree whose first statement is a SELECT
_CALL = '"FuncCall":{"funcname":'  # a FuncCall node; its first field is the function's (qualified) name


def _plainly_read_only(tree_json: str) -> bool:
    """True when the parse tree (its JSON text) is one SELECT with none of the keys check_read_only looks for but
    FuncCall, and every FuncCall names a function without side effects: then the walk of the whole tree, after
    json.loads, would find nothing.

    Reading the text is exact for the True answer. A key is written `"Key":`, and inside a JSON string every quote
    is escaped, so neither `"Key"` nor `{"stmt":` ever appears within a string: a string value equal to a key's name
    only makes the answer False (the walk decides). Each call's name list is decoded where it stands; when the
    counts of `"FuncCall"` and of calls written as expected differ (another writer's spacing or field order), the
    walk decides too.
    """
    if _ONE_SELECT not in tree_json or tree_json.count('{"stmt":') != 1:
        return False
    if any(f'"{key}"' in tree_json for key in _FLAGGED):
        return False
    starts = []
    at = tree_json.find(_CALL)
    while at >= 0:
        starts.append(at + len(_CALL))
        at = tree_json.find(_CALL, at + 1)
    if len(starts) != tree_json.count('"FuncCall"'):
        return False
    for start in starts:
        funcname, _end = _JSON.raw_decode(tree_json, start)
        if not isinstance(funcname, list) or is_side_effect_function(_function_name({"funcname": funcname})):
            return False
    return True


def check_read_only(sql: str) -> str | None:
    """Why `sql` is not a single read-only query, or None when it is.

    One statement (a `SELECT`, `WITH … SELECT`, `VALUES` or `TABLE`), no data-modifying CTE, no `SELECT … INTO`,
    no locking clause, no call to a function with side effects.
    """
    try:
        text = parser.parse_sql_json(sql or "")
    except ParseError as exc:
        return f"not valid SQL: {_parse_error(exc)}"
    if _plainly_read_only(text):
        return None
    statements = json.loads(text)["stmts"]
    if not statements:
        return "empty SQL"
    if len(statements) > 1:
        return "more than one statement (only a single query is allowed)"
    (node_type, tree), = statements[0]["stmt"].items()
    if node_type != "SelectStmt":
        first = next((t for t in parser.scan(sql) if t.name not in _COMMENTS and t.name != "ASCII_40"), None)
        shown = sql[first.start:first.end + 1].upper() if first is not None else node_type
        return (f"not a read-only query: a {_statement_word(node_type)} statement, starts with {shown!r} "
                "(only SELECT, WITH, VALUES, TABLE allowed)")
    for key, value in walk_tree(tree):
        if key in _WRITES:
            return f"data-modifying statement {_WRITES[key]} inside a WITH query"
        if key == "intoClause":
            return "SELECT … INTO creates a table; not allowed"
        if key == "LockingClause":
            family, exact = _LOCKS.get(value.get("strength"), ("FOR UPDATE", "a row lock"))
            return f"locking clause {family} ({exact}) is not allowed"
        if key == "FuncCall":
            name = _function_name(value)
            if is_side_effect_function(name):
                return f"calls {name}(), a function with side effects"
    return None


def _tokens(sql: str, *, lower_words: bool) -> list[tuple[str, bool]] | None:
    """(text, preceded by whitespace or a comment) per token, comments dropped; None when it does not scan."""
    try:
        tokens = parser.scan(sql)
    except ParseError:
        return None
    out: list[tuple[str, bool]] = []
    previous_end = -1
    gap = False
    for token in tokens:
        gap = gap or token.start > previous_end + 1
        previous_end = token.end
        if token.name in _COMMENTS:
            gap = True
            continue
        text = sql[token.start:token.end + 1]
        if lower_words and token.name not in _QUOTED and not text.startswith(('"', "'", "$")):
            text = text.lower()
        out.append((text, gap))
        gap = False
    while out and out[-1][0] == ";":
        out.pop()
    return out


def _join(tokens: list[tuple[str, bool]]) -> str:
    return "".join((" " if gap and i else "") + text for i, (text, gap) in enumerate(tokens))


def normalize_sql(sql: str, *, flatten_literals: bool = False) -> str:
    """One line, comments removed, whitespace between tokens collapsed, ending with one ';'.

    Literals and quoted names keep their text; with `flatten_literals` their line breaks and tabs become spaces
    too (the pair file holds single-line SQL). SQL that does not scan (an unterminated quote) is only trimmed.
    """
    tokens = _tokens(sql or "", lower_words=False)
    if tokens is None:
        return (sql or "").strip()
    text = _join(tokens)
    if flatten_literals:
        text = text.replace("\r\n", " ").translate({ord("\n"): " ", ord("\r"): " ", ord("\t"): " "})
    return text + ";" if text else text


def dedupe_key(sql: str) -> str:
    """Lower case outside literals and quoted names, whitespace collapsed, no trailing ';'."""
    tokens = _tokens(sql or "", lower_words=True)
    if tokens is None:
        return " ".join((sql or "").split()).rstrip("; ")
    return _join(tokens)


_RELATION_KEYWORDS = frozenset({"from", "join", "update", "into"})


def referenced_tables(sql: str) -> list[tuple[str | None, str]]:
    """The relations a query names, as (schema or None, name), in order of appearance, CTE names left out.

    Read from the parse tree (RangeVar nodes); SQL that does not parse (a failing query often does not) is read
    from the scanner's tokens instead: the (qualified) name after FROM / JOIN. Used to show a model only the
    tables a failing query uses."""
    found: list[tuple[str | None, str]] = []
    try:
        statements = json.loads(parser.parse_sql_json(sql or ""))["stmts"]
    except ParseError:
        statements = None
    if statements is not None:
        ctes = {value.get("ctename") for key, value in walk_tree(statements) if key == "CommonTableExpr"}
        for key, value in walk_tree(statements):
            if key == "RangeVar" and isinstance(value, dict) and value.get("relname"):
                schema = value.get("schemaname")
                if schema is None and value["relname"] in ctes:
                    continue
                found.append((schema, value["relname"]))
        # The walk is depth first from the end; the query's own order reads better.
        found.sort(key=lambda ref: _position(sql, ref[1]))
    else:
        found = _scanned_relations(sql or "")
    return list(dict.fromkeys(found))


def _position(sql: str, name: str) -> int:
    at = sql.find(name)
    return at if at >= 0 else len(sql)


def _scanned_relations(sql: str) -> list[tuple[str | None, str]]:
    try:
        tokens = [t for t in parser.scan(sql) if t.name not in _COMMENTS]
    except ParseError:
        return []
    texts = [sql[t.start:t.end + 1] for t in tokens]
    found: list[tuple[str | None, str]] = []
    for i in range(len(tokens) - 1):
        if texts[i].lower() not in _RELATION_KEYWORDS:
            continue
        parts: list[str] = []
        j = i + 1
        while j < len(tokens) and (tokens[j].name in ("IDENT", "UIDENT") or tokens[j].kind == "UNRESERVED_KEYWORD"):
            text = texts[j]
            parts.append(text[1:-1].replace('""', '"') if text.startswith('"') else text.lower())
            if j + 1 >= len(tokens) or texts[j + 1] != ".":
                break
            j += 2
        if parts:
            found.append((parts[-2] if len(parts) > 1 else None, parts[-1]))
    return found
