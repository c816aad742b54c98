"""Complete runs on databases nobody on the team wrote: the public sample databases of tests/fixtures/realdbs/
(northwind, periodic_table, happiness_index, loaded unmodified with psql) and a hostile schema of our own
(tests/fixtures/hostile_schema.sql). Each runs the real state machine on moto through the HTTP API, on every
table the API lists, with the business database and the vector database apart. Then:

- every `.ddl` file executes, and recreates every column with its type and nullability: inside a rolled-back
  transaction on the business database the original relation is renamed out of the way and the file executed
  as it is, so the types it names (enums, domains) exist;
- every SQL kept in the pair file passes EXPLAIN in a read-only transaction;
- the DDL documents are in the configured vector database and nothing was written to the business database.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from tests.conftest import create_database, drop_database
from tests.functional.test_realdbs_ddl import load_dump

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATABASES = {
    "northwind": (FIXTURES / "realdbs" / "northwind.sql", "Northwind Traders: orders, products, customers"),
    "periodic_table": (FIXTURES / "realdbs" / "periodic_table.sql", "Chemistry: the periodic table of elements"),
    "happiness_index": (FIXTURES / "realdbs" / "happiness_index.sql", "World Happiness Report 2019"),
    # Views are not in /database/tables (tables only), so the hostile run names them in its list as well.
    "hostile": (FIXTURES / "hostile_schema.sql", "销售订单管理系统"),
}
HOSTILE_EXTRA = ['public."BigOrders"', "ods.region_counts"]


@pytest.fixture(scope="module", params=sorted(DATABASES))
def real_run(request, pg_url, pipeline_stack):
    """One complete run on every table of one database; yields what the checks below read."""
    from tests.support.pipeline import PipelineClient

    name = request.param
    path, context = DATABASES[name]
    dbname = f"real_{name}"
    url = create_database(pg_url, dbname)
    load_dump(url, path)
    client = PipelineClient(pipeline_stack)
    listed = client.request("POST", "/api/v0/database/tables", {"db_connection": url}, expect=200)["data"]["tables"]
    tables = listed + (HOSTILE_EXTRA if name == "hostile" else [])
    task_id, status = client.run(tables, timeout=300, db_connection=url, business_context=context, db_name=dbname,
                                 task_name=f"real {name}")
    yield {"name": name, "url": url, "client": client, "task_id": task_id, "status": status, "tables": tables,
           "vector_url": pipeline_stack.pgvector_url}
    drop_database(pg_url, dbname)


def test_names_are_accepted_as_written_too(pg_url, pipeline):
    """The unquoted spellings a user types resolve as PostgreSQL resolves them (exact, then folded)."""
    url = create_database(pg_url, "real_hostile_names")
    try:
        load_dump(url, DATABASES["hostile"][0])
        # Sales.CUSTOMERS: the schema matches "Sales" exactly, the table only as folded (customers).
        for written, full_name in (("服务区日报", 'public."服务区日报"'), ("public.SalesOrder", 'public."SalesOrder"'),
                                   ("Sales.CUSTOMERS", '"Sales".customers'), ("PUBLIC.Customers", "public.customers")):
            reply = pipeline.request("POST", "/api/v0/database/table/ddl",
                                     {"db_connection": url, "table": written, "type": "ddl"})
            assert reply["code"] == 200, reply
            assert reply["data"]["table_info"]["full_name"] == full_name
    finally:
        drop_database(pg_url, "real_hostile_names")


def _relation_columns(cur, schema: str, relation: str) -> list[tuple[str, str, bool]]:
    cur.execute(
        "select a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull from pg_attribute a "
        "join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped order by a.attnum",
        (schema, relation))
    return cur.fetchall()


def _ddl_files(run) -> dict[str, str]:
    files = run["client"].files(run["task_id"])
    return {n: run["client"].file_text(run["task_id"], n) for n in files if n.endswith(".ddl")}


def test_every_table_is_documented(real_run):
    status = real_run["status"]
    assert status["status"] == "completed", (status.get("error_message"), status.get("step_status"))
    ddl = status["results"]["ddl_generation"]
    assert ddl["tables_failed"] == 0, ddl
    assert ddl["tables_succeeded"] == len(real_run["tables"])
    files = real_run["client"].files(real_run["task_id"])
    assert len([n for n in files if n.endswith(".ddl")]) == len(real_run["tables"])
    assert len([n for n in files if n.endswith("_detail.md") and n != "metadata_detail.md"]) == len(real_run["tables"])


def test_every_ddl_file_executes_and_recreates_every_column(real_run):
    from chalicelib.pipeline.models import TableRef

    conn = psycopg2.connect(real_run["url"])
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select n.nspname, c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where c.relkind in ('r', 'p', 'v', 'm') and n.nspname not in ('pg_catalog', 'information_schema')")
            relations = {(s, r): k for s, r, k in cur.fetchall()}
        conn.rollback()
        ddl_files = _ddl_files(real_run)
        assert ddl_files
        checked = set()
        for file_name, text in sorted(ddl_files.items()):
            # The file creates its relation once (CREATE TABLE / VIEW / MATERIALIZED VIEW name): find which one.
            owners = [key for key in relations if re.search(
                r"CREATE\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW)\s+" + re.escape(TableRef(*key).sql_name) + r"[\s(]",
                text, re.IGNORECASE)]
            assert len(owners) == 1, (file_name, owners)
            schema, relation = owners[0]
            kind = relations[owners[0]]
            with conn.cursor() as cur:
                expected = _relation_columns(cur, schema, relation)
                keyword = {"v": "view", "m": "materialized view"}.get(kind, "table")
                cur.execute(sql.SQL("alter {} {}.{} rename to {}").format(
                    sql.SQL(keyword), sql.Identifier(schema), sql.Identifier(relation),
                    sql.Identifier(f"{relation[:40]}__original")))
                cur.execute(text)
                recreated = _relation_columns(cur, schema, relation)
            conn.rollback()
            assert recreated == expected, file_name
            checked.add(owners[0])
        assert len(checked) == len(real_run["tables"])
    finally:
        conn.close()


def test_every_kept_sql_passes_explain(real_run):
    client, task_id = real_run["client"], real_run["task_id"]
    primary = [n for n, f in client.files(task_id).items() if f["is_primary"]]
    assert len(primary) == 1
    pairs = json.loads(client.file_text(task_id, primary[0]))
    assert pairs, "no pair survived validation"
    conn = psycopg2.connect(real_run["url"])
    conn.set_session(readonly=True)
    try:
        for pair in pairs:
            with conn.cursor() as cur:
                cur.execute("set local statement_timeout = 5000")
                cur.execute("explain " + pair["sql"].rstrip().rstrip(";"))
            conn.rollback()
    finally:
        conn.close()


def test_vectors_land_in_the_vector_database_only(real_run):
    ddl_texts = set(_ddl_files(real_run).values())
    with psycopg2.connect(real_run["vector_url"]) as conn, conn.cursor() as cur:
        cur.execute("select e.document from langchain_pg_embedding e join langchain_pg_collection c "
                    "on c.uuid = e.collection_id where c.name = 'ddl' and e.document = any(%s)", (list(ddl_texts),))
        stored = {row[0] for row in cur.fetchall()}
    assert stored == ddl_texts
    with psycopg2.connect(real_run["url"]) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('public.langchain_pg_embedding') is null")
        assert cur.fetchone()[0], "vectors were written into the business database"
