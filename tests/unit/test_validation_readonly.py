"""check_read_only: a parser-based gate that keeps anything but one read-only query away from the database."""
from __future__ import annotations

import pytest

from chalicelib.pipeline.sqltext import check_read_only, normalize_sql

READ_ONLY = [
    "select 1",
    "SELECT 1;",
    "select 1;  -- trailing comment",
    "select 1 /* c */ ;",
    "  (select 1) union (select 2);",
    "with x as (select 1 as a) select a from x;",
    "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select * from r;",
    "values (1), (2);",
    "table pg_class;",
    "select ';' as semi, 'drop table t; delete from t' as s;",
    "select $$; delete from t$$ as body, $tag$ ; drop $tag$ as other;",
    "select E'it\\'s; fine' as s;",
    'select "delete" , "into", "for update" from t;',
    "select t.update, t.delete_ts from t where t.delete_ts is null;",
    "select substring('abc' from 1 for 2);",
    "select 1 -- ; delete from t\n;",
    "select count(*) from t where name like '%;%';",
    "select '中文；分号' as 名称, create_ts from t;",
    "select lower(name) from t;",
]

NOT_READ_ONLY = [
    ("DROP TABLE t;", "starts with 'DROP'"),
    ("select 1; delete from t;", "more than one statement"),
    ("select 1; delete from t", "more than one statement"),
    ("select 1 /* ; */ ; delete from t", "more than one statement"),
    ("select 1 /* nested /* ; */ still */; drop table t", "more than one statement"),
    ("with d as (delete from t returning *) select * from d;", "inside a WITH"),
    ("with u as (update t set a = 1 returning *) select 1;", "inside a WITH"),
    ("with i as (insert into t values (1) returning *) select 1;", "inside a WITH"),
    ("with x as (select 1) delete from t;", "DELETE"),
    ("with x as materialized (merge into t using s on true when matched then delete) select 1", "MERGE"),
    ("select * into new_t from t;", "INTO"),
    ("select * from t for update;", "FOR UPDATE"),
    ("select * from t for no key update;", "FOR UPDATE"),
    ("select * from t for share;", "FOR SHARE"),
    ("select * from t for key share;", "FOR SHARE"),
    ("select pg_sleep(10);", "pg_sleep"),
    ("select pg_catalog.pg_sleep(1);", "pg_sleep"),
    ('select "pg_sleep"(1);', "pg_sleep"),
    ("select lo_import('/etc/passwd');", "lo_import"),
    ("select dblink_exec('x', 'drop table t');", "dblink_exec"),
    ("select pg_terminate_backend(1);", "pg_terminate_backend"),
    ("select set_config('x.y', '1', false);", "set_config"),
    ("select nextval('s');", "nextval"),
    ("select pg_read_file('/etc/passwd');", "pg_read_file"),
    ("select pg_advisory_lock(1);", "pg_advisory_lock"),
    ("select query_to_xml('delete from t', true, true, '');", "query_to_xml"),
    ("insert into t values (1);", "starts with 'INSERT'"),
    ("update t set a = 1;", "starts with 'UPDATE'"),
    ("explain analyze delete from t;", "starts with 'EXPLAIN'"),
    ("copy t to stdout;", "starts with 'COPY'"),
    ("set statement_timeout = 0;", "starts with 'SET'"),
    ("begin; select 1; commit;", "more than one statement"),
    ("", "empty"),
    ("  ;  ", "empty"),
    ("-- only a comment", "empty"),
    ("select 'unterminated", "unterminated"),
    ("select $x$ never closed", "unterminated"),
    ("select 1 /* open", "unterminated"),
]


@pytest.mark.parametrize("sql", READ_ONLY)
def test_read_only_queries_pass(sql):
    assert check_read_only(sql) is None


@pytest.mark.parametrize(("sql", "expected"), NOT_READ_ONLY)
def test_writes_and_multiple_statements_are_rejected(sql, expected):
    reason = check_read_only(sql)
    assert reason is not None
    assert expected.lower() in reason.lower()


def test_normalize_sql_single_line_keeps_literals():
    raw = "select a,\n  'x\n  y' as s -- note\nfrom t\n;\n"
    assert normalize_sql(raw) == "select a, 'x\n  y' as s from t;"
    assert normalize_sql("select 1") == "select 1;"
    assert normalize_sql('select "Mixed ""q""" from t;;') == 'select "Mixed ""q""" from t;'
