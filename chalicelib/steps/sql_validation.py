"""sql_validation: plan (split the pair file into batches) → Map (validate + repair each batch) → merge.

Each batch checks its pairs against the task's catalog (ddl_generation's table docs), EXPLAINs them, probes
date filters outside the data's range (chalicelib.pipeline.validation) and repairs what fails.

No invocation's work grows with the number of pairs beyond one batch, except the merge, which only reads
the batches' small result files and rewrites the pair file once. Every file name is fixed per execution, so a
step invoked twice (Step Functions delivers at least once) writes the same files again:
- plan:  work/validation/plan.json (pair file, batch count), work/validation/source.json (the pair file as
         read) and work/validation/batch_{i}.json (the pairs of batch i);
- batch: work/validation/result_{i}.json (the batch's ValidationReport and LLM usage);
- merge: rebuilds the pair list from the batch files (never from the pair file, which it may already have
         rewritten), writes the summary, `{pair_file}.backup` only when absent (the original is never replaced
         by a rewritten file), the rewritten pair file and the modifications log, then marks the step completed.
"""
from __future__ import annotations

import json
from typing import Any

from chalicelib.errors import StepFailed
from chalicelib.pipeline import qa, validation, validation_report
from chalicelib.pipeline.models import QAPair, TableDoc
from chalicelib.providers.factory import get_llm_provider
from chalicelib.steps import map_io
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.qa_generation import current_pair_file, load_table_docs
from chalicelib.steps.runtime import StepRun, describe_failure, step_run, sum_usage

STEP = "sql_validation"
LOGGER = "SQLValidator"
WORK = "work/validation/"
PLAN_FILE = f"{WORK}plan.json"
SOURCE_FILE = f"{WORK}source.json"  # the pair file exactly as the plan read it (becomes the .backup)


def batch_file(index: int) -> str:
    return f"{WORK}batch_{index}.json"


def result_file(index: int) -> str:
    return f"{WORK}result_{index}.json"


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


@step_lambda("step_sql_validation_plan")
def plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Split the current pair file into batches of settings.validation_batch_size pairs."""
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        file_name = current_pair_file(run)
        source = run.files.get_text(file_name)
        pairs = [QAPair.from_dict(item) for item in json.loads(source)]
        size = max(1, run.settings.validation_batch_size)
        run.files.delete_many(run.files.iter_names(WORK))
        run.files.put_text(SOURCE_FILE, source)
        batches = [pairs[start:start + size] for start in range(0, len(pairs), size)]
        for index, batch in enumerate(batches):
            run.files.put_text(batch_file(index), _dump({
                "start_index": index * size,
                "pairs": [pair.to_dict() for pair in batch],
            }))
        run.files.put_text(PLAN_FILE, _dump({"pair_file": file_name, "total": len(pairs), "batch_size": size,
                                             "batches": len(batches)}))
        # done/failed count batches (one Map iteration each), so total does too.
        run.tasks.update_progress(run.task_id, STEP, {"total": len(batches), "statements_total": len(pairs),
                                                      "done": 0, "failed": 0, "batches": {}})
        run.log.info("Validating {statements} SQL statements from {file} in {batches} batch(es) of up to {size}",
                     statements=len(pairs), file=file_name, batches=len(batches), size=size)
        refs = map_io.write_items(run, "validation", [{"index": index} for index in range(len(batches))])
        return {**refs, "max_concurrency": max(1, run.settings.validation_map_concurrency)}


@step_lambda("step_sql_validation_batch")
def validate_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One Map iteration: EXPLAIN (and repair) the pairs of one batch; the report goes to a work file."""
    with step_run(event, STEP, logger_name=LOGGER) as run:
        index = int(event["batch_index"])
        batch = json.loads(run.files.get_text(batch_file(index)))
        pairs = [QAPair.from_dict(item) for item in batch["pairs"]]
        enable_repair = bool(run.params.get("enable_llm_repair", True))
        llm = get_llm_provider(run.settings)
        run.log.info("Batch {batch}: {statements} statements (repair={repair}, {provider})", batch=index,
                     statements=len(pairs), repair=enable_repair, provider=llm.name)
        report = validation.validate_pairs(
            run.db_url,
            pairs,
            llm=llm,
            docs=_catalog_docs(run, index),
            enable_repair=enable_repair,
            max_rounds=run.settings.repair_max_rounds,
            timeout_ms=run.settings.statement_timeout_ms,
            concurrency=run.settings.validation_concurrency,
            start_index=int(batch["start_index"]),
        )
        usage = llm.usage.to_dict()
        run.files.put_text(result_file(index), _dump({"report": report.to_dict(), "llm_usage": usage}))
        counts = report.counts()
        if report.repair_error:
            run.log.error("Batch {batch}: LLM repair stopped: {error}; unrepaired pairs are treated as invalid",
                          batch=index, error=report.repair_error)
        run.tasks.record_item_progress(run.task_id, STEP, "batches", f"batch_{index}",
                                       {"total": counts["total"], "valid_after": counts["valid_after"]}, ok=True)
        return {"index": index, "total": counts["total"], "valid_after": counts["valid_after"],
                "repaired": counts["repaired"]}


def _catalog_docs(run: StepRun, index: int) -> list[TableDoc]:
    """The task's table docs: the catalog the pairs are checked against (and the repair prompts' tables). Without
    them (a pair file validated on its own) only EXPLAIN checks, and the log says so."""
    try:
        return load_table_docs(run)
    except StepFailed as exc:
        run.log.warning("Batch {batch}: no table documentation, the catalog and date-range checks are skipped: "
                        "{reason}", batch=index, reason=str(exc))
        return []


def _load_plan(run: StepRun) -> dict[str, Any]:
    if not run.files.exists(PLAN_FILE):
        raise StepFailed("no SQL validation plan for this task: the plan step did not run")
    return json.loads(run.files.get_text(PLAN_FILE))


def _failed_batches(run: StepRun, results: Any) -> dict[int, str]:
    """{batch index: reason} of the Map's failed items (its outputs read from the ResultWriter's files)."""
    failed = {}
    for item in map_io.iter_outputs(run, results):
        if item.get("failed"):
            failed[int(item.get("batch_index", -1))] = ": ".join(describe_failure(item.get("error")))
    return failed


@step_lambda("step_sql_validation_merge")
def merge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Combine the batch reports, rewrite the pair file once, write the summary, complete the step."""
    with step_run(event, STEP, logger_name=LOGGER) as run:
        plan_data = _load_plan(run)
        file_name = plan_data["pair_file"]
        failed = _failed_batches(run, event.get("results"))
        missing = [i for i in range(plan_data["batches"]) if i not in failed and not run.files.exists(result_file(i))]
        if failed or missing:
            details = [f"batch {i}: {reason}" for i, reason in sorted(failed.items())]
            details += [f"batch {i}: no result" for i in missing]
            raise StepFailed(f"SQL validation failed for {len(details)} of {plan_data['batches']} batch(es); "
                             f"the pair file was not modified ({'; '.join(details[:3])})")
        pairs: list[QAPair] = []
        reports, usages = [], []
        for index in range(plan_data["batches"]):
            batch = json.loads(run.files.get_text(batch_file(index)))
            pairs += [QAPair.from_dict(item) for item in batch["pairs"]]
            stored = json.loads(run.files.get_text(result_file(index)))
            reports.append(validation_report.ValidationReport.from_dict(stored["report"]))
            usages.append(stored.get("llm_usage") or {})
        report = validation_report.merge_reports(reports)
        if report.total != len(pairs):
            raise StepFailed(f"SQL validation results cover {report.total} pairs, the plan has {len(pairs)}")
        modify = bool(run.params.get("modify_original_file", True))
        ts = run.run_ts
        run.files.put_text(
            f"sql_validation_{ts}_summary.log", validation_report.render_summary(report, file_name=file_name, ts=ts)
        )
        kept = validation_report.apply_report(pairs, report)
        changed = len(kept) != len(pairs) or any(a.sql != b.sql for a, b in zip(kept, pairs, strict=False))
        if modify and changed:
            # The backup holds the file as it was before any rewrite: written once, before the rewrite.
            if not run.files.exists(f"{file_name}.backup"):
                run.files.put_text(f"{file_name}.backup", run.files.get_text(SOURCE_FILE))
            run.files.put_text(file_name, qa.render_pairs_json(kept))
            run.files.put_text(f"file_modifications_{ts}.log", validation_report.render_modifications_log(report, ts))
            run.log.info("{file} rewritten: {kept} pairs kept of {pairs}", file=file_name, kept=len(kept),
                         pairs=len(pairs))
        counts = report.counts()
        result = {
            **counts,
            "repair_error": report.repair_error,
            "pair_file": file_name,
            "file_modified": bool(modify and changed),
            "pairs_kept": len(kept),
            "batches": plan_data["batches"],
        }
        run.log.info("sql_validation completed: {counts}", counts=counts)
        run.tasks.mark_step_completed(run.task_id, STEP, result, sum_usage(usages))
        return {"pairs_kept": len(kept), "batches": plan_data["batches"]}
