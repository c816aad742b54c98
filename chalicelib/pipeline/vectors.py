"""Vector backup / truncate / restore for the LangChain PGVector tables.

The backup reads both tables from one REPEATABLE READ snapshot and verifies each CSV against a COUNT(*)
from that same snapshot before it is stored; truncation empties only `langchain_pg_embedding`, and only
when its row count still equals the backed-up one.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg2
from psycopg2 import errors as pg_errors
from psycopg2 import sql as pgsql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from chalicelib import errors
from chalicelib.pipeline.db import connect, mask_url
from chalicelib.pipeline.vector_layout import COLLECTION_TABLE, EMBEDDING_TABLE

logger = logging.getLogger(__name__)

VECTOR_TABLES = (COLLECTION_TABLE, EMBEDDING_TABLE)  # restore order: parents first
BACKUP_DIR = "vector_bak"
BACKUP_LOG_NAME = f"{BACKUP_DIR}/vector_backup_log.txt"
_SPOOL_BYTES = 32 * 1024 * 1024
_LOCK_TIMEOUT_MS = 30_000

csv.field_size_limit(1 << 30)  # documents and vectors are long fields


def backup_file_name(table: str, ts: str) -> str:
    return f"{BACKUP_DIR}/{table}_{ts}.csv"


def _columns(cur: Any, table: str) -> tuple[list[str], dict[str, str], list[str]]:
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


def _table_exists(cur: Any, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
    return bool(cur.fetchone()[0])


def _verify_csv(fh: Any, columns: list[str], types: dict[str, str]) -> int:
    """Data rows in the CSV (header checked, JSON columns parsed); raises ValueError when malformed."""
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


def _dump_table(cur: Any, table: str) -> tuple[int, bytes, list[str]]:
    columns, types, pk = _columns(cur, table)
    cur.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(table)))
    count = int(cur.fetchone()[0])
    order = pgsql.SQL(" ORDER BY {}").format(pgsql.SQL(", ").join(map(pgsql.Identifier, pk))) if pk else pgsql.SQL("")
    copy = pgsql.SQL("COPY (SELECT {cols} FROM {table}{order}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
        cols=pgsql.SQL(", ").join(map(pgsql.Identifier, columns)), table=pgsql.Identifier(table), order=order,
    )
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as buf:
        cur.copy_expert(copy.as_string(cur), buf)
        buf.seek(0)
        rows = _verify_csv(buf, columns, types)
        if rows != count:
            raise ValueError(f"{table}: CSV holds {rows} rows but COUNT(*) in the same snapshot is {count}")
        buf.seek(0)
        data = buf.read()
    return count, data, columns


def backup_vector_tables(pg_url: str, put_file: Callable[[str, bytes], None], ts: str) -> dict[str, Any]:
    """CSV of each vector table (header row, JSON columns as JSON text) from one consistent snapshot.

    Writes vector_bak/{table}_{ts}.csv and vector_bak/vector_backup_log.txt through `put_file`.
    A missing table counts as 0 rows ("table does not exist"). Any failure raises errors.VectorBackupFailed.
    Returns {"tables": {table: {rows, bytes, seconds, file, exists}}, "expected"/"counts": {table: rows}, ...};
    pass "counts" to truncate_embeddings.
    """
    started = time.monotonic()
    database = mask_url(pg_url)
    tables: dict[str, dict[str, Any]] = {}
    dumps: dict[str, bytes] = {}
    try:
        conn = connect(pg_url, application_name="data_pipeline_vectors")
    except errors.DataPipelineError as exc:
        raise errors.VectorBackupFailed(f"vector backup failed: {exc.message}") from exc
    except psycopg2.Error as exc:
        raise errors.VectorBackupFailed(f"vector backup failed: cannot connect to {database}: "
                                        f"{type(exc).__name__}") from exc
    try:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with conn.cursor() as cur:
            for table in VECTOR_TABLES:
                t0 = time.monotonic()
                if not _table_exists(cur, table):
                    tables[table] = {"rows": 0, "bytes": 0, "seconds": 0.0, "file": None, "exists": False}
                    continue
                rows, data, _ = _dump_table(cur, table)
                dumps[table] = data
                tables[table] = {"rows": rows, "bytes": len(data), "seconds": round(time.monotonic() - t0, 3),
                                 "file": backup_file_name(table, ts), "exists": True}
        conn.rollback()
    except (psycopg2.Error, ValueError, OSError) as exc:
        raise errors.VectorBackupFailed(f"vector backup failed: {_describe(exc)}") from exc
    finally:
        conn.close()
    try:
        for table, data in dumps.items():
            put_file(backup_file_name(table, ts), data)
        duration = round(time.monotonic() - started, 3)
        put_file(BACKUP_LOG_NAME, render_backup_log(tables, database, ts, duration).encode("utf-8"))
    except Exception as exc:  # any storage failure means the backup is not there
        raise errors.VectorBackupFailed(f"vector backup could not be stored: {_describe(exc)}") from exc
    logger.info("vector backup done: %s", {t: v["rows"] for t, v in tables.items()})
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
        raise errors.VectorTruncateFailed(f"vector truncate failed: {_describe(exc)}") from exc
    try:
        with conn, conn.cursor() as cur:
            if not _table_exists(cur, EMBEDDING_TABLE):
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
        logger.info("truncated %s (%d rows)", EMBEDDING_TABLE, count)
        return count
    except psycopg2.Error as exc:
        raise errors.VectorTruncateFailed(f"vector truncate failed: {_describe(exc)}") from exc
    finally:
        conn.close()


RESTORE_CONFLICT_MODES = ("error", "skip")


def restore_vector_tables(pg_url: str, csv_by_table: dict[str, bytes], truncate_first: bool,
                          *, on_conflict: str = "error") -> dict[str, int]:
    """Rows restored per table (see restore_vector_backup)."""
    report = restore_vector_backup(pg_url, csv_by_table, truncate_first, on_conflict=on_conflict)
    return {table: info["restored"] for table, info in report.items()}


def restore_vector_backup(pg_url: str, csv_by_table: dict[str, bytes], truncate_first: bool,
                          *, on_conflict: str = "error") -> dict[str, dict[str, int]]:
    """Load backup CSVs back (header names map the columns), all in one transaction: all or nothing.

    truncate_first: the given tables are emptied first (restoring the collection table that way requires the
        embedding table too, since it references it).
    A backed-up row whose primary key is already in the table with the same content is left alone
    (`unchanged`). One whose key exists with other content is a conflict; on_conflict decides:
        "error" (default) -> errors.VectorRestoreConflict (409), nothing restored;
        "skip" -> the existing row is kept, the others are restored (`skipped_conflicting` counts them).
    Any other clash (a collection name taken by another uuid, embeddings whose collection is absent) is a
    VectorRestoreConflict too; other database failures are errors.VectorRestoreFailed. Missing vector tables are
    created (LangChain layout, dimension of the backed-up vectors) before the restore.
    Returns {table: {rows_in_backup, restored, unchanged, skipped_conflicting}}.
    """
    unknown = set(csv_by_table) - set(VECTOR_TABLES)
    if unknown:
        raise errors.ValidationError(f"not a vector table: {', '.join(sorted(unknown))}", invalid_params=["tables"])
    if on_conflict not in RESTORE_CONFLICT_MODES:
        raise errors.ValidationError(f"on_conflict must be one of: {', '.join(RESTORE_CONFLICT_MODES)}",
                                     invalid_params=["on_conflict"])
    if truncate_first and COLLECTION_TABLE in csv_by_table and EMBEDDING_TABLE not in csv_by_table:
        raise errors.ValidationError(
            f"restoring {COLLECTION_TABLE} with truncate_first also needs {EMBEDDING_TABLE} (it references it)",
            invalid_params=["tables"],
        )
    headers = {table: _csv_header(table, data) for table, data in csv_by_table.items()}
    report: dict[str, dict[str, int]] = {}
    conn = connect(pg_url, application_name="data_pipeline_vectors")
    try:
        _ensure_tables(conn, csv_by_table)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(_LOCK_TIMEOUT_MS),))
            if truncate_first and csv_by_table:
                names = [pgsql.Identifier(t) for t in VECTOR_TABLES if t in csv_by_table]
                cur.execute(pgsql.SQL("TRUNCATE {}").format(pgsql.SQL(", ").join(names)))
            for table in VECTOR_TABLES:
                if table in csv_by_table:
                    report[table] = _restore_table(cur, table, headers[table], csv_by_table[table], on_conflict)
    except psycopg2.IntegrityError as exc:
        raise errors.VectorRestoreConflict(
            f"vector restore conflicts with the rows in the database, nothing restored: {_describe(exc)}"
        ) from exc
    except pg_errors.LockNotAvailable as exc:
        raise errors.VectorRestoreConflict("the vector tables are locked by another transaction; nothing restored "
                                           "(try again later)") from exc
    except psycopg2.Error as exc:
        raise errors.VectorRestoreFailed(f"vector restore failed, nothing restored: {_describe(exc)}") from exc
    finally:
        conn.close()
    logger.info("vector restore done: %s", report)
    return report


def _csv_header(table: str, data: bytes) -> list[str]:
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    header = next(csv.reader(io.StringIO(first)), None)
    if not header:
        raise errors.VectorRestoreFailed(f"the backup CSV for {table} has no header row")
    return header


def _ensure_tables(conn: Any, csv_by_table: dict[str, bytes]) -> None:
    """Create the LangChain tables when a restore targets a database without them (own transaction), in the
    layout the backup of the embedding table has (langchain_community when it holds `uuid` and `custom_id`)."""
    from chalicelib.pipeline.vector_layout import COMMUNITY, POSTGRES, ensure_vector_tables

    with conn.cursor() as cur:
        missing = [t for t in VECTOR_TABLES if t in csv_by_table and not _table_exists(cur, t)]
    conn.rollback()
    if not missing:
        return
    dimension = _backup_dimension(csv_by_table.get(EMBEDDING_TABLE))
    if dimension is None:
        raise errors.VectorRestoreConflict(
            f"cannot restore {', '.join(missing)}: the table does not exist and the backup holds no vector to "
            "tell its dimension"
        )
    data = csv_by_table.get(EMBEDDING_TABLE)
    header = set(_csv_header(EMBEDDING_TABLE, data)) if data else set()
    layout = COMMUNITY if {"uuid", "custom_id"} <= header and "id" not in header else POSTGRES
    ensure_vector_tables(conn, dimension, layout=layout.name)


def _backup_dimension(data: bytes | None) -> int | None:
    if not data:
        return None
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    for row in reader:
        value = row.get("embedding")
        if value:
            return len(json.loads(value))
    return None


def _restore_table(cur: Any, table: str, header: list[str], data: bytes, on_conflict: str) -> dict[str, int]:
    """COPY into a temporary copy of the table, compare with the rows already there, then INSERT … SELECT."""
    columns, _, pk = _columns(cur, table)
    foreign = [c for c in header if c not in columns]
    if foreign:
        raise errors.VectorRestoreConflict(f"the backup of {table} has columns the table lacks: {', '.join(foreign)}")
    if not pk:
        raise errors.VectorRestoreFailed(f"{table} has no primary key; cannot restore it safely")
    target = pgsql.Identifier(table)
    staging = pgsql.Identifier(f"_restore_{table}")
    cols = pgsql.SQL(", ").join(map(pgsql.Identifier, header))
    cur.execute(pgsql.SQL("CREATE TEMPORARY TABLE {staging} (LIKE {target}) ON COMMIT DROP").format(
        staging=staging, target=target))
    copy = pgsql.SQL("COPY {staging} ({cols}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
        staging=staging, cols=cols)
    cur.copy_expert(copy.as_string(cur), io.BytesIO(data))
    in_backup = cur.rowcount
    # Rows whose key exists already: identical ones (compared as text, json has no equality) are left alone,
    # different ones are conflicts.
    key_match = pgsql.SQL(" AND ").join(
        pgsql.SQL("s.{c} = t.{c}").format(c=pgsql.Identifier(c)) for c in pk)
    row_s, row_t = _row_as_text("s", header), _row_as_text("t", header)
    first_key = pgsql.Identifier(pk[0])
    cur.execute(pgsql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE {row_s} IS DISTINCT FROM {row_t}), "
        "min(s.{key}::text) FILTER (WHERE {row_s} IS DISTINCT FROM {row_t}) "
        "FROM {staging} s JOIN {target} t ON {key_match}"
    ).format(row_s=row_s, row_t=row_t, key=first_key, staging=staging, target=target, key_match=key_match))
    existing, differing, example = cur.fetchone()
    if differing and on_conflict == "error":
        raise errors.VectorRestoreConflict(
            f"{differing} of the {in_backup} backed-up rows of {table} exist with other content (e.g. {example}); "
            "nothing restored: truncate before restoring, or keep the existing rows with on_conflict=skip"
        )
    conflict = (pgsql.SQL(" ON CONFLICT DO NOTHING") if on_conflict == "skip" else
                pgsql.SQL(" ON CONFLICT ({}) DO NOTHING").format(pgsql.SQL(", ").join(map(pgsql.Identifier, pk))))
    cur.execute(pgsql.SQL("INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging}{conflict}").format(
        target=target, cols=cols, staging=staging, conflict=conflict))
    restored = cur.rowcount
    cur.execute(pgsql.SQL("DROP TABLE {}").format(staging))
    return {"rows_in_backup": in_backup, "restored": restored, "unchanged": existing - differing,
            "skipped_conflicting": in_backup - restored - (existing - differing)}


def _row_as_text(alias: str, columns: list[str]) -> pgsql.Composable:
    return pgsql.SQL("ROW({})").format(pgsql.SQL(", ").join(
        pgsql.SQL("{}.{}::text").format(pgsql.Identifier(alias), pgsql.Identifier(c)) for c in columns))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, psycopg2.Error) and exc.pgerror:
        return exc.pgerror.strip().splitlines()[0]
    if isinstance(exc, errors.DataPipelineError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
