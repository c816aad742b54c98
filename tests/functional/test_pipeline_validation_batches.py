"""sql_validation fanned out over batches by the project's state machine (moto), on real PostgreSQL:
plan → Map over batches → merge; each step safe to invoke twice (Step Functions delivers at least once)."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace
from urllib.parse import unquote

import pytest

from chalicelib.aws import get_s3
from chalicelib.config import get_settings
from chalicelib.errors import StepFailed
from chalicelib.pipeline import qa, validation_report
from chalicelib.pipeline.models import QAPair, TableDoc
from chalicelib.pipeline.validation import validate_pairs
from chalicelib.providers.heuristic import HeuristicProvider
from chalicelib.steps import sql_validation as steps
from chalicelib.steps.ddl_generation import TABLE_DOCS, read_batch_docs
from chalicelib.steps.qa_generation import PAIR_FILE_POINTER
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


REPAIRABLE = [
    {"question": "公司数", "sql": "SELECT count(*) FROM bss_compnay;"},  # a misspelt table: the closest known name
    {"question": "服务区名称", "sql": "SELECT service_area_nme FROM bss_service_area;"},  # a misspelt column
]
MORE = [
    {"question": "门店公司", "sql": "SELECT b.branch_name, c.company_nam FROM bss_branch b JOIN bss_company c "
                               "ON c.id = b.company_id;"},  # a misspelt column of a joined table
    {"question": "2030 年营业额", "sql": "SELECT sum(pay_sum) FROM bss_business_day_data "
                                    "WHERE oper_date >= '2030-01-01';"},  # a date filter outside the data
    {"question": "车流与服务区", "sql": "SELECT count(*) FROM bss_car_day_count c JOIN bss_service_area s "
                                  "ON s.id = c.service_area_id;"},  # a table the task does not document
]
OUTSIDE = {"question": "车流", "sql": "SELECT count(*) FROM bss_car_day_count;"}  # alone in the last batch
UNDOCUMENTED = "bss_car_day_count"


def _validation_files(task_id: str):
    return TaskFiles(task_id, FileStore())


@pytest.fixture(scope="module")
def repairing(batched):
    """A task with LLM repair on whose docs are the first run's minus one table's, validated (step mode) in three
    batches of pairs: valid, repairable, unrepairable, naming the undocumented table (the last batch only that)."""
    client, first_task, _first, _second, pair_file, _text, good = batched
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATA_PIPELINE_VALIDATION_BATCH_SIZE", str(BATCH_SIZE))
        patch.setenv("DATA_PIPELINE_VALIDATION_CONCURRENCY", "2")
        task_id = client.create_task(task_name="validation repair", enable_llm_repair=True, db_name="highway_demo",
                                     business_context=DEMO_BUSINESS_CONTEXT)
        client.upload_tables(task_id, DEMO_TABLES)
        source, target = _validation_files(first_task), _validation_files(task_id)
        for name in source.iter_names(TABLE_DOCS):
            batch = json.loads(source.get_text(name))
            batch["docs"] = [d for d in batch["docs"] if d["meta"]["ref"]["name"] != UNDOCUMENTED]
            target.put_text(name, json.dumps(batch, ensure_ascii=False))
        valid = [pair for pair in good if UNDOCUMENTED not in pair["sql"]]
        pairs = valid[:5] + REPAIRABLE + valid[5:9] + MORE + [OUTSIDE]
        target.put_text(pair_file, json.dumps(pairs, ensure_ascii=False, indent=2))
        target.put_text(PAIR_FILE_POINTER, pair_file)
        client.execute(task_id, execution_mode="step", step_name="sql_validation")
        status = client.wait(task_id)
        # partial_completed: the task's other steps never ran (its docs and pairs were copied in)
        assert status["status"] == "partial_completed", status.get("error_message")
        assert status["step_status"]["sql_validation"] == "completed", status["step_status"]
        yield client, task_id, status, pair_file, [QAPair.from_dict(p) for p in pairs]


def test_batches_on_their_docs_validate_and_repair_as_the_whole_schema_did(repairing):
    """What the batches found on their own doc files (counts, each result, the rewritten pair file) is what
    validating every pair against every doc of the task finds (the code before the doc files)."""
    client, task_id, status, pair_file, pairs = repairing
    files = _validation_files(task_id)
    settings = get_settings()
    whole = validate_pairs(settings.business_db_url_for(None), pairs, llm=HeuristicProvider(),
                           docs=[TableDoc.from_dict(d) for d in read_batch_docs(SimpleNamespace(files=files))],
                           enable_repair=True, max_rounds=settings.repair_max_rounds,
                           timeout_ms=settings.statement_timeout_ms)
    result = status["results"]["sql_validation"]
    assert result["batches"] == 3
    counts = {k: result[k] for k in ("total", "valid_before", "valid_after", "repaired", "dropped")}
    assert counts == {k: whole.counts()[k] for k in counts} == {"total": 15, "valid_before": 9, "valid_after": 12,
                                                                 "repaired": 3, "dropped": 3}
    merged = validation_report.merge_reports([
        validation_report.ValidationReport.from_dict(json.loads(files.get_text(steps.result_file(i)))["report"])
        for i in range(3)])

    def shown(report):
        return [(r.index, r.valid_before, r.valid_after, r.repaired, r.final_sql, r.error, r.dropped)
                for r in report.results]

    assert shown(merged) == shown(whole)
    assert client.file_text(task_id, pair_file) == qa.render_pairs_json(validation_report.apply_report(pairs, whole))
    # Each batch had only the docs its pairs can need, never the whole schema; the last one none at all, and its
    # pair was still found outside the task.
    documented = len(read_batch_docs(SimpleNamespace(files=files)))
    sizes = [len(json.loads(files.get_text(steps.docs_file(i)))) for i in range(3)]
    assert all(size < documented for size in sizes) and sizes[2] == 0, (sizes, documented)
    assert merged.results[-1].error == f"names objects the catalog does not have: unknown table {UNDOCUMENTED}"


def test_a_batch_reads_only_its_own_doc_file(batched):
    """validate_batch reads its pairs and its doc file: no other batch's docs, none of ddl_generation's batch files
    (S3 GetObject requests counted through a botocore event hook)."""
    _client, task_id, _first, _second, _pair_file, _text, _good = batched
    prefix = f"/tasks/{task_id}/work/"
    gets: list[str] = []

    def seen(params, **kwargs):
        path = unquote(params.get("url_path", ""))
        if prefix in path:
            gets.append(path.split(prefix, 1)[1])

    s3 = get_s3()
    s3.meta.events.register("before-call.s3.GetObject", seen)
    try:
        steps.validate_batch({"task_id": task_id, "batch_index": 1}, None)
    finally:
        s3.meta.events.unregister("before-call.s3.GetObject", seen)
    assert sorted(gets) == ["validation/batch_1.json", "validation/docs_1.json"], gets


def test_a_pair_file_without_docs_is_only_explained_and_the_log_says_so(batched):
    """A task with no table docs (its pair file validated on its own): no doc file, EXPLAIN only (a table outside
    any task is not flagged), and the batch's log names what was skipped."""
    client = batched[0]
    task_id = client.create_task(task_name="pairs only", db_name="highway_demo")
    files = _validation_files(task_id)
    name = "qs_highway_demo_20250101_000000_pair.json"
    files.put_text(name, json.dumps([{"question": "车流", "sql": "SELECT count(*) FROM bss_car_day_count;"},
                                     {"question": "坏列", "sql": "SELECT nope FROM bss_company;"}],
                                    ensure_ascii=False))
    files.put_text(PAIR_FILE_POINTER, name)
    steps.plan({"task_id": task_id}, None)
    assert steps.validate_batch({"task_id": task_id, "batch_index": 0}, None) == \
        {"index": 0, "total": 2, "valid_after": 1, "repaired": 0}
    assert not files.exists(steps.docs_file(0))
    warnings = [r["message"] for r in client.logs(task_id) if r["level"] == "WARNING"]
    assert warnings == ["Batch 0: no table documentation (run ddl_generation first), the catalog and date-range "
                        "checks are skipped"], warnings
