"""TaskStore against moto DynamoDB: id allocation, conditional claims, nested progress, masking."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.api.task_view import public_task_view
from chalicelib.errors import TaskAlreadyRunning, TaskNotFound, ValidationError
from chalicelib.stores.task_items import mask_secrets
from chalicelib.stores.tasks import STEP_FIELDS


def test_ids_unique_under_concurrent_creates(store):
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: store.create_task({"task_name": f"t{i}"})["task_id"], range(12)))
    assert len(set(ids)) == 12
    assert all(i.startswith("task_") for i in ids)
    items, total = store.list_tasks(limit=5)
    assert total == 12 and len(items) == 5
    assert [i["created_sort"] for i in items] == sorted((i["created_sort"] for i in items), reverse=True)


def test_claim_race_exactly_one_wins(store):
    task_id = store.create_task({})["task_id"]
    plan = {"steps": ["ddl_generation"], "skipped": []}
    barrier = threading.Barrier(4)
    outcomes = []

    def claim():
        barrier.wait()
        try:
            store.claim_execution(task_id, "step", "ddl_generation", plan, execution_id="e")
            outcomes.append("won")
        except TaskAlreadyRunning:
            outcomes.append("busy")

    threads = [threading.Thread(target=claim) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes) == ["busy", "busy", "busy", "won"]
    with pytest.raises(TaskNotFound):
        store.claim_execution("task_20990101_000000", "complete", None, plan)


def test_step_lifecycle_and_nested_progress(store):
    task_id = store.create_task({})["task_id"]
    store.mark_step_completed(task_id, "qa_generation", {"pairs": 3})
    store.claim_execution(task_id, "step", "ddl_generation", {"steps": ["ddl_generation"]}, execution_id="x1")
    store.mark_step_started(task_id, "ddl_generation", "x1")
    tables = [f"t{i}" for i in range(10)]
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda t: store.update_progress(task_id, "ddl_generation", {"tables": {t: "done"}}), tables))
    store.update_progress(task_id, "ddl_generation", {"total": 10, "ratio": 0.5})
    store.mark_step_completed(task_id, "ddl_generation", {"tables": 10, "seconds": 1.25}, {"calls": 2})
    store.mark_step_skipped(task_id, "sql_validation")
    assert store.finish_task(task_id, "partial_completed")
    item = store.get_task(task_id)
    assert item["progress"]["ddl_generation"]["tables"] == {t: "done" for t in tables}
    assert item["progress"]["ddl_generation"]["ratio"] == 0.5 and item["progress"]["ddl_generation"]["total"] == 10
    assert item["results"]["ddl_generation"] == {"tables": 10, "seconds": 1.25}
    assert item["llm_usage"]["ddl_generation"] == {"calls": 2}
    assert item["step_status"] == {"ddl_generation": "completed", "qa_generation": "completed",
                                   "sql_validation": "skipped", "training_load": "pending"}
    public = public_task_view(item)
    assert public["status"] == "partial_completed" and public["steps"][0]["completed_at"]


def test_failed_step_and_cancel_is_final(store):
    task_id = store.create_task({})["task_id"]
    store.claim_execution(task_id, "complete", None, {"steps": ["ddl_generation"]}, execution_id="x")
    store.mark_step_failed(task_id, "ddl_generation", "cannot connect to postgresql://u:pw@h/db")
    assert store.finish_task(task_id, "cancelled")
    assert store.finish_task(task_id, "completed") is False
    item = store.get_task(task_id)
    assert item["status"] == "cancelled" and "pw@" not in item["steps"]["ddl_generation"]["error_message"]


def test_mask_secrets():
    masked = mask_secrets({"db_connection": "postgresql://a:b@h:5432/d", "nested": [{"password": "x"}], "n": 1})
    assert masked == {"db_connection": "postgresql://a:***@h:5432/d", "nested": [{"password": "***"}], "n": 1}


def test_total_comes_from_the_counter_and_pages_read_only_what_they_need(store):
    from chalicelib.stores.tasks import COUNTER_KEY

    ids = [store.create_task({"task_name": f"t{i}"})["task_id"] for i in range(7)]
    counter = store.table.get_item(Key={"task_id": COUNTER_KEY})["Item"]
    assert int(counter["tasks_total"]) == 7
    items, total = store.list_tasks(limit=3, offset=2)
    assert total == 7 and len(items) == 3
    assert [i["task_id"] for i in items] == sorted(ids, reverse=True)[2:5]
    assert all(i["task_id"] != COUNTER_KEY for i in store.list_tasks(limit=50)[0])  # the counter is no task
    with pytest.raises(TaskNotFound):
        store.get_task(COUNTER_KEY)
    store.finish_task(ids[0], "failed", "boom")
    assert store.list_tasks(status="failed") == ([store.get_task(ids[0])], 1)  # filtered: counted by the index
    assert store.query_tasks({"task_name": "t1"})[1] == 1


def test_total_falls_back_to_counting_without_a_counter_item(store):
    from chalicelib.stores.tasks import COUNTER_KEY

    for i in range(3):
        store.create_task({"task_name": f"t{i}"})
    store.table.delete_item(Key={"task_id": COUNTER_KEY})  # a table written before the counter existed
    assert store.list_tasks(limit=1)[1] == 3


def test_progress_updates_create_missing_maps_and_count_concurrent_items(store):
    task_id = store.create_task({})["task_id"]
    store.table.update_item(Key={"task_id": task_id}, UpdateExpression="REMOVE progress.ddl_generation")
    store.update_progress(task_id, "ddl_generation", {"current_table": "public.a", "tables": {"public.a": {"x": 1}}})
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: store.record_item_progress(task_id, "ddl_generation", "tables", f"public.t{i}",
                                                           {"ok": i % 3 != 0}, ok=i % 3 != 0), range(12)))
    progress = store.get_task(task_id)["progress"]["ddl_generation"]
    assert progress["current_table"] == "public.a" and progress["tables"]["public.a"] == {"x": 1}
    assert progress["done"] == 8 and progress["failed"] == 4 and len(progress["tables"]) == 13


def test_a_batch_of_records_is_counted_once_even_when_redelivered(store):
    task_id = store.create_task({})["task_id"]
    batch = {f"public.b{i}": ({"table": f"public.b{i}", "ok": i != 1, "seconds": 0.5}, i != 1) for i in range(3)}
    with ThreadPoolExecutor(4) as pool:  # concurrent batches, one of them delivered twice
        list(pool.map(lambda n: store.record_items_progress(
            task_id, "ddl_generation", "tables",
            batch if n < 2 else {f"public.c{n}": ({"table": f"public.c{n}", "ok": True}, True)}), range(5)))
    progress = store.get_task(task_id)["progress"]["ddl_generation"]
    assert progress["done"] == 2 + 3 and progress["failed"] == 1
    assert set(progress["tables"]) == {"public.b0", "public.b1", "public.b2", "public.c2", "public.c3", "public.c4"}
    assert progress["tables"]["public.b1"] == {"table": "public.b1", "ok": False, "seconds": 0.5}


def test_a_large_batch_of_records_goes_in_chunks_each_counted_once(store):
    from chalicelib.stores.task_progress import RECORDS_PER_UPDATE

    task_id = store.create_task({})["task_id"]
    count = 2 * RECORDS_PER_UPDATE + 15  # three UpdateItems, each expression well under DynamoDB's 4 KB
    records = {f"public.table_{i:03d}": ({"ok": i % 10 != 0, "seconds": 1.25}, i % 10 != 0) for i in range(count)}
    store.record_items_progress(task_id, "ddl_generation", "tables", records)
    store.record_items_progress(task_id, "ddl_generation", "tables", records)  # re-delivered
    store.record_items_progress(task_id, "ddl_generation", "tables",
                                {"public.extra": ({"ok": False, "error": "gone"}, False)}, counted=False)
    progress = store.get_task(task_id)["progress"]["ddl_generation"]
    failed = sum(1 for i in range(count) if i % 10 == 0)
    assert progress["done"] == count - failed and progress["failed"] == failed
    assert len(progress["tables"]) == count + 1 and progress["tables"]["public.extra"]["error"] == "gone"


def test_cursor_pages_cover_the_listing_once_and_read_only_from_the_cursor(store):
    ids = [store.create_task({"task_name": f"t{i}"})["task_id"] for i in range(25)]
    expected = [item["task_id"] for item in store.query_tasks({}, page_size=25)[0]]
    assert sorted(expected) == sorted(ids)
    queries: list[dict] = []
    real_query = store.table.query

    def counting_query(**kwargs):
        answer = real_query(**kwargs)
        queries.append({"start": kwargs.get("ExclusiveStartKey"), "read": answer["Count"]})
        return answer

    store.table.query = counting_query
    pages, cursor = [], None
    while True:
        items, cursor = store.page_tasks({}, limit=10, cursor=cursor)
        pages.append([item["task_id"] for item in items])
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [task for page in pages for task in page] == expected  # in order, none twice, none left out
    assert all(q["read"] <= 10 for q in queries) and queries[-1]["start"] is not None


def test_cursors_are_checked_and_tied_to_their_listing(store):
    for i in range(3):
        store.create_task({"task_name": f"t{i}"})
    _items, cursor = store.page_tasks({}, limit=1)
    assert cursor
    with pytest.raises(ValidationError) as bad:
        store.page_tasks({}, limit=1, cursor="not-a-cursor")
    assert bad.value.invalid_params == ["cursor"]
    with pytest.raises(ValidationError):  # a cursor of the unfiltered listing is not one of the status index
        store.page_tasks({"status": "pending"}, limit=1, cursor=cursor)
    items, last = store.page_tasks({"status": "pending"}, limit=5)
    assert len(items) == 3 and last is None


def test_a_step_reads_only_what_it_needs_of_its_task(store):
    task_id = store.create_task({"task_name": "宽表", "db_connection": "postgresql://u:pw@db.example/x",
                                 "parameters": {"business_context": "高速公路"}})["task_id"]
    store.update_progress(task_id, "ddl_generation", {"total": 3, "done": 0, "tables": {}})
    store.record_items_progress(task_id, "ddl_generation", "tables",
                                {f"t{i}": ({"ok": True}, True) for i in range(3)})
    whole, for_step = store.get_task(task_id), store.get_task_for_step(task_id)
    assert "progress" in whole and "progress" not in for_step  # what grows with the tables stays behind
    assert set(for_step) <= set(STEP_FIELDS) and for_step["parameters"] == {"business_context": "高速公路"}
    assert str(for_step["db_connection"]) == str(whole["db_connection"]) == "postgresql://u:pw@db.example/x"
    assert store.get_run_state(task_id) == {"status": whole["status"]} | (
        {"execution": whole["execution"]} if "execution" in whole else {})
    with pytest.raises(TaskNotFound):
        store.get_task_for_step("task_20000101_000000")
