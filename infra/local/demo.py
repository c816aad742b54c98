"""`make demo`: the main job end to end on the embedded stack, driven only through the HTTP API.

Starts `python -m infra.local.serve` (embedded PostgreSQL with the demo database, moto, the Chalice API), then,
with the Python client (data_pipeline_client.Client), creates a task on the demo database, uploads its table
list, executes `complete` with a vector backup, shows live progress while polling, prints a summary and exits 0 —
or non-zero when the task failed.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from data_pipeline_client import Client
from infra.local.demo_db import DEMO_BUSINESS_CONTEXT, DEMO_TABLES

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "data_pipeline API ready on "


def start_server(port: int) -> subprocess.Popen:
    env = dict(os.environ, API_PORT=str(port), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    lines: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                raise RuntimeError("the local stack exited while starting:\n" + "".join(lines[-40:]))
            continue
        lines.append(line)
        if READY_LINE in line:
            # Keep draining the server's output so it never blocks on a full pipe.
            threading.Thread(target=_drain, args=(process, lines), daemon=True).start()
            return process
    raise RuntimeError("the local stack did not become ready within 300 s:\n" + "".join(lines[-40:]))


def _drain(process: subprocess.Popen, head: list[str]) -> None:
    log_path = ROOT / ".local" / "demo-server.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as sink:
        sink.writelines(head)
        for line in process.stdout:  # type: ignore[union-attr]
            sink.write(line)
            sink.flush()


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def describe_progress(status: dict[str, Any]) -> str:
    steps = status.get("step_status") or {}
    parts = [f"{name}={state}" for name, state in steps.items()]
    line = f"[{status.get('status')}] " + " ".join(parts)
    progress = (status.get("progress") or {})
    current = (status.get("current_step") or {}).get("step")
    step_progress = progress.get(current) if current else None
    if isinstance(step_progress, dict) and "total" in step_progress:
        unit = {"qa_generation": "themes", "sql_validation": "batches"}.get(current, "tables")
        line += f" | {current}: {step_progress.get('done', 0)}/{step_progress['total']} {unit}"
        if step_progress.get("current_table"):
            line += f" (now {step_progress['current_table']})"
    return line


def run_demo(client: Client, *, poll_seconds: float = 1.0, timeout: float = 900) -> int:
    started = time.monotonic()
    created = client.create_task(task_name="高速公路服务区 demo", business_context=DEMO_BUSINESS_CONTEXT,
                                 db_name="highway_demo")["data"]
    task_id = created["task_id"]
    print(f"created {task_id}")
    uploaded = client.upload_table_list(task_id, DEMO_TABLES)["data"]
    print(f"table list: {uploaded['table_count']} tables")
    client.execute_task(task_id, "complete", backup_vector_tables=True)
    print("executing complete workflow (backup_vector_tables=true)")
    last = ""
    status: dict[str, Any] = {}
    try:
        # Every poll_seconds (no back-off): each change of the progress line is printed as it happens.
        for status in client.watch(task_id, interval=poll_seconds, max_interval=poll_seconds,
                                   timeout=timeout - (time.monotonic() - started)):
            line = describe_progress(status)
            if line != last:
                print(f"{time.monotonic() - started:6.1f}s {line}", flush=True)
                last = line
    except TimeoutError as exc:
        print(f"gave up waiting: {exc}")
    wall = time.monotonic() - started
    files = client.get_task_files(task_id)["data"]
    print_summary(status, files, wall)
    if status.get("status") != "completed":
        errors = client.get_task_logs(task_id, limit=20, level="ERROR")["data"]["logs"]
        for record in errors:
            print(f"  {record['timestamp']} [{record['level']}] {record['logger']}: {record['message']}")
        return 1
    return 0


def print_summary(status: dict[str, Any], files: dict[str, Any], wall: float) -> None:
    results = status.get("results") or {}
    ddl = results.get("ddl_generation") or {}
    qa = results.get("qa_generation") or {}
    val = results.get("sql_validation") or {}
    load = results.get("training_load") or {}
    print("")
    print(f"== Summary of {status.get('task_id')}: {status.get('status')} ==")
    if status.get("error_message"):
        print(f"error: {status['error_message']}")
    print(f"tables:   {ddl.get('tables_succeeded', 0)} succeeded, {ddl.get('tables_failed', 0)} failed")
    print(f"pairs:    {qa.get('pairs_generated', 0)} generated, {qa.get('pairs', 0)} after de-duplication")
    if val:
        print(f"validate: {val.get('valid_before', 0)} valid before repair of {val.get('total', 0)}, "
              f"{val.get('repaired', 0)} repaired, {val.get('dropped', 0)} dropped, "
              f"{val.get('pairs_kept', 0)} kept")
    if load:
        totals = {k: load.get(k) for k in ("ddl", "documentation", "sql")}
        print(f"vectors:  {totals} loaded with {load.get('embedding_model')} ({load.get('embedding_dim')}-d)")
    usage = status.get("llm_usage") or {}
    if usage:
        calls = sum((u or {}).get("calls", 0) for u in usage.values())
        print(f"llm:      {calls} calls ({next(iter(usage.values())).get('provider')})")
    print(f"files:    {files.get('total_files')} files, {files.get('total_size_human')}")
    for item in files.get("files", []):
        print(f"          {item['file_name']:<48} {item['file_size_human']:>10}")
    print(f"wall time: {wall:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", "8084")))
    parser.add_argument("--url", help="use an already running API (e.g. http://127.0.0.1:8084/api/v0)")
    args = parser.parse_args(argv)
    api_key = os.environ.get("DATA_PIPELINE_API_KEY")
    if args.url:
        return run_demo(Client(args.url, api_key))
    server = start_server(args.port)
    try:
        return run_demo(Client(f"http://127.0.0.1:{args.port}", api_key))
    finally:
        stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
