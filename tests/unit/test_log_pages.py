"""Log pages from the chunks' listing (stores/log_chunks.py): the same records, totals and line numbers as merging
every chunk (logstore.read_records), with only the chunks a page needs downloaded (S3 GetObject counted through a
botocore event hook)."""
from __future__ import annotations

import itertools
import json

import pytest

from chalicelib import tasklog
from chalicelib.stores import logstore
from chalicelib.stores.log_chunks import LogFilter, LogReader
from chalicelib.tasklog import TaskLogger, chunk_name

TASK = "task_20250701_143052"
BASE_MS = 1_751_380_000_000  # 2025-07-01 14:26:40 UTC


class GetCounter:
    """GetObject requests of the log chunks, counted as the S3 client sends them."""

    def __init__(self, files):
        self.count = 0
        files.s3.meta.events.register("before-call.s3.GetObject", self._seen)

    def _seen(self, params, **kwargs):
        if "/logs/" in params.get("url_path", "") or "/logs/" in str(params.get("url", "")):
            self.count += 1

    def reset(self) -> int:
        count, self.count = self.count, 0
        return count


def _put_chunk(files, records_at: list[tuple[int, dict]], name: str | None = None) -> None:
    """A chunk as TaskLogger writes it, its records stamped at the given ms (or an old-format name)."""
    from chalicelib.tasklog import stamp

    records = []
    for seq, (at_ms, record) in enumerate(records_at, 1):
        records.append({"timestamp": stamp(at_ms), "level": "INFO", "logger": "L", "step": None,
                        "task_id": TASK, "execution_id": None, "seq": seq, **record})
    times = [at for at, _ in records_at]
    name = name or chunk_name(records, min(times), max(times))
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    files.put_bytes(TASK, name, body)


def _expected(merged: list, where: LogFilter, offset: int, limit: int | None, descending: bool) -> tuple[list, int]:
    matched = [r for r in merged if where.matches(r)]
    if descending:
        matched.reverse()
    end = None if limit is None else offset + limit
    return [(r["message"], r["line_number"]) for r in matched[offset:end]], len(matched)


@pytest.fixture
def mixed_log(files):
    """Three writers: a sequential one over ten minutes, two that interleave within the same seconds (their chunks
    overlap in time), one multi-line message, a chunk of the earlier naming (no bounds in its name)."""
    for minute in range(10):
        _put_chunk(files, [(BASE_MS + minute * 60_000 + i * 1000, {
            "message": f"seq m{minute} r{i}" + ("\nsecond line" if (minute, i) == (3, 2) else ""),
            "level": "ERROR" if i == 4 and minute % 3 == 0 else "INFO", "step": f"s{minute % 2}"})
            for i in range(5)])
    for writer, offset in (("a", 0), ("b", 500)):
        _put_chunk(files, [(BASE_MS + 700_000 + i * 400 + offset, {"message": f"par {writer}{i}", "logger": writer})
                           for i in range(6)])
    _put_chunk(files, [(BASE_MS + 900_000, {"message": "old format", "level": "WARNING"})],
               name=f"logs/{BASE_MS + 900_000:013d}_{'0' * 32}.jsonl")
    return files


FILTERS = [LogFilter(), LogFilter(level="ERROR"), LogFilter(level="WARNING"),
           LogFilter(start="2025-07-01 14:29:40", end="2025-07-01 14:32:42"),
           LogFilter(start="2025-07-01 14:38:20"), LogFilter(end="2025-07-01 14:26:42"),
           LogFilter(content=lambda r: "par" in r["message"]),
           LogFilter(level="INFO", content=lambda r: r.get("step") == "s1")]


def test_pages_match_the_merged_log(mixed_log):
    merged = logstore.read_records(TASK, mixed_log)
    assert len(merged) == 63 and merged[-1]["line_number"] == 64  # one message of two lines
    for where, offset, descending in itertools.product(FILTERS, (0, 40), (False, True)):
        reader = LogReader(TASK, mixed_log)  # a fresh reader per case: what it reads first differs
        for limit in (4, None):  # then the same reader again, on what it has read
            page = reader.page(where, offset, limit, descending)
            got = [(r["message"], r["line_number"]) for r in page.records]
            assert (got, page.total) == _expected(merged, where, offset, limit, descending), (where, offset, limit)


def test_tail_and_pages_read_only_their_chunks(files, monkeypatch):
    monkeypatch.setattr(tasklog, "FLUSH_EVERY_SECONDS", 600.0)  # chunks of 20 records, however slow the machine
    with TaskLogger(TASK, step="ddl_generation", logger_name="DDLMDGenerator", files=files) as log:
        for i in range(600):
            log.info("record {i}", i=i)
        log.error("the one error")
    counter = GetCounter(files)
    reader = LogReader(TASK, files)
    assert len(reader.chunks) == 31

    tail = reader.page(LogFilter(), 0, 10, descending=True)
    assert [r["message"] for r in tail.records] == ["the one error"] + [f"record {i}" for i in range(599, 590, -1)]
    assert tail.total == 601 and tail.records[0]["line_number"] == 601
    assert counter.reset() == 2  # the last chunk (the error) and the one before

    page = LogReader(TASK, files).page(LogFilter(), 100, 50, descending=False)  # records 100..149: chunks 5-7
    assert [r["line_number"] for r in page.records] == list(range(101, 151))
    assert counter.reset() == 3

    errors = LogReader(TASK, files).page(LogFilter(level="ERROR"), 0, 50, descending=True)
    assert [r["message"] for r in errors.records] == ["the one error"] and errors.total == 1
    assert counter.reset() == 1

    keyword = LogReader(TASK, files).page(LogFilter(content=lambda r: "record 5" in r["message"]), 0, 5, False)
    assert keyword.total == 111  # 5, 50-59, 500-599: a content filter counts by reading
    assert counter.reset() == 31


def test_time_range_skips_chunks_outside_it(files):
    for minute in range(20):
        _put_chunk(files, [(BASE_MS + minute * 60_000 + i * 1000, {"message": f"m{minute} r{i}"}) for i in range(10)])
    counter = GetCounter(files)
    # Minutes 5 to 9 in full (50 records): counted from the names, only the page's chunk read.
    where = LogFilter(start="2025-07-01 14:31:40", end="2025-07-01 14:35:49")
    page = LogReader(TASK, files).page(where, 0, 10, descending=False)
    assert page.total == 50 and page.records[0]["message"] == "m5 r0" and counter.reset() == 1
    # A range that cuts minutes 5 and 9: those two are read to be counted, the three between are not.
    where = LogFilter(start="2025-07-01 14:31:45", end="2025-07-01 14:35:44")
    page = LogReader(TASK, files).page(where, 0, 3, descending=True)
    assert page.total == 40 and [r["message"] for r in page.records] == ["m9 r4", "m9 r3", "m9 r2"]
    assert counter.reset() == 2
