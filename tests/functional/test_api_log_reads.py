"""/logs, /logs/query and /files read only what they return: S3 GetObject requests of a task with 22 log chunks
counted through a botocore event hook on the API's S3 client."""
from __future__ import annotations

import pytest

from chalicelib import tasklog
from chalicelib.aws import get_s3
from chalicelib.stores.files import FileStore
from chalicelib.tasklog import TaskLogger
from tests.support.aws_api import api_environment, post_json

BASE = "/api/v0/data_pipeline/tasks"


@pytest.fixture
def client(monkeypatch, tmp_path):
    with api_environment(monkeypatch, tmp_path) as c:
        yield c


@pytest.fixture
def long_log(client, monkeypatch):
    """A task whose log is 400 INFO records in chunks of 20 and one ERROR at the end; returns (id, counter)."""
    monkeypatch.setattr(tasklog, "FLUSH_EVERY_SECONDS", 600.0)  # chunks of 20 records, however slow the machine
    task_id = post_json(client, BASE, {"task_name": "long log"}).json_body["data"]["task_id"]
    with TaskLogger(task_id, step="ddl_generation", logger_name="DDLMDGenerator", files=FileStore()) as log:
        for i in range(400):
            log.info("record {i}", i=i)
        log.error("the one error")
    gets: list[str] = []
    get_s3().meta.events.register("before-call.s3.GetObject",
                                  lambda params, **kwargs: gets.append(params.get("url_path", "")))
    return task_id, gets


def test_log_routes_read_only_the_chunks_of_their_page(client, long_log):
    task_id, gets = long_log
    data = client.http.get(f"{BASE}/{task_id}/logs?limit=10").json_body["data"]
    assert data["total"] == 402  # the API's "task created" record too
    assert [r["message"] for r in data["logs"]][-2:] == ["record 399", "the one error"]
    assert len(gets) == 2, gets  # the last chunk and the one before it, not all 22

    gets.clear()
    errors = client.http.get(f"{BASE}/{task_id}/logs?level=ERROR").json_body["data"]
    assert errors["total"] == 1 and [r["message"] for r in errors["logs"]] == ["the one error"]
    assert len(gets) == 1

    gets.clear()
    query = post_json(client, f"{BASE}/{task_id}/logs/query",
                      {"page": 3, "page_size": 50, "sort_order": "asc"}).json_body["data"]
    assert query["pagination"]["total"] == 402 and query["pagination"]["total_pages"] == 9
    assert [r["line_number"] for r in query["logs"]] == list(range(101, 151))
    assert query["log_file_info"]["exists"] is True and query["log_file_info"]["file_size"] > 0
    assert len(gets) <= 4  # the chunks holding lines 101-150

    gets.clear()
    listing = client.http.get(f"{BASE}/{task_id}/files").json_body["data"]
    assert any(f["file_name"] == "data_pipeline.log" and f["file_size"] > 0 for f in listing["files"])
    assert gets == []  # sizes from the listing
