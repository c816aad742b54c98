"""Public sample databases, loaded unmodified (tests/fixtures/realdbs, copies of ../shared/realdbs): every table
is listed and documented through the database tools API, its DDL re-executes in a scratch schema with every
column, and its MD names every column as SQL must write it."""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest

from chalicelib.pipeline.db import connect
from chalicelib.pipeline.introspect import introspect_tables
from chalicelib.pipeline.models import TableRef, quote_ident
from tests.conftest import create_database, drop_database
from tests.functional.test_identifiers import assert_replays_with_every_column
from tests.support.aws_api import api_environment, post_json

REALDBS = Path(__file__).resolve().parent.parent / "fixtures" / "realdbs"
DATABASE_API = "/api/v0/database"

EXPECTED = {
    "northwind.sql": {"tables": 14, "some": ["public.orders", "public.order_details", "public.us_states"]},
    "periodic_table.sql": {"tables": 1, "some": ["public.periodic_table"]},
    "happiness_index.sql": {"tables": 1, "some": ['public."2019"']},
}


def load_dump(url: str, path: Path) -> None:
    """`psql -f` with pgserver's own psql (the server's version), stopping at the first error."""
    from pgserver._commands import POSTGRES_BIN_PATH

    done = subprocess.run([str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path),
                           url], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(params=sorted(EXPECTED))
def real_db(request, pg_url):
    name = f"real_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_url, name)
    load_dump(url, REALDBS / request.param)
    yield request.param, url
    drop_database(pg_url, name)


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


def test_every_table_is_documented_and_its_ddl_replays(client, real_db):
    dump, url = real_db
    listed = post_json(client, f"{DATABASE_API}/tables", {"db_connection": url})
    assert listed.status_code == 200, listed.json_body
    tables = listed.json_body["data"]["tables"]
    assert len(tables) == EXPECTED[dump]["tables"] and set(EXPECTED[dump]["some"]) <= set(tables)
    texts: dict[TableRef, str] = {}
    for name in tables:
        res = post_json(client, f"{DATABASE_API}/table/ddl", {"db_connection": url, "table": name, "type": "both",
                                                             "business_context": "sample data"})
        assert res.status_code == 200, (name, res.json_body)
        data = res.json_body["data"]
        assert data["table_info"]["full_name"] == name
        ref = TableRef(data["table_info"]["schema_name"], data["table_info"]["table_name"])
        texts[ref] = data["ddl"]
        for field in data["fields"]:  # every column, named in the MD as SQL must write it
            assert f"- {quote_ident(field['column_name'])} (" in data["md"], (name, field["column_name"])
        assert data["generation_info"]["has_llm_comments"] is False
    conn = connect(url)
    conn.autocommit = True
    try:
        found, problems = introspect_tables(conn, list(texts), exact_count_threshold=100_000)
        assert not problems
        assert_replays_with_every_column(conn, found, texts)
    finally:
        conn.close()


def test_quoted_camel_case_and_key_word_columns_are_quoted(client, pg_url):
    name = f"real_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_url, name)
    try:
        load_dump(url, REALDBS / "periodic_table.sql")
        load_dump(url, REALDBS / "happiness_index.sql")
        periodic = post_json(client, f"{DATABASE_API}/table/ddl", {"db_connection": url,
                                                                  "table": "periodic_table"}).json_body["data"]
        for column in ('"Group"', '"Year"', '"Type"', '"Natural"', '"AtomicNumber"'):
            assert f"\n  {column} " in periodic["ddl"], column
        assert '  primary key ("AtomicNumber")' in periodic["ddl"]
        happiness = post_json(client, f"{DATABASE_API}/table/ddl", {"db_connection": url,
                                                                   "table": "public.2019"}).json_body["data"]
        assert 'create table public."2019" (' in happiness["ddl"]
        assert "  overall_rank serial not null," in happiness["ddl"]  # its nextval default, without the sequence
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from public.\"2019\"")
            assert happiness["table_info"]["row_count"] == cur.fetchone()[0]
    finally:
        drop_database(pg_url, name)


@pytest.mark.slow
def test_complete_workflow_on_the_quoted_sample_databases(pipeline, pg_url):
    """periodic_table (quoted CamelCase and key-word columns) and happiness_index ("2019") in one database: the
    complete workflow under the heuristic provider documents both, and every SQL it keeps passes EXPLAIN."""
    name = f"real_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_url, name)
    try:
        load_dump(url, REALDBS / "periodic_table.sql")
        load_dump(url, REALDBS / "happiness_index.sql")
        task_id, status = pipeline.run(["public.periodic_table", "public.2019"], business_context="world statistics",
                                       db_connection=url, execute={"execution_mode": "complete"})
        assert status["status"] == "completed", (status.get("error_message"), status["step_status"])
        assert status["results"]["ddl_generation"]["tables_succeeded"] == 2
        files = pipeline.files(task_id)
        assert {"periodic_table.ddl", "2019.ddl", "2019_detail.md"} <= set(files)
        pairs = json.loads(pipeline.file_text(task_id, status["results"]["qa_generation"]["pair_file"]))
        assert pairs
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for pair in pairs:
                cur.execute("explain " + pair["sql"])
        loaded = status["results"]["training_load"]
        assert loaded["ddl"] + loaded.get("skipped_existing", 0) >= 2 and loaded["total_rows"]["sql"] >= 1
    finally:
        drop_database(pg_url, name)
