"""vector_load: 20,000 precomputed 384-d vectors into the LangChain PGVector layout.

- project:  `chalicelib.pipeline.vector_copy.write_embeddings` (binary COPY, one transaction per batch of
            DEFAULT_WRITE_BATCH_SIZE rows, idempotent)
- baseline: the original's way: one `INSERT` with the vector as a text literal, one commit per row
- limit:    one raw binary COPY of all rows straight into the table, best of two (printed, not the baseline).
            On a small server it can be slower than the batched loader: one COPY larger than PostgreSQL's
            16 MB bulk-write ring has to flush WAL while it evicts its own pages.

Each run starts from empty tables of the same layout (primary key + GIN index on cmetadata, no HNSW index:
the loader builds that once, after the rows are in). The one-row-per-transaction baseline is commit-bound,
so its rate is measured on the first --baseline-rows rows (default 5,000) to keep the run short; pass
--baseline-rows 20000 for the full run (about 100 s on 2 cores). A second load of the same rows must add
nothing. With --hnsw the HNSW index is also built (timed, printed) and must survive the reload untouched.
Then the loaded table is backed up (vectors.backup_vector_tables, into a folder), truncated and restored
(vector_restore), with the peak Python allocation of each (tracemalloc, which also slows the timed code a little):
both stream, so the peak stays about 1 MB whatever the table's size.

    python -m benchmarks.bench_vector_load [--rows N] [--baseline-rows N] [--hnsw]
"""
from __future__ import annotations

import argparse
import functools
import io
import json
import shutil
import struct
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import psycopg2

from benchmarks.common import report
from benchmarks.pgtemp import bench_database
from chalicelib.pipeline import training, vector_copy, vector_restore, vectors

DIMENSION = 384


def make_rows(count: int, collection_id: str) -> tuple[list[tuple[str, str, str]], np.ndarray]:
    rng = np.random.default_rng(20250701)
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    for i in range(count):
        document = json.dumps({"question": f"第{i}个服务区的日营业额是多少？",
                               "sql": f"SELECT sum(pay_sum) FROM bss_business_day_data WHERE service_no = '{i}';"},  # noqa: S608
                              ensure_ascii=False)
        rows.append((training.training_id("sql", document), collection_id, document))
    return rows, vectors


def reset_tables(url: str) -> str:
    """Empty LangChain tables (no HNSW index yet); returns the uuid of the `sql` collection."""
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("drop table if exists langchain_pg_embedding, langchain_pg_collection cascade")
    training.ensure_vector_tables(conn, DIMENSION)
    collection = training._collection_ids(conn, ["sql"])["sql"]
    with conn, conn.cursor() as cur:
        cur.execute("checkpoint")
    conn.close()
    return collection


def count_rows(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from langchain_pg_embedding")
        return cur.fetchone()[0]


def load_one_row_per_transaction(url: str, rows, vectors: np.ndarray) -> None:
    """The original's way: text vector literal, one INSERT and one commit per row."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            for (row_id, collection_id, document), vec in zip(rows, vectors, strict=True):
                literal = "[" + ",".join(str(float(v)) for v in vec) + "]"
                cur.execute(
                    "INSERT INTO langchain_pg_embedding (id, collection_id, embedding, document, cmetadata) "
                    "VALUES (%s, %s, %s::vector, %s, %s::jsonb)",
                    (row_id, collection_id, literal, document, json.dumps({"id": row_id})),
                )
                conn.commit()
    finally:
        conn.close()


def load_raw_copy(url: str, rows, vectors: np.ndarray) -> None:
    """The limit: every row in one binary COPY, encoded as cheaply as possible, one transaction."""
    big_endian = vectors.astype(">f4")
    vec_head = struct.pack(">ihh", 4 + 4 * DIMENSION, DIMENSION, 0)
    coll = struct.pack(">i", 16) + uuid.UUID(rows[0][1]).bytes
    parts = [b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)]
    for (row_id, _collection_id, document), vec in zip(rows, big_endian, strict=True):
        rid, doc = row_id.encode(), document.encode()
        meta = b"\x01" + json.dumps({"id": row_id}).encode()
        parts += (struct.pack(">hi", 5, len(rid)), rid, coll, vec_head, vec.tobytes(),
                  struct.pack(">i", len(doc)), doc, struct.pack(">i", len(meta)), meta)
    parts.append(struct.pack(">h", -1))
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.copy_expert("COPY langchain_pg_embedding (id, collection_id, embedding, document, cmetadata) "
                            "FROM STDIN WITH (FORMAT binary)", io.BytesIO(b"".join(parts)))
    finally:
        conn.close()


def load_project(url: str, rows, vectors: np.ndarray) -> int:
    conn = psycopg2.connect(url)
    try:
        return len(vector_copy.write_embeddings(conn, rows, vectors, dimension=DIMENSION))
    finally:
        conn.close()


def hnsw_oid(url: str):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass(%s)::oid", (training.HNSW_INDEX,))
        return cur.fetchone()[0]


class FolderFiles:
    """A backup's files in a folder (what TaskFiles is to S3), copied in and out in pieces."""

    def __init__(self, root: Path):
        self.root = root

    def put_file(self, name: str, fileobj, content_type: str | None = None) -> None:
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        with (self.root / name).open("wb") as out:
            shutil.copyfileobj(fileobj, out, 1 << 16)

    def open_stream(self, name: str):
        return (self.root / name).open("rb")

    def delete_many(self, names) -> int:
        names = list(names)
        for name in names:
            (self.root / name).unlink()
        return len(names)


def traced(fn, *args):
    """(result, seconds, peak bytes of Python allocations)."""
    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = fn(*args)
        return result, time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def backup_round_trip(url: str, rows: int) -> str:
    """Backup -> truncate -> restore of the loaded tables; the line to print."""
    ts = "20250701_000000"
    with tempfile.TemporaryDirectory(prefix="bench_vector_backup_") as folder:
        files = FolderFiles(Path(folder))
        backup, backup_s, backup_peak = traced(vectors.backup_vector_tables, url, files, ts)
        assert backup["counts"][vectors.EMBEDDING_TABLE] == rows
        vectors.truncate_embeddings(url, backup["counts"])
        sources = {t: functools.partial(files.open_stream, vectors.backup_file_name(t, ts))
                   for t in vectors.VECTOR_TABLES}
        restored, restore_s, restore_peak = traced(vector_restore.restore_vector_tables, url,
                                                   {vectors.EMBEDDING_TABLE: sources[vectors.EMBEDDING_TABLE]}, False)
        assert restored == {vectors.EMBEDDING_TABLE: rows} and count_rows(url) == rows
    size = backup["tables"][vectors.EMBEDDING_TABLE]["bytes"]
    mib = 1024 * 1024
    return (f"  vector_load: backup of {rows} rows ({size / mib:.1f} MiB CSV) {backup_s:.2f} s, peak Python "
            f"allocation {backup_peak / mib:.1f} MiB; truncate + restore {restore_s:.2f} s, peak "
            f"{restore_peak / mib:.1f} MiB")


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_vector_load")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--baseline-rows", type=int, default=5_000)
    parser.add_argument("--hnsw", action="store_true", help="also build the HNSW index and check it survives a reload")
    args = parser.parse_args(argv)
    with bench_database("bench_vector_load") as url:
        collection = reset_tables(url)
        rows, vectors = make_rows(args.rows, collection)

        baseline_n = max(1, min(args.baseline_rows, len(rows)))
        baseline_s = timed(load_one_row_per_transaction, url, rows[:baseline_n], vectors[:baseline_n])
        assert count_rows(url) == baseline_n

        raw_s = float("inf")
        for _ in range(2):  # the limit gets the better of two tries
            reset_tables(url)
            raw_s = min(raw_s, timed(load_raw_copy, url, rows, vectors))
            assert count_rows(url) == len(rows)

        reset_tables(url)
        project_s = timed(load_project, url, rows, vectors)
        assert count_rows(url) == len(rows)

        index_line = "HNSW index not built (pass --hnsw)"
        oid = None
        if args.hnsw:
            conn = psycopg2.connect(url)
            index_s = timed(training.ensure_hnsw_index, conn)
            conn.close()
            oid = hnsw_oid(url)
            index_line = f"HNSW index built once in {index_s:.2f} s and kept by the reload (oid {oid})"
        started = time.perf_counter()
        again = load_project(url, rows, vectors)
        reload_s = time.perf_counter() - started
        conn = psycopg2.connect(url)
        created_again = args.hnsw and training.ensure_hnsw_index(conn)
        conn.close()
        assert again == 0 and not created_again and hnsw_oid(url) == oid and count_rows(url) == len(rows)
        backup_line = backup_round_trip(url, len(rows))

    n = len(rows)
    project_rate, baseline_rate, raw_rate = n / project_s, baseline_n / baseline_s, n / raw_s
    report(
        "vector_load", project_rate, "rows/s", baseline_rate, project_rate / baseline_rate,
        f"  vector_load: raw binary COPY {raw_rate:.4g} rows/s; project = {100 * project_rate / raw_rate:.1f}% "
        f"of raw COPY ({n} rows x {DIMENSION}-d: project {project_s:.2f} s, raw COPY {raw_s:.2f} s; "
        f"one-row-per-transaction {baseline_s:.2f} s for {baseline_n} rows)",
        f"  vector_load: reload of the same {n} rows added {again} in {reload_s:.2f} s; {index_line}",
        backup_line,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
