"""Task logging: every record goes to stdout as powertools JSON (CloudWatch) and into the task's S3 log.

Records are buffered and written as small JSON-lines chunks under `tasks/{id}/logs/`; readers merge them
(stores/logstore.py). A TaskLogger and its children share one buffer, guarded by a lock, because Map
iterations run in threads when executed locally.

A chunk's name says what it holds, so that readers page a log from its listing alone (stores/log_chunks.py):
`logs/{first ms}_{uuid}_{last ms}_{lines}_{DEBUG}-{INFO}-{WARNING}-{ERROR}-{CRITICAL}.jsonl` — the times (ms since
the epoch) of its earliest and latest record, the lines its records take in the rendered log, and its records per
level. Chunks of earlier versions (`logs/{ms}_{uuid}.jsonl`) are read whole.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from chalicelib.config import get_settings

LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
          "CRITICAL": logging.CRITICAL}
FLUSH_EVERY_RECORDS = 20
FLUSH_EVERY_SECONDS = 2.0
_powertools_lock = threading.Lock()
_powertools: Any = None


class ChunkWriter(Protocol):
    """Where log chunks go: the task's files (stores.files.FileStore implements it)."""

    def put_bytes(self, task_id: str, name: str, data: bytes, content_type: str | None = None) -> Any: ...


def _get_powertools_logger(level: str) -> Any:
    global _powertools
    with _powertools_lock:
        if _powertools is None:
            from aws_lambda_powertools import Logger

            _powertools = Logger(service="data_pipeline", level=level)
        _powertools.setLevel(level)
        return _powertools


def lambda_logger() -> Any:
    """The process's powertools Logger (CloudWatch JSON), at the configured level: what step handlers decorate
    with `inject_lambda_context` and every TaskLogger record goes through."""
    return _get_powertools_logger(get_settings().log_level)


def level_number(level: str) -> int:
    return LEVELS.get(str(level).upper(), logging.INFO)


class _Sink:
    """The buffer shared by a TaskLogger and its children."""

    def __init__(self, task_id: str, files: ChunkWriter):
        self.task_id = task_id
        self.files = files
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.times: list[int] = []
        self.seq = 0
        self.last_flush = time.monotonic()

    def add(self, record: dict[str, Any], at_ms: int) -> bool:
        """Append a record stamped at `at_ms` (its `timestamp` is that time); True when the buffer should be
        flushed now."""
        with self.lock:
            self.seq += 1
            record["seq"] = self.seq
            self.records.append(record)
            self.times.append(at_ms)
            return (len(self.records) >= FLUSH_EVERY_RECORDS
                    or time.monotonic() - self.last_flush >= FLUSH_EVERY_SECONDS)

    def flush(self) -> None:
        with self.lock:
            records, self.records = self.records, []
            times, self.times = self.times, []
            self.last_flush = time.monotonic()
            if not records:
                return
            body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
            name = chunk_name(records, min(times), max(times))
            try:
                self.files.put_bytes(self.task_id, name, body, "application/x-ndjson; charset=utf-8")
            except Exception:
                # Losing the S3 copy must not fail the step; the records are in CloudWatch via stdout.
                logging.getLogger(__name__).exception("could not write a log chunk for task %s", self.task_id)


CHUNK_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # the order of the counts in a chunk's name


def record_lines(record: dict[str, Any]) -> int:
    """Lines a record takes in the rendered log (`stores.logstore.render_text`)."""
    return str(record.get("message", "")).count("\n") + 1


def chunk_name(records: list[dict[str, Any]], first_ms: int, last_ms: int) -> str:
    """`logs/{first_ms}_{uuid}_{last_ms}_{lines}_{D}-{I}-{W}-{E}-{C}.jsonl` (see the module's docstring); a chunk
    holding a record of another level has no counts in its name (`…_{lines}.jsonl`): readers count it by reading."""
    counts = dict.fromkeys(CHUNK_LEVELS, 0)
    for record in records:
        if record.get("level") not in counts:
            counts = {}
            break
        counts[record["level"]] += 1
    lines = sum(record_lines(r) for r in records)
    levels = ("_" + "-".join(str(counts[level]) for level in CHUNK_LEVELS)) if counts else ""
    return f"logs/{first_ms:013d}_{uuid.uuid4().hex}_{last_ms:013d}_{lines}{levels}.jsonl"


def stamp(at_ms: int) -> str:
    """A record's `timestamp` (UTC, whole seconds) for a time in ms since the epoch."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(template: str, fields: dict[str, Any]) -> str:
    """The text a person reads: `template` with its `{key}` places filled from `fields` (dicts and lists as JSON); a
    template without places gets the fields appended as `(key=value, …)`. A template that does not format is kept
    as it is, fields appended."""
    if not fields:
        return template
    shown = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v for k, v in fields.items()}
    try:
        text = template.format_map(shown)
    except (KeyError, IndexError, ValueError, AttributeError):
        text = None
    if text is not None and text != template:
        return text
    return f"{template} ({', '.join(f'{k}={v}' for k, v in shown.items())})"


class TaskLogger:
    """`TaskLogger(task_id, step=None, execution_id=None, logger_name="DataPipeline", files=FileStore())`.

    debug/info/warning/error/exception(template, **fields): a constant message template and its keys, e.g.
    `log.info("Table {table} done in {seconds} s", table=name, seconds=1.2)` (stdlib-style `extra={...}` is merged
    into the fields). CloudWatch gets the template as `message` with the fields as keys (powertools), so records
    group and query by key; the task's own log stores the rendered text as `message` and the keys as `fields`.
    Stdlib-style `%` args are accepted too, so a TaskLogger can stand in wherever a `logging.Logger` is expected.
    """

    def __init__(self, task_id: str, step: str | None = None, execution_id: str | None = None,
                 logger_name: str = "DataPipeline", *, files: ChunkWriter | None = None, _sink: _Sink | None = None):
        self.task_id = task_id
        self.step = step
        self.execution_id = execution_id
        self.logger_name = logger_name
        if _sink is None and files is None:
            raise TypeError("a TaskLogger needs `files`: where its log chunks are written")
        self._sink = _sink or _Sink(task_id, files)
        self.level = get_settings().log_level

    def child(self, step: str | None = None, logger_name: str | None = None) -> TaskLogger:
        """Same task, buffer and execution; another step and/or logger name."""
        return TaskLogger(self.task_id, step or self.step, self.execution_id, logger_name or self.logger_name,
                          _sink=self._sink)

    def debug(self, message: str, *args: Any, **extra: Any) -> None:
        self.log("DEBUG", message, *args, **extra)

    def info(self, message: str, *args: Any, **extra: Any) -> None:
        self.log("INFO", message, *args, **extra)

    def warning(self, message: str, *args: Any, **extra: Any) -> None:
        self.log("WARNING", message, *args, **extra)

    def error(self, message: str, *args: Any, **extra: Any) -> None:
        self.log("ERROR", message, *args, **extra)

    def exception(self, message: str, *args: Any, **extra: Any) -> None:
        """ERROR with the stack trace on stdout only (the task log keeps the message)."""
        self.log("ERROR", message, *args, _exc_info=True, **extra)

    def log(self, level: str, message: str, *args: Any, _exc_info: bool = False, extra: dict[str, Any] | None = None,
            **fields: Any) -> None:
        level = level.upper()
        if level_number(level) < level_number(self.level):
            return
        at_ms = int(time.time() * 1000)
        if args:
            try:
                message = message % args
            except (TypeError, ValueError):
                message = " ".join([message, *map(str, args)])
        fields = {k: (v if _jsonable(v) else str(v)) for k, v in {**(extra or {}), **fields}.items()}
        record = {
            "timestamp": stamp(at_ms),
            "level": level,
            "logger": self.logger_name,
            "step": self.step,
            "message": render(str(message), fields),
            "task_id": self.task_id,
            "execution_id": self.execution_id,
        }
        if fields:
            record["fields"] = fields
        keys = {"correlation_id": self.task_id, "task_id": self.task_id, "step": self.step,
                "execution_id": self.execution_id, "task_logger": self.logger_name, **fields}
        emit = getattr(_get_powertools_logger(self.level), "exception" if _exc_info else level.lower())
        emit(str(message), extra=keys, stacklevel=3)
        if self._sink.add(record, at_ms):
            self._sink.flush()

    def flush(self) -> None:
        self._sink.flush()

    def __enter__(self) -> TaskLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
