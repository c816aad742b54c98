"""wide_run: complete runs of 1,000 and 10,000 tables through the local stack, and what AWS's quotas would see.

The database (pgserver in a temporary folder) holds chains of ten tables linked by foreign keys, three rows each.
The heuristic provider writes the comments and pairs (no LLM); embeddings come from a local OpenAI-compatible
/v1/embeddings stub in a process of its own (deterministic vectors, instant), so the figure is the pipeline's,
not a model's. The stack is `make serve`'s (moto server executing infra/data_pipeline.asl.json, step Lambdas in
warm worker processes), driven over the HTTP API (Chalice's test client).

Per run it prints: wall time (POST …/execute to `completed`), peak RSS of the stack (this process: moto server
and API, plus the Lambda worker processes), state transitions (states entered in the execution's history plus,
for each Distributed Map child execution, the states it entered, counted from the map's results in S3: AWS keeps
child histories apart), the largest state input/output in the history (AWS: 256 KB), the largest DynamoDB item
of the task table (AWS: 400 KB) and the number of history events (AWS: 25,000).

value    = wall seconds of the largest run
baseline = wall seconds of the smallest run x (largest / smallest table count): linear scaling
ratio    = baseline / value (>= 1: linear or better; the issue's goal is a wall-time ratio <= 10 for 10x tables)

    python -m benchmarks.bench_wide_run [--tables 1000,10000] [--timeout 3600]
"""
# ruff: noqa: S608 - the SQL here is generated fixture text over fixed identifiers
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg2

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_complete_run import stub_process  # noqa: E402
from benchmarks.common import report  # noqa: E402
from benchmarks.pgtemp import bench_database  # noqa: E402

CHAIN = 10  # tables per foreign-key chain
ROWS = 3
PAYLOAD_GOAL = 200 * 1024
ITEM_GOAL = 300 * 1024
KINDS = ("region", "site", "store", "shelf", "item", "orders", "order_line", "payment", "refund", "audit")


def table_name(index: int) -> str:
    return f"u{index // CHAIN:04d}_{KINDS[index % CHAIN]}"


def build_database(url: str, count: int, schema: str) -> list[str]:
    """`count` tables in `schema`: chains of CHAIN, each table referencing the previous one of its chain."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"create schema {schema}")
            for start in range(0, count, 500):
                statements = []
                for index in range(start, min(count, start + 500)):
                    name, parent = f"{schema}.{table_name(index)}", None
                    if index % CHAIN:
                        parent = f"{schema}.{table_name(index - 1)}"
                    reference = f", parent_id int references {parent}(id)" if parent else ""
                    statements.append(f"create table {name} (id int primary key, code varchar(16) not null, "
                                      f"status varchar(12), amount numeric(12,2), created_at timestamp{reference})")
                    columns = "id, code, status, amount, created_at" + (", parent_id" if parent else "")
                    values = ", ".join(
                        f"({r}, 'C{index}-{r}', '{('new', 'done', 'open')[r % 3]}', {r * 2.5}, "
                        f"timestamp '2025-01-01' + interval '{r} day'" + (f", {r}" if parent else "") + ")"
                        for r in range(1, ROWS + 1))
                    statements.append(f"insert into {name} ({columns}) values {values}")
                    if index % 2 == 0:
                        statements.append(f"comment on table {name} is '{KINDS[index % CHAIN]} records of unit "
                                          f"{index // CHAIN}'")
                cur.execute(";\n".join(statements))
            cur.execute("analyze")
    finally:
        conn.close()
    return [f"{schema}.{table_name(i)}" for i in range(count)]


# -- what the quotas would see ----------------------------------------------------------------------------------


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events, token = [], None
    while True:
        page = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000,
                                         **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def _largest_payload(events: list[dict[str, Any]]) -> tuple[int, str]:
    """(bytes, where) of the largest state input/output, task parameters or Lambda result in the history."""
    largest = (0, "")
    for event in events:
        for key, details in event.items():
            if not key.endswith("EventDetails") or not isinstance(details, dict):
                continue
            for field in ("input", "output", "parameters"):
                text = details.get(field)
                if isinstance(text, str):
                    size = len(text.encode("utf-8"))
                    if size > largest[0]:
                        largest = (size, f"{event['type']} {details.get('name', '')}".strip())
    return largest


def _largest_item(dynamodb: Any, table: str) -> tuple[int, str]:
    """(bytes, key) of the largest item of the task table, sized as DynamoDB does (names + values) roughly: the
    length of its wire JSON, an upper bound."""
    largest, start = (0, ""), None
    while True:
        page = dynamodb.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        for item in page["Items"]:
            size = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
            if size > largest[0]:
                largest = (size, item.get("task_id", {}).get("S", "?"))
        start = page.get("LastEvaluatedKey")
        if not start:
            return largest


def _map_child_transitions(s3: Any, bucket: str, task_id: str) -> int:
    """States entered by the Distributed Maps' child executions: one per item, two for an item whose task failed
    into its Pass state (read from the ResultWriter manifests of this task's map runs)."""
    total = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"tasks/{task_id}/work/maps/"):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/manifest.json"):
                continue
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            for entry in manifest["ResultFiles"].get("SUCCEEDED", []):
                children = json.loads(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())
                total += sum(2 if json.loads(c["Output"]).get("failed") else 1 for c in children)
    return total


class PeakRss:
    """Peak resident memory of this process plus its live children (the Lambda workers), sampled."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.peak = 0

    def sample(self) -> None:
        total = self.me.memory_info().rss
        for child in self.me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        self.peak = max(self.peak, total)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by this process and its live children (PostgreSQL not included):
        what the run cost whatever else the machine's cores were doing, unlike the wall time."""
        total = sum(self.me.cpu_times()[:2])
        for child in self.me.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                continue
        return total


def empty_vector_store(url: str) -> None:
    """Every run loads into an empty vector store (its HNSW index built once, over the run's rows), so that runs of
    different sizes are measured alike: the second run does not grow the index the first one built."""
    from chalicelib.pipeline.vector_layout import COLLECTION_TABLE, EMBEDDING_TABLE

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"drop table if exists {EMBEDDING_TABLE}, {COLLECTION_TABLE} cascade")
    finally:
        conn.close()


# -- the run ----------------------------------------------------------------------------------------------------


def run_once(stack: Any, client: Any, db_url: str, count: int, timeout: float) -> dict[str, Any]:
    schema = f"wide{count}"
    started = time.monotonic()
    tables = build_database(db_url, count, schema)
    built = time.monotonic() - started
    task_id = client.create_task(task_name=f"wide_run {count}", business_context="a wide warehouse of units",
                                 db_connection=db_url, db_name="wide")
    client.upload_tables(task_id, tables)
    empty_vector_store(stack.pgvector_url)
    rss = PeakRss()
    cpu = rss.cpu_seconds()
    started = time.monotonic()
    client.execute(task_id, execution_mode="complete")
    deadline = started + timeout
    while True:
        status = client.status(task_id)
        rss.sample()
        if status["status"] in ("completed", "failed", "cancelled", "partial_completed"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} tables: still {status['status']} after {timeout:.0f} s")
        time.sleep(0.5)
    wall = time.monotonic() - started
    cpu = rss.cpu_seconds() - cpu
    sfn = stack.sfn
    name = status["execution"]["execution_id"]
    arn = f"{stack.state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
    events = _history(sfn, arn)
    s3, dynamodb = stack.client("s3"), stack.client("dynamodb")
    children = _map_child_transitions(s3, stack.bucket, task_id)
    entered = sum(1 for e in events if e["type"].endswith("StateEntered"))
    payload, where = _largest_payload(events)
    item, item_key = _largest_item(dynamodb, stack.table_name)
    return {"tables": count, "status": status["status"], "error": status.get("error_message"), "wall": wall,
            "cpu": cpu, "build": built, "rss": rss.peak, "transitions": entered + children,
            "parent_transitions": entered,
            "history_events": len(events), "payload": payload, "payload_where": where, "item": item,
            "item_key": item_key, "results": status.get("results") or {},
            "steps": {step["step_name"]: _seconds(step) for step in status.get("steps") or []}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tables", default="1000,10000", help="comma list of table counts, smallest first")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--workers", type=int, default=None, help="Lambda worker processes (0: in this process)")
    parser.add_argument("--profile", default=None, help="append a sampling profile of each run to this file")
    args = parser.parse_args(argv)
    counts = sorted(int(c) for c in args.tables.split(","))

    from infra.local.lambdas import DEFAULT_WORKERS
    from infra.local.stack import LocalStack
    from tests.support.pipeline import PipelineClient

    for name in ("LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL"):
        os.environ.pop(name, None)  # the heuristic provider
    runs = []
    with bench_database("bench_wide") as db_url, stub_process(0.0) as (stub_url, _counts), \
            tempfile.TemporaryDirectory(prefix="bench_wide_") as root:
        os.environ.update({"EMBEDDING_BASE_URL": stub_url, "EMBEDDING_MODEL": "bench-embedding",
                           "EMBEDDING_DIM": "16",
                           "DATA_PIPELINE_LOG_LEVEL": os.environ.get("DATA_PIPELINE_LOG_LEVEL", "WARNING")})
        workers = DEFAULT_WORKERS if args.workers is None else args.workers
        with LocalStack(root, server_url=db_url, load_demo=False, lambda_workers=workers) as stack:
            client = PipelineClient(stack)
            for count in counts:
                if args.profile:
                    from benchmarks.sampler import Sampler

                    with Sampler() as sampler:
                        run = run_once(stack, client, db_url, count, args.timeout)
                    sampler.write(args.profile, f"{count} tables, wall {run['wall']:.1f} s")
                else:
                    run = run_once(stack, client, db_url, count, args.timeout)
                runs.append(run)
                _print_run(run)
                if run["status"] != "completed":
                    sys.stderr.write(f"wide_run: {count} tables ended {run['status']}: {run['error']}\n")
                    return 1
    small, large = runs[0], runs[-1]
    scale = large["tables"] / small["tables"]
    baseline = small["wall"] * scale
    lines = [_detail(run) for run in runs]
    if len(runs) > 1:
        lines.append(f"  wide_run: wall-time ratio {large['tables']}/{small['tables']} tables = "
                     f"{large['wall'] / small['wall']:.2f} (goal <= {scale:.0f})")
    if len(runs) > 1:
        lines.append(f"  wide_run: CPU-time ratio {large['tables']}/{small['tables']} tables = "
                     f"{large['cpu'] / small['cpu']:.2f} (the stack's processes, PostgreSQL aside)")
    worst_payload = max(r["payload"] for r in runs)
    worst_item = max(r["item"] for r in runs)
    lines.append(f"  wide_run: largest state payload {worst_payload / 1024:.1f} KB (goal < 200 KB: "
                 f"{'met' if worst_payload < PAYLOAD_GOAL else 'NOT met'}), largest DynamoDB item "
                 f"{worst_item / 1024:.1f} KB (goal < 300 KB: {'met' if worst_item < ITEM_GOAL else 'NOT met'})")
    report("wide_run", large["wall"], "s", baseline, baseline / large["wall"], *lines)
    return 0


def _print_run(run: dict[str, Any]) -> None:
    sys.stdout.write(_detail(run) + "\n")
    sys.stdout.flush()


def _detail(run: dict[str, Any]) -> str:
    ddl = run["results"].get("ddl_generation") or {}
    return (f"  wide_run: {run['tables']} tables: wall {run['wall']:.1f} s (database built in {run['build']:.0f} s, "
            f"off the clock), stack CPU {run['cpu']:.0f} s, peak RSS {run['rss'] / 2**20:.0f} MB, "
            f"state transitions {run['transitions']} "
            f"({run['parent_transitions']} in the execution, the rest in map child executions), history events "
            f"{run['history_events']}, largest state payload {run['payload'] / 1024:.1f} KB ({run['payload_where']}), "
            f"largest DynamoDB item {run['item'] / 1024:.1f} KB, tables ok={ddl.get('tables_succeeded')}; step seconds "
            + ", ".join(f"{name}={seconds:.0f}" for name, seconds in run["steps"].items()))


def _seconds(step: dict[str, Any]) -> float:
    from datetime import datetime

    if not step.get("started_at") or not step.get("completed_at"):
        return 0.0
    return (datetime.fromisoformat(step["completed_at"]) - datetime.fromisoformat(step["started_at"])).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
