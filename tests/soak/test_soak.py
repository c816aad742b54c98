"""Concurrency soak (bounded, well under 2 minutes of load): 20 tasks created and executed in complete mode
at the same time against the local server over real HTTP (heuristic provider, demo database, 2-3 tables
each), plus 200 concurrent status/list/log requests while they run. The stack is the one `make serve` runs:
step Lambdas in warm worker processes. Embeddings come from a local OpenAI-compatible stub (deterministic vectors,
instant), as in the benchmarks: the soak is of the stack's concurrency, and with the offline model twenty
training_loads queued behind its CPU (about 30 s each on a slower day of this 2-core machine, when no task was
final after 120 s, at this session's start commit as at its end); the offline model has tests of its own."""
from __future__ import annotations

import collections
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from infra.local.demo_db import DEMO_BUSINESS_CONTEXT, DEMO_TABLES
from tests.support.http_api import FINAL_STATUSES, TASKS, served

pytestmark = pytest.mark.slow

TASK_COUNT = 20
READ_REQUESTS = 200
BUDGET_SECONDS = 120
STEPS = ("ddl_generation", "qa_generation", "sql_validation", "training_load")


def _tables(i: int) -> list[str]:
    count = 2 + i % 2
    return [DEMO_TABLES[(i + k) % len(DEMO_TABLES)] for k in range(count)]


@pytest.fixture(scope="module")
def pipeline_stack(pg_url, tmp_path_factory):
    """The stack of `make serve`: step Lambdas in warm worker processes beside the moto server."""
    from infra.local.lambdas import DEFAULT_WORKERS
    from infra.local.stack import LocalStack
    from tests.conftest import create_database, drop_database

    vectors = f"vectors_{uuid.uuid4().hex[:12]}"  # the stub's 16-d vectors in a database of their own
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGVECTOR_DB_URL", create_database(pg_url, vectors))
        with LocalStack(tmp_path_factory.mktemp("soak"), server_url=pg_url, demo_database="highway_e2e",
                        lambda_workers=DEFAULT_WORKERS) as stack:
            yield stack
    drop_database(pg_url, vectors)


@pytest.fixture(scope="module")
def embedding_stub():
    """The base URL of a local OpenAI-compatible endpoint answering /v1/embeddings (deterministic vectors)."""
    from tests.support.llm_stub import LLMStub

    with LLMStub() as stub:
        yield stub.base_url


@pytest.fixture(scope="module")
def api(pipeline_stack):
    with served(pipeline_stack) as client:
        client.timeout = 60
        yield client


def test_twenty_concurrent_runs_and_two_hundred_reads(api, pipeline_stack, embedding_stub, capsys, monkeypatch):
    # Each invocation takes the environment of the moment (the autouse fixture clears EMBEDDING_BASE_URL first).
    monkeypatch.setenv("EMBEDDING_BASE_URL", embedding_stub)
    monkeypatch.setenv("EMBEDDING_MODEL", "soak-embedding")
    monkeypatch.setenv("EMBEDDING_DIM", "16")
    started = time.monotonic()
    failures: list[str] = []

    def launch(i: int) -> str:
        task_id = api.create_task(task_name=f"soak {i}", business_context=DEMO_BUSINESS_CONTEXT,
                                  db_name="highway_e2e")
        api.upload_tables(task_id, _tables(i))
        api.call("POST", f"{TASKS}/{task_id}/execute", {"execution_mode": "complete"}, expect=202)
        return task_id

    with ThreadPoolExecutor(max_workers=TASK_COUNT) as pool:
        task_ids = list(pool.map(launch, range(TASK_COUNT)))
    launched = time.monotonic() - started
    assert len(set(task_ids)) == TASK_COUNT, task_ids  # no two tasks share an id

    def read(n: int) -> int:
        task_id = task_ids[n % TASK_COUNT]
        kind = n % 4
        if kind == 0:
            reply = api.call("GET", f"{TASKS}/{task_id}")
        elif kind == 1:
            reply = api.call("GET", f"{TASKS}?limit=50")
        elif kind == 2:
            reply = api.call("GET", f"{TASKS}/{task_id}/logs?limit=50")
        else:
            reply = api.call("POST", f"{TASKS}/{task_id}/logs/query", {"page_size": 20, "level": "INFO"})
        if reply.status != 200 or not reply.json.get("success"):
            failures.append(f"{n}: {reply.status} {reply.raw[:200]!r}")
        return reply.status

    read_started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = collections.Counter(pool.map(read, range(READ_REQUESTS)))
    read_seconds = time.monotonic() - read_started
    assert not failures, failures[:5]
    assert codes == {200: READ_REQUESTS}

    deadline = started + BUDGET_SECONDS
    final: dict[str, dict] = {}
    while len(final) < TASK_COUNT and time.monotonic() < deadline:
        # One list request a second watches all twenty (the reads above already hit status one by one); a task
        # the list shows final gets its full status once.
        listed = api.data("GET", f"{TASKS}?limit=100")["tasks"]
        for task in listed:
            if task["task_id"] in task_ids and task["task_id"] not in final and task["status"] in FINAL_STATUSES:
                final[task["task_id"]] = api.status(task["task_id"])
        time.sleep(1)
    wall = time.monotonic() - started
    with capsys.disabled():
        print(f"\nSOAK: {TASK_COUNT} tasks launched in {launched:.1f} s, {READ_REQUESTS} reads in {read_seconds:.1f} s "
              f"({len(failures)} failed), all final after {wall:.1f} s "
              f"({sum(s['status'] == 'completed' for s in final.values())} completed)")
    assert len(final) == TASK_COUNT, f"not final after {BUDGET_SECONDS} s: {set(task_ids) - set(final)}"
    for task_id, status in final.items():
        assert status["status"] == "completed", (task_id, status.get("error_message"))
        assert status["step_status"] == {step: "completed" for step in STEPS}, (task_id, status["step_status"])

    # Statuses agree between the task view and the list view.
    listed = {t["task_id"]: t for t in api.data("GET", f"{TASKS}?limit=100")["tasks"]}
    for task_id in task_ids:
        assert listed[task_id]["status"] == "completed"

    # Each task's files live under its own prefix and describe exactly its own tables.
    s3 = pipeline_stack.client("s3")
    keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=pipeline_stack.bucket,
                                                                                Prefix="tasks/")
            for obj in page.get("Contents", [])]
    by_task = collections.defaultdict(set)
    for key in keys:
        _, task_id, name = key.split("/", 2)
        by_task[task_id].add(name)
    for i, task_id in enumerate(task_ids):
        ddl = {n for n in by_task[task_id] if n.endswith(".ddl")}
        assert ddl == {t.split(".", 1)[1] + ".ddl" for t in _tables(i)}, (task_id, ddl)
        table_list = api.call("GET", f"{TASKS}/{task_id}/files/table_list.txt", expect=200).raw.decode()
        assert table_list.split() == _tables(i)
        pair_files = [n for n in by_task[task_id] if n.endswith("_pair.json")]
        assert len(pair_files) == 1
