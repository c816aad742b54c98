"""Where business data and vectors go, in every combination of DATA_PIPELINE_DB_URL, PGVECTOR_DB_URL and a
task's own db_connection (issue 8, finding 2). Two databases on the test server stand for two servers; the
stack's `server_url` stands for its embedded pgserver."""
from __future__ import annotations

import json
import uuid

import psycopg2
import pytest
from chalice import Chalice

from chalicelib.config import get_business_db_url, get_settings, get_vector_db_url
from infra.local.stack import VECTOR_DATABASE, LocalStack, database_url
from tests.conftest import create_database, drop_database

PASS_MACHINE = {"StartAt": "Nothing", "States": {"Nothing": {"Type": "Pass", "End": True}}}
DEMO = "highway_config"  # loaded once per test server (the stack marks it loaded), then reused


@pytest.fixture
def two_servers(pg_url):
    """Two databases standing for a user's business server and vector server."""
    names = [f"cfg_biz_{uuid.uuid4().hex[:8]}", f"cfg_vec_{uuid.uuid4().hex[:8]}"]
    urls = [create_database(pg_url, name) for name in names]
    yield urls
    for name in names:
        drop_database(pg_url, name)


def _bare_stack(pg_url: str, **kwargs) -> LocalStack:
    return LocalStack(server_url=pg_url, demo_database=DEMO, app_factory=lambda: Chalice(app_name="cfg"),
                      function_names=[], definition_text=json.dumps(PASS_MACHINE), persist=False, **kwargs)


COMBINATIONS = {
    # name: (DATA_PIPELINE_DB_URL set?, PGVECTOR_DB_URL set?) -> (business, vectors) as "biz"/"vec"/"demo"/"store"
    "nothing set": ((False, False), ("demo", "store")),
    "business only": ((True, False), ("biz", "biz")),
    "vectors only": ((False, True), ("demo", "vec")),
    "both": ((True, True), ("biz", "vec")),
}


@pytest.mark.parametrize("case", list(COMBINATIONS), ids=list(COMBINATIONS))
def test_the_stack_honours_the_configured_databases(case, pg_url, two_servers, monkeypatch):
    (set_db, set_vectors), (want_business, want_vectors) = COMBINATIONS[case]
    biz, vec = two_servers
    for name, value, wanted in (("DATA_PIPELINE_DB_URL", biz, set_db), ("PGVECTOR_DB_URL", vec, set_vectors)):
        if wanted:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    expected = {"biz": biz, "vec": vec, "demo": database_url(pg_url, DEMO),
                "store": database_url(pg_url, VECTOR_DATABASE)}
    with _bare_stack(pg_url) as stack:
        assert (stack.db_url, stack.pgvector_url) == (expected[want_business], expected[want_vectors])
        settings = get_settings()  # what every Lambda and route of the stack reads
        assert settings.business_db_url_for(None) == expected[want_business]
        assert settings.vector_db_url_for(None) == expected[want_vectors]
        assert stack.databases.business.from_environment is set_db
        assert stack.databases.vectors.from_environment is (set_db or set_vectors)


def test_the_stack_starts_no_embedded_database_it_does_not_need(pg_url, two_servers, monkeypatch):
    biz, vec = two_servers
    monkeypatch.setenv("PGVECTOR_DB_URL", vec)
    monkeypatch.delenv("DATA_PIPELINE_DB_URL", raising=False)
    # No server_url and no demo: nothing embedded is needed, so pgserver must not start under this root.
    stack = LocalStack(app_factory=lambda: Chalice(app_name="cfg"), function_names=[], load_demo=False,
                       definition_text=json.dumps(PASS_MACHINE), persist=False)
    with stack:
        assert stack._pg is None
        assert stack.db_url is None and stack.pgvector_url == vec
        assert stack.databases.describe()[0].startswith("business data: none")


def test_describe_masks_passwords_and_names_the_origin(pg_url):
    from infra.local.databases import resolve_databases

    databases = resolve_databases("postgresql://app:s3cret@db.example:5432/shop", None, None, None)
    business, vectors = databases.describe()
    assert "s3cret" not in business + vectors
    assert business == "business data: postgresql://app:***@db.example:5432/shop  [from DATA_PIPELINE_DB_URL]"
    assert vectors.endswith("[from DATA_PIPELINE_DB_URL]")
    embedded = resolve_databases(None, "postgresql://v:pw@vec:5432/v", "postgresql://postgres:@/demo", None,
                                 "embedded (pgserver in /x)")
    business, vectors = embedded.describe()
    assert business.endswith("[embedded (pgserver in /x)]") and vectors.endswith("[from PGVECTOR_DB_URL]")
    assert "pw" not in vectors.split("@")[0].split(":", 2)[-1]


@pytest.mark.parametrize("db_env", [None, "postgresql://d/biz"])
@pytest.mark.parametrize("vector_env", [None, "postgresql://v/vec"])
@pytest.mark.parametrize("task_connection", [None, "postgresql://t/task"])
def test_the_resolution_rule_for_a_task(db_env, vector_env, task_connection, monkeypatch):
    for name, value in (("DATA_PIPELINE_DB_URL", db_env), ("PGVECTOR_DB_URL", vector_env)):
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    assert get_business_db_url(task_connection) == (task_connection or db_env)
    assert get_vector_db_url(task_connection) == (vector_env or db_env or task_connection)


@pytest.mark.slow
def test_vectors_go_to_pgvector_db_url_when_only_it_is_set(pg_url, two_servers, monkeypatch):
    """The reported bug: PGVECTOR_DB_URL alone used to be overridden by the embedded vector_store database."""
    from infra.local.demo_db import DEMO_BUSINESS_CONTEXT
    from tests.support.pipeline import PipelineClient

    _, vec = two_servers
    monkeypatch.setenv("PGVECTOR_DB_URL", vec)
    monkeypatch.delenv("DATA_PIPELINE_DB_URL", raising=False)
    store = database_url(pg_url, VECTOR_DATABASE)
    before = _embedding_count(store)
    with LocalStack(server_url=pg_url, demo_database=DEMO, persist=False) as stack:
        client = PipelineClient(stack)
        task_id, status = client.run(["public.bss_service_area"], business_context=DEMO_BUSINESS_CONTEXT,
                                     execute={"execution_mode": "complete"})
    assert status["status"] == "completed", status.get("error_message")
    assert _embedding_count(vec) > 0
    assert _embedding_count(store) == before  # nothing went silently into the embedded vector database


def _embedding_count(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('public.langchain_pg_embedding') is not null")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("select count(*) from langchain_pg_embedding")
        return cur.fetchone()[0]
