"""Progress of a fan-out of thousands of tables keeps the task item small: counters count every table, only the first
RECORDS_KEPT tables keep a record on the item, and a re-delivered batch is counted once either way."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto import mock_aws

from chalicelib.api.task_view import public_task_view
from chalicelib.stores.task_progress import RECORDS_KEPT
from chalicelib.stores.tasks import TaskStore, create_table
from tests.support.aws_api import make_moto_dynamodb_writes_atomic

TABLES = 3_000
BATCH = 10


@pytest.fixture
def store(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    make_moto_dynamodb_writes_atomic(monkeypatch)
    with mock_aws():
        yield TaskStore(create_table(boto3.resource("dynamodb"), "tasks"))


def _batch(n: int) -> dict:
    return {f"public.t{n * BATCH + i:05d}": ({"ok": i != 3, "seconds": 0.25, "comment_sources": {"heuristic": 4}},
                                           i != 3) for i in range(BATCH)}


def test_thousands_of_tables_keep_the_item_far_below_400_kb(store):
    task_id = store.create_task({"task_name": "wide"})["task_id"]
    batches = TABLES // BATCH
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.record_items_progress(task_id, "ddl_generation", "tables", _batch(n)),
                      range(batches)))
    # Step Functions delivers at least once: every 50th batch again, after the item is full.
    for n in range(0, batches, 50):
        store.record_items_progress(task_id, "ddl_generation", "tables", _batch(n))
    raw = store.table.get_item(Key={"task_id": task_id})["Item"]
    size = len(json.dumps(raw, default=str).encode("utf-8"))
    assert size < 60_000, size  # with every table's record it was ~300 KB (1 MB at 10,000 tables)
    progress = public_task_view(store.get_task(task_id))["progress"]["ddl_generation"]
    assert progress["done"] == batches * (BATCH - 1) and progress["failed"] == batches
    assert RECORDS_KEPT <= len(progress["tables"]) < RECORDS_KEPT + BATCH
    assert not any(key.startswith("_") for key in progress)  # bookkeeping stays out of the status
    json.dumps(progress)  # what the API answers is plain JSON
