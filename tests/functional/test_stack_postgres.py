"""LocalStack with PostgreSQL: the demo database is created and loaded once, then reused; pgvector is ready."""
from __future__ import annotations

import json
import uuid

import psycopg2
import pytest
from chalice import Chalice

from infra.local.stack import LocalStack, database_url

PASS_MACHINE = {"StartAt": "Nothing", "States": {"Nothing": {"Type": "Pass", "End": True}}}


def test_demo_database_is_created_once_and_reused(pg_url):
    pytest.importorskip("infra.local.demo_db")
    name = f"stack_demo_{uuid.uuid4().hex[:8]}"
    kwargs = {"server_url": pg_url, "demo_database": name, "app_factory": lambda: Chalice(app_name="pg"),
              "function_names": [], "definition_text": json.dumps(PASS_MACHINE), "persist": False}
    try:
        with LocalStack(**kwargs) as stack:
            assert stack.db_url == database_url(pg_url, name)
            with psycopg2.connect(stack.pgvector_url) as conn, conn.cursor() as cur:
                cur.execute("select extname from pg_extension where extname = 'vector'")
                assert cur.fetchone()
            with psycopg2.connect(stack.db_url) as conn, conn.cursor() as cur:
                cur.execute("select count(*) from information_schema.tables where table_schema not in "
                            "('pg_catalog', 'information_schema')")
                assert cur.fetchone()[0] > 0
                cur.execute("create table reload_sentinel (id int)")  # gone if the database were reloaded
        with LocalStack(**kwargs) as stack:
            with psycopg2.connect(stack.db_url) as conn, conn.cursor() as cur:
                cur.execute("select to_regclass('public.reload_sentinel') is not null")
                assert cur.fetchone()[0]
    finally:
        conn = psycopg2.connect(pg_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        conn.close()
