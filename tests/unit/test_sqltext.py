"""sqltext reads SQL the way the server does (pglast's scanner and parser): what a hand lexer got wrong."""
from __future__ import annotations

import pytest

from chalicelib.pipeline import qa, sqltext

# Each hides a second statement or a write from a lexer that does not scan exactly like PostgreSQL.
HOSTILE = [
    "SELECT 1 --x\r; SET default_transaction_read_only=off; COMMIT; DROP TABLE t",  # `--` also ends at \r
    "SELECT 1 /* a /* nested */ still comment */; DELETE FROM t",
    "SELECT $a$ $b$ ; $b$ $a$; DROP TABLE t",
    "SELECT '\\'; DROP TABLE t; --'",  # no E: the backslash escapes nothing
    "SELECT U&'\\0041'; DELETE FROM t",
    "SELECT 'it''s'; UPDATE t SET a = 1",
    "SELECT 1;\u00a0DELETE FROM t",
    "WITH x AS (SELECT 1) SELECT * FROM x; TRUNCATE t",
]


@pytest.mark.parametrize("sql", HOSTILE)
def test_a_second_statement_is_found_however_it_hides(sql):
    reason = sqltext.check_read_only(sql)
    assert reason is not None
    assert "more than one statement" in reason or "not valid SQL" in reason, reason


@pytest.mark.parametrize("sql", [
    "SELECT 1 --x\r",
    "SELECT $a$ ; DROP TABLE t $a$ AS body",
    "SELECT E'\\'; DROP TABLE t; --' AS s",
    "SELECT U&'\\0041' AS a",
    'SELECT "a;b" FROM "t;DROP"',
])
def test_what_only_looks_like_a_second_statement_is_one_query(sql):
    assert sqltext.check_read_only(sql) is None


def test_functions_with_side_effects_are_found_anywhere_in_the_tree():
    for sql in ("SELECT * FROM pg_sleep(1)", "SELECT (SELECT max(x) FROM (SELECT pg_sleep(1) AS x) s)",
                "SELECT 1 WHERE EXISTS (SELECT lo_unlink(1))", "SELECT count(*) FILTER (WHERE nextval('s') > 0)"):
        assert "side effects" in (sqltext.check_read_only(sql) or ""), sql


def test_the_pair_file_form_drops_comments_instead_of_letting_them_swallow_the_query():
    # Flattened to one line, a `--` comment would comment out the rest of the query.
    assert qa.normalize_sql("SELECT a -- the key\nFROM t WHERE b = 1") == "SELECT a FROM t WHERE b = 1;"
    assert qa.normalize_sql("SELECT a /* x */ FROM t;;") == "SELECT a FROM t;"
    assert sqltext.normalize_sql("select\r\n  a\tfrom t -- c\r") == "select a from t;"


def test_dedupe_keys_ignore_comments_case_and_spacing_but_not_literals():
    assert sqltext.dedupe_key("SELECT A /* c */ FROM T ;") == sqltext.dedupe_key("select a\nfrom t")
    assert sqltext.dedupe_key("SELECT 'X'") != sqltext.dedupe_key("SELECT 'x'")
    assert sqltext.dedupe_key('SELECT "A" FROM t') != sqltext.dedupe_key('SELECT "a" FROM t')
    assert sqltext.dedupe_key("SELECT E'Ab'") == "select E'Ab'"
