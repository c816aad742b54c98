"""The local stack's PostgreSQL: which database holds the business data and which the vectors
(`resolve_databases`, the rule chalicelib/config.py applies per task), and the embedded server's databases
(the generated demo database, the `vector_store` database).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

DEMO_DATABASE = "highway_demo"
VECTOR_DATABASE = "vector_store"
# Written on the demo database once its load finished; a database without it is reloaded from scratch.
DEMO_LOADED_MARKER = "data_pipeline demo database: loaded"


def database_url(server_url: str, dbname: str) -> str:
    """The same server URL pointing at another database (pgserver URLs carry the socket in the query)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + dbname))


@dataclass(frozen=True)
class DatabaseTarget:
    """One database the local stack points the product at, and where that choice came from."""

    url: str | None
    source: str  # "DATA_PIPELINE_DB_URL", "PGVECTOR_DB_URL", an "embedded (...)" label, or "none"

    @property
    def from_environment(self) -> bool:
        return self.source in ("DATA_PIPELINE_DB_URL", "PGVECTOR_DB_URL")


@dataclass(frozen=True)
class Databases:
    business: DatabaseTarget
    vectors: DatabaseTarget

    def describe(self) -> list[str]:
        """Human-readable lines, passwords masked: what `make serve` prints at start."""
        from chalicelib.pipeline.db import mask_url

        def line(label: str, target: DatabaseTarget, missing: str) -> str:
            if not target.url:
                return f"{label}: {missing}"
            origin = f"from {target.source}" if target.from_environment else target.source
            return f"{label}: {mask_url(target.url)}  [{origin}]"

        return [line("business data", self.business, "none (no demo database; each task must give db_connection)"),
                line("vectors      ", self.vectors, "none")]


def _first_set(*candidates: tuple[str | None, str]) -> DatabaseTarget:
    """The first (url, where it came from) whose url is set; none set: no database."""
    return next((DatabaseTarget(url, source) for url, source in candidates if url), DatabaseTarget(None, "none"))


def resolve_databases(env_db: str | None, env_vectors: str | None, demo_url: str | None,
                      embedded_vectors_url: str | None, embedded_label: str = "embedded") -> Databases:
    """The local stack's rule (chalicelib/config.py applies the same one to each task):
    business data: DATA_PIPELINE_DB_URL, else the embedded demo database (a task's db_connection wins at run
    time); vectors: PGVECTOR_DB_URL, else DATA_PIPELINE_DB_URL, else the embedded `vector_store` database."""
    business = _first_set((env_db, "DATA_PIPELINE_DB_URL"), (demo_url, embedded_label))
    vectors = _first_set((env_vectors, "PGVECTOR_DB_URL"), (env_db, "DATA_PIPELINE_DB_URL"),
                         (embedded_vectors_url, embedded_label))
    return Databases(business, vectors)



def _admin(server_url: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(database_url(server_url, "postgres"))
    conn.autocommit = True
    return conn

def ensure_database(server_url: str, dbname: str) -> str:
    """The database on that server (created when missing) with the vector extension; its URL."""
    from psycopg2 import sql

    conn = _admin(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (dbname,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    finally:
        conn.close()
    url = database_url(server_url, dbname)
    _execute(url, "create extension if not exists vector")
    return url

def ensure_demo_database(server_url: str, demo_database: str) -> str:
    """The demo database on that server, generated on first use (then marked loaded and reused); its URL."""
    from psycopg2 import sql

    conn = _admin(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                (demo_database,),
            )
            row = cur.fetchone()
            if row is not None and row[0] == DEMO_LOADED_MARKER:
                logger.info("demo database %s already loaded", demo_database)
                return database_url(server_url, demo_database)
            name = sql.Identifier(demo_database)
            if row is not None:  # a load that did not finish: start again
                cur.execute(sql.SQL("drop database {} with (force)").format(name))
            cur.execute(sql.SQL("create database {}").format(name))
    finally:
        conn.close()
    url = database_url(server_url, demo_database)
    _execute(url, "create extension if not exists vector")
    started = time.monotonic()
    from infra.local.demo_db import load_demo_database

    load_demo_database(url)
    conn = _admin(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("comment on database {} is {}").format(
                    sql.Identifier(demo_database), sql.Literal(DEMO_LOADED_MARKER)
                )
            )
    finally:
        conn.close()
    logger.info("demo database %s loaded in %.1f s", demo_database, time.monotonic() - started)
    return url

def _execute(url: str, statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def start_databases(root: Path, server_url: str | None, load_demo: bool,
                    demo_database: str) -> tuple[Databases, Any, str]:
    """(the business and vector targets, the pgserver handle or None, the embedded server's label): where the
    environment (DATA_PIPELINE_DB_URL / PGVECTOR_DB_URL) says, else on the embedded server — `server_url`, or
    pgserver under `root/.local/pgdata`, started only when something is left unset."""
    env_db = (os.environ.get("DATA_PIPELINE_DB_URL") or "").strip() or None
    env_vectors = (os.environ.get("PGVECTOR_DB_URL") or "").strip() or None
    needs_server = env_db is None and (load_demo or env_vectors is None)
    pg, label, url = None, "embedded", None
    if needs_server and server_url is not None:
        label, url = "embedded (the stack's PostgreSQL server)", server_url
    elif needs_server:
        import pgserver

        pgdata = root / ".local" / "pgdata"
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        pg = pgserver.get_server(str(pgdata), cleanup_mode="stop")
        label, url = f"embedded (pgserver in {pgdata})", pg.get_uri()
        logger.info("embedded PostgreSQL running in %s", pgdata)
    demo_url = ensure_demo_database(url, demo_database) if url and load_demo else None
    vector_url = ensure_database(url, VECTOR_DATABASE) if url and env_vectors is None else None
    return resolve_databases(env_db, env_vectors, demo_url, vector_url, label), pg, label
