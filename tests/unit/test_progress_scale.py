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


def _item_size(store, key: str) -> int:
    raw = store.table.get_item(Key={"task_id": key}).get("Item") or {}
    return len(json.dumps(raw, default=str).encode("utf-8"))


def test_the_task_item_does_not_grow_with_the_batches_and_the_marks_spread_over_shards(store):
    """What every status poll and every step reads stays the same size at 10,000 tables as at 1,000: the
    re-delivery marks (16 characters per batch) live on the step's shard items, outside the listing's indexes, and
    none of them holds much more than its share."""
    from chalicelib.stores.task_progress import MARK_SHARDS, counts_key, shard_key

    task_id = store.create_task({"task_name": "wide"})["task_id"]
    for n in range(100):
        store.record_items_progress(task_id, "ddl_generation", "tables", _batch(n))
    shards = [shard_key(task_id, "ddl_generation", i) for i in range(MARK_SHARDS)]
    task_size, shard_sizes = _item_size(store, task_id), [_item_size(store, key) for key in shards]
    for n in range(100, 1000):
        store.record_items_progress(task_id, "ddl_generation", "tables", _batch(n))
    assert _item_size(store, task_id) == task_size  # full after RECORDS_KEPT records: nothing more is written
    grown = [_item_size(store, key) - size for key, size in zip(shards, shard_sizes, strict=True)]
    assert 900 * 16 <= sum(grown) < 900 * 30  # one mark per batch, all of them on the shards
    assert max(grown) < 2 * 900 * 30 / MARK_SHARDS  # spread: no shard holds twice its share
    assert _item_size(store, counts_key(task_id, "ddl_generation")) < 200  # the set counters and the room kept
    progress = public_task_view(store.get_task(task_id))["progress"]["ddl_generation"]
    assert progress["done"] == 1000 * (BATCH - 1) and progress["failed"] == 1000
    assert RECORDS_KEPT <= len(progress["tables"]) < RECORDS_KEPT + BATCH
    listed = [item["task_id"] for item in store.list_tasks(limit=50)[0]]
    assert listed == [task_id] and store.list_tasks(limit=50)[1] == 1  # the counts items are no task


def test_counters_a_step_sets_replace_what_its_batches_counted(store):
    """A plan sets the counters before its batches (done 0, failed: the tables it could not read), which then add
    to them; a merge sets them after (its report's totals), which then stand."""
    task_id = store.create_task({"task_name": "set"})["task_id"]
    store.update_progress(task_id, "ddl_generation", {"done": 0, "failed": 2, "total": 32})
    for n in range(3):
        store.record_items_progress(task_id, "ddl_generation", "tables", _batch(n))
    progress = public_task_view(store.get_task(task_id))["progress"]["ddl_generation"]
    assert (progress["done"], progress["failed"]) == (3 * (BATCH - 1), 2 + 3)
    store.update_progress(task_id, "ddl_generation", {"done": 27, "failed": 5, "current_table": None})
    progress = public_task_view(store.get_task(task_id))["progress"]["ddl_generation"]
    assert (progress["done"], progress["failed"]) == (27, 5)
    store.record_items_progress(task_id, "ddl_generation", "tables", _batch(1))  # a late re-delivery: counted before
    progress = public_task_view(store.get_task(task_id))["progress"]["ddl_generation"]
    assert (progress["done"], progress["failed"]) == (27, 5)


def test_a_new_run_counts_from_nothing_and_other_steps_keep_their_counts(store):
    task_id = store.create_task({"task_name": "rerun"})["task_id"]
    for step in ("ddl_generation", "qa_generation"):
        store.record_items_progress(task_id, step, "tables" if step == "ddl_generation" else "themes", _batch(0))
    plan = {"steps": ["ddl_generation"], "skipped": []}
    store.claim_execution(task_id, "step", "ddl_generation", plan, execution_id="e2")
    store.record_items_progress(task_id, "ddl_generation", "tables", _batch(0))  # the same tables again
    progress = public_task_view(store.get_task(task_id))["progress"]
    assert progress["ddl_generation"]["done"] == BATCH - 1 and progress["ddl_generation"]["failed"] == 1
    assert set(progress["ddl_generation"]["tables"]) == set(_batch(0))
    assert progress["qa_generation"]["done"] == BATCH - 1  # not in the plan: its progress is kept


def test_a_task_written_before_the_counts_item_shows_its_counters_as_stored(store):
    task_id = store.create_task({"task_name": "old"})["task_id"]
    store.table.update_item(Key={"task_id": task_id}, UpdateExpression="SET progress.ddl_generation = :p",
                            ExpressionAttributeValues={":p": {"done": 7, "failed": 2, "tables": {"public.a": {}}}})
    progress = public_task_view(store.get_task(task_id))["progress"]["ddl_generation"]
    assert progress == {"done": 7, "failed": 2, "tables": {"public.a": {}}}
