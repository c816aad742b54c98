"""Local S3 and DynamoDB state that survives a restart of the local stack, Ctrl-C and kill -9 alike.

Every request reaches moto over HTTP (the API, the Lambda workers, the Step Functions executor), so a WSGI
layer in front of moto's server (`JournalingApp`) sees every write. Each successful write to the stack's
bucket or task table is appended to `journal.jsonl` under the state folder (`.local/state` of the stack's
root) before its answer leaves, one JSON line flushed to the OS per write: a kill -9 keeps every write a
client was told had succeeded. S3 writes are journaled as the object's resulting state (body, metadata, last
modified time; or its absence), DynamoDB writes as the request itself: replayed in the order they were applied
(writes are serialised here), they give the same items.

At start `restore` replays the journal into the fresh moto, then compacts it: rewritten (to a temporary file,
then renamed) as one record per object and one PutItem per item, so it grows only with the writes of one run.
Step Functions executions, Lambda functions and IAM are recreated at start and not persisted.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import threading
import xml.etree.ElementTree as ElementTree
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from infra.local.lambdas import ACCOUNT_ID, REGION

logger = logging.getLogger(__name__)

JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "lock"
DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
_KEY_LOCK_STRIPES = 64  # S3 writes of keys in different stripes run concurrently
# Only for moto's routing of replayed requests (it does not check signatures).
_DYNAMODB_AUTH = (f"AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/dynamodb/aws4_request, "
                  "SignedHeaders=host;x-amz-target, Signature=0")
S3_PARTITION = "aws"


class JournalError(RuntimeError):
    """The journal cannot be read back or replayed: the local state would not be what clients last saw."""


class Journal:
    """The append-only file of writes; `append` may be called from several threads (one line at a time)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / JOURNAL_NAME
        self._file: Any = None
        self._lock_file: Any = None
        self._append_lock = threading.Lock()

    def lock(self) -> None:
        """One stack per state folder: a second `make serve` on the same root would interleave its writes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the stack's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise JournalError(f"another local stack is using {self.directory}; stop it first") from None
        self._lock_file = handle

    def read(self) -> list[dict[str, Any]]:
        """The records, oldest first. A torn last line (the process was killed while writing it: its write
        was never answered) is dropped with a warning; a damaged line anywhere else is an error."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                if number == len(lines):  # no newline after it: the write was interrupted
                    logger.warning("dropping the torn last record of %s (line %d)", self.path, number)
                    continue
                raise JournalError(f"{self.path} line {number} is damaged; move the file aside to start with "
                                   "an empty local state") from None
        return records

    def rewrite(self, records: Iterable[dict[str, Any]]) -> int:
        """Replace the journal with `records` atomically (a crash leaves the old one or the new one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".jsonl.tmp")
        count = 0
        with open(temporary, "wb") as handle:
            for record in records:
                handle.write(_line(record))
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        return count

    def open(self) -> None:
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - appended to until close()

    def append(self, record: dict[str, Any]) -> None:
        line = _line(record)
        with self._append_lock:  # writers of different keys append concurrently
            self._file.write(line)  # unbuffered: in the OS once write() returns

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class JournalingApp:
    """WSGI layer in front of moto's app: journals each successful write to `bucket` / `table` while
    `journal` is set. Writes that touch the same thing are serialised, so the journal's order is the order moto
    applied them: all DynamoDB writes of the table (moto serialises them anyway), and S3 writes per object key
    (a stripe of locks by key: writes of other objects go on meanwhile); reads are passed straight through."""

    def __init__(self, app: Callable[..., Any], bucket: str, table: str) -> None:
        self.app = app
        self.bucket = bucket
        self.table = table
        self.journal: Journal | None = None
        self._table_lock = threading.Lock()
        self._key_locks = [threading.Lock() for _ in range(_KEY_LOCK_STRIPES)]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.journal is None or environ.get("REQUEST_METHOD") not in ("PUT", "POST", "DELETE"):
            return self.app(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        if target.startswith(DYNAMODB_TARGET_PREFIX):
            if target[len(DYNAMODB_TARGET_PREFIX):] not in DYNAMODB_WRITES:
                return self.app(environ, start_response)
            body = _take_body(environ)
            if self.table not in _tables_named(body):
                return self.app(environ, start_response)
            record = {"dynamodb": target, "body": body.decode("utf-8")}
            return self._journaled(environ, start_response, lambda: [record], [self._table_lock])
        keys = self._s3_keys(environ)
        if keys is None:
            return self.app(environ, start_response)
        touched = keys()
        stripes = sorted({zlib.crc32(key.encode("utf-8", "surrogateescape")) % _KEY_LOCK_STRIPES for key in touched})
        return self._journaled(environ, start_response, lambda: [object_record(self.bucket, k) for k in touched],
                               [self._key_locks[i] for i in stripes])  # always taken in stripe order: no deadlock

    def _journaled(self, environ: dict[str, Any], start_response: Callable[..., Any],
                   records: Callable[[], list[dict[str, Any]]], locks: list[threading.Lock]) -> list[bytes]:
        status: list[str] = []

        def capture(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(status_line)
            return start_response(status_line, headers, exc_info)

        with contextlib.ExitStack() as held:
            for lock in locks:
                held.enter_context(lock)
            result = self.app(environ, capture)
            try:
                chunks = list(result)  # the write is applied once moto has produced its answer
            finally:
                if hasattr(result, "close"):
                    result.close()
            journal = self.journal
            if status and status[-1][:1] == "2" and journal is not None:
                for record in records():
                    journal.append(record)
        return chunks

    def detach(self) -> None:
        """Stop journaling; the writes being journaled right now finish first."""
        with contextlib.ExitStack() as held:
            for lock in [*self._key_locks, self._table_lock]:
                held.enter_context(lock)
            self.journal = None

    def _s3_keys(self, environ: dict[str, Any]) -> Callable[[], list[str]] | None:
        """For an S3 write to the bucket: a function giving the object keys it touches (read after the write);
        None for anything else. Bucket-level requests (the bucket is recreated at start) are not journaled."""
        credential = environ.get("HTTP_AUTHORIZATION") or environ.get("QUERY_STRING") or ""
        if "/s3/aws4_request" not in credential and "%2Fs3%2Faws4_request" not in credential:
            return None
        # PATH_INFO holds the decoded path's UTF-8 bytes as latin-1 (PEP 3333).
        path = (environ.get("PATH_INFO") or "").encode("latin-1").decode("utf-8", errors="surrogateescape")
        host = environ.get("HTTP_HOST") or ""
        if host.startswith(self.bucket + "."):
            rest = path[1:]
        elif path == "/" + self.bucket or path.startswith("/" + self.bucket + "/"):
            rest = path[len(self.bucket) + 2:]
        else:
            return None
        if rest:
            _take_body(environ)  # a slow upload must not hold the write lock
            return lambda: [rest]
        query = parse_qs(environ.get("QUERY_STRING") or "", keep_blank_values=True)
        if environ["REQUEST_METHOD"] == "POST" and "delete" in query:  # DeleteObjects: the keys are in the body
            body = _take_body(environ)
            return lambda: _delete_keys(body)
        return None


def _take_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back for the app (read before the write lock is taken)."""
    from werkzeug.wsgi import get_input_stream

    body = get_input_stream(environ).read()
    environ["wsgi.input"] = BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _tables_named(body: bytes) -> set[str]:
    try:
        request = json.loads(body)
    except ValueError:
        return set()
    names = {request.get("TableName")}
    names.update((request.get("RequestItems") or {}).keys())
    for item in request.get("TransactItems") or []:
        for operation in item.values():
            if isinstance(operation, dict):
                names.add(operation.get("TableName"))
    return {n for n in names if isinstance(n, str)}


def _delete_keys(body: bytes) -> list[str]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]


# -- S3 state through moto's backend --------------------------------------------------------------------------

def _s3_bucket(bucket: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT_ID][S3_PARTITION].get_bucket(bucket)


def object_record(bucket: str, key: str) -> dict[str, Any]:
    """The current state of one object: its body, metadata (content type included) and last modified time."""
    found = _s3_bucket(bucket).keys.get(key)
    if found is None or not hasattr(found, "value"):  # absent, or a delete marker
        return {"s3": "gone", "key": key}
    return {"s3": "object", "key": key, "metadata": dict(found.metadata),
            "last_modified": found.last_modified.isoformat(), "body": base64.b64encode(found.value).decode()}


def _restore_object(bucket: str, record: dict[str, Any]) -> None:
    from moto.s3.models import s3_backends

    backend = s3_backends[ACCOUNT_ID][S3_PARTITION]
    if record["s3"] == "gone":
        if _s3_bucket(bucket).keys.get(record["key"]) is not None:
            backend.delete_object(bucket, record["key"])
        return
    key = backend.put_object(bucket, record["key"], base64.b64decode(record["body"]), disable_notification=True)
    key.set_metadata(dict(record["metadata"]))
    key.last_modified = datetime.fromisoformat(record["last_modified"])


# -- DynamoDB state through moto's own HTTP handling -----------------------------------------------------------

def _call_dynamodb(app: Callable[..., Any], target: str, body: str) -> tuple[int, bytes]:
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    builder = EnvironBuilder(method="POST", path="/", data=body.encode("utf-8"), headers={
        "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0", "Authorization": _DYNAMODB_AUTH,
        "Host": "127.0.0.1"})
    try:
        app_iter, status, _ = run_wsgi_app(app, builder.get_environ(), buffered=True)
        data = b"".join(app_iter)
    finally:
        builder.close()
    return int(status.split(" ", 1)[0]), data


def _scan_items(app: Callable[..., Any], table: str) -> Iterator[dict[str, Any]]:
    """Every item of the table in DynamoDB's wire format (what a PutItem body carries)."""
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        status, data = _call_dynamodb(app, DYNAMODB_TARGET_PREFIX + "Scan", json.dumps(request))
        if status != 200:
            raise JournalError(f"scanning {table} for the journal failed: {status} {data[:300]!r}")
        page = json.loads(data)
        yield from page.get("Items", [])
        if not page.get("LastEvaluatedKey"):
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# -- start: replay, compact -------------------------------------------------------------------------------------

def restore(journal: Journal, app: Callable[..., Any], bucket: str, table: str) -> dict[str, int]:
    """Replay the journal into moto (bucket and table must exist, empty), then compact it.

    Returns {"replayed": records read, "objects": ..., "items": ...} of the compacted state.
    """
    records = journal.read()
    for number, record in enumerate(records, 1):
        if "s3" in record:
            _restore_object(bucket, record)
            continue
        status, data = _call_dynamodb(app, record["dynamodb"], record["body"])
        if status != 200:
            raise JournalError(f"replaying record {number} of {journal.path} ({record['dynamodb']}) failed: "
                               f"{status} {data[:300].decode('utf-8', 'replace')}; move the file aside to start "
                               "with an empty local state")
    counts = {"replayed": len(records), "objects": 0, "items": 0}

    def compacted() -> Iterator[dict[str, Any]]:
        store = _s3_bucket(bucket).keys
        for name in sorted(store.keys()):
            record = object_record(bucket, name)
            if record["s3"] == "object":
                counts["objects"] += 1
                yield record
        for item in _scan_items(app, table):
            counts["items"] += 1
            yield {"dynamodb": DYNAMODB_TARGET_PREFIX + "PutItem",
                   "body": json.dumps({"TableName": table, "Item": item}, ensure_ascii=False)}

    journal.rewrite(compacted())
    return counts


# -- tasks whose execution was lost with the server -------------------------------------------------------------

def fail_interrupted_tasks(sfn: Any) -> list[str]:
    """Tasks the restored table shows in_progress whose execution this (fresh) moto does not know: their
    running steps and the task are marked failed, "interrupted", so they can be executed again."""
    from chalicelib.stores.tasks import TaskStore

    store = TaskStore()
    running: list[dict[str, Any]] = []
    while True:
        page, _ = store.list_tasks(status="in_progress", limit=500, offset=len(running))
        running.extend(page)
        if len(page) < 500:
            break
    failed = []
    for task in running:
        arn = (task.get("execution") or {}).get("execution_arn")
        if arn and _execution_known(sfn, arn):
            continue
        message = (f"interrupted: the local server stopped while this task was running (execution "
                   f"{arn or 'not yet started'} is gone); execute the task again")
        for step, status in (task.get("step_status") or {}).items():
            if status == "running":
                store.mark_step_failed(task["task_id"], step, message)
        store.finish_task(task["task_id"], "failed", message)
        failed.append(task["task_id"])
    if failed:
        logger.warning("marked %d interrupted task(s) failed: %s", len(failed), ", ".join(failed))
    return failed


def _execution_known(sfn: Any, arn: str) -> bool:
    try:
        sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return False
    return True


def journaling_moto_server(bucket: str, table: str, ip_address: str, port: int) -> Any:
    """moto's ThreadedMotoServer with `JournalingApp` in front of its app (`server.journaling`)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class JournalingMotoServer(ThreadedMotoServer):
        journaling: JournalingApp | None = None

        def _server_entry(self) -> None:  # moto's own, with the app wrapped
            self.journaling = JournalingApp(DomainDispatcherApplication(create_backend_app), bucket, table)
            self._server = make_server(self._ip_address, self._port, self.journaling, True,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return JournalingMotoServer(ip_address=ip_address, port=port, verbose=False)
