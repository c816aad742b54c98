"""Progress of a fan-out of thousands of tables keeps the task item small: counters count every table, only the first
RECORDS_KEPT tables keep a record on the item, and a re-delivered batch is counted once either way."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from chalicelib.api.task_view import public_task_view
from chalicelib.stores.task_progress import RECORDS_KEPT

TABLES = 3_000
BATCH = 10


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
