"""Vector backup / truncate for the LangChain PGVector tables (restore: vector_restore.py).

The backup reads both tables from one REPEATABLE READ snapshot and verifies each CSV against a COUNT(*)
from that same snapshot before it is stored; truncation empties only `langchain_pg_embedding`, and only
when its row count still equals the backed-up one. Each table goes through a temporary file that spills to
disk and is uploaded from that file, one table at a time: memory does not grow with the tables.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

import psycopg2
from psycopg2 import sql as pgsql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from chalicelib import errors
from chalicelib.pipeline.db import connect, mask_url
from chalicelib.pipeline.vector_layout import COLLECTION_TABLE, EMBEDDING_TABLE

logger = logging.getLogger(__name__)

VECTOR_TABLES = (COLLECTION_TABLE, EMBEDDING_TABLE)  # restore order: parents first
BACKUP_DIR = "vector_bak"
BACKUP_LOG_NAME = f"{BACKUP_DIR}/vector_backup_log.txt"
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
RESTORE_CONFLICT_MODES = ("error", "skip")  # what vector_restore does with a backed-up row that differs
SPOOL_BYTES = 1024 * 1024  # a backup CSV larger than this is written to disk, not kept in memory
_LOCK_TIMEOUT_MS = 30_000

csv.field_size_limit(1 << 30)  # documents and vectors are long fields


class BackupFiles(Protocol):
    """Where a backup is written (TaskFiles): uploads from an open file, and removal of a partial set."""

    def put_file(self, name: str, fileobj: BinaryIO, content_type: str | None = None) -> None: ...

    def delete_many(self, names: Iterable[str]) -> int: ...


def backup_file_name(table: str, ts: str) -> str:
    return f"{BACKUP_DIR}/{table}_{ts}.csv"


def table_columns(cur: Any, table: str) -> tuple[list[str], dict[str, str], list[str]]:
    """(stored columns in order, column -> type name, primary key columns); generated columns are skipped."""
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' "
        "ORDER BY a.attnum",
        (table,),
    )
    rows = cur.fetchall()
    cur.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (table,),
    )
    pk = [r[0] for r in cur.fetchall()]
    return [r[0] for r in rows], dict(rows), pk


def table_exists(cur: Any, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
    return bool(cur.fetchone()[0])


def _verify_csv(fh: Any, columns: list[str], types: dict[str, str]) -> int:
    """Data rows in the CSV (header checked, JSON columns parsed), read one record at a time; raises ValueError
    when malformed."""
    json_cols = [i for i, c in enumerate(columns) if types[c] in {"json", "jsonb"}]
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if header != columns:
            raise ValueError(f"CSV header {header} does not match columns {columns}")
        rows = 0
        for record in reader:
            if len(record) != len(columns):
                raise ValueError(f"CSV row {rows + 1} has {len(record)} fields, expected {len(columns)}")
            for i in json_cols:
                if record[i] != "":
                    json.loads(record[i])
            rows += 1
        return rows
    finally:
        text.detach()  # the caller still reads the underlying file


def _dump_table(cur: Any, table: str, buf: BinaryIO) -> tuple[int, int]:
    """COPY the table into `buf` and verify it; (rows, bytes), `buf` left at its start."""
    columns, types, pk = table_columns(cur, table)
    cur.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(table)))
    count = int(cur.fetchone()[0])
    order = pgsql.SQL(" ORDER BY {}").format(pgsql.SQL(", ").join(map(pgsql.Identifier, pk))) if pk else pgsql.SQL("")
    copy = pgsql.SQL("COPY (SELECT {cols} FROM {table}{order}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
        cols=pgsql.SQL(", ").join(map(pgsql.Identifier, columns)), table=pgsql.Identifier(table), order=order,
    )
    cur.copy_expert(copy.as_string(cur), buf)
    size = buf.tell()
    buf.seek(0)
    rows = _verify_csv(buf, columns, types)
    if rows != count:
        raise ValueError(f"{table}: CSV holds {rows} rows but COUNT(*) in the same snapshot is {count}")
    buf.seek(0)
    return count, size


def _store(files: BackupFiles, name: str, fileobj: BinaryIO, content_type: str) -> None:
    try:
        files.put_file(name, fileobj, content_type)
    except Exception as exc:  # any storage failure means the backup is not there
        raise errors.VectorBackupFailed(f"vector backup could not be stored: {describe_error(exc)}") from exc


def _dump_and_store(conn: Any, files: BackupFiles, ts: str, stored: list[str]) -> dict[str, dict[str, Any]]:
    """Each table: COPY into a spooled temporary file, verify it, upload it, close it; then the next table."""
    tables: dict[str, dict[str, Any]] = {}
    conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
    with conn.cursor() as cur:
        for table in VECTOR_TABLES:
            t0 = time.monotonic()
            if not table_exists(cur, table):
                tables[table] = {"rows": 0, "bytes": 0, "seconds": 0.0, "file": None, "exists": False}
                continue
            name = backup_file_name(table, ts)
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buf:
                rows, size = _dump_table(cur, table, buf)
                _store(files, name, buf, CSV_CONTENT_TYPE)
            stored.append(name)
            tables[table] = {"rows": rows, "bytes": size, "seconds": round(time.monotonic() - t0, 3),
                             "file": name, "exists": True}
    conn.rollback()
    return tables


def backup_vector_tables(pg_url: str, files: BackupFiles, ts: str) -> dict[str, Any]:
    """CSV of each vector table (header row, JSON columns as JSON text) from one consistent snapshot.

    Writes vector_bak/{table}_{ts}.csv, then vector_bak/vector_backup_log.txt, through `files` (TaskFiles).
    A missing table counts as 0 rows ("table does not exist"). Any failure raises errors.VectorBackupFailed,
    after removing the CSVs this backup had already stored (no partial set is left to look like a backup).
    Returns {"tables": {table: {rows, bytes, seconds, file, exists}}, "expected"/"counts": {table: rows}, ...};
    pass "counts" to truncate_embeddings.
    """
    started = time.monotonic()
    database = mask_url(pg_url)
    try:
        conn = connect(pg_url, application_name="data_pipeline_vectors")
    except errors.DataPipelineError as exc:
        raise errors.VectorBackupFailed(f"vector backup failed: {exc.message}") from exc
    except psycopg2.Error as exc:
        raise errors.VectorBackupFailed(f"vector backup failed: cannot connect to {database}: "
                                        f"{type(exc).__name__}") from exc
    stored: list[str] = []
    try:
        try:
            tables = _dump_and_store(conn, files, ts, stored)
        finally:
            conn.close()
        duration = round(time.monotonic() - started, 3)
        log = render_backup_log(tables, database, ts, duration).encode("utf-8")
        _store(files, BACKUP_LOG_NAME, io.BytesIO(log), "text/plain; charset=utf-8")
    except errors.VectorBackupFailed as exc:
        raise errors.VectorBackupFailed(exc.message + _discard(files, stored)) from exc
    except (psycopg2.Error, ValueError, OSError) as exc:
        raise errors.VectorBackupFailed(f"vector backup failed: {describe_error(exc)}{_discard(files, stored)}") \
            from exc
    logger.info("vector backup done", extra={"rows": {t: v["rows"] for t, v in tables.items()},
                                             "bytes": sum(v["bytes"] for v in tables.values())})
    return {
        "timestamp": ts,
        "database": database,
        "tables": tables,
        "expected": {t: v["rows"] for t, v in tables.items()},
        "counts": {t: v["rows"] for t, v in tables.items()},  # same as "expected"; what the steps pass on
        "total_rows": sum(v["rows"] for v in tables.values()),
        "total_bytes": sum(v["bytes"] for v in tables.values()),
        "duration_seconds": duration,
        "log_file": BACKUP_LOG_NAME,
        "files": [v["file"] for v in tables.values() if v["file"]],
    }


def _discard(files: BackupFiles, stored: list[str]) -> str:
    """Remove the CSVs of a failed backup; what to add to the error message."""
    if not stored:
        return ""
    try:
        files.delete_many(stored)
    except Exception as exc:  # reported in the error, never hidden
        logger.error("partial vector backup not removed", extra={"files": stored, "error": describe_error(exc)})
        return f" (the partial files {', '.join(stored)} could not be removed: {describe_error(exc)})"
    return f" (the partial files {', '.join(stored)} were removed)"


def render_backup_log(tables: dict[str, dict[str, Any]], database: str, ts: str, duration: float) -> str:
    lines = [
        "Vector table backup",
        f"Timestamp: {ts}",
        f"Written at: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC",
        f"Database: {database}",
        "Snapshot: one REPEATABLE READ READ ONLY transaction; CSV row counts verified against COUNT(*)",
        "",
    ]
    for table, info in tables.items():
        if not info["exists"]:
            lines.append(f"{table}: 0 rows (table does not exist)")
        else:
            lines.append(f"{table}: {info['rows']} rows, {info['bytes']} bytes, {info['seconds']:.3f} s "
                         f"-> {info['file']}")
    lines += [
        "",
        f"Total rows: {sum(i['rows'] for i in tables.values())}",
        f"Total bytes: {sum(i['bytes'] for i in tables.values())}",
        f"Total duration: {duration:.3f} s",
    ]
    return "\n".join(lines) + "\n"


def truncate_embeddings(pg_url: str, expected: dict[str, int]) -> int:
    """TRUNCATE langchain_pg_embedding (never the collection table) if its row count still equals the backup's.

    One transaction: ACCESS EXCLUSIVE lock, COUNT(*), compare, TRUNCATE, commit. Returns the rows removed.
    Raises errors.VectorTruncateFailed when the count changed or anything fails.
    """
    if EMBEDDING_TABLE not in expected:
        raise errors.VectorTruncateFailed(f"no backed-up row count for {EMBEDDING_TABLE}; refusing to truncate")
    want = int(expected[EMBEDDING_TABLE])
    try:
        conn = connect(pg_url, application_name="data_pipeline_vectors")
    except (errors.DataPipelineError, psycopg2.Error) as exc:
        raise errors.VectorTruncateFailed(f"vector truncate failed: {describe_error(exc)}") from exc
    try:
        with conn, conn.cursor() as cur:
            if not table_exists(cur, EMBEDDING_TABLE):
                if want == 0:
                    return 0
                raise errors.VectorTruncateFailed(f"{EMBEDDING_TABLE} no longer exists but the backup had {want} rows")
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(_LOCK_TIMEOUT_MS),))
            table = pgsql.Identifier(EMBEDDING_TABLE)
            cur.execute(pgsql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
            cur.execute(pgsql.SQL("SELECT count(*) FROM {}").format(table))
            count = int(cur.fetchone()[0])
            if count != want:
                raise errors.VectorTruncateFailed(
                    f"{EMBEDDING_TABLE} has {count} rows but the backup has {want}: rows changed since the "
                    "backup; not truncated"
                )
            cur.execute(pgsql.SQL("TRUNCATE {}").format(table))
        logger.info("embeddings truncated", extra={"table": EMBEDDING_TABLE, "rows": count})
        return count
    except psycopg2.Error as exc:
        raise errors.VectorTruncateFailed(f"vector truncate failed: {describe_error(exc)}") from exc
    finally:
        conn.close()


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, psycopg2.Error) and exc.pgerror:
        return exc.pgerror.strip().splitlines()[0]
    if isinstance(exc, errors.DataPipelineError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
