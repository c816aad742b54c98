"""The team's hand-written retrieval question sets (tests/fixtures/questions, read by benchmarks/bench_retrieval.py):
every gold SQL runs on the real database it is about and returns rows, and the tables each line lists are exactly
the tables its SQL reads (PostgreSQL's parser, pglast)."""
from __future__ import annotations

import psycopg2
import pytest

from benchmarks.questions import DATABASES, REALDBS_DIR, create_table_names, load_questions, tables_read
from tests.conftest import create_database, drop_database
from tests.functional.test_realdbs_ddl import load_dump

MINIMUM = {"highway_demo": 40, "northwind": 30, "happiness_index": 30, "periodic_table": 30}


@pytest.fixture(scope="module")
def real_urls(pg_url):
    urls = {}
    for name in ("northwind", "happiness_index", "periodic_table"):
        urls[name] = create_database(pg_url, f"questions_{name}")
        load_dump(urls[name], REALDBS_DIR / f"{name}.sql")
    yield urls
    for name in urls:
        drop_database(pg_url, f"questions_{name}")


@pytest.mark.parametrize("database", sorted(DATABASES))
def test_question_set_size_and_listed_tables(database):
    questions = load_questions(database)
    assert len(questions) >= MINIMUM[database]
    assert len({q.question for q in questions}) == len(questions), "a question is repeated"
    for q in questions:
        assert set(q.tables) == tables_read(q.sql), q.question
        assert list(q.tables) == sorted(q.tables), f"list the tables sorted: {q.question}"


@pytest.mark.parametrize("database", sorted(DATABASES))
def test_every_gold_sql_runs_and_returns_rows(database, demo_db_url, real_urls):
    url = demo_db_url if database == "highway_demo" else real_urls[database]
    conn = psycopg2.connect(url)
    conn.set_session(readonly=True)
    failures = []
    try:
        with conn.cursor() as cur:
            catalog = _catalog_tables(cur)
            for q in load_questions(database):
                assert set(q.tables) <= catalog, (q.question, q.tables)
                try:
                    cur.execute(q.sql)
                    if not cur.fetchall():
                        failures.append(f"{q.question}: no rows")
                except psycopg2.Error as exc:
                    failures.append(f"{q.question}: {type(exc).__name__}: {str(exc).strip()[:200]}")
                conn.rollback()
    finally:
        conn.close()
    assert not failures, "\n".join(failures)


def _catalog_tables(cur) -> set[str]:
    cur.execute("select case when table_schema = 'public' then table_name else table_schema || '.' || table_name end "
                "from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema')")
    return {row[0] for row in cur.fetchall()}


def test_table_extraction_follows_the_parser():
    """What the checks above rest on: CTE names are not tables, quoted names keep their spelling, other schemas
    stay qualified, subqueries and EXISTS count."""
    sql = ('WITH t AS (SELECT * FROM "2019") SELECT * FROM t JOIN ods."Orders" o ON true '
           "WHERE EXISTS (SELECT 1 FROM public.customers c)")
    assert tables_read(sql) == {"2019", 'ods.Orders', "customers"}
    assert create_table_names('-- 中文名: x\ncreate table "2019" (a int);\n') == {"2019"}
