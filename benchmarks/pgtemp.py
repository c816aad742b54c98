"""A PostgreSQL (with pgvector) for one benchmark: pgserver under a temporary folder, removed afterwards.

`DATA_PIPELINE_BENCH_PGDATA` names a folder to use (and keep) instead. Each benchmark gets a fresh database.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
from psycopg2 import sql


def _with_database(url: str, dbname: str) -> str:
    head, _, query = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{dbname}" + (f"?{query}" if query else "")


def _admin(url: str):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def bench_database(prefix: str) -> Iterator[str]:
    """URL of a fresh database (vector extension created) on a benchmark-only PostgreSQL; dropped afterwards."""
    import pgserver

    configured = os.environ.get("DATA_PIPELINE_BENCH_PGDATA", "").strip()
    folder = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="data_pipeline_bench_"))
    server = pgserver.get_server(str(folder), cleanup_mode="stop")
    server_url = server.get_uri()
    dbname = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        conn = _admin(server_url)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
        conn.close()
        url = _with_database(server_url, dbname)
        conn = _admin(url)
        with conn.cursor() as cur:
            cur.execute("create extension if not exists vector")
        conn.close()
        yield url
    finally:
        with contextlib.suppress(psycopg2.Error):
            conn = _admin(server_url)
            with conn.cursor() as cur:
                cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))
            conn.close()
        if not configured:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)


class CountingCursor(psycopg2.extensions.cursor):
    """Counts the statements (execute / copy calls) sent through it, for the whole process."""

    count = 0

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's parameter name
        CountingCursor.count += 1
        return super().execute(query, vars)

    def copy_expert(self, sql, file, size=8192):
        CountingCursor.count += 1
        return super().copy_expert(sql, file, size)
