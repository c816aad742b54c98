"""Restore of vector-table backups (vectors.py writes them): each CSV streamed into COPY FROM, all tables in one
transaction, with the conflict rules of restore_vector_backup. A CSV is never held whole in memory: the header
check and the dimension of a table to create read only the first records, the load reads it in pieces.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

import psycopg2
from psycopg2 import errors as pg_errors
from psycopg2 import sql as pgsql

from chalicelib import errors
from chalicelib.pipeline.db import connect
from chalicelib.pipeline.vector_layout import COLLECTION_TABLE, EMBEDDING_TABLE
from chalicelib.pipeline.vectors import (
    RESTORE_CONFLICT_MODES,
    VECTOR_TABLES,
    describe_error,
    table_columns,
    table_exists,
)

logger = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 1024 * 1024  # how much of a CSV COPY FROM reads at a time
_READ_BUFFER = 64 * 1024
_LOCK_TIMEOUT_MS = 30_000

# A backup CSV: its bytes (small CSVs, tests) or a function opening it from its start as a fresh binary stream
# (FileStore.open_stream: S3's response body); a stream is closed once read.
CsvSource = bytes | Callable[[], BinaryIO]


class _Reader(io.RawIOBase):
    """A source stream as a raw stream (so io.BufferedReader and TextIOWrapper can read it); remembers the error a
    read raised, which psycopg2 reports only as a failed COPY."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except Exception as exc:
            self.error = exc
            raise

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()


def _opener(source: CsvSource) -> Callable[[], BinaryIO]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return lambda: io.BytesIO(data)
    return source


@contextlib.contextmanager
def _open(table: str, opener: Callable[[], BinaryIO]) -> Iterator[_Reader]:
    try:
        stream = opener()
    except errors.DataPipelineError:
        raise
    except Exception as exc:
        raise errors.VectorRestoreFailed(f"cannot read the backup CSV of {table}, nothing restored: "
                                         f"{describe_error(exc)}") from exc
    reader = _Reader(stream)
    try:
        yield reader
    finally:
        reader.close()


@contextlib.contextmanager
def _records(table: str, opener: Callable[[], BinaryIO]) -> Iterator[Iterator[list[str]]]:
    """The CSV's records (header first), decoded as they are read; the stream is closed on leaving."""
    with _open(table, opener) as raw:
        text = io.TextIOWrapper(io.BufferedReader(raw, _READ_BUFFER), encoding="utf-8", newline="")
        try:
            yield csv.reader(text)
        except UnicodeDecodeError as exc:
            raise errors.VectorRestoreFailed(f"the backup CSV of {table} is not UTF-8: {exc}") from exc
        except (csv.Error, json.JSONDecodeError) as exc:
            raise errors.VectorRestoreFailed(f"the backup CSV of {table} is malformed: {exc}") from exc
        except (OSError, ValueError) as exc:
            cause = raw.error or exc
            raise errors.VectorRestoreFailed(f"cannot read the backup CSV of {table}, nothing restored: "
                                             f"{describe_error(cause)}") from exc
        finally:
            text.detach()


def _csv_header(table: str, opener: Callable[[], BinaryIO]) -> list[str]:
    with _records(table, opener) as records:
        header = next(records, None)
    if not header:
        raise errors.VectorRestoreFailed(f"the backup CSV for {table} has no header row")
    return header


def _backup_dimension(opener: Callable[[], BinaryIO] | None) -> int | None:
    """Length of the first vector in the embedding backup (reads up to the first row that has one)."""
    if opener is None:
        return None
    with _records(EMBEDDING_TABLE, opener) as records:
        header = next(records, None) or []
        if "embedding" not in header:
            return None
        column = header.index("embedding")
        for record in records:
            if len(record) > column and record[column]:
                return len(json.loads(record[column]))
    return None


def restore_vector_tables(pg_url: str, csv_by_table: Mapping[str, CsvSource], truncate_first: bool,
                          *, on_conflict: str = "error") -> dict[str, int]:
    """Rows restored per table (see restore_vector_backup)."""
    report = restore_vector_backup(pg_url, csv_by_table, truncate_first, on_conflict=on_conflict)
    return {table: info["restored"] for table, info in report.items()}


def restore_vector_backup(pg_url: str, csv_by_table: Mapping[str, CsvSource], truncate_first: bool,
                          *, on_conflict: str = "error") -> dict[str, dict[str, int]]:
    """Load backup CSVs back (header names map the columns), all in one transaction: all or nothing.

    csv_by_table: table -> its CSV (CsvSource: bytes, or a function opening it as a stream; a stream is opened
        for the header check, then again for the load, and for the dimension when the table must be created).
    truncate_first: the given tables are emptied first (restoring the collection table that way requires the
        embedding table too, since it references it).
    A backed-up row whose primary key is already in the table with the same content is left alone
    (`unchanged`). One whose key exists with other content is a conflict; on_conflict decides:
        "error" (default) -> errors.VectorRestoreConflict (409), nothing restored;
        "skip" -> the existing row is kept, the others are restored (`skipped_conflicting` counts them).
    Any other clash (a collection name taken by another uuid, embeddings whose collection is absent) is a
    VectorRestoreConflict too; other database failures, and a CSV that cannot be read, are
    errors.VectorRestoreFailed. Missing vector tables are created (LangChain layout, dimension of the backed-up
    vectors) before the restore.
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
    openers = {table: _opener(source) for table, source in csv_by_table.items()}
    headers = {table: _csv_header(table, opener) for table, opener in openers.items()}
    report: dict[str, dict[str, int]] = {}
    conn = connect(pg_url, application_name="data_pipeline_vectors")
    try:
        _ensure_tables(conn, openers, headers)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(_LOCK_TIMEOUT_MS),))
            if truncate_first and openers:
                names = [pgsql.Identifier(t) for t in VECTOR_TABLES if t in openers]
                cur.execute(pgsql.SQL("TRUNCATE {}").format(pgsql.SQL(", ").join(names)))
            for table in VECTOR_TABLES:
                if table in openers:
                    report[table] = _restore_table(cur, table, headers[table], openers[table], on_conflict)
    except psycopg2.IntegrityError as exc:
        raise errors.VectorRestoreConflict(
            f"vector restore conflicts with the rows in the database, nothing restored: {describe_error(exc)}"
        ) from exc
    except pg_errors.LockNotAvailable as exc:
        raise errors.VectorRestoreConflict("the vector tables are locked by another transaction; nothing restored "
                                           "(try again later)") from exc
    except psycopg2.Error as exc:
        raise errors.VectorRestoreFailed(f"vector restore failed, nothing restored: {describe_error(exc)}") from exc
    finally:
        conn.close()
    logger.info("vector restore done", extra={"restored": {t: r["restored"] for t, r in report.items()}})
    return report


def _ensure_tables(conn: Any, openers: Mapping[str, Callable[[], BinaryIO]], headers: Mapping[str, list[str]]
                   ) -> None:
    """Create the LangChain tables when a restore targets a database without them (own transaction), in the
    layout the backup of the embedding table has (langchain_community when it holds `uuid` and `custom_id`)."""
    from chalicelib.pipeline.vector_layout import COMMUNITY, POSTGRES, ensure_vector_tables

    with conn.cursor() as cur:
        missing = [t for t in VECTOR_TABLES if t in openers and not table_exists(cur, t)]
    conn.rollback()
    if not missing:
        return
    dimension = _backup_dimension(openers.get(EMBEDDING_TABLE))
    if dimension is None:
        raise errors.VectorRestoreConflict(
            f"cannot restore {', '.join(missing)}: the table does not exist and the backup holds no vector to "
            "tell its dimension"
        )
    header = set(headers.get(EMBEDDING_TABLE) or ())
    layout = COMMUNITY if {"uuid", "custom_id"} <= header and "id" not in header else POSTGRES
    ensure_vector_tables(conn, dimension, layout=layout.name)


def _copy_in(cur: Any, table: str, copy: pgsql.Composable, opener: Callable[[], BinaryIO]) -> int:
    """COPY FROM the CSV stream, COPY_CHUNK_BYTES at a time; rows copied. A failed read is VectorRestoreFailed
    naming it (psycopg2 reports it as a cancelled COPY)."""
    with _open(table, opener) as raw:
        try:
            cur.copy_expert(copy.as_string(cur), raw, size=COPY_CHUNK_BYTES)
        except psycopg2.Error as exc:
            if raw.error is None:
                raise
            if isinstance(raw.error, errors.DataPipelineError):
                raise raw.error from exc
            raise errors.VectorRestoreFailed(f"reading the backup CSV of {table} failed, nothing restored: "
                                             f"{describe_error(raw.error)}") from raw.error
    return cur.rowcount


def _restore_table(cur: Any, table: str, header: list[str], opener: Callable[[], BinaryIO], on_conflict: str
                   ) -> dict[str, int]:
    """COPY into a temporary copy of the table, compare with the rows already there, then INSERT … SELECT."""
    columns, _, pk = table_columns(cur, table)
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
    in_backup = _copy_in(cur, table, copy, opener)
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
