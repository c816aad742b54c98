"""sql_validation fanned out over batches by the project's state machine (moto), on real PostgreSQL:
plan → Map over batches → merge; each step safe to invoke twice (Step Functions delivers at least once)."""
from __future__ import annotations

import json
import math

import pytest

from chalicelib.errors import StepFailed
from chalicelib.stores.files import FileStore, TaskFiles
from infra.local.demo_db import DEMO_BUSINESS_CONTEXT, DEMO_TABLES

pytestmark = pytest.mark.slow

BATCH_SIZE = 7
INVALID = [
    {"question": "不存在的列", "sql": "SELECT nope FROM bss_company;"},
    {"question": "不存在的表", "sql": "SELECT count(*) FROM bss_nothing;"},
    {"question": "写操作", "sql": "DELETE FROM bss_company;"},
]


@pytest.fixture(scope="module")
def batched(pipeline_stack):
    """A complete run with batches of 7 pairs, then a step-mode re-validation of a file with 3 bad pairs."""
    from tests.support.pipeline import PipelineClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATA_PIPELINE_VALIDATION_BATCH_SIZE", str(BATCH_SIZE))
        patch.setenv("DATA_PIPELINE_VALIDATION_CONCURRENCY", "2")
        client = PipelineClient(pipeline_stack)
        task_id, first = client.run(DEMO_TABLES, task_name="validation batches", enable_llm_repair=False,
                                    business_context=DEMO_BUSINESS_CONTEXT, db_name="highway_demo",
                                    execute={"execution_mode": "complete", "enable_training_data_load": False})
        assert first["status"] == "completed", first.get("error_message")
        pair_file = first["results"]["qa_generation"]["pair_file"]
        good = json.loads(client.file_text(task_id, pair_file))[:17]
        mixed = good[:5] + INVALID[:1] + good[5:12] + INVALID[1:] + good[12:]
        original_text = json.dumps(mixed, ensure_ascii=False, indent=2)
        TaskFiles(task_id, FileStore()).put_text(pair_file, original_text)
        client.execute(task_id, execution_mode="step", step_name="sql_validation")
        second = client.wait(task_id)
        yield client, task_id, first, second, pair_file, original_text, good


def test_complete_run_validates_in_batches(batched):
    client, task_id, first, _second, _pair_file, _text, _good = batched
    result = first["results"]["sql_validation"]
    assert result["batches"] == math.ceil(result["total"] / BATCH_SIZE) >= 2
    assert result["valid_before"] == result["total"] and result["dropped"] == 0
    assert result["file_modified"] is False


def test_step_rerun_drops_invalid_pairs_keeps_order_and_backs_up(batched):
    client, task_id, _first, second, pair_file, original_text, good = batched
    assert second["status"] == "completed", second.get("error_message")
    result = second["results"]["sql_validation"]
    assert (result["total"], result["valid_before"], result["dropped"]) == (20, 17, 3)
    assert result["batches"] == 3 and result["pairs_kept"] == 17 and result["file_modified"] is True
    progress = second["progress"]["sql_validation"]
    assert (progress["total"], progress["done"], progress["statements_total"]) == (3, 3, 20)
    assert json.loads(client.file_text(task_id, pair_file)) == good  # input order kept across batches
    assert client.file_text(task_id, f"{pair_file}.backup") == original_text
    files = client.files(task_id)
    summaries = sorted(n for n in files if n.startswith("sql_validation_") and n.endswith("_summary.log"))
    assert len(summaries) == 2  # one per execution, named after its start
    summary = summaries[-1]
    text = client.file_text(task_id, summary)
    assert "Total statements: 20" in text and "Dropped (unrepairable): 3" in text
    assert "[6] 不存在的列" in text and "[14] 不存在的表" in text and "not read-only" in text
    (mods,) = [n for n in files if n.startswith("file_modifications_")]
    assert client.file_text(task_id, mods).count("DROPPED") == 3
    assert not any(n.startswith("work/") for n in files)


def test_steps_invoked_again_write_the_same_files(batched):
    from chalicelib.steps import sql_validation as steps

    client, task_id, _first, second, pair_file, original_text, good = batched
    before = {name: client.file_text(task_id, name) for name in client.files(task_id)
              if name.startswith(("sql_validation_", "file_modifications_"))}
    steps.validate_batch({"task_id": task_id, "batch_index": 2}, None)
    again = steps.merge({"task_id": task_id, "results": [{"index": i} for i in range(3)]}, None)
    assert again == {"pairs_kept": 17, "batches": 3}
    # The pair file was already rewritten: the merge works from the plan's snapshot, not from it,
    # and the backup still holds the original, never the rewritten file.
    assert json.loads(client.file_text(task_id, pair_file)) == good
    assert client.file_text(task_id, f"{pair_file}.backup") == original_text
    after = {name: client.file_text(task_id, name) for name in client.files(task_id)
             if name.startswith(("sql_validation_", "file_modifications_"))}
    assert set(after) == set(before)
    assert client.status(task_id)["results"]["sql_validation"]["dropped"] == 3


def test_a_failed_batch_fails_the_merge_without_touching_the_file(batched):
    from chalicelib.steps import sql_validation as steps

    client, task_id, _first, _second, pair_file, _text, good = batched
    failed = {"failed": True, "task_id": task_id, "batch_index": 1,
              "error": {"Error": "DatabaseConnectionError", "Cause": "server closed the connection"}}
    with pytest.raises(StepFailed, match="batch 1: .*server closed the connection"):
        steps.merge({"task_id": task_id, "results": [{"index": 0}, failed, {"index": 2}]}, None)
    assert json.loads(client.file_text(task_id, pair_file)) == good
