"""Vector backups and restores stream: a table of several MB goes through backup -> restore while the Python
allocations of the process stay far below its CSV size (tracemalloc), and the S3 adapter uploads and reads files
in pieces (multipart above the threshold, the response body as a stream)."""
from __future__ import annotations

import functools
import hashlib
import io
import tracemalloc

import boto3
import psycopg2
import pytest
from moto import mock_aws

from chalicelib import errors
from chalicelib.pipeline import vector_layout, vector_restore, vectors
from chalicelib.pipeline.db import database_name
from chalicelib.stores.files import FileStore, TaskFiles, stream_transfer_config
from tests.conftest import create_database, drop_database
from tests.support.backup_files import FolderFiles

TS = "20261201_120000"
COLLECTION = "0d6a1c7e-0000-5000-8000-000000000001"
ROWS = 2400  # 384-d vectors as text plus a document: about 12 MB of CSV
EMB, COLL = vector_layout.EMBEDDING_TABLE, vector_layout.COLLECTION_TABLE
# md5 of every row in key order, computed by PostgreSQL (nothing read into the test process).
DIGEST = ("select md5(string_agg(id || '|' || collection_id || '|' || embedding::text || '|' || document || '|' "
          "|| cmetadata::text, E'\\n' order by id)) from langchain_pg_embedding")


def _query(url: str, sql: str):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


@pytest.fixture
def big_db(scratch_db):
    """langchain_postgres tables holding ROWS embeddings of 384 random dimensions and a Chinese document each."""
    conn = psycopg2.connect(scratch_db)
    vector_layout.ensure_vector_tables(conn, 384)
    with conn, conn.cursor() as cur:
        cur.execute("insert into langchain_pg_collection values (%s, 'sql', null)", (COLLECTION,))
        cur.execute(
            "insert into langchain_pg_embedding (id, collection_id, embedding, document, cmetadata) "
            "select 'row-' || lpad(g::text, 5, '0') || '-sql', %s, "
            "(select array_agg(random()::real) from generate_series(1, 384) where g > 0)::vector, "
            "repeat('服务区 ' || g || ', \"营收\"\n', 12), jsonb_build_object('id', 'row-' || g, 'n', g) "
            "from generate_series(1, %s) g", (COLLECTION, ROWS))
    conn.close()
    return scratch_db


def _traced(fn, *args, **kwargs):
    """(result, peak bytes of Python allocations while fn ran)."""
    tracemalloc.start()
    try:
        result = fn(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_backup_and_restore_of_a_large_table_hold_no_table_in_memory(big_db, pg_url, tmp_path):
    digest = _query(big_db, DIGEST)[0][0]
    files = FolderFiles(tmp_path)
    report, backup_peak = _traced(vectors.backup_vector_tables, big_db, files, TS)
    csv_name = vectors.backup_file_name(EMB, TS)
    csv_bytes = files.path(csv_name).stat().st_size
    assert report["tables"][EMB]["rows"] == ROWS and report["tables"][EMB]["bytes"] == csv_bytes
    assert csv_bytes > 8 * 1024 * 1024
    assert files.names() == {csv_name, vectors.backup_file_name(COLL, TS), vectors.BACKUP_LOG_NAME}
    # The old backup read each CSV into bytes and kept both tables' bytes until the upload: peak > CSV size.
    assert backup_peak < csv_bytes / 4, (backup_peak, csv_bytes)

    # Restore into a database without the tables: created from the header and the first vector's dimension.
    target = create_database(pg_url, f"t_{database_name(big_db)[2:]}r")
    try:
        sources = {t: functools.partial(files.open_stream, vectors.backup_file_name(t, TS))
                   for t in vectors.VECTOR_TABLES}
        restored, restore_peak = _traced(vector_restore.restore_vector_backup, target, sources, False)
        assert restored[EMB] == {"rows_in_backup": ROWS, "restored": ROWS, "unchanged": 0, "skipped_conflicting": 0}
        assert restore_peak < csv_bytes / 4, (restore_peak, csv_bytes)
        assert _query(target, DIGEST)[0][0] == digest
        # The header check and the dimension of the table to create read only the first 64 KiB buffer.
        opened: dict[str, list[int]] = {t: [] for t in vectors.VECTOR_TABLES}
        counting = {t: functools.partial(CountingStream, files.path(vectors.backup_file_name(t, TS)), opened[t])
                    for t in vectors.VECTOR_TABLES}
        drop_database(pg_url, database_name(target))
        target = create_database(pg_url, database_name(target))
        vector_restore.restore_vector_backup(target, counting, False)
        header, dimension, load = opened[EMB]  # opened three times: header, dimension, COPY
        assert header <= 64 * 1024 and dimension <= 64 * 1024 and load == csv_bytes, opened
        assert _query(target, "select format_type(atttypid, atttypmod) from pg_attribute where attrelid = "
                              "'langchain_pg_embedding'::regclass and attname = 'embedding'")[0][0] == "vector(384)"
        # Restoring the same set again: every row is there with the same content, nothing added.
        again = vector_restore.restore_vector_backup(target, sources, False)
        assert again[EMB]["unchanged"] == ROWS and again[EMB]["restored"] == 0
    finally:
        drop_database(pg_url, database_name(target))


class CountingStream(io.FileIO):
    """A file that appends how many bytes were read from it to `opened` when it is closed."""

    def __init__(self, path, opened: list[int]):
        super().__init__(path, "rb")
        self._opened, self._read = opened, 0

    def read(self, size=-1):
        data = super().read(size)
        self._read += len(data)
        return data

    def close(self):
        if not self.closed:
            self._opened.append(self._read)
        super().close()


class BrokenStream(io.RawIOBase):
    """A CSV stream whose connection drops after `good` bytes."""

    def __init__(self, data: bytes, good: int):
        self._data, self._good, self._at = data, good, 0

    def readable(self):
        return True

    def read(self, size=-1):
        if self._at >= self._good:
            raise ConnectionResetError("connection reset by peer")
        size = len(self._data) if size < 0 else size
        chunk = self._data[self._at:min(self._at + size, self._good)]
        self._at += len(chunk)
        return chunk


def test_a_stream_failing_mid_restore_is_restore_failed_and_changes_nothing(big_db, tmp_path):
    files = FolderFiles(tmp_path)
    vectors.backup_vector_tables(big_db, files, TS)
    data = files.path(vectors.backup_file_name(EMB, TS)).read_bytes()
    _query(big_db, "delete from langchain_pg_embedding where id < 'row-01000' returning 1")
    left = _query(big_db, DIGEST)[0][0]
    # The header check reads the first records; the load then fails 3 MB into the file.
    with pytest.raises(errors.VectorRestoreFailed, match="reading the backup CSV of langchain_pg_embedding failed.*"
                                                         "connection reset by peer"):
        vector_restore.restore_vector_backup(big_db, {EMB: lambda: BrokenStream(data, 3 * 1024 * 1024)}, False)
    assert _query(big_db, DIGEST)[0][0] == left

    def missing():
        raise errors.FileNotFound("file vector_bak/x.csv not found in task t")

    with pytest.raises(errors.FileNotFound):
        vector_restore.restore_vector_backup(big_db, {EMB: missing}, False)


@pytest.fixture
def s3_files(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="backups")
        # 5 MiB parts (S3's minimum) so a file of a few MB is a multipart upload.
        yield TaskFiles("task_20261201_120000", FileStore(s3, "backups", stream_transfer_config(5 * 1024 * 1024)))


def test_s3_put_file_is_multipart_and_open_stream_reads_in_pieces(s3_files, big_db):
    report = vectors.backup_vector_tables(big_db, s3_files, TS)
    name = vectors.backup_file_name(EMB, TS)
    store = s3_files.store
    head = store.s3.head_object(Bucket=store.bucket, Key=store.key(s3_files.task_id, name))
    assert head["ContentLength"] == report["tables"][EMB]["bytes"]
    parts = -(-head["ContentLength"] // (5 * 1024 * 1024))
    assert head["ETag"].strip('"').endswith(f"-{parts}") and parts >= 3  # uploaded in parts
    assert head["ContentType"] == "text/csv; charset=utf-8"
    small = store.s3.head_object(Bucket=store.bucket, Key=store.key(s3_files.task_id, vectors.BACKUP_LOG_NAME))
    assert "-" not in small["ETag"] and small["ContentType"] == "text/plain; charset=utf-8"

    stream = s3_files.open_stream(name)
    digest, pieces = hashlib.md5(), 0
    while chunk := stream.read(1024 * 1024):
        digest.update(chunk)
        pieces += 1
    stream.close()
    assert pieces >= parts
    assert digest.hexdigest() == hashlib.md5(s3_files.get_bytes(name)).hexdigest()
    with pytest.raises(errors.FileNotFound):
        s3_files.open_stream("vector_bak/nothing.csv")

    # The restore reads the S3 streams (truncate first: the same rows are already in big_db).
    before = _query(big_db, DIGEST)[0][0]
    sources = {t: functools.partial(s3_files.open_stream, vectors.backup_file_name(t, TS))
               for t in vectors.VECTOR_TABLES}
    restored = vector_restore.restore_vector_tables(big_db, sources, True)
    assert restored == {COLL: 1, EMB: ROWS}
    assert _query(big_db, DIGEST)[0][0] == before
