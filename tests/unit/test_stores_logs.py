"""TaskLogger chunking and levels, logstore merge/rendering, safe_file_name."""
from __future__ import annotations

import pytest

from chalicelib.errors import ValidationError
from chalicelib.stores import logstore
from chalicelib.stores.files import TaskFiles, content_type_for, safe_file_name
from chalicelib.tasklog import TaskLogger

TASK = "task_20250701_143052"


def test_chunks_every_20_records_and_on_exit(files):
    with TaskLogger(TASK, step="ddl_generation", execution_id="e1", logger_name="DDLMDGenerator", files=files) as log:
        for i in range(45):
            log.info("record %s", i)
        assert len(TaskFiles(TASK, files).list_names("logs/")) == 2
    chunks = TaskFiles(TASK, files).list_names("logs/")
    assert len(chunks) == 3 and all(c.endswith(".jsonl") for c in chunks)
    records = logstore.read_records(TASK, files)
    assert [r["message"] for r in records] == [f"record {i}" for i in range(45)]
    assert records[0]["step"] == "ddl_generation" and records[0]["execution_id"] == "e1"
    assert records[0]["task_id"] == TASK and records[-1]["line_number"] == 45
    assert files.list_files(TASK) == []  # logs/ is internal


def test_level_filter_applies_to_persisted_records(files, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_LOG_LEVEL", "WARNING")
    with TaskLogger(TASK, files=files) as log:
        log.info("dropped")
        log.warning("kept")
        log.child(logger_name="SQLValidator").error("also kept")
    assert [(r["level"], r["logger"]) for r in logstore.read_records(TASK, files)] == [
        ("WARNING", "DataPipeline"), ("ERROR", "SQLValidator")]


def test_render_text():
    text = logstore.render_text([{"timestamp": "2025-07-01 14:30:52", "level": "INFO",
                                  "logger": "SchemaWorkflowOrchestrator", "message": "开始"}])
    assert text == "2025-07-01 14:30:52 [INFO] SchemaWorkflowOrchestrator: 开始\n"


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "a\\b", "%2e%2e%2f", "%252e%252e%252f", "a%2Fb", "x\x00",
                                  "%2E%2E", ""])
def test_safe_file_name_refuses(name):
    with pytest.raises(ValidationError):
        safe_file_name(name)


def test_safe_file_name_and_types():
    assert safe_file_name("qs_db_20250101_000000_pair.json") == "qs_db_20250101_000000_pair.json"
    assert safe_file_name("a%20b.md") == "a b.md"
    assert content_type_for("x.json.backup") == "application/json; charset=utf-8"
    assert content_type_for("x.ddl").startswith("text/plain") and content_type_for("x.csv").startswith("text/csv")


def test_small_uploads_are_sent_without_waiting_for_100_continue(files):
    """botocore makes every PutObject wait for `100 Continue` first; task files are small, so they go at once."""
    from chalicelib.aws import SMALL_UPLOAD_BYTES

    sent: list[str | bytes | None] = []

    def capture(request, **_):
        sent.append(request.headers.get("Expect"))

    events = files.s3.meta.events  # the process-wide client: the handler must not outlive the test
    events.register_first("before-send.s3.PutObject", capture)
    try:
        files.put_bytes(TASK, "small.ddl", b"create table t (id int);")
        files.put_bytes(TASK, "large.bin", b"x" * (SMALL_UPLOAD_BYTES + 1))
    finally:
        events.unregister("before-send.s3.PutObject", capture)
    assert sent == [None, b"100-continue"]
    assert files.get_bytes(TASK, "small.ddl") == b"create table t (id int);"
