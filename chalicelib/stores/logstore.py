"""Reading a task's log: merge the JSON-lines chunks under `tasks/{id}/logs/` and render them as text."""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib.stores.files import FileStore

LOG_PREFIX = "logs/"
LOG_FILE_NAME = "data_pipeline.log"
_READ_WORKERS = 8

logger = logging.getLogger(__name__)


def read_records(task_id: str, files: FileStore | None = None) -> list[dict[str, Any]]:
    """All records of the task, oldest first, each with its `line_number` in the rendered text."""
    files = files or FileStore()
    records: list[tuple[str, int, int, dict[str, Any]]] = []
    names = [info["name"] for info in files.list_files(task_id, include_internal=True, prefix=LOG_PREFIX)]
    if len(names) > 1:  # one GET per chunk: fetch them side by side, a long log is otherwise slow to read
        shared = FileStore(files.s3, files.bucket)  # one client for all workers (clients are thread-safe)
        with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(names))) as pool:
            chunks = list(pool.map(lambda name: shared.get_bytes(task_id, name), names))
    else:
        chunks = [files.get_bytes(task_id, name) for name in names]
    for chunk_no, (name, data) in enumerate(zip(names, chunks, strict=True)):
        text = data.decode("utf-8", errors="replace")
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                logger.warning("skipping a malformed log line in %s", name)
                continue
            if isinstance(record, dict):
                records.append((str(record.get("timestamp", "")), chunk_no, int(record.get("seq") or 0), record))
    records.sort(key=lambda r: r[:3])
    out = []
    line = 1
    for *_, record in records:
        record["line_number"] = line
        line += str(record.get("message", "")).count("\n") + 1
        out.append(record)
    return out


def render_line(record: dict[str, Any]) -> str:
    return f"{record.get('timestamp', '')} [{record.get('level', 'INFO')}] {record.get('logger', '')}: " \
           f"{record.get('message', '')}"


def render_text(records: list[dict[str, Any]]) -> str:
    """`2025-07-01 14:30:52 [INFO] SchemaWorkflowOrchestrator: message` per record."""
    return "".join(render_line(r) + "\n" for r in records)


def log_file_info(task_id: str, files: FileStore | None = None) -> dict[str, Any]:
    """{exists, chunks, size, last_modified} of the task's log chunks from their listing (a page of 1,000 per
    request), without reading them: `size` is the bytes stored (the JSON-lines chunks)."""
    files = files or FileStore()
    count, size, last = 0, 0, None
    for chunk in files.iter_files(task_id, include_internal=True, prefix=LOG_PREFIX):
        count += 1
        size += chunk["size"]
        last = chunk["last_modified"] if last is None or chunk["last_modified"] > last else last
    return {"exists": bool(count), "chunks": count, "size": size, "last_modified": last}
