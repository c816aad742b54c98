"""`data-pipeline …` (also `python -m data_pipeline_client …`): the API from a shell.

Reads DATA_PIPELINE_URL (default http://127.0.0.1:8084) and DATA_PIPELINE_API_KEY; `--url` / `--api-key` override
them. `--json` prints the answer's `data` as JSON (for scripts). Exit codes: 0 done, 1 the task failed (or the API
refused the request), 2 usage error (bad arguments, or a 400 from the API), 3 server unreachable.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from data_pipeline_client.client import ApiError, Client, ServerUnreachable
from data_pipeline_client.progress import plain_line, show_watch

OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
STEPS = ("ddl_generation", "qa_generation", "sql_validation", "training_load")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Usage(Exception):
    """A usage error found after parsing (exit 2)."""


def _common(json_default: Any = argparse.SUPPRESS) -> argparse.ArgumentParser:
    """--url, --api-key, --json: accepted before the command and after it."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--url", default=argparse.SUPPRESS, help="API root (default: $DATA_PIPELINE_URL)")
    parent.add_argument("--api-key", default=argparse.SUPPRESS, help="Bearer key (default: $DATA_PIPELINE_API_KEY)")
    parent.add_argument("--json", action="store_true", default=json_default, help="print JSON (the answer's data)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="data-pipeline", description=__doc__.splitlines()[0],
                                     parents=[_common(False)])
    groups = parser.add_subparsers(dest="group", required=True, metavar="{tasks,files,logs,tables,vectors,pairs}")

    def command(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common])

    tasks = groups.add_parser("tasks", help="create, list, run and watch tasks").add_subparsers(
        dest="command", required=True)
    create = command(tasks, "create", "create a task (and upload its table list)")
    create.add_argument("--name", dest="task_name")
    create.add_argument("--business-context")
    create.add_argument("--db-name")
    create.add_argument("--db-connection")
    create.add_argument("--created-by")
    create.add_argument("--tables", help="comma list of tables")
    create.add_argument("--tables-file", type=Path, help="a .txt table list to upload")
    for flag in ("sql-validation", "llm-repair", "modify-original-file", "training-load"):
        create.add_argument(f"--no-{flag}", action="store_true")
    create.add_argument("--backup-vectors", action="store_true")
    create.add_argument("--truncate-vectors", action="store_true")
    listing = command(tasks, "list", "list tasks, newest first")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int, default=0)
    command(tasks, "show", "a task's status").add_argument("task_id")
    execute = command(tasks, "execute", "start the pipeline (complete, or one --step)")
    execute.add_argument("task_id")
    execute.add_argument("--step", choices=STEPS)
    execute.add_argument("--backup-vectors", action="store_true", default=None)
    execute.add_argument("--truncate-vectors", action="store_true", default=None)
    execute.add_argument("--watch", action="store_true", help="then watch it (exit code: its outcome)")
    execute.add_argument("--interval", type=float, default=1.0, help="with --watch: seconds between polls")
    execute.add_argument("--timeout", type=float, help="with --watch: give up after this many seconds")
    command(tasks, "cancel", "cancel a running task").add_argument("task_id")
    watch = command(tasks, "watch", "live progress until the task ends (exit 0 completed, 1 otherwise)")
    watch.add_argument("task_id")
    watch.add_argument("--interval", type=float, default=1.0)
    watch.add_argument("--timeout", type=float)

    files = groups.add_parser("files", help="a task's files").add_subparsers(dest="command", required=True)
    command(files, "list", "list a task's files").add_argument("task_id")
    get = command(files, "get", "download a task file")
    get.add_argument("task_id")
    get.add_argument("file_name")
    get.add_argument("-o", "--output", help="where to save it (`-` for stdout; default: its name)")

    logs = groups.add_parser("logs", help="a task's log", parents=[common])
    logs.add_argument("task_id")
    logs.add_argument("--level", type=str.upper, choices=LEVELS)
    logs.add_argument("--limit", type=int, default=100)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new records until the task ends")
    logs.set_defaults(command="show")

    tables = groups.add_parser("tables", help="a database's tables").add_subparsers(dest="command", required=True)
    tlist = command(tables, "list", "list a database's tables")
    tlist.add_argument("--db-connection")
    tlist.add_argument("--schema")
    tlist.add_argument("--pattern", dest="table_name_pattern")
    tddl = command(tables, "ddl", "document one table (nothing is written)")
    tddl.add_argument("table")
    tddl.add_argument("--db-connection")
    tddl.add_argument("--business-context")
    tddl.add_argument("--type", choices=("ddl", "md", "both"), default="ddl")

    vectors = groups.add_parser("vectors", help="the vector tables").add_subparsers(dest="command", required=True)
    command(vectors, "backups", "list vector backups").add_argument("--task-id")
    restore = command(vectors, "restore", "restore a task's vector backup")
    restore.add_argument("task_id")
    restore.add_argument("--timestamp")
    restore.add_argument("--truncate", action="store_true", help="empty the tables first")
    restore.add_argument("--on-conflict", choices=("error", "skip"), default="error")
    command(vectors, "stats", "rows per collection").add_argument("--task-id")

    pairs = groups.add_parser("pairs", help="the Question-SQL pairs").add_subparsers(dest="command", required=True)
    show = command(pairs, "show", "a version of the pair file")
    show.add_argument("task_id")
    show.add_argument("--version", type=int)
    validate = command(pairs, "validate", "validate one SQL (or every pair) on the task's database")
    validate.add_argument("task_id")
    validate.add_argument("sql", nargs="?", help="default: every pair of the latest version")
    return parser


# ---- output -----------------------------------------------------------------------------------------------

def _print_json(console: Console, data: Any) -> None:
    console.file.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    console.file.flush()


def _table(console: Console, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


def _emit(args: argparse.Namespace, console: Console, data: Any, columns: list[str] | None = None,
          rows: list[list[Any]] | None = None, text: str | None = None) -> None:
    if args.json:
        _print_json(console, data)
    elif columns is not None and rows is not None:
        _table(console, columns, rows)
    elif text is not None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        _print_json(console, data)


# ---- commands ---------------------------------------------------------------------------------------------

def _watch(client: Client, args: argparse.Namespace, console: Console, task_id: str) -> int:
    snapshots = client.watch(task_id, interval=getattr(args, "interval", 1.0), timeout=getattr(args, "timeout", None))
    if args.json:
        final: dict[str, Any] = {}
        for final in snapshots:  # noqa: B007  (the last one is the outcome)
            pass
        _print_json(console, final)
    else:
        final = show_watch(snapshots, console)
        console.print(f"task {task_id}: {final.get('status')}", markup=False, highlight=False)
    return OK if final.get("status") == "completed" else FAILED


def _tasks(client: Client, args: argparse.Namespace, console: Console) -> int:
    if args.command == "create":
        body = {k: getattr(args, k) for k in ("task_name", "business_context", "db_name", "db_connection",
                                              "created_by") if getattr(args, k)}
        for flag, field in (("no_sql_validation", "enable_sql_validation"), ("no_llm_repair", "enable_llm_repair"),
                            ("no_modify_original_file", "modify_original_file"),
                            ("no_training_load", "enable_training_data_load")):
            if getattr(args, flag):
                body[field] = False
        if args.backup_vectors:
            body["backup_vector_tables"] = True
        if args.truncate_vectors:
            body["truncate_vector_tables"] = True
        if args.tables and args.tables_file:
            raise Usage("give --tables or --tables-file, not both")
        data = client.create_task(**body)["data"]
        if args.tables_file:
            data["table_list"] = client.upload_table_list(data["task_id"], args.tables_file.read_text("utf-8"),
                                                          args.tables_file.name)["data"]
        elif args.tables:
            names = [t.strip() for t in args.tables.split(",") if t.strip()]
            data["table_list"] = client.set_table_list(data["task_id"], names)["data"]
        _emit(args, console, data, text=data["task_id"])
    elif args.command == "list":
        data = client.list_tasks(limit=args.limit, offset=args.offset, status=args.status)["data"]
        _emit(args, console, data, ["task_id", "status", "name", "created_at", "created_by"],
              [[t["task_id"], t["status"], t.get("task_name"), t.get("created_at"), t.get("created_by")]
               for t in data["tasks"]])
    elif args.command == "show":
        data = client.get_task_status(args.task_id)["data"]
        _emit(args, console, data, text=plain_line(data) + (f"\nerror: {data['error_message']}"
                                                           if data.get("error_message") else ""))
    elif args.command == "execute":
        options = {k: v for k, v in (("backup_vector_tables", args.backup_vectors),
                                     ("truncate_vector_tables", args.truncate_vectors)) if v is not None}
        data = client.execute_task(args.task_id, "step" if args.step else "complete", args.step, **options)["data"]
        if args.watch:
            if not args.json:
                console.print(f"execution {data['execution_id']} started", markup=False, highlight=False)
            return _watch(client, args, console, args.task_id)
        _emit(args, console, data, text=f"execution {data['execution_id']} started")
    elif args.command == "cancel":
        data = client.cancel_task(args.task_id)["data"]
        _emit(args, console, data, text=f"task {data['task_id']}: {data['status']}")
    elif args.command == "watch":
        return _watch(client, args, console, args.task_id)
    return OK


def _files(client: Client, args: argparse.Namespace, console: Console) -> int:
    if args.command == "list":
        data = client.get_task_files(args.task_id)["data"]
        _emit(args, console, data, ["file", "size", "primary", "description"],
              [[f["file_name"], f["file_size_human"], "*" if f["is_primary"] else "", f.get("description")]
               for f in data["files"]])
    else:
        payload = client.get_file_bytes(args.task_id, args.file_name)
        if args.output == "-":
            sys.stdout.buffer.write(payload)
            sys.stdout.flush()
            return OK
        target = Path(args.output or Path(args.file_name).name)
        target.write_bytes(payload)
        _emit(args, console, {"file_name": args.file_name, "saved_to": str(target), "bytes": len(payload)},
              text=f"saved {target} ({len(payload)} bytes)")
    return OK


def _log_line(record: dict[str, Any]) -> str:
    return f"{record.get('timestamp')} [{record.get('level')}] {record.get('step') or '-'} " \
           f"{record.get('logger')}: {record.get('message')}"


def _logs(client: Client, args: argparse.Namespace, console: Console) -> int:
    data = client.get_task_logs(args.task_id, limit=args.limit, level=args.level)["data"]
    if not args.follow:
        _emit(args, console, data, text="\n".join(_log_line(r) for r in data["logs"]))
        return OK
    seen: set[str] = set()
    while True:
        for record in data["logs"]:
            key = json.dumps(record, sort_keys=True, ensure_ascii=False)
            if key not in seen:
                seen.add(key)
                if args.json:
                    console.file.write(json.dumps(record, ensure_ascii=False) + "\n")
                    console.file.flush()
                else:
                    console.print(_log_line(record), markup=False, highlight=False, soft_wrap=True)
        status = client.get_task_status(args.task_id)["data"]["status"]
        if status not in ("pending", "in_progress"):
            return OK
        time.sleep(1.0)
        data = client.get_task_logs(args.task_id, limit=args.limit, level=args.level)["data"]


def _tables(client: Client, args: argparse.Namespace, console: Console) -> int:
    if args.command == "list":
        data = client.list_database_tables(args.db_connection, args.schema, args.table_name_pattern)["data"]
        _emit(args, console, data, text="\n".join(data["tables"]))
    else:
        data = client.get_table_ddl(args.table, args.db_connection, args.business_context, args.type)["data"]
        _emit(args, console, data, text="\n".join(t for t in (data.get("ddl"), data.get("md")) if t))
    return OK


def _vectors(client: Client, args: argparse.Namespace, console: Console) -> int:
    if args.command == "backups":
        data = client.list_vector_backups(args.task_id)["data"]
        _emit(args, console, data, ["task_id", "timestamp", "rows", "size"],
              [[b["task_id"], b["timestamp"], b.get("total_rows"), b.get("total_size_human")] for b in data["backups"]])
    elif args.command == "restore":
        data = client.restore_vector_backup(args.task_id, args.timestamp, args.truncate,
                                            on_conflict=args.on_conflict)["data"]
        _emit(args, console, data, text=f"restored {data['total_restored']} rows from {data['timestamp']}")
    else:
        data = client.vector_stats(args.task_id)["data"]
        _emit(args, console, data, ["collection", "rows"],
              [[c["name"], c["rows"]] for c in data["collections"]] + [["total", data["total"]]])
    return OK


def _pairs(client: Client, args: argparse.Namespace, console: Console) -> int:
    if args.command == "show":
        data = client.get_pairs(args.task_id, args.version)["data"]
        _emit(args, console, data, ["#", "question", "sql"],
              [[i, p["question"], p["sql"]] for i, p in enumerate(data["pairs"])])
        return OK
    sqls = [args.sql] if args.sql else [p["sql"] for p in client.get_pairs(args.task_id)["data"]["pairs"]]
    results = [{"index": i, "sql": sql, **client.validate_sql(args.task_id, sql)["data"]} for i, sql in enumerate(sqls)]
    data: Any = results[0] if args.sql else {"results": results, "valid": sum(r["valid"] for r in results),
                                             "total": len(results)}
    _emit(args, console, data, ["#", "valid", "error"] if not args.sql else None,
          [[r["index"], "yes" if r["valid"] else "no", r["error"]] for r in results] if not args.sql else None,
          text=("valid" if results[0]["valid"] else f"invalid: {results[0]['error']}") if args.sql else None)
    return OK if all(r["valid"] for r in results) else FAILED


HANDLERS = {"tasks": _tasks, "files": _files, "logs": _logs, "tables": _tables, "vectors": _vectors,
            "pairs": _pairs}


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 after --help, 2 on a usage error
        return int(exc.code or 0)
    if console is None:
        force = os.environ.get("DATA_PIPELINE_FORCE_TERMINAL") == "1" or None
        console = Console(force_terminal=force, soft_wrap=False)
    errors = Console(stderr=True)
    client = Client(getattr(args, "url", None), getattr(args, "api_key", None))
    try:
        return HANDLERS[args.group](client, args, console)
    except Usage as exc:
        parser.print_usage(sys.stderr)
        errors.print(f"data-pipeline: error: {exc}", markup=False, highlight=False)
        return USAGE
    except ServerUnreachable as exc:
        errors.print(f"data-pipeline: {exc.message}", markup=False, highlight=False)
        return UNREACHABLE
    except ApiError as exc:
        errors.print(f"data-pipeline: {exc}", markup=False, highlight=False)
        if args.json and exc.envelope:
            _print_json(console, exc.envelope)
        return USAGE if exc.status == 400 else FAILED
    except TimeoutError as exc:
        errors.print(f"data-pipeline: {exc}", markup=False, highlight=False)
        return FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
