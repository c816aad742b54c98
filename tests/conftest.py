"""Shared fixtures: a real embedded PostgreSQL (pgserver, with pgvector) and scratch databases on it."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Parallel test sessions (several developers on one machine) each set their own folder. Each process runs its server
# in a folder of its own inside it: the pytest-xdist worker's name, else "main" (so that a run without workers
# never meets the workers' folders).
PGDATA = Path(os.environ.get("DATA_PIPELINE_TEST_PGDATA", str(ROOT / ".pgdata-test"))) / os.environ.get(
    "PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg_server():
    import pgserver

    PGDATA.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no .pgdata-test yet
    server = pgserver.get_server(str(PGDATA), cleanup_mode="stop")
    server.psql("create extension if not exists vector;")
    yield server


@pytest.fixture(scope="session")
def pg_url(pg_server) -> str:
    return pg_server.get_uri()


def _with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (pgserver URLs carry the socket in the query)."""
    head, _, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{dbname}" + (f"?{query}" if query else "")


def create_database(pg_url: str, dbname: str) -> str:
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'drop database if exists "{dbname}" with (force)')
        cur.execute(f'create database "{dbname}"')
    conn.close()
    url = _with_database(pg_url, dbname)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("create extension if not exists vector")
    conn.close()
    return url


def drop_database(pg_url: str, dbname: str) -> None:
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'drop database if exists "{dbname}" with (force)')
    conn.close()


@pytest.fixture
def scratch_db(pg_url) -> Iterator[str]:
    """A fresh, empty database (with the vector extension) for one test; dropped afterwards."""
    dbname = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_url, dbname)
    yield url
    drop_database(pg_url, dbname)


@pytest.fixture(scope="session")
def demo_db_url(pg_url) -> str:
    """The bundled demo highway database, generated once per test session."""
    from infra.local.demo_db import load_demo_database

    url = create_database(pg_url, "highway_demo")
    load_demo_database(url)
    return url


@pytest.fixture(autouse=True)
def _offline_models(monkeypatch):
    # The offline embedding model must never reach for a hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for name in ("LLM_BASE_URL", "EMBEDDING_BASE_URL", "DATA_PIPELINE_API_KEY"):
        if name in os.environ:
            monkeypatch.delenv(name)


@pytest.fixture
def llm_stub():
    """A local OpenAI-compatible server; script answers with `.script(...)`, read `.requests` afterwards."""
    from tests.support.llm_stub import LLMStub

    stub = LLMStub().start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def pipeline_stack(pg_url, tmp_path_factory):
    """The real local stack (moto server executing the project's state machine, step Lambdas in-process)
    on the test PostgreSQL server, with the demo database loaded. One per test module: moto is process-wide."""
    from infra.local.stack import LocalStack

    # Vectors in a database of this module's own: a load refuses to mix embedding models in one collection, and
    # modules load with different ones (the offline default, a stub endpoint, seeded test vectors).
    vectors = f"vectors_{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGVECTOR_DB_URL", create_database(pg_url, vectors))
        with LocalStack(tmp_path_factory.mktemp("stack"), server_url=pg_url, demo_database="highway_e2e") as stack:
            yield stack
    drop_database(pg_url, vectors)


@pytest.fixture
def pipeline(pipeline_stack):
    """A client of the HTTP API (Chalice's test client) on the running local stack."""
    from tests.support.pipeline import PipelineClient

    return PipelineClient(pipeline_stack)


@pytest.fixture
def shop_db(scratch_db):
    """A scratch database with a small `orders` table and functions the SQL validation tests EXPLAIN against:
    slow_constant() (sleeps while planned) and show_session() (reports the session it is planned in)."""
    conn = psycopg2.connect(scratch_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("create table orders (id int primary key, amount numeric(10,2), create_ts timestamp)")
        cur.execute("insert into orders select g, g * 1.5, now() from generate_series(1, 5) g")
        cur.execute("create function slow_constant() returns int immutable language plpgsql as "
                    "$$ begin perform pg_sleep(3); return 1; end $$")
        # Immutable, so the planner runs it while EXPLAIN plans the query: reports the session it ran in.
        cur.execute("create function show_session() returns int immutable language plpgsql as $$ begin "
                    "raise exception 'read_only=% timeout=%', current_setting('transaction_read_only'), "
                    "current_setting('statement_timeout'); end $$")
    conn.close()
    return scratch_db


@pytest.fixture(scope="module")
def api(pipeline_stack):
    """The HTTP API served by Chalice's local server on the module's local stack (real HTTP on a free port)."""
    from tests.support.http_api import served

    with served(pipeline_stack) as client:
        yield client


@pytest.fixture
def hostile_db(scratch_db):
    """A scratch database holding tests/functional/test_identifiers.py's hostile schema."""
    from tests.functional.test_identifiers import HOSTILE_SQL

    run_sql(scratch_db, HOSTILE_SQL)
    return scratch_db


def run_sql(url: str, script: str) -> None:
    """Execute a SQL script on the database at `url` (autocommit: each statement as psql would run it)."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(script)
    finally:
        conn.close()

