"""What `data-pipeline tasks watch` shows: on a terminal a live table per step and per table (rich), elsewhere one
plain line whenever the status changes."""
from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

STEP_ITEMS = {"ddl_generation": "tables", "qa_generation": "themes", "sql_validation": "batches"}
STATE_STYLE = {"completed": "green", "running": "yellow", "failed": "bold red", "skipped": "dim", "pending": "dim",
               "in_progress": "yellow", "cancelled": "red", "partial_completed": "yellow"}
ITEMS_SHOWN = 12


def _seconds(start: str | None, end: str | None) -> str:
    from datetime import datetime

    if not start:
        return ""
    try:
        began = datetime.fromisoformat(start)
        ended = datetime.fromisoformat(end) if end else datetime.now(began.tzinfo)
    except ValueError:
        return ""
    return f"{(ended - began).total_seconds():.1f} s"


def step_line(status: dict[str, Any], step: str) -> str:
    """`12/20 tables` (or '') of a step's progress record."""
    progress = (status.get("progress") or {}).get(step) or {}
    if not isinstance(progress, dict) or "total" not in progress:
        return ""
    text = f"{progress.get('done', 0)}/{progress['total']} {STEP_ITEMS.get(step, 'items')}"
    if progress.get("failed"):
        text += f", {progress['failed']} failed"
    return text


def plain_line(status: dict[str, Any]) -> str:
    """One line: the task's status, each step's state and the running step's count."""
    steps = status.get("step_status") or {}
    line = f"[{status.get('status')}] " + " ".join(f"{name}={state}" for name, state in steps.items())
    current = (status.get("current_step") or {}).get("step")
    if current and step_line(status, current):
        line += f" | {current}: {step_line(status, current)}"
        now = ((status.get("progress") or {}).get(current) or {}).get("current_table")
        if now:
            line += f" (now {now})"
    return line


def _items(status: dict[str, Any]) -> tuple[str, list[tuple[str, dict[str, Any]]]] | None:
    """The per-item records (tables, themes, batches) of the running step, else of the last step that has any."""
    progress = status.get("progress") or {}
    current = (status.get("current_step") or {}).get("step")
    order = [current] if current else []
    order += [s for s in reversed(list(STEP_ITEMS)) if s != current]
    for step in order:
        record = progress.get(step) if step else None
        kind = STEP_ITEMS.get(step or "")
        if isinstance(record, dict) and kind and isinstance(record.get(kind), dict) and record[kind]:
            return step, list(record[kind].items())
    return None


def render(status: dict[str, Any], started: float) -> Group:
    """The terminal view: a header, the steps table, the per-item table of the step at work."""
    state = str(status.get("status"))
    header = Text.assemble(("task ", "bold"), (str(status.get("task_id")), "bold cyan"), "  ",
                           (state, STATE_STYLE.get(state, "")), f"  {time.monotonic() - started:.0f} s")
    steps = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("step", "state", "progress", "time", "error"):
        steps.add_column(column)
    for record in status.get("steps") or []:
        name, step_state = record.get("step_name"), str(record.get("step_status"))
        steps.add_row(name, Text(step_state, STATE_STYLE.get(step_state, "")), step_line(status, name),
                      _seconds(record.get("started_at"), record.get("completed_at")),
                      Text(str(record.get("error_message") or "")[:80], "red"))
    parts: list[Any] = [header, steps]
    found = _items(status)
    if found:
        step, items = found
        table = Table(title=f"{step}: {STEP_ITEMS[step]}", title_justify="left", box=None, header_style="bold")
        for column in ("name", "ok", "seconds", "detail"):
            table.add_column(column)
        for name, item in items[-ITEMS_SHOWN:]:
            item = item if isinstance(item, dict) else {}
            ok = item.get("ok", True)
            detail = item.get("error") or ", ".join(f"{k}={v}" for k, v in item.items()
                                                    if k in ("pairs", "total", "valid_after"))
            table.add_row(name, Text("✓", "green") if ok else Text("✗", "red"), str(item.get("seconds", "")),
                          str(detail)[:80])
        if len(items) > ITEMS_SHOWN:
            table.caption = f"the last {ITEMS_SHOWN} of {len(items)}"
        parts.append(table)
    if status.get("error_message"):
        parts.append(Text(f"error: {status['error_message']}", "bold red"))
    return Group(*parts)


def show_watch(snapshots: Any, console: Console) -> dict[str, Any]:
    """Consume `snapshots` (Client.watch), displaying them; returns the last one."""
    started = time.monotonic()
    last: dict[str, Any] = {}
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            for last in snapshots:
                live.update(render(last, started))
        return last
    previous = ""
    for last in snapshots:
        line = plain_line(last)
        if line != previous:
            console.print(f"{time.monotonic() - started:6.1f}s {line}", markup=False, highlight=False)
            previous = line
    return last
