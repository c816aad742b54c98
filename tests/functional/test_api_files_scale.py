"""/files and the log's size read only what they return: no log chunk is downloaded to list the log, and the
work/ and logs/ trees (thousands of objects for a wide task) are never listed for /files."""
from __future__ import annotations

from collections import Counter

import pytest

from chalicelib.aws import get_s3
from chalicelib.stores.files import DELETE_BATCH, FileStore
from chalicelib.tasklog import TaskLogger
from tests.support.aws_api import api_environment, post_json

BASE = "/api/v0/data_pipeline/tasks"


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


def _count_s3_calls(s3) -> Counter:
    calls: Counter = Counter()

    def count(params, model, **kwargs):
        calls[(model.name, params.get("Prefix", params.get("Key", "")).split("/", 2)[-1][:5])] += 1

    s3.meta.events.register("provide-client-params.s3.*", count)
    return calls


def test_files_lists_the_log_without_reading_it_and_skips_the_work_tree(client):
    task_id = post_json(client, BASE, {"task_name": "wide"}).json_body["data"]["task_id"]
    store = FileStore()
    for i in range(1_200):  # more than one listing page of work files
        store.put_text(task_id, f"work/batches/{i:04d}.json", "{}")
    store.put_text(task_id, "bss_company.ddl", "create table bss_company (id int);\n")
    for i in range(3):  # three log chunks
        with TaskLogger(task_id, logger_name="DDLMDGenerator", files=store) as log:
            log.info(f"chunk {i}: 开始处理表")
    stored = sum(f["size"] for f in store.list_files(task_id, include_internal=True, prefix="logs/"))
    calls = _count_s3_calls(get_s3())
    data = client.http.get(f"{BASE}/{task_id}/files").json_body["data"]
    log_entry = next(f for f in data["files"] if f["file_name"] == "data_pipeline.log")
    assert log_entry["file_size"] == stored > 0
    assert not [c for c in calls if c[0] == "GetObject" and c[1] == "logs/"], calls
    assert not [c for c in calls if c[0] == "ListObjectsV2" and c[1] == "work/"], calls
    assert [f["file_name"] for f in data["files"]] == ["bss_company.ddl", "data_pipeline.log"]
    # The download still renders the whole log.
    body = client.http.get(f"{BASE}/{task_id}/files/data_pipeline.log").body.decode()
    assert body.count("开始处理表") == 3


def test_delete_many_sends_at_most_a_thousand_keys_per_request(client):
    task_id = post_json(client, BASE, {"task_name": "wide"}).json_body["data"]["task_id"]
    store = FileStore()
    for i in range(2_100):
        store.put_text(task_id, f"work/tables/{i:04d}.json", "{}")
    calls = _count_s3_calls(get_s3())
    sizes = []
    get_s3().meta.events.register("provide-client-params.s3.DeleteObjects",
                                  lambda params, **kw: sizes.append(len(params["Delete"]["Objects"])))
    names = (f["name"] for f in store.iter_files(task_id, include_internal=True, prefix="work/tables/"))
    assert store.delete_many(task_id, names) == 2_100
    assert sizes == [DELETE_BATCH, DELETE_BATCH, 100] and not [c for c in calls if c[0] == "DeleteObject"]
    assert store.list_files(task_id, include_internal=True, prefix="work/") == []
