"""sql_validation: plan (split the pair file into batches) → Map (validate + repair each batch) → merge.

Each batch checks its pairs against the task's catalog (ddl_generation's table docs), EXPLAINs them, probes
date filters outside the data's range (chalicelib.pipeline.validation) and repairs what fails. The plan streams
the docs once and gives each batch only the docs its pairs can need (`needed_tables`): a batch never reads the
whole schema, so neither its reads nor its memory grow with the number of tables.

No invocation's work grows with the number of pairs beyond one batch, except the merge, which only reads
the batches' small result files and rewrites the pair file once. Every file name is fixed per execution, so a
step invoked twice (Step Functions delivers at least once) writes the same files again:
- plan:  work/validation/plan.json (pair file, batch count), work/validation/source.json (the pair file as
         read), work/validation/batch_{i}.json (the pairs of batch i) and work/validation/docs_{i}.json (the
         docs of the tables they name and of the tables those reference; none when the task has no docs);
- batch: work/validation/result_{i}.json (the batch's ValidationReport and LLM usage);
- merge: rebuilds the pair list from the batch files (never from the pair file, which it may already have
         rewritten), writes the summary, `{pair_file}.backup` only when absent (the original is never replaced
         by a rewritten file), the rewritten pair file and the modifications log, then marks the step completed.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any

from chalicelib.errors import StepFailed
from chalicelib.pipeline import qa, sqltext, validation, validation_report
from chalicelib.pipeline.catalog_check import CATALOG_SCHEMAS, referenced_relations
from chalicelib.pipeline.models import QAPair, TableDoc, TableMeta, TableRef
from chalicelib.providers.factory import get_llm_provider
from chalicelib.steps import map_io
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.qa_generation import (
    current_pair_file,
    iter_batch_docs,
    relationship_targets,
    with_neighbours,
    write_doc_files,
)
from chalicelib.steps.runtime import StepRun, describe_failure, step_run, sum_usage

STEP = "sql_validation"
LOGGER = "SQLValidator"
WORK = "work/validation/"
PLAN_FILE = f"{WORK}plan.json"
SOURCE_FILE = f"{WORK}source.json"  # the pair file exactly as the plan read it (becomes the .backup)
CLOSE_MATCHES = 2  # known names brought in for a table name no doc has (a typo a repair fixes), as the repairs do


def batch_file(index: int) -> str:
    return f"{WORK}batch_{index}.json"


def result_file(index: int) -> str:
    return f"{WORK}result_{index}.json"


def docs_file(index: int) -> str:
    return f"{WORK}docs_{index}.json"


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
        catalog = write_batch_docs(run, batches)
        for index, batch in enumerate(batches):
            run.files.put_text(batch_file(index), _dump({
                "start_index": index * size,
                "pairs": [pair.to_dict() for pair in batch],
                "catalog": catalog,  # docs_file(index) holds the docs its pairs can need
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
        docs = _batch_docs(run, index, bool(batch.get("catalog")))
        enable_repair = bool(run.params.get("enable_llm_repair", True))
        llm = get_llm_provider(run.settings)
        run.log.info("Batch {batch}: {statements} statements (repair={repair}, {provider})", batch=index,
                     statements=len(pairs), repair=enable_repair, provider=llm.name)
        report = validation.validate_pairs(
            run.db_url,
            pairs,
            llm=llm,
            docs=docs or [],
            complete_catalog=docs is not None,
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


def _batch_docs(run: StepRun, index: int, catalog: bool) -> list[TableDoc] | None:
    """The docs the plan chose for this batch: the catalog its pairs are checked against (a table outside them is
    unknown) and the repair prompts' tables. None when the task had no docs (a pair file validated on its own):
    then only EXPLAIN checks, and the log says so."""
    if not catalog:
        run.log.warning("Batch {batch}: no table documentation (run ddl_generation first), the catalog and "
                        "date-range checks are skipped", batch=index)
        return None
    return [TableDoc.from_dict(item) for item in json.loads(run.files.get_text(docs_file(index)))]


class DocNames:
    """The names of every documented table and of the tables its relationships reference, streamed once from
    ddl_generation's batch files (nothing else of a doc is kept): finds the docs a SQL text can need."""

    def __init__(self) -> None:
        self.where: dict[str, str] = {}  # display name -> the batch work file holding its doc
        self.targets: dict[str, list[str]] = {}  # display name -> relationship_targets
        self._refs: dict[str, TableRef] = {}
        self._exact: dict[tuple[str, str], str] = {}
        self._by_name: dict[str, list[str]] = {}
        self._by_lower: dict[str, list[str]] = {}
        self._sorted: tuple[list[str], list[str]] | None = None

    def add(self, file_name: str, item: dict[str, Any]) -> None:
        meta = TableMeta.from_dict(item["meta"])
        name = meta.ref.display_name
        self.where[name], self.targets[name], self._refs[name] = file_name, relationship_targets(meta), meta.ref
        self._exact[(meta.ref.schema, meta.ref.name)] = name
        self._by_name.setdefault(meta.ref.name, []).append(name)
        self._by_lower.setdefault(meta.ref.name.lower(), []).append(name)
        self._sorted = None

    def matches(self, schema: str | None, name: str) -> list[str]:
        """The documented tables `schema.name` (schema None: a bare name) may refer to: a schema-qualified name
        exactly, a bare one in every schema (the search path decides, the catalog check reads all). A name no doc
        has exactly (or a bare one naming no single table) also brings the names differing only in case and the
        closest names, which the repairs offer in its place (select_repair_docs, the heuristic's repair)."""
        if schema is not None:
            exact = self._exact.get((schema, name))
            if exact is not None:
                return [exact]
            found = [n for n in self._by_lower.get(name.lower(), []) if self._refs[n].schema.lower() == schema.lower()]
            if len(found) == 1 or schema in CATALOG_SCHEMAS:
                return found
            return list(dict.fromkeys(found + self._close(name)))
        found = list(self._by_name.get(name, []))
        if ("public", name) in self._exact or len(found) == 1 or name.startswith("pg_"):
            return found
        return list(dict.fromkeys(found + self._by_lower.get(name.lower(), []) + self._close(name)))

    def _close(self, name: str) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self._by_name), sorted(self._by_lower)
        names, lowered = self._sorted
        picks = difflib.get_close_matches(name, names, n=CLOSE_MATCHES)
        picks += difflib.get_close_matches(name.lower(), lowered, n=CLOSE_MATCHES)
        return [table for pick in dict.fromkeys(p.lower() for p in picks) for table in self._by_lower[pick]]

    def needed(self, pairs: Iterable[QAPair]) -> list[str]:
        """The tables the pairs' SQL names (as the catalog check looks them up, and as the repair prompts read
        them, also from SQL that does not parse), then the tables their relationships reference (a repair may
        add a join): display names, once each."""
        named: list[str] = []
        for pair in pairs:
            for schema, name in dict.fromkeys(referenced_relations(pair.sql) + sqltext.referenced_tables(pair.sql)):
                named += self.matches(schema, name)
        return with_neighbours(named, self.targets)


def write_batch_docs(run: StepRun, batches: list[list[QAPair]]) -> bool:
    """Per batch, the full docs of the tables its pairs can need (`DocNames.needed`) to docs_file(i); the task's
    docs are streamed once. False, and nothing written, when the task has no table docs."""
    names = DocNames()
    for file_name, item in iter_batch_docs(run):
        names.add(file_name, item)
    if not names.where:
        return False
    needed = [names.needed(batch) for batch in batches]
    write_doc_files(run, [(docs_file(index), tables) for index, tables in enumerate(needed)], names.where)
    run.log.info("Validation batches need {needed} of {tables} documented tables (at most {most} per batch)",
                 needed=len({name for tables in needed for name in tables}), tables=len(names.where),
                 most=max((len(tables) for tables in needed), default=0))
    return True


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
