"""ddl_generation: plan (bulk introspection), per-batch DDL/MD generation in a Map, then merge.

No invocation's work grows with the number of tables: the plan runs a constant number of catalog
queries, each Map iteration handles one small batch, and the merge only sums small results.
"""
from __future__ import annotations

import json
import time
from typing import Any

from chalicelib.errors import StepFailed
from chalicelib.pipeline import db, ddl, introspect, tablelist
from chalicelib.pipeline.models import TableMeta, TableRef
from chalicelib.providers.llm import get_llm_provider
from chalicelib.steps.blueprint import steps_bp
from chalicelib.steps.runtime import StepRun, describe_failure, step_run, sum_usage

STEP = "ddl_generation"
LOGGER = "DDLMDGenerator"
SCHEMA_FILE = "work/schema.json"
TABLE_DOCS = "work/tables/"


def _clear_previous_outputs(run: StepRun) -> None:
    """A re-run replaces the step's outputs: files of tables no longer listed must not linger."""
    for name in run.files.list_names():
        if "/" not in name and (name.endswith(".ddl") or name.endswith("_detail.md")):
            run.files.delete(name)
    for name in run.files.list_names(TABLE_DOCS):
        run.files.delete(name)


@steps_bp.lambda_function(name="step_ddl_plan")
def plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        refs = tablelist.parse_table_list(run.files.get_text("table_list.txt"))
        run.log.info(f"Introspecting {len(refs)} tables")
        conn = db.connect(run.db_url)
        try:
            found, missing = introspect.introspect_tables(
                conn, refs, exact_count_threshold=run.settings.exact_count_threshold
            )
        finally:
            conn.close()
        for ref, reason in missing.items():
            run.log.error(f"Table {ref.display_name} skipped: {reason}")
        if not found:
            raise StepFailed(f"none of the {len(refs)} listed tables could be introspected")
        _clear_previous_outputs(run)
        ordered = [ref for ref in refs if ref in found]
        run.files.put_text(
            SCHEMA_FILE,
            json.dumps({ref.display_name: found[ref].to_dict() for ref in ordered}, ensure_ascii=False),
        )
        size = max(1, run.settings.ddl_batch_size)
        batches = [[ref.to_dict() for ref in ordered[i : i + size]] for i in range(0, len(ordered), size)]
        run.tasks.update_progress(
            run.task_id,
            STEP,
            {
                "total": len(refs),
                "done": 0,
                "failed": len(missing),
                "tables": {ref.display_name: {"ok": False, "error": reason} for ref, reason in missing.items()},
            },
        )
        return {"batches": batches, "missing": {ref.display_name: reason for ref, reason in missing.items()}}


def _generate_table(run: StepRun, conn, meta: TableMeta, llm) -> dict[str, Any]:
    started = time.monotonic()
    doc = ddl.build_table_doc(
        conn,
        meta,
        llm,
        run.business_context,
        sample_limit=run.settings.sample_rows,
        enum_max_distinct=run.settings.enum_max_distinct,
    )
    stem = meta.ref.file_stem
    run.files.put_text(f"{stem}.ddl", ddl.render_ddl(doc, run.business_context))
    run.files.put_text(f"{stem}_detail.md", ddl.render_md(doc, run.business_context))
    run.files.put_text(f"{TABLE_DOCS}{stem}.json", json.dumps(doc.to_dict(), ensure_ascii=False))
    return {"table": meta.ref.display_name, "ok": True, "seconds": round(time.monotonic() - started, 3)}


@steps_bp.lambda_function(name="step_ddl_tables")
def generate_tables(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One Map iteration: a small batch of tables. A failing table is recorded, the others go on."""
    with step_run(event, STEP, logger_name=LOGGER) as run:
        schema = json.loads(run.files.get_text(SCHEMA_FILE))
        refs = [TableRef.from_dict(item) for item in event["tables"]]
        llm = get_llm_provider(run.settings)
        results = []
        conn = db.connect(run.db_url)
        try:
            for ref in refs:
                run.tasks.update_progress(run.task_id, STEP, {"current_table": ref.display_name})
                run.log.info(f"开始处理表: {ref.display_name}")
                try:
                    result = _generate_table(run, conn, TableMeta.from_dict(schema[ref.display_name]), llm)
                except Exception as exc:  # recorded per table; the step decides in merge
                    conn.rollback()
                    reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                    run.log.error(f"Table {ref.display_name} failed: {reason}")
                    result = {"table": ref.display_name, "ok": False, "error": reason}
                else:
                    run.log.info(f"Table {ref.display_name} done in {result['seconds']} s")
                run.tasks.record_item_progress(run.task_id, STEP, "tables", ref.display_name, result, ok=result["ok"])
                results.append(result)
        finally:
            conn.close()
        return {"tables": results, "llm_usage": llm.usage.to_dict()}


@steps_bp.lambda_function(name="step_ddl_merge")
def merge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER) as run:
        ok, failed, usages = [], dict(event.get("missing") or {}), []
        for batch in event.get("results") or []:
            if batch.get("failed"):
                # The whole Lambda for this batch failed (caught by the Map); its tables are failed.
                reason = ": ".join(describe_failure(batch.get("error")))
                for item in batch.get("tables") or []:
                    failed[TableRef.from_dict(item).display_name] = reason
                continue
            usages.append(batch.get("llm_usage") or {})
            for item in batch.get("tables") or []:
                if item.get("ok"):
                    ok.append(item)
                else:
                    failed[item["table"]] = item.get("error", "unknown error")
        if not ok:
            first = next(iter(failed.items()), ("", "no tables"))
            raise StepFailed(f"ddl_generation produced no table: {len(failed)} failed (e.g. {first[0]}: {first[1]})")
        result = {
            "tables_total": len(ok) + len(failed),
            "tables_succeeded": len(ok),
            "tables_failed": len(failed),
            "failed_tables": failed,
            "files_written": 2 * len(ok),
            "seconds_per_table": {item["table"]: item["seconds"] for item in ok},
        }
        if failed:
            run.log.warning(f"ddl_generation finished with {len(failed)} failed tables: {', '.join(failed)}")
        run.log.info(f"ddl_generation completed: {len(ok)} tables, {2 * len(ok)} files")
        run.tasks.mark_step_completed(run.task_id, STEP, result, sum_usage(usages))
        return {"tables_succeeded": len(ok), "tables_failed": len(failed)}

