"""complete_run: one complete task on 50 generated tables, the LLM being a local OpenAI-compatible stub that
answers every chat call after a fixed 0.5 s.

Everything is real except the model: a pgserver PostgreSQL in a temporary folder (benchmarks/pgtemp.py), the
local stack of `make serve` (moto server executing infra/data_pipeline.asl.json, step Lambdas in warm worker
processes) and the HTTP API (Chalice's test client). The stub runs in a process of its own, as a remote model
would. Embeddings go to the stub's /v1/embeddings endpoint (instant, deterministic) so the figure measures the
pipeline and its LLM concurrency, not the CPU time of MiniLM on a shared machine.

Before the clock starts, one complete task on a single table of another schema runs through the same stack:
the first execution in a fresh moto process pays moto's own lazy initialisation (its JSONPath and state
machinery, a few tenths of a second), which AWS does not. Its chat calls are not counted in the baseline.

value    = wall seconds from POST …/execute to the status `completed`
baseline = chat calls the stub received x 0.5 s: what a sequential run would wait for the LLM alone
ratio    = baseline / value (target: >= 10; it was >= 5)

`--timeline` prints when each state of the measured execution ran (from its history): where the critical path
goes between the three LLM rounds (comments, themes, pairs).

    python -m benchmarks.bench_complete_run [--tables 50] [--delay 0.5] [--timeline]
"""
# ruff: noqa: S608 - the SQL here is fixture text over the fixed identifiers below, and what the stub "model" answers
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402
from benchmarks.pgtemp import bench_database  # noqa: E402

SCHEMA = "bench"
DOMAINS = ("sales", "stock", "hr", "fleet", "energy", "clinic", "school", "travel", "media", "farm")
BUSINESS_CONTEXT = "A group of ten business units (sales, stock, HR, fleet, energy, clinic, school, travel, "\
                   "media, farm), each with regions, sites, items, orders and order lines."


# -- the database -----------------------------------------------------------------------------------------------


def table_names(count: int) -> list[str]:
    kinds = ("region", "site", "item", "orders", "order_line")
    names = [f"{domain}_{kind}" for domain in DOMAINS for kind in kinds]
    return names[:count]


def _table_sql(name: str, index: int) -> list[str]:
    """DDL + rows of one generated table: mixed types, FKs inside its domain, comments on about half."""
    domain, kind = name.split("_", 1)
    t = f"{SCHEMA}.{name}"
    rows = 20 + index % 30
    stmts: list[str] = []
    if kind == "region":
        stmts.append(f"create table {t} (id serial primary key, region_code varchar(10) not null unique, "
                     f"region_name text not null, level smallint, created_at timestamp default now())")
        stmts.append(f"insert into {t} (region_code, region_name, level) select 'R' || g, 'region ' || g, g % 3 "
                     f"from generate_series(1, {rows}) g")
    elif kind == "site":
        stmts.append(f"create table {t} (id serial primary key, region_id int not null references "
                     f"{SCHEMA}.{domain}_region(id), site_name varchar(100) not null, site_state {SCHEMA}.state, "
                     f"latitude numeric(9,6), longitude numeric(9,6), opened_on date, delete_ts timestamp)")
        stmts.append(f"insert into {t} (region_id, site_name, site_state, latitude, longitude, opened_on) "
                     f"select 1 + g % 20, 'site ' || g, (array['open','closed','planned'])[1 + g % 3]::{SCHEMA}.state, "
                     f"30 + g * 0.01, 110 + g * 0.01, date '2024-01-01' + g from generate_series(1, {rows}) g")
    elif kind == "item":
        stmts.append(f"create table {t} (id bigserial primary key, sku uuid not null default gen_random_uuid(), "
                     f"item_name text not null, category varchar(20), unit_price numeric(12,2), active boolean "
                     f"default true, attributes jsonb, create_ts timestamp default now(), delete_ts timestamp)")
        stmts.append(f"insert into {t} (item_name, category, unit_price, attributes) select 'item ' || g, "
                     f"(array['A','B','C','D'])[1 + g % 4], (g * 3.5)::numeric(12,2), "
                     f"jsonb_build_object('weight', g) from generate_series(1, {rows}) g")
    elif kind == "orders":
        stmts.append(f"create table {t} (id bigserial primary key, site_id int not null references "
                     f"{SCHEMA}.{domain}_site(id), order_no varchar(32) not null, order_date date not null, "
                     f"status varchar(12) not null, total_amount numeric(14,2), paid boolean, note text, "
                     f"create_ts timestamp default now(), delete_ts timestamp)")
        stmts.append(f"insert into {t} (site_id, order_no, order_date, status, total_amount, paid) select "
                     f"1 + g % 20, 'O' || g, date '2025-01-01' + g % 60, (array['new','paid','shipped'])[1 + g % 3], "
                     f"g * 10.25, g % 2 = 0 from generate_series(1, {rows}) g")
    else:
        stmts.append(f"create table {t} (order_id bigint not null references {SCHEMA}.{domain}_orders(id), "
                     f"line_no int not null, item_id bigint not null references {SCHEMA}.{domain}_item(id), "
                     f"quantity int not null, amount numeric(14,2), primary key (order_id, line_no))")
        stmts.append(f"insert into {t} (order_id, line_no, item_id, quantity, amount) select 1 + g % 20, g, "
                     f"1 + g % 20, 1 + g % 5, g * 2.5 from generate_series(1, {rows}) g")
    if index % 2 == 0:  # about half the tables documented in the database, the others left to the LLM
        stmts.append(f"comment on table {t} is '{domain} {kind.replace('_', ' ')} records'")
        stmts.append(f"comment on column {t}.{'order_id' if kind == 'order_line' else 'id'} is 'identifier'")
    return stmts


def build_database(url: str, count: int) -> list[str]:
    """Create `count` tables (<= 50) in schema `bench`; a prefix of the list always has its FK targets."""
    names = table_names(count)
    _execute(url, [f"create schema {SCHEMA}", f"create type {SCHEMA}.state as enum ('open', 'closed', 'planned')",
                   *(statement for index, name in enumerate(names) for statement in _table_sql(name, index)),
                   "analyze"])
    return [f"{SCHEMA}.{n}" for n in names]


def build_warmup_table(url: str) -> str:
    """One small table in a schema of its own, for the warm-up task."""
    _execute(url, ["create schema warmup",
                   "create table warmup.sample (id serial primary key, label text not null, status varchar(12))",
                   "insert into warmup.sample (label, status) select 'row ' || g, (array['new','done'])[1 + g % 2] "
                   "from generate_series(1, 20) g"])
    return "warmup.sample"


def _execute(url: str, statements: list[str]) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


# -- the model --------------------------------------------------------------------------------------------------


def _user_prompt(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "user")


def _schema_tables(prompt: str) -> dict[str, list[str]]:
    """Tables and their columns from the compact schema text the prompts carry (`create table x (` blocks)."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in prompt.splitlines():
        match = re.match(r"create table (\S+) \(", line)
        if match:
            current = match.group(1)
            tables[current] = []
            continue
        if current and line.startswith("  ") and not line.strip().startswith(("primary key", "foreign key")):
            tables[current].append(line.split()[0])
        elif current and line.startswith(")"):
            current = None
    return tables


def responder(request: dict[str, Any]) -> dict[str, Any]:
    """A well-behaved model for the generated schema; every chat answer takes the stub's fixed delay."""
    prompt = _user_prompt(request)
    if "fail EXPLAIN" in prompt:
        content: Any = {"repairs": []}
    elif "business themes" in prompt:
        tables = list(_schema_tables(prompt))
        groups: dict[str, list[str]] = {}
        for name in tables:
            domain = name.split(".", 1)[1].split("_", 1)[0]
            groups.setdefault(domain, []).append(name)
        count = int(re.search(r"Identify (\d+) business themes", prompt).group(1))
        keys = list(groups)
        themes = []
        for i in range(min(count, len(keys))):
            members = [t for k in keys[i::count] for t in groups[k]]
            themes.append({"topic_name": f"theme {i + 1}: {', '.join(keys[i::count])}",
                           "description": "activity of the business units", "related_tables": members,
                           "biz_entities": ["site", "order"], "biz_metrics": ["order count", "amount"]})
        content = {"themes": themes}
    elif "\nTheme: " in prompt:
        count = int(re.search(r"Write (\d+) distinct business questions", prompt).group(1))
        pairs = []
        for table, columns in _schema_tables(prompt).items():
            pairs.append({"question": f"How many rows does {table} hold?", "sql": f"SELECT count(*) FROM {table};"})
            if columns:
                pairs.append({"question": f"What are the most frequent {columns[-1]} values in {table}?",
                              "sql": f"SELECT {columns[-1]}, count(*) AS n FROM {table} GROUP BY {columns[-1]} "
                                     "ORDER BY n DESC LIMIT 10;"})
        content = {"pairs": pairs[:count]}
    else:
        table = re.search(r"^Table: (\S+)$", prompt, re.M).group(1)
        columns = re.findall(r"^- (\w+) \(", prompt, re.M)
        content = {"table_comment": f"{table.split('.', 1)[1].replace('_', ' ')} data",
                   "columns": {c: f"{c.replace('_', ' ')}" for c in columns},
                   "enum_candidates": [c for c in columns if c in ("status", "category", "site_state")]}
    return {"content": json.dumps(content, ensure_ascii=False), "delay": DELAY}


DELAY = 0.5


# -- the model's process ----------------------------------------------------------------------------------------


def _serve_stub(connection: Any, delay: float) -> None:
    """In the stub's own process: serve until told to stop; on "counts" report and restart the counters."""
    global DELAY
    from tests.support.llm_stub import LLMStub

    DELAY = delay
    with LLMStub(default=responder) as stub:
        connection.send(stub.base_url)
        while True:
            command = connection.recv()
            chat = sum(1 for r in stub.requests if r["path"].endswith("/chat/completions"))
            connection.send({"chat": chat, "embeddings": len(stub.requests) - chat, "max_active": stub.max_active})
            stub.requests.clear()
            stub.max_active = 0
            if command == "stop":
                return


@contextmanager
def stub_process(delay: float) -> Iterator[tuple[str, Callable[[], dict[str, int]]]]:
    """(base URL, counts()) of the stub model running in a child process; counts() returns the chat and
    embedding requests and the most answered at once since the previous call."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_stub, args=(child, delay), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the stub model did not start")
        base_url = parent.recv()

        def counts() -> dict[str, int]:
            parent.send("counts")
            return parent.recv()

        yield base_url, counts
        parent.send("stop")
        parent.recv()
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


# -- the run ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    global DELAY
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--timeline", action="store_true", help="print when each state ran (execution history)")
    args = parser.parse_args(argv)
    DELAY = args.delay

    from infra.local.lambdas import DEFAULT_WORKERS
    from infra.local.stack import LocalStack
    from tests.support.pipeline import PipelineClient

    with bench_database("bench_complete") as db_url, stub_process(args.delay) as (stub_url, stub_counts), \
            tempfile.TemporaryDirectory(prefix="bench_stack_") as root:
        tables = build_database(db_url, args.tables)
        warmup_table = build_warmup_table(db_url)
        os.environ.update({
            "LLM_BASE_URL": stub_url, "LLM_API_KEY": "bench-key", "LLM_MODEL": "bench-model",
            "EMBEDDING_BASE_URL": stub_url, "EMBEDDING_MODEL": "bench-embedding", "EMBEDDING_DIM": "16",
            "DATA_PIPELINE_LOG_LEVEL": os.environ.get("DATA_PIPELINE_LOG_LEVEL", "WARNING"),
        })
        with LocalStack(root, server_url=db_url, load_demo=False, lambda_workers=DEFAULT_WORKERS) as stack:
            client = PipelineClient(stack)
            warmup = _run(client, db_url, [warmup_table], "bench warm-up", args.timeout)[1]
            if warmup["status"] != "completed":
                sys.stderr.write(f"complete_run: the warm-up task ended {warmup['status']}: "
                                 f"{warmup.get('error_message')}\n")
                return 1
            stub_counts()  # the warm-up's calls are not part of the figure
            (wall, cpu), status = _run(client, db_url, tables, "bench complete_run", args.timeout)
            if args.timeline:
                _print_timeline(stack)
        counts = stub_counts()
    if status["status"] != "completed":
        sys.stderr.write(f"complete_run: task ended {status['status']}: {status.get('error_message')}\n"
                         f"{json.dumps(status['step_status'])}\n")
        return 1
    baseline = counts["chat"] * args.delay
    steps = {s["step_name"]: _seconds(s) for s in status["steps"]}
    results = status["results"]
    report(
        "complete_run", wall, "s", baseline, baseline / wall,
        f"  complete_run: {args.tables} tables, {counts['chat']} chat calls x {args.delay} s answered by the stub "
        f"(max {counts['max_active']} at once), {counts['embeddings']} embedding requests (stub endpoint, no MiniLM)",
        "  complete_run: per-step seconds (status timestamps, whole seconds) "
        + ", ".join(f"{k}={v:.0f}" for k, v in steps.items()),
        f"  complete_run: CPU of this process during the run {cpu:.1f} s (moto server, API, client; step Lambdas, "
        f"stub and PostgreSQL not included); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        f"  complete_run: tables ok={results['ddl_generation']['tables_succeeded']}, "
        f"pairs={results['qa_generation']['pairs']}, "
        f"valid={results.get('sql_validation', {}).get('valid_after', results.get('sql_validation'))}",
    )
    return 0


def _run(client: Any, db_url: str, tables: list[str], name: str, timeout: float
         ) -> tuple[tuple[float, float], dict[str, Any]]:
    """Create a task on `tables`, execute it completely, wait: ((wall s, CPU s of this process), status)."""
    task_id = client.create_task(task_name=name, business_context=BUSINESS_CONTEXT, db_connection=db_url,
                                 db_name="bench")
    client.upload_tables(task_id, tables)
    started, cpu_started = time.monotonic(), _cpu_seconds()
    execution_id = client.execute(task_id, execution_mode="complete")["data"]["execution_id"]
    status = _wait(client, task_id, execution_id, timeout)
    return (time.monotonic() - started, _cpu_seconds() - cpu_started), status


def _wait(client: Any, task_id: str, execution_id: str, timeout: float) -> dict[str, Any]:
    """The task's status once final. The stack hears the execution end (no request until then: a status poll
    every 0.1 s cost the moto server a third of its CPU, which the run shares); the status the last step
    wrote is read then. Polled on if it is not final yet."""
    deadline = time.monotonic() + timeout
    client.stack.wait_for_execution(client.stack.execution_arn(execution_id), timeout=timeout)
    while True:
        status = client.status(task_id)
        if status["status"] in ("completed", "failed", "cancelled", "partial_completed"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{task_id} still {status['status']} after {timeout} s")
        time.sleep(0.1)


def _print_timeline(stack: Any) -> None:
    """Each state's start and end (seconds after the execution started) of the latest execution, from its
    history: where the critical path goes."""
    sfn = stack.sfn
    executions = sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    latest = max(executions, key=lambda e: e["startDate"])
    events = sfn.get_execution_history(executionArn=latest["executionArn"], maxResults=1000)["events"]
    start = events[0]["timestamp"]
    entered: dict[str, float] = {}
    for event in events:
        at = (event["timestamp"] - start).total_seconds()
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
        if not details:
            continue
        name = details["name"]
        if event["type"].endswith("StateEntered"):
            entered.setdefault(name, at)
        else:
            sys.stdout.write(f"  timeline: {name:<28} {entered.get(name, at):6.3f} -> {at:6.3f} s\n")
    sys.stdout.write(f"  timeline: execution ends at {(events[-1]['timestamp'] - start).total_seconds():.3f} s\n")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _seconds(step: dict[str, Any]) -> float:
    from datetime import datetime

    if not step.get("started_at") or not step.get("completed_at"):
        return 0.0
    return (datetime.fromisoformat(step["completed_at"]) - datetime.fromisoformat(step["started_at"])).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
