"""The original guide's own flows and clients, run unmodified against the real local server (issue 8, finding 3).

The guide is vendored byte for byte as tests/fixtures/seed-api-guide.zh.md. Its code blocks are taken from it by
their section headings (### 8.1 … ### 8.6) at run time, never copied by hand. They hard-code
http://localhost:8084, so the local stack's API (Chalice's local server, as `make serve` runs it) listens on
127.0.0.1:8084, with a `tables.txt` naming demo-database tables in its table-list directory.

The only changes made to what the guide says:
- the curl flows name the guide's example task id `task_20250627_143052` and its example pair file
  `qs_highway_db_20250627_143052_pair.json`; exactly those two strings are replaced by the real task id and the
  real primary pair file (nothing else in a command is touched);
- a bash block holding several commands is run one command (one paragraph) at a time, in order, so that the
  test can wait for the execution a command started before the next one looks at its results (8.2, 8.3) — the
  guide's own "wait until done" where it writes one (8.1 step 3) is run as written;
- the JavaScript block defines runDataPipelineWorkflow() without calling it: the call is appended;
- the Python block runs as a script (its own `if __name__ == '__main__'`) with this interpreter.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "tests" / "fixtures" / "seed-api-guide.zh.md"
SHARED_GUIDE = ROOT.parent / "shared" / "seed-api-guide.zh.md"
EXAMPLE_TASK_ID = "task_20250627_143052"
EXAMPLE_PAIR_FILE = "qs_highway_db_20250627_143052_pair.json"
PORT = 8084  # API_PORT's default: what every snippet of the guide calls
GUIDE_URL = f"http://localhost:{PORT}"
TABLES = ("public.bss_company", "public.bss_service_area", "public.bss_car_day_count")
CLIENT_FAILED = "工作流执行失败"  # what the guide's Python and JS clients print when their workflow fails
RUN_TIMEOUT = 240.0


# ---- the guide, by section ----------------------------------------------------------------------------------

def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def guide_section(number: str) -> str:
    """The text under `### <number> …` up to the next heading of the same or a higher level."""
    match = re.search(rf"^### {re.escape(number)} .*?$(.*?)(?=^#{{2,3}} |\Z)", guide_text(), re.M | re.S)
    assert match, f"the guide has no section ### {number}"
    return match.group(1)


def code_blocks(number: str, lang: str) -> list[str]:
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", guide_section(number), re.M | re.S)
    found = [code for block_lang, code in blocks if block_lang == lang]
    assert found, f"section {number} of the guide has no ```{lang} block"
    return found


def commands(block: str) -> list[str]:
    """The commands of a bash block: its paragraphs (the guide separates commands by blank lines)."""
    return [part.strip("\n") for part in re.split(r"\n[ \t]*\n", block) if part.strip()]


def substitute(code: str, task_id: str | None = None, pair_file: str | None = None) -> str:
    """Replace the guide's example identifiers by the real ones; nothing else."""
    if pair_file is not None:
        assert EXAMPLE_PAIR_FILE in code, code
        code = code.replace(EXAMPLE_PAIR_FILE, pair_file)
    if task_id is not None:
        assert EXAMPLE_TASK_ID in code, code
        code = code.replace(EXAMPLE_TASK_ID, task_id)
    return code


# ---- the server and the runner ------------------------------------------------------------------------------

@dataclass
class Guide:
    workdir: Path

    def bash(self, code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["bash", "-c", code], cwd=self.workdir, capture_output=True, text=True,
                              encoding="utf-8", timeout=timeout, check=False)
        assert done.returncode == 0, (code, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
        return done

    def curl_json(self, code: str) -> dict[str, Any]:
        out = self.bash(code).stdout
        try:
            return json.loads(out)
        except ValueError:
            raise AssertionError(f"not a JSON answer from {code!r}: {out[:500]!r}") from None

    def get(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(GUIDE_URL + path, timeout=60) as response:
            return response.status, response.read()

    def status(self, task_id: str) -> dict[str, Any]:
        return json.loads(self.get(f"/api/v0/data_pipeline/tasks/{task_id}")[1])["data"]

    def wait(self, task_id: str) -> dict[str, Any]:
        from tests.support.pipeline import wait_until_final

        return wait_until_final(self.status, task_id, RUN_TIMEOUT, 0.5)

    def files(self, task_id: str) -> list[dict[str, Any]]:
        return json.loads(self.get(f"/api/v0/data_pipeline/tasks/{task_id}/files")[1])["data"]["files"]


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def guide(pipeline_stack, tmp_path_factory):
    from infra.local.serve import start_api_server, stop_api_server

    workdir = tmp_path_factory.mktemp("guide")
    (workdir / "tables.txt").write_text("\n".join(TABLES) + "\n", encoding="utf-8")
    if not _port_is_free(PORT):
        pytest.fail(f"port {PORT} is in use (is `make serve` running?); the guide's clients need it")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATA_PIPELINE_TABLE_LIST_DIR", str(workdir))  # "a tables.txt beside the server"
        env.delenv("DATA_PIPELINE_LOCAL", raising=False)  # local: no AWS_LAMBDA_FUNCTION_NAME here, as in make serve
        env.setenv("DATA_PIPELINE_THEME_COUNT", "2")
        env.setenv("DATA_PIPELINE_QUESTIONS_PER_THEME", "2")
        env.delenv("DATA_PIPELINE_API_KEY", raising=False)  # the guide's clients send no key
        server = start_api_server(pipeline_stack, "127.0.0.1", PORT)
        try:
            yield Guide(workdir)
        finally:
            stop_api_server(server)


def assert_pairs_file(path: Path) -> None:
    pairs = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(pairs, list) and pairs, path
    assert all(isinstance(p, dict) and p.get("question") and p.get("sql") for p in pairs), pairs[:2]


def primary_file(guide: Guide, task_id: str) -> str:
    primary = [f["file_name"] for f in guide.files(task_id) if f["is_primary"]]
    assert len(primary) == 1 and primary[0].endswith("_pair.json"), primary
    return primary[0]


# ---- the tests ----------------------------------------------------------------------------------------------

def test_vendored_guide_is_the_shared_guide():
    if not SHARED_GUIDE.exists():
        pytest.skip(f"{SHARED_GUIDE} is not next to the repository")
    assert GUIDE.read_bytes() == SHARED_GUIDE.read_bytes()


def test_guide_sections_hold_what_the_flows_need():
    assert len(code_blocks("8.1", "bash")) == 4 and len(code_blocks("8.3", "bash")) == 3
    for number in ("8.1", "8.2"):
        assert '"table_list_file": "tables.txt"' in code_blocks(number, "bash")[0]
    assert "table_list_file: 'tables.txt'" in code_blocks("8.5", "javascript")[0]
    assert "table_list_file='tables.txt'" in code_blocks("8.6", "python")[0]
    for number, lang in (("8.5", "javascript"), ("8.6", "python")):
        assert CLIENT_FAILED in code_blocks(number, lang)[0] and "http://localhost:8084" in code_blocks(number, lang)[0]


def test_guide_error_envelope_9_2_over_http(guide):
    """§9.2's example (an invalid execution mode) and §2.2's error type, as the real server answers them."""
    expected = json.loads(code_blocks("9.2", "json")[0])
    assert json.loads(code_blocks("2.2", "json")[1])["error"]["type"] == expected["error"]["type"] == "ValidationError"
    created = guide.curl_json(f"curl -s -X POST {GUIDE_URL}/api/v0/data_pipeline/tasks -H 'Content-Type: "
                              "application/json' -d '{\"table_list_file\": \"tables.txt\"}'")
    answer = guide.curl_json(f"curl -s -X POST {GUIDE_URL}/api/v0/data_pipeline/tasks/{created['data']['task_id']}"
                             "/execute -H 'Content-Type: application/json' -d '{\"execution_mode\": \"fast\"}'")
    assert set(expected) <= set(answer) and set(expected["error"]) <= set(answer["error"]), answer
    for key in ("success", "code"):
        assert answer[key] == expected[key]
    for key in ("type", "invalid_params"):
        assert answer["error"][key] == expected["error"][key]
    assert answer["error"]["code"] == "INVALID_EXECUTION_MODE"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", answer["error"]["timestamp"])


@pytest.mark.slow
def test_guide_8_1_complete_workflow_with_curl(guide):
    create, execute, poll, results = code_blocks("8.1", "bash")
    created = guide.curl_json(create)
    assert created["code"] == 201 and created["data"]["has_table_list"] is True, created
    task_id = created["data"]["task_id"]
    started = guide.curl_json(substitute(execute, task_id))
    assert started["code"] == 202, started
    statuses = guide.bash(substitute(poll, task_id), timeout=RUN_TIMEOUT).stdout.split()
    assert statuses[-1].endswith("completed"), statuses
    listing, download = commands(results)
    files = guide.curl_json(substitute(listing, task_id))["data"]["files"]
    pair_file = next(f["file_name"] for f in files if f["is_primary"])
    guide.bash(substitute(download, task_id, pair_file))
    assert_pairs_file(guide.workdir / pair_file)
    assert guide.status(task_id)["db_name"] == "highway_db"


@pytest.mark.slow
def test_guide_8_2_vector_table_management_with_curl(guide):
    workflow, backup_only = code_blocks("8.2", "bash")
    create, execute, check, backups = commands(workflow)
    created = guide.curl_json(create)
    assert created["code"] == 201 and created["data"]["has_table_list"] is True, created
    task_id = created["data"]["task_id"]
    started = guide.curl_json(substitute(execute, task_id))
    assert started["code"] == 202, started
    assert guide.wait(task_id)["status"] == "completed"
    checked = guide.curl_json(substitute(check, task_id))["data"]
    assert checked["status"] == "completed" and checked["parameters"]["truncate_vector_tables"] is True
    assert checked["parameters"]["backup_vector_tables"] is True
    urls = guide.bash(substitute(backups, task_id)).stdout.split()
    assert urls and all("langchain_" in url for url in urls), urls
    for url in urls:
        status, body = guide.get(url)
        assert status == 200 and body, url
    again = guide.curl_json(substitute(backup_only, task_id))
    assert again["code"] == 202, again
    assert guide.wait(task_id)["status"] == "completed"


@pytest.mark.slow
def test_guide_8_3_step_by_step_with_curl(guide):
    create, upload, steps = code_blocks("8.3", "bash")
    created = guide.curl_json(create)
    assert created["code"] == 201 and created["data"]["has_table_list"] is False, created
    task_id = created["data"]["task_id"]
    uploaded = guide.curl_json(substitute(upload, task_id))  # -F file=@tables.txt, from the directory it is in
    assert uploaded["code"] == 200 and uploaded["data"]["table_count"] == len(TABLES), uploaded
    for command, step in zip(commands(steps), ("ddl_generation", "qa_generation"), strict=True):
        started = guide.curl_json(substitute(command, task_id))
        assert started["code"] == 202 and started["data"]["step_name"] == step, started
        final = guide.wait(task_id)
        assert final["step_status"][step] == "completed", final
    assert primary_file(guide, task_id).startswith("qs_test_db_")


@pytest.mark.slow
def test_guide_8_4_database_tools_with_curl(guide):
    tables_cmd, ddl_cmd = code_blocks("8.4", "bash")
    tables = guide.curl_json(tables_cmd)
    assert tables["code"] == 200, tables
    assert "public.bss_company" in tables["data"]["tables"]
    assert all(name.startswith("public.bss_") for name in tables["data"]["tables"]), tables["data"]["tables"]
    ddl = guide.curl_json(ddl_cmd)
    assert ddl["code"] == 200, ddl
    assert ddl["data"]["ddl"].lower().count("create table") == 1 and "bss_company" in ddl["data"]["ddl"]


@pytest.mark.slow
def test_guide_python_and_javascript_clients(guide, tmp_path):
    """8.6 and 8.5 at once (each polls every 5 s): each creates its task from tables.txt and sees it complete."""
    (tmp_path / "py").mkdir()
    (tmp_path / "js").mkdir()
    python_client = tmp_path / "py" / "guide_client.py"
    python_client.write_text(code_blocks("8.6", "python")[0], encoding="utf-8")
    js_client = tmp_path / "js" / "guide_client.js"
    js_client.write_text(code_blocks("8.5", "javascript")[0] + "\nrunDataPipelineWorkflow();\n", encoding="utf-8")
    running = {
        "python": subprocess.Popen([sys.executable, python_client.name], cwd=python_client.parent, text=True,
                                   encoding="utf-8", stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        "javascript": subprocess.Popen(["node", js_client.name], cwd=js_client.parent, text=True,
                                       encoding="utf-8", stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    }
    outputs = {}
    try:
        for name, process in running.items():
            try:
                out, err = process.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
                raise AssertionError(f"the guide's {name} client still runs after {RUN_TIMEOUT:.0f} s (polling a "
                                     f"task that never ends?): {out[-1500:]} {err[-1500:]}") from None
            outputs[name] = (process.returncode, out, err)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    for name, (code, out, err) in outputs.items():
        assert code == 0 and CLIENT_FAILED not in out + err, (name, code, out[-3000:], err[-3000:])

    _, out, _ = outputs["python"]
    task_id = re.search(r"task_\d{8}_\d{6}(?:_\d+)?", out).group(0)
    assert guide.status(task_id)["status"] == "completed"
    pair_file = primary_file(guide, task_id)
    assert f"  - {pair_file} (" in out  # the file list it prints
    assert_pairs_file(python_client.parent / pair_file)  # the primary file it downloaded
    assert str(pair_file) in out.splitlines()[-1]

    _, out, _ = outputs["javascript"]
    task_id = re.search(r"task_\d{8}_\d{6}(?:_\d+)?", out).group(0)
    assert guide.status(task_id)["status"] == "completed"
    assert "status: 'completed'" in out  # the final result it logs
    assert f"file_name: '{primary_file(guide, task_id)}'" in out  # the files it logs
