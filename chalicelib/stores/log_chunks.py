"""Pages of a task's log read from its chunks' listing: only the chunks that hold the records of the page are
downloaded.

A chunk's name (chalicelib/tasklog.py, `chunk_name`) gives the times of its earliest and latest record, the lines
its records take in the rendered log and its records per level. The log's order is that of `logstore.read_records`:
(timestamp, chunk's place in the listing, record's seq). Chunks whose bounds overlap in that order (Lambdas logging
in the same second) form a *cluster*; clusters follow one another, so records are counted, skipped and numbered a
cluster at a time from the names alone, and a cluster is read only when the page takes records from it, when its
count under the filter cannot be told from the names (a keyword, logger or step filter; a time range cutting
through it), or when its line count is unknown (a chunk of an earlier version) and a later record is returned.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.stores.files import FileStore
from chalicelib.tasklog import CHUNK_LEVELS, record_lines, stamp

LOG_PREFIX = "logs/"
_NAME = re.compile(r"^logs/(\d{13})_[0-9a-f]{32}_(\d{13})_(\d+)(?:_(\d+)-(\d+)-(\d+)-(\d+)-(\d+))?\.jsonl$")
LOWEST, HIGHEST = "", "\uffff"  # the bounds of a chunk whose name does not tell them (every timestamp is between)

logger = logging.getLogger(__name__)


@dataclass
class Chunk:
    name: str
    number: int  # place in the listing (key order): orders records of one second across chunks
    size: int
    last_modified: datetime
    first: str = LOWEST  # `timestamp` of its earliest record
    last: str = HIGHEST  # of its latest
    lines: int | None = None
    counts: dict[str, int] | None = None

    @classmethod
    def from_listing(cls, number: int, entry: dict[str, Any]) -> Chunk:
        chunk = cls(entry["name"], number, entry["size"], entry["last_modified"])
        match = _NAME.match(entry["name"])
        if match:
            chunk.first, chunk.last, chunk.lines = stamp(int(match[1])), stamp(int(match[2])), int(match[3])
            if match[4] is not None:
                chunk.counts = dict(zip(CHUNK_LEVELS, map(int, match.groups()[3:]), strict=True))
        return chunk


@dataclass
class LogFilter:
    """What a record must be to be counted: a level, a time range (`YYYY-MM-DD HH:MM:SS`, inclusive) and
    `content`, a test of the record itself (keyword, logger, step) that only reading the chunk can answer."""

    level: str | None = None
    start: str | None = None
    end: str | None = None
    content: Callable[[dict[str, Any]], bool] | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        at = str(record.get("timestamp", ""))
        return ((not self.level or record.get("level") == self.level)
                and (not self.start or at >= self.start) and (not self.end or at <= self.end)
                and (self.content is None or self.content(record)))

    def count(self, chunk: Chunk) -> int | None:
        """How many records of the chunk match, from its name; None when only reading it can tell."""
        if self.level and chunk.counts is not None and chunk.counts.get(self.level, 0) == 0:
            return 0
        if (self.start and chunk.last < self.start) or (self.end and chunk.first > self.end):
            return 0
        if self.content is not None or chunk.counts is None:
            return None
        if (self.start and chunk.first < self.start) or (self.end and chunk.last > self.end):
            return None  # the range cuts through the chunk
        return chunk.counts[self.level] if self.level else sum(chunk.counts.values())


@dataclass
class _Cluster:
    chunks: list[Chunk] = field(default_factory=list)
    records: list[dict[str, Any]] | None = None  # once read: every record, in log order, numbered

    @property
    def lines(self) -> int | None:
        if self.records is not None:
            return sum(record_lines(r) for r in self.records)
        known = [c.lines for c in self.chunks]
        return None if None in known else sum(known)  # type: ignore[arg-type]


@dataclass
class Page:
    records: list[dict[str, Any]]  # in the order asked, each with its `line_number`
    total: int  # records matching the filter
    chunks: list[Chunk]  # the listing
    read: int  # chunks downloaded


class LogReader:
    """The log of one task as its listing shows it; `page` downloads what a page needs."""

    def __init__(self, task_id: str, files: FileStore | None = None) -> None:
        self.task_id = task_id
        self.files = files or FileStore()
        entries = self.files.iter_files(task_id, include_internal=True, prefix=LOG_PREFIX)
        self.chunks = [Chunk.from_listing(number, entry) for number, entry in enumerate(entries)]
        self.clusters = _clusters(self.chunks)
        self.read = 0

    def page(self, where: LogFilter, offset: int, limit: int | None, descending: bool) -> Page:
        """The matching records at places [offset, offset + limit) of the log's order (reversed when
        `descending`; limit None: all of them) and how many match in all."""
        order = range(len(self.clusters))
        total, taken = 0, []
        for index in (reversed(order) if descending else order):
            cluster = self.clusters[index]
            counts = [where.count(chunk) for chunk in cluster.chunks]
            known = None if None in counts else sum(counts)  # type: ignore[arg-type]
            page_full = limit is not None and len(taken) >= limit
            if known is not None and (known == 0 or page_full or total + known <= offset):
                total += known
                continue
            matched = [r for r in self._records(index) if where.matches(r)]
            if descending:
                matched.reverse()
            low = max(0, offset - total)
            high = None if limit is None else max(0, offset + limit - total)
            taken += matched[low:high]
            total += len(matched)
        return Page(taken, total, self.chunks, self.read)

    def _records(self, index: int) -> list[dict[str, Any]]:
        """The cluster's records in log order with their line numbers (the clusters before it counted)."""
        cluster = self.clusters[index]
        if cluster.records is None:
            keyed = []
            for chunk in cluster.chunks:
                keyed += [(str(r.get("timestamp", "")), chunk.number, int(r.get("seq") or 0), r)
                          for r in self._read_chunk(chunk)]
            keyed.sort(key=lambda item: item[:3])
            line = 1 + self._lines_before(index)
            cluster.records = []
            for *_, record in keyed:
                record["line_number"] = line
                line += record_lines(record)
                cluster.records.append(record)
        return cluster.records

    def _lines_before(self, index: int) -> int:
        total = 0
        for earlier in range(index):
            lines = self.clusters[earlier].lines
            total += lines if lines is not None else sum(record_lines(r) for r in self._records(earlier))
        return total

    def _read_chunk(self, chunk: Chunk) -> list[dict[str, Any]]:
        self.read += 1
        records = []
        for raw in self.files.get_bytes(self.task_id, chunk.name).decode("utf-8", errors="replace").splitlines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                logger.warning("skipping a malformed log line", extra={"chunk": chunk.name})
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


def _clusters(chunks: list[Chunk]) -> list[_Cluster]:
    """Chunks grouped so that every record of a group comes after every record of the groups before it."""
    clusters: list[_Cluster] = []
    reach: tuple[str, int] | None = None  # the latest (timestamp, number) of the current cluster
    for chunk in sorted(chunks, key=lambda c: (c.first, c.number)):
        if reach is None or reach < (chunk.first, chunk.number):
            clusters.append(_Cluster())
            reach = (chunk.last, chunk.number)
        else:
            reach = max(reach, (chunk.last, chunk.number))
        clusters[-1].chunks.append(chunk)
    return clusters
