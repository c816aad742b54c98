"""The read-only gate's deny-list of side-effecting built-ins: every family is refused however the call is
spelled or wherever it sits in the tree, and ordinary read-only functions still pass."""
from __future__ import annotations

import pytest

from chalicelib.pipeline.sqltext import check_read_only

# One call per family the gate must refuse; the names marked "was accepted" got through before this list grew.
DENIED = [
    "pg_terminate_backend(1)", "pg_cancel_backend(1)", "lo_import('/etc/passwd')", "lo_export(1, '/tmp/x')",
    "lo_unlink(1)", "lo_from_bytea(0, 'x')", "dblink('x', 'select 1')", "dblink_exec('x', 'drop table t')",
    "pg_read_file('/etc/passwd')", "pg_read_binary_file('/etc/passwd')", "pg_ls_dir('.')",
    "pg_stat_file('postgresql.conf')", "set_config('a.b', '1', false)", "pg_sleep(1)", "pg_sleep_for('1s')",
    "pg_sleep_until(now())", "pg_advisory_lock(1)", "pg_advisory_xact_lock_shared(1)", "pg_try_advisory_lock(1)",
    "nextval('s')", "setval('s', 1)", "txid_current()", "pg_notify('c', 'x')", "pg_reload_conf()",
    "pg_rotate_logfile()", "query_to_xml('delete from t', true, true, '')", "query_to_xmlschema('x', true, true, '')",
    "cursor_to_xml('c', 1, true, true, '')", "table_to_xml('t', true, true, '')",
    "database_to_xml(true, true, '')", "schema_to_xml('public', true, true, '')",
    # was accepted:
    "pg_ls_logdir()", "pg_ls_waldir()", "pg_ls_tmpdir()", "ts_stat('select to_tsvector(''x'')')",
    "txid_current_if_assigned()", "pg_current_xact_id_if_assigned()", "pg_export_snapshot()",
    "pg_file_write('x', 'y', false)", "pg_file_unlink('x')", "pg_logical_slot_get_changes('s', null, null)",
    "pg_replication_slot_advance('s', '0/0')", "pg_copy_logical_replication_slot('a', 'b')",
    "pg_wal_replay_pause()", "pg_stat_statements_reset()", "brin_summarize_new_values('i')",
    "brin_summarize_range('i', 0)", "gin_clean_pending_list('i')", "pg_log_backend_memory_contexts(1)",
    "pg_create_restore_point('x')", "pg_stat_reset_shared('bgwriter')", "pg_truncate_visibility_map('t')",
]

PLACES = [
    "SELECT {call}",
    "SELECT pg_catalog.{call}",
    "SELECT upper_case_ignored FROM t WHERE {upper} IS NOT NULL",
    "WITH x AS (SELECT {call} AS v) SELECT * FROM x",
    "SELECT * FROM ROWS FROM ({call}) AS r",
    "SELECT a FROM t ORDER BY {call}",
    "SELECT (SELECT max(v) FROM (SELECT {call} AS v) s)",
    "SELECT a FROM t, LATERAL (SELECT {call}) l",
    "VALUES ({call})",
    "SELECT CASE WHEN false THEN {call} END",
]


@pytest.mark.parametrize("call", DENIED)
def test_every_side_effecting_builtin_is_refused_wherever_it_sits(call):
    name = call.split("(", 1)[0]
    for place in PLACES:
        sql = place.format(call=call, upper=call.replace(name, name.upper(), 1))
        reason = check_read_only(sql)
        assert reason is not None and "side effects" in reason and name in reason, (sql, reason)


@pytest.mark.parametrize("sql", [
    'SELECT "pg_sleep"(1)', "SELECT public.nextval('s')", "SELECT PG_CATALOG.SET_CONFIG('a.b', '1', true)",
])
def test_quoted_or_qualified_spellings_are_the_same_function(sql):
    assert "side effects" in (check_read_only(sql) or ""), sql


@pytest.mark.parametrize("sql", [
    "SELECT lower(name), count(*), max(amount), string_agg(code, ',') FROM t GROUP BY 1",
    "SELECT to_char(now(), 'YYYY-MM'), date_trunc('day', created_at), coalesce(a, b) FROM t",
    "SELECT pg_size_pretty(pg_total_relation_size('t')), pg_get_viewdef('v'::regclass)",
    "SELECT row_number() OVER (ORDER BY a), lag(a) OVER w FROM t WINDOW w AS (ORDER BY a)",
    "SELECT lo, ls, pg_stat_file_ok FROM t",  # columns with deny-listed prefixes are not calls
    "SELECT jsonb_agg(x), array_agg(y), to_tsvector('simple', z) FROM t",
])
def test_ordinary_functions_and_look_alike_columns_pass(sql):
    assert check_read_only(sql) is None, sql


# Statements whose text holds the gate's key names where they are not keys: string constants, quoted identifiers,
# aliases, comments; and nested or qualified calls.
LOOKALIKES = [
    "SELECT 'FuncCall' AS a, '\"FuncCall\":' AS b FROM t",
    'SELECT "FuncCall"."intoClause" FROM "FuncCall"',
    "SELECT count(*) AS \"InsertStmt\" FROM t WHERE note = '\"LockingClause\":{}'",
    "SELECT /* \"FuncCall\": */ max(lower(upper(a))) FROM t",
    "SELECT pg_catalog.lower(x), \"UpdateStmt\" FROM t",
    "SELECT coalesce(max(a), min(b)) FROM (SELECT nextval('s') AS a, 1 AS b) q",
    "SELECT 'pg_sleep(1)', lower('set_config') FROM t",
    "SELECT * FROM t FOR UPDATE",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
    "SELECT count(*) INTO t2 FROM t",
]


@pytest.mark.parametrize("sql", LOOKALIKES + [p.format(call=c, upper=c) for p in PLACES[:3] for c in DENIED[:8]]
                         + ["SELECT lower(name), count(*), max(amount) FROM t GROUP BY 1"])
def test_the_text_shortcut_never_accepts_what_the_tree_walk_refuses(sql):
    """check_read_only answers None from the tree's JSON text when no key it looks for is there: the answer must be
    the walk's own (the walk of the whole tree, the gate before the shortcut)."""
    import json

    from pglast import parser

    from chalicelib.pipeline import sqltext

    text = parser.parse_sql_json(sql)
    (_kind, tree), = json.loads(text)["stmts"][0]["stmt"].items()
    walk_refuses = any(
        key in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "intoClause", "LockingClause")
        or (key == "FuncCall" and sqltext.is_side_effect_function(sqltext._function_name(value)))
        for key, value in sqltext.walk_tree(tree))
    if sqltext._plainly_read_only(text):
        assert not walk_refuses, sql
    assert (check_read_only(sql) is not None) == walk_refuses, sql


def test_the_text_shortcut_is_taken_for_ordinary_queries_and_not_for_lookalikes():
    from pglast import parser

    from chalicelib.pipeline.sqltext import _plainly_read_only

    assert _plainly_read_only(parser.parse_sql_json("SELECT lower(a), count(*) FROM t WHERE b > now() GROUP BY 1"))
    assert _plainly_read_only(parser.parse_sql_json("SELECT a FROM t"))
    assert not _plainly_read_only(parser.parse_sql_json("SELECT 'FuncCall', count(*) FROM t"))
    assert not _plainly_read_only(parser.parse_sql_json("SELECT lower(nextval('s'))"))
    assert not _plainly_read_only(parser.parse_sql_json("SELECT 1; SELECT 2"))  # one SELECT only
    assert not _plainly_read_only(parser.parse_sql_json("INSERT INTO t SELECT 1"))
    assert _plainly_read_only(parser.parse_sql_json("SELECT '{\"stmt\":' AS a"))  # escaped inside a string
    assert not _plainly_read_only(parser.parse_sql_json(""))
