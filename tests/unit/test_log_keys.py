"""Log calls are a constant template plus keys: CloudWatch (powertools JSON on stdout) gets the template as
`message` and the keys as fields; the task's own log keeps the rendered text people read, and the keys."""
from __future__ import annotations

import ast
import io
import json
import logging
from pathlib import Path

import pytest

from chalicelib import tasklog
from chalicelib.steps import runtime
from chalicelib.stores import logstore
from chalicelib.tasklog import TaskLogger, render

ROOT = Path(__file__).resolve().parents[2]
TASK = "task_20250701_143052"
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}


@pytest.fixture
def cloudwatch():
    """What the process's powertools Logger writes (stdout on Lambda), captured."""
    logger = tasklog._get_powertools_logger("INFO")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    yield stream
    logger._logger.removeHandler(handler)


def test_render():
    assert render("开始处理表: {table}", {"table": "bss_business_day_data"}) == "开始处理表: bss_business_day_data"
    assert render("theme dropped", {"theme": "营收", "table": "x"}) == "theme dropped (theme=营收, table=x)"
    assert render("no keys", {}) == "no keys"
    assert render("json {not a key}", {"a": 1}) == "json {not a key} (a=1)"


def test_template_and_keys_reach_cloudwatch_and_the_task_log(files, cloudwatch):
    with TaskLogger(TASK, step="ddl_generation", execution_id="e1", logger_name="DDLMDGenerator", files=files) as log:
        log.info("Table {table} done in {seconds} s", table="服务区", seconds=1.5)
        log.warning("pair dropped", extra={"theme": "营收"}, reason="unknown column")
    records = logstore.read_records(TASK, files)
    assert [r["message"] for r in records] == ["Table 服务区 done in 1.5 s",
                                               "pair dropped (theme=营收, reason=unknown column)"]
    assert records[0]["fields"] == {"table": "服务区", "seconds": 1.5}
    emitted = [json.loads(line) for line in cloudwatch.getvalue().splitlines()]
    assert [e["message"] for e in emitted] == ["Table {table} done in {seconds} s", "pair dropped"]
    assert emitted[0]["table"] == "服务区" and emitted[0]["seconds"] == 1.5 and emitted[0]["task_id"] == TASK
    assert emitted[1]["theme"] == "营收" and emitted[1]["reason"] == "unknown column"


def test_domain_logger_extra_keys_travel_through_the_bridge(files):
    runtime._install_bridge()  # as every step's context does
    log = TaskLogger(TASK, step="qa_generation", files=files)
    with runtime.bind_step_log(log):
        logging.getLogger("chalicelib.pipeline.qa").warning("theme {theme} dropped", extra={"theme": "客流"})
    log.flush()
    (record,) = logstore.read_records(TASK, files)
    assert record["message"] == "theme 客流 dropped" and record["fields"] == {"theme": "客流"}
    assert record["logger"] == runtime._LOGGER_NAMES["chalicelib.pipeline.qa"]


def _fstring_log_calls(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOG_METHODS
                and node.args and isinstance(node.args[0], ast.JoinedStr | ast.BinOp)):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_log_message_is_built_by_formatting():
    """A message is a constant template; values go in as keys (f-strings and `%`/`+` on the message are refused)."""
    offenders = [hit for path in [ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py")]
                 for hit in _fstring_log_calls(path)]
    assert not offenders, offenders


def test_the_rule_sees_an_fstring_message(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('log.info(f"x {y}")\nlog.info("x {y}", y=1)\nlog.error("a" + b)\n', encoding="utf-8")
    assert _fstring_log_calls(sample, tmp_path) == ["sample.py:1", "sample.py:3"]
