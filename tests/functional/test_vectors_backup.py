"""Vector backup (verified CSV from one snapshot), guarded truncate, and restore round trip."""
from __future__ import annotations

import csv
import io
import json

import psycopg2
import pytest

from chalicelib import errors
from chalicelib.pipeline.models import QAPair
from chalicelib.pipeline.training import load_training_data
from chalicelib.pipeline.vector_restore import restore_vector_tables
from chalicelib.pipeline.vectors import backup_vector_tables, truncate_embeddings
from tests.functional.test_training_load import HashEmbedder
from tests.support.backup_files import MemoryFiles

TS = "20250701_143052"


def _query(url, sql):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _execute(url, sql):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def _snapshot(url):
    return _query(url, "select id, collection_id::text, embedding::text, document, cmetadata::text "
                       "from langchain_pg_embedding order by id")


@pytest.fixture
def loaded_db(scratch_db):
    multi_line = "SELECT %d\n, 'a;b' FROM t;"
    pairs = [QAPair(f"问题 {i}，含逗号和\"引号\"", multi_line % i) for i in range(7)]
    docs = ["## 多行\n文档, with \"quotes\"\nand newlines\r\nand CRLF", "## plain"]
    load_training_data(scratch_db, HashEmbedder(8), ddl=["create table t (id int);"], documentation=docs,
                       pairs=pairs, batch_size=3)
    return scratch_db


def test_backup_writes_verified_csv_and_log(loaded_db):
    files = MemoryFiles()
    result = backup_vector_tables(loaded_db, files, TS)
    assert set(files) == {f"vector_bak/langchain_pg_collection_{TS}.csv", f"vector_bak/langchain_pg_embedding_{TS}.csv",
                          "vector_bak/vector_backup_log.txt"}
    assert result["expected"] == result["counts"] == {"langchain_pg_collection": 3, "langchain_pg_embedding": 10}
    emb = list(csv.DictReader(io.StringIO(files[f"vector_bak/langchain_pg_embedding_{TS}.csv"].decode(),
                                          newline="")))
    assert len(emb) == 10
    for row in emb:
        assert json.loads(row["cmetadata"]) == {"id": row["id"], "embedding_model": "hash-8", "embedding_dim": 8}
        assert len(json.loads(row["embedding"])) == 8
    assert any("\r\nand CRLF" in row["document"] for row in emb)
    coll = list(csv.DictReader(io.StringIO(files[f"vector_bak/langchain_pg_collection_{TS}.csv"].decode())))
    assert sorted(r["name"] for r in coll) == ["ddl", "documentation", "sql"]
    log = files["vector_bak/vector_backup_log.txt"].decode()
    assert "langchain_pg_embedding: 10 rows" in log and "Total duration" in log and TS in log
    emb_bytes = files[f"vector_bak/langchain_pg_embedding_{TS}.csv"]
    assert result["tables"]["langchain_pg_embedding"]["bytes"] == len(emb_bytes)


def test_missing_tables_are_zero_rows(scratch_db):
    files = MemoryFiles()
    result = backup_vector_tables(scratch_db, files, TS)
    assert result["expected"] == {"langchain_pg_collection": 0, "langchain_pg_embedding": 0}
    assert list(files) == ["vector_bak/vector_backup_log.txt"]
    assert "0 rows (table does not exist)" in files["vector_bak/vector_backup_log.txt"].decode()
    assert truncate_embeddings(scratch_db, result["expected"]) == 0


class FailingFiles(MemoryFiles):
    """Storage that refuses the file whose name contains `fail_on`."""

    def __init__(self, fail_on: str):
        super().__init__()
        self.fail_on = fail_on

    def put_file(self, name, fileobj, content_type=None):
        if self.fail_on in name:
            raise OSError("bucket gone")
        super().put_file(name, fileobj, content_type)


@pytest.mark.parametrize("fail_on", ["langchain_pg_collection", "langchain_pg_embedding", "vector_backup_log"])
def test_storage_failure_is_backup_failed_and_leaves_no_partial_set(loaded_db, fail_on):
    files = FailingFiles(fail_on)
    with pytest.raises(errors.VectorBackupFailed, match="bucket gone") as failure:
        backup_vector_tables(loaded_db, files, TS)
    # The CSVs stored before the failure are removed: nothing is left to be listed as a backup set.
    assert dict(files) == {}
    if fail_on != "langchain_pg_collection":
        assert "were removed" in failure.value.message


def test_truncate_only_embeddings_and_only_when_counts_match(loaded_db):
    result = backup_vector_tables(loaded_db, MemoryFiles(), TS)
    _execute(loaded_db, "delete from langchain_pg_embedding where id = (select min(id) from langchain_pg_embedding)")
    with pytest.raises(errors.VectorTruncateFailed, match="rows changed since the backup"):
        truncate_embeddings(loaded_db, result["expected"])
    assert _query(loaded_db, "select count(*) from langchain_pg_embedding")[0][0] == 9
    with pytest.raises(errors.VectorTruncateFailed):
        truncate_embeddings(loaded_db, {})

    result = backup_vector_tables(loaded_db, MemoryFiles(), TS)
    assert truncate_embeddings(loaded_db, result["expected"]) == 9
    assert _query(loaded_db, "select count(*) from langchain_pg_embedding")[0][0] == 0
    assert _query(loaded_db, "select count(*) from langchain_pg_collection")[0][0] == 3


def test_backup_truncate_restore_round_trip(loaded_db):
    before = _snapshot(loaded_db)
    files = MemoryFiles()
    result = backup_vector_tables(loaded_db, files, TS)
    truncate_embeddings(loaded_db, result["expected"])
    assert _snapshot(loaded_db) == []

    emb_csv = files[f"vector_bak/langchain_pg_embedding_{TS}.csv"]
    coll_csv = files[f"vector_bak/langchain_pg_collection_{TS}.csv"]
    assert restore_vector_tables(loaded_db, {"langchain_pg_embedding": emb_csv}, truncate_first=False) == {
        "langchain_pg_embedding": 10}
    assert _snapshot(loaded_db) == before

    restored = restore_vector_tables(loaded_db, {"langchain_pg_collection": coll_csv,
                                                 "langchain_pg_embedding": emb_csv}, truncate_first=True)
    assert restored == {"langchain_pg_collection": 3, "langchain_pg_embedding": 10}
    assert _snapshot(loaded_db) == before
    again = MemoryFiles()
    backup_vector_tables(loaded_db, again, TS)
    assert again[f"vector_bak/langchain_pg_embedding_{TS}.csv"] == emb_csv
    assert again[f"vector_bak/langchain_pg_collection_{TS}.csv"] == coll_csv

    # Restoring rows that are already there, identical, changes nothing and is not an error.
    assert restore_vector_tables(loaded_db, {"langchain_pg_collection": coll_csv, "langchain_pg_embedding": emb_csv},
                                 truncate_first=False) == {"langchain_pg_collection": 0, "langchain_pg_embedding": 0}
    # A row changed since the backup is a conflict, and a failed restore changes nothing (one transaction).
    _execute(loaded_db, "delete from langchain_pg_embedding where id = (select min(id) from langchain_pg_embedding)")
    _execute(loaded_db, "update langchain_pg_embedding set document = 'changed' "
                        "where id = (select max(id) from langchain_pg_embedding)")
    changed = _snapshot(loaded_db)
    with pytest.raises(errors.VectorRestoreConflict, match="exist with other content"):
        restore_vector_tables(loaded_db, {"langchain_pg_embedding": emb_csv}, truncate_first=False)
    assert _snapshot(loaded_db) == changed
    # on_conflict="skip" keeps the changed row and brings back the deleted one.
    assert restore_vector_tables(loaded_db, {"langchain_pg_embedding": emb_csv}, truncate_first=False,
                                 on_conflict="skip") == {"langchain_pg_embedding": 1}
    assert len(_snapshot(loaded_db)) == len(before)
