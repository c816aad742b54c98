"""The `data-pipeline` CLI and the Python client against the real local server (Chalice's local HTTP server on the
module's local stack): watch renders per-step and per-table progress and exits with the task's outcome, --json is
JSON, usage errors exit 2, no server exits 3; a saved pair-file version is what training_load loads."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest
from rich.console import Console

from data_pipeline_client import ApiError, Client
from data_pipeline_client.cli import main
from infra.local.demo_db import DEMO_BUSINESS_CONTEXT

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], *, terminal: bool = False) -> tuple[int, str]:
    """The CLI in this process (stdout captured; a terminal forced when asked, as on a real one)."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=140, color_system="standard" if terminal else None)
    code = main(argv, console=console)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def client(api):
    return Client(api.base_url)


@pytest.fixture(scope="module")
def url(api):
    return api.base_url


@pytest.fixture(scope="module")
def done_task(client):
    """A complete run over two tables (ddl, pairs, validation; no load yet: the review decides what is loaded)."""
    task_id = client.create_task(task_name="命令行 审核", business_context=DEMO_BUSINESS_CONTEXT,
                                 db_name="highway_e2e", enable_training_data_load=False)["data"]["task_id"]
    client.upload_table_list(task_id, ["public.bss_company", "public.bss_service_area"])
    client.execute_task(task_id, "complete")
    return task_id


def test_watch_shows_steps_and_tables_and_exits_0_when_completed(url, done_task):
    code, out = run(["--url", url, "tasks", "watch", done_task, "--interval", "0.3"], terminal=True)
    assert code == 0, out
    assert "\x1b[" in out  # the live terminal display, not plain lines
    for text in ("ddl_generation", "qa_generation", "sql_validation", "training_load", "completed"):
        assert text in out, text
    assert "bss_company" in out and "bss_service_area" in out  # the per-table rows
    assert "2/2 tables" in out


def test_json_output_is_json(url, done_task):
    code, out = run(["--url", url, "tasks", "show", done_task, "--json"])
    assert code == 0 and json.loads(out)["status"] == "completed"
    code, out = run(["tasks", "list", "--json", "--url", url])
    assert code == 0 and done_task in [t["task_id"] for t in json.loads(out)["tasks"]]
    code, out = run(["--json", "--url", url, "files", "list", done_task])
    files = {f["file_name"]: f for f in json.loads(out)["files"]}
    assert code == 0 and "bss_company.ddl" in files
    code, out = run(["--url", url, "tasks", "watch", done_task, "--json"])
    assert code == 0 and json.loads(out)["task_id"] == done_task
    code, out = run(["--url", url, "pairs", "show", done_task, "--json"])
    assert code == 0 and json.loads(out)["version"] >= 1 and json.loads(out)["pairs"]  # 2 once a test saved
    code, out = run(["--url", url, "--json", "pairs", "validate", done_task, "SELECT count(*) FROM bss_company"])
    assert code == 0 and json.loads(out)["valid"] is True and json.loads(out)["tables"] == ["bss_company"]
    code, out = run(["--url", url, "--json", "logs", done_task, "--level", "info", "--limit", "5"])
    assert code == 0 and len(json.loads(out)["logs"]) == 5
    code, out = run(["--url", url, "files", "get", done_task, "bss_company.ddl", "-o", os.devnull])
    assert code == 0 and "saved" in out


def test_plain_output_off_a_terminal(url, done_task):
    code, out = run(["--url", url, "tasks", "watch", done_task])
    assert code == 0 and "\x1b[" not in out and "[completed]" in out and "ddl_generation=completed" in out
    code, out = run(["--url", url, "files", "list", done_task])
    assert code == 0 and "bss_company_detail.md" in out


def test_a_saved_version_is_what_training_load_loads(client, url, done_task, pipeline_stack):
    current = client.get_pairs(done_task)["data"]
    pairs = [dict(p) for p in current["pairs"]]
    pairs[0]["question"] = "审核后改写的问题：公司一共有多少家？"
    pairs[0]["sql"] = "SELECT count(*) FROM bss_company"
    dropped = pairs.pop()
    with pytest.raises(ApiError) as refused:  # an invalid SQL is refused with PostgreSQL's error
        client.save_pairs(done_task, current["version"], "测试员",
                          [*pairs, {"question": "坏的", "sql": "SELECT no_such_column FROM bss_company"}])
    assert refused.value.status == 422 and refused.value.code == "SQL_VALIDATION_FAILED"
    assert 'column "no_such_column" does not exist' in refused.value.data["errors"][0]["error"]
    saved = client.save_pairs(done_task, current["version"], "测试员", pairs)["data"]
    assert saved["version"] == current["version"] + 1
    code, out = run(["--url", url, "tasks", "execute", done_task, "--step", "training_load", "--watch",
                     "--interval", "0.3"])
    assert code == 0, out
    status = client.get_task_status(done_task)["data"]
    assert status["results"]["training_load"]["sql"] == len(pairs)
    vectors = os.environ["PGVECTOR_DB_URL"]
    with closing(psycopg2.connect(vectors)) as conn, conn.cursor() as cur:
        cur.execute("select document, cmetadata from langchain_pg_embedding where cmetadata->>'task_id' = %s "
                    "and document like '{%%'", (done_task,))
        rows = cur.fetchall()
    documents = [json.loads(doc)["question"] for doc, _ in rows]
    assert "审核后改写的问题：公司一共有多少家？" in documents and dropped["question"] not in documents
    assert {meta["source_file"] for _, meta in rows} == {saved["file_name"]}
    code, out = run(["--url", url, "--json", "vectors", "stats"])
    stats = {c["name"]: c["rows"] for c in json.loads(out)["collections"]}
    assert code == 0 and stats["sql"] >= len(pairs) and stats["ddl"] >= 2


def test_watch_exits_1_when_the_task_failed(client, url):
    task_id = client.create_task(task_name="无对", db_name="highway_e2e")["data"]["task_id"]
    client.upload_table_list(task_id, ["public.bss_company"])
    code, out = run(["--url", url, "tasks", "execute", task_id, "--step", "sql_validation", "--watch",
                     "--interval", "0.3"], terminal=True)
    assert code == 1, out
    assert "failed" in out and "no Question-SQL pair file" in out


def test_usage_errors_exit_2(url, done_task):
    assert run(["tasks", "frobnicate"])[0] == 2
    assert run(["--url", url, "tasks", "execute", done_task, "--step", "nope"])[0] == 2
    assert run(["--url", url, "tasks", "create", "--tables", "a", "--tables-file", "t.txt"])[0] == 2
    assert run(["--url", url, "--json", "logs", done_task, "--limit", "0"])[0] == 2  # the API's 400


def test_python_m_and_no_server_exit_codes(tmp_path):
    env = {**os.environ, "DATA_PIPELINE_URL": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT)}
    unreachable = subprocess.run([sys.executable, "-m", "data_pipeline_client", "tasks", "list"], cwd=tmp_path,
                                 env=env, capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 3 and "cannot reach http://127.0.0.1:9" in unreachable.stderr
    usage = subprocess.run([sys.executable, "-m", "data_pipeline_client", "tasks"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage: data-pipeline tasks" in usage.stderr


def test_the_key_is_sent_from_the_environment(api, monkeypatch):
    from tests.support.http_api import HttpApi

    monkeypatch.setenv("DATA_PIPELINE_API_KEY", "cli-key")
    monkeypatch.setenv("DATA_PIPELINE_URL", api.base_url)
    assert HttpApi(api.base_url).call("GET", "/data_pipeline/tasks").status == 401  # the server wants it now
    code, out = run(["--json", "tasks", "list", "--limit", "1"])
    assert code == 0 and json.loads(out)["limit"] == 1
    assert run(["--api-key", "wrong", "tasks", "list"])[0] == 1  # a 401: the API refused the request


def test_the_other_commands(url, done_task):
    code, out = run(["--url", url, "--json", "tasks", "create", "--name", "新任务", "--tables",
                     "public.bss_company, public.bss_branch", "--no-training-load"])
    created = json.loads(out)
    assert code == 0 and created["table_list"]["table_count"] == 2
    assert run(["--url", url, "tasks", "cancel", created["task_id"]])[0] == 1  # 409: it does not run
    code, out = run(["--url", url, "logs", done_task, "--follow", "--limit", "3"])  # an ended task: prints, ends
    assert code == 0 and out.count("\n") >= 3
    code, out = run(["--url", url, "--json", "tables", "list", "--schema", "public", "--pattern", "bss_c*"])
    assert code == 0 and "public.bss_company" in json.loads(out)["tables"]
    code, out = run(["--url", url, "tables", "ddl", "public.bss_company"])
    assert code == 0 and "create table" in out
    code, out = run(["--url", url, "--json", "vectors", "backups", "--task-id", done_task])
    assert code == 0 and json.loads(out)["count"] == 0
    code, out = run(["--url", url, "pairs", "validate", done_task])  # every pair of the latest version
    assert code == 0 and "yes" in out
