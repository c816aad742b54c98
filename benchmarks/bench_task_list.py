"""task_list: p50 latency of the task list (GET …/tasks?limit=50) and of a task's status (GET …/tasks/{id})
through the HTTP API (Chalice's test client, in-process moto), with 10,000 tasks stored vs 100.

Tasks are seeded straight into DynamoDB (batch_writer) in the shape create_task writes, plus the task counter.
value    = p50 (ms) of list + status requests with 10,000 tasks
baseline = the same with 100 tasks
ratio    = baseline / value (target >= 0.67, i.e. 10,000 tasks at most 1.5x slower than 100)

    python -m benchmarks.bench_task_list [--calls 50]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402

BASE = "/api/v0/data_pipeline/tasks"


def _seed(table: Any, count: int) -> list[str]:
    from chalicelib.config import STEP_NAMES
    from chalicelib.stores.task_items import to_dynamo
    from chalicelib.stores.tasks import COUNTER_KEY, ENTITY

    start = datetime(2025, 1, 1, tzinfo=UTC)
    ids = []
    with table.batch_writer() as writer:
        for i in range(count):
            moment = start + timedelta(seconds=37 * i)
            created = moment.strftime("%Y-%m-%dT%H:%M:%S")
            task_id = "task_" + moment.strftime("%Y%m%d_%H%M%S")
            status = ("completed", "failed", "pending", "partial_completed")[i % 4]
            ids.append(task_id)
            writer.put_item(Item=to_dynamo({
                "task_id": task_id, "entity": ENTITY, "created_sort": f"{created}#{task_id}", "status": status,
                "task_name": f"nightly run {i}", "task_name_lower": f"nightly run {i}", "created_by": "bench",
                "db_name": "highway_db", "business_context": "bench", "created_at": created, "updated_at": created,
                "started_at": created, "completed_at": created, "error_message": None,
                "db_connection": "postgresql://bench:secret@db.example:5432/highway_db",
                "parameters": {"business_context": "bench", "db_name": "highway_db", "enable_sql_validation": True},
                "step_status": {s: "completed" for s in STEP_NAMES},
                "steps": {s: {"step_status": "completed", "started_at": created, "completed_at": created,
                              "error_message": None, "result": None} for s in STEP_NAMES},
                "progress": {"ddl_generation": {"total": 8, "done": 8, "failed": 0}},
                "results": {"ddl_generation": {"tables_succeeded": 8, "tables_failed": 0}},
                "llm_usage": {}, "current_step": {}, "execution": {},
                "table_list": {"table_count": 8},
            }))
    table.put_item(Item={"task_id": COUNTER_KEY, "tasks_total": count})
    return ids


def _p50(client: Any, path: str, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = client.http.get(path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code, response.body[:300])
    return statistics.median(times) * 1000


def measure(count: int, calls: int) -> tuple[float, float, int]:
    """(list p50 ms, status p50 ms, total reported by the list) with `count` tasks stored."""
    import json

    import boto3
    from chalice.test import Client
    from moto import mock_aws

    from chalicelib.stores.tasks import create_table
    from infra.local.stack import load_repo_app

    with mock_aws():
        create_table(boto3.resource("dynamodb"), os.environ["DATA_PIPELINE_TABLE"])
        boto3.client("s3").create_bucket(Bucket=os.environ["DATA_PIPELINE_BUCKET"])
        ids = _seed(boto3.resource("dynamodb").Table(os.environ["DATA_PIPELINE_TABLE"]), count)
        with Client(load_repo_app()) as client:
            listed = json.loads(client.http.get(f"{BASE}?limit=50").body)["data"]
            _p50(client, f"{BASE}?limit=50", 3)  # warm-up: clients, models
            list_ms = _p50(client, f"{BASE}?limit=50", calls)
            status_ms = statistics.median(_p50(client, f"{BASE}/{ids[(i * 7919) % count]}", 1) for i in range(calls))
    return list_ms, status_ms, listed["total"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    args = parser.parse_args(argv)
    os.environ.update({
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "DATA_PIPELINE_TABLE": "bench-tasks", "DATA_PIPELINE_BUCKET": "bench-files",
        "DATA_PIPELINE_LOG_LEVEL": "WARNING",
    })
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "DATA_PIPELINE_API_KEY"):
        os.environ.pop(name, None)
    small_list, small_status, small_total = measure(args.small, args.calls)
    large_list, large_status, large_total = measure(args.large, args.calls)
    if (small_total, large_total) != (args.small, args.large):
        sys.stderr.write(f"task_list: wrong totals {small_total}, {large_total}\n")
        return 1
    value, baseline = large_list + large_status, small_list + small_status
    report(
        "task_list", value, "ms", baseline, baseline / value,
        f"  task_list: p50 list(limit=50) {large_list:.1f} ms / status {large_status:.1f} ms with {args.large} tasks; "
        f"{small_list:.1f} ms / {small_status:.1f} ms with {args.small} (value/baseline = sum of the two p50s, "
        f"{args.calls} calls each, Chalice test client on in-process moto)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
