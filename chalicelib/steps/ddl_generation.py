"""ddl_generation: plan (bulk introspection), per-batch DDL/MD generation in a Map, then merge.

No invocation's work grows with the number of tables: the plan runs a constant number of catalog
queries, each Map iteration handles one small batch, and the merge only sums small results.
"""
from __future__ import annotations

import json
import time
from typing import Any

from chalicelib.errors import LLMRateLimited, LLMTimeout, StepFailed
from chalicelib.pipeline import db, ddl, introspect, tablelist
from chalicelib.pipeline.db_pool import ConnectionPool
from chalicelib.pipeline.models import TableMeta, TableRef
from chalicelib.providers.factory import get_llm_provider
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.concurrency import run_bounded, shared_pool
from chalicelib.steps.runtime import StepRun, bind_step_log, describe_failure, step_run, sum_usage

STEP = "ddl_generation"
LOGGER = "DDLMDGenerator"
SCHEMA_FILE = "work/schema.json"
BATCH_SCHEMAS = "work/batches/"
TABLE_DOCS = "work/tables/"
# All TableDocs of the last merge in one file: the QA and validation steps read it with one request.
DOCS_BUNDLE = "work/docs.json"
FILES_BUNDLE = "work/files.json"  # {file name: text} of the .ddl / _detail.md files of the last run
DOC_READ_WORKERS = 8  # parallel S3 reads of per-table docs
# Connections of one DDL batch: its tables borrow one for the samples and one for the enum check, never across
# their LLM call, so a few serve the batch (and the database sees a few connections per Lambda, not one per table).
DB_CONNECTIONS_PER_BATCH = 4


def _clear_previous_outputs(run: StepRun) -> None:
    """A re-run replaces the step's outputs: files of tables no longer listed must not linger."""
    for name in run.files.list_names():
        if "/" not in name and (name.endswith(".ddl") or name.endswith("_detail.md")):
            run.files.delete(name)
    for name in run.files.list_names(TABLE_DOCS):
        run.files.delete(name)
    for name in (DOCS_BUNDLE, FILES_BUNDLE):
        if run.files.exists(name):
            run.files.delete(name)


@step_lambda("step_ddl_plan")
def plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        names = tablelist.parse_table_list(run.files.get_text("table_list.txt"))
        run.log.info(f"Introspecting {len(names)} tables")
        conn = db.connect(run.db_url)
        try:
            found, missing = introspect.introspect_tables(
                conn, names, exact_count_threshold=run.settings.exact_count_threshold
            )
        finally:
            conn.close()
        # Written names resolved to catalog names; two spellings of one table are documented once.
        metas: dict[TableRef, TableMeta] = {}
        for name in names:
            if name in found:
                meta = found[name]
                if meta.ref in metas:
                    run.log.info(f"Table {name.text} is {meta.ref.display_name}, already listed: documented once")
                metas.setdefault(meta.ref, meta)
        skipped = {name.text: str(reason) for name, reason in missing.items()}
        for name, reason in skipped.items():
            run.log.error(f"Table {name} skipped: {reason}")
        if not metas:
            raise StepFailed(f"none of the {len(names)} listed tables could be introspected"
                             + (f" (e.g. {next(iter(skipped.values()))})" if skipped else ""))
        _clear_previous_outputs(run)
        ordered = list(metas)
        run.files.put_text(
            SCHEMA_FILE,
            json.dumps({ref.display_name: metas[ref].to_dict() for ref in ordered}, ensure_ascii=False),
        )
        size = max(1, run.settings.ddl_batch_size)
        batches = [[ref.to_dict() for ref in ordered[i : i + size]] for i in range(0, len(ordered), size)]
        # Each Map iteration reads only its own tables' metadata (work/batches/{i}.json), not the whole schema.
        for name in run.files.list_names(BATCH_SCHEMAS):
            run.files.delete(name)
        run_bounded(
            lambda i: run.files.put_text(
                f"{BATCH_SCHEMAS}{i:04d}.json",
                json.dumps({ref.display_name: metas[ref].to_dict() for ref in ordered[i * size : (i + 1) * size]},
                           ensure_ascii=False),
            ),
            list(range(len(batches))),
            DOC_READ_WORKERS,
        )
        run.tasks.update_progress(run.task_id, STEP,
                                  {"total": len(ordered) + len(skipped), "done": 0, "failed": len(skipped),
                                   "tables": {}})
        run.tasks.record_items_progress(
            run.task_id, STEP, "tables",
            {name: ({"ok": False, "error": reason}, False) for name, reason in skipped.items()},
            counted=False,  # already in `failed` above
        )
        return {
            "batches": [{"index": i, "tables": batch} for i, batch in enumerate(batches)],
            "missing": skipped,
        }


def _generate_table(run: StepRun, connections: ConnectionPool, meta: TableMeta, llm) -> dict[str, Any]:
    started = time.monotonic()
    doc = ddl.build_table_doc(
        None,
        meta,
        llm,
        run.business_context,
        sample_limit=run.settings.sample_rows,
        enum_max_distinct=run.settings.enum_max_distinct,
        lease=connections.lease,
    )
    stem = meta.ref.file_stem
    files = {f"{stem}.ddl": ddl.render_ddl(doc, run.business_context),
             f"{stem}_detail.md": ddl.render_md(doc, run.business_context)}
    for name, text in files.items():
        run.files.put_text(name, text)
    return {"table": meta.ref.display_name, "ok": True, "seconds": round(time.monotonic() - started, 3),
            "comment_sources": ddl.count_comment_sources(doc),
            "doc": doc.to_dict(), "files": files}


def _provider_label(llm: Any) -> str:
    """`heuristic provider "heuristic (no LLM configured)"` / `llm provider "openai-compatible:gpt-4o"`."""
    return f'{ddl.provider_kind(llm)} provider "{getattr(llm, "name", "?")}"'


def _sources_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {source}" for source, count in counts.items()) or "none"


def _process_table(run: StepRun, ref: TableRef, schema: dict[str, Any], llm, connections: ConnectionPool
                   ) -> dict[str, Any]:
    """One table, in a worker thread: its log lines; a connection of the batch is lent for each database phase
    only. The result carries the TableDoc (`doc`) and file texts when it succeeded. A failure is recorded on the
    table, except a throttled or unavailable LLM (LLMRateLimited, LLMTimeout): retrying can fix that, so it is
    raised and the state machine retries the batch."""
    name = ref.display_name
    started = time.monotonic()
    with bind_step_log(run.log):
        run.log.info(f"开始处理表: {name}")
        try:
            if name not in schema:
                raise StepFailed(f"table {name} is not in this run's introspected schema")
            result = _generate_table(run, connections, TableMeta.from_dict(schema[name]), llm)
        except (LLMRateLimited, LLMTimeout) as exc:
            run.log.warning("table left to a retry of its batch", table=name, error=type(exc).__name__,
                            reason=exc.message)
            raise
        except Exception as exc:  # recorded per table; the step decides in merge
            reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            run.log.error(f"Table {name} failed ({_provider_label(llm)}): {reason}")
            result = {"table": name, "ok": False, "error": reason, "seconds": round(time.monotonic() - started, 3)}
        else:
            run.log.info(f"Table {name} done in {result['seconds']} s; comments kept: "
                         f"{_sources_text(result['comment_sources'])} ({_provider_label(llm)})")
        return result


def table_workers(settings: Any, batch_len: int) -> int:
    """Tables of one batch processed at once: the whole batch, capped by the LLM concurrency limit."""
    return max(1, min(batch_len, settings.llm_max_concurrency))


@step_lambda("step_ddl_tables")
def generate_tables(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One Map iteration: a small batch of tables, processed concurrently (bounded thread pool, one DB
    connection per worker). A failing table is recorded, the others go on."""
    with step_run(event, STEP, logger_name=LOGGER) as run:
        batch = event["tables"]
        if isinstance(batch, dict):  # {"index", "tables"} from the plan; a plain list of tables is accepted too
            refs = [TableRef.from_dict(item) for item in batch["tables"]]
            schema = json.loads(run.files.get_text(f"{BATCH_SCHEMAS}{int(batch['index']):04d}.json"))
        else:
            refs = [TableRef.from_dict(item) for item in batch]
            schema = json.loads(run.files.get_text(SCHEMA_FILE))
        if not refs:
            return {"tables": [], "llm_usage": {}}
        llm = get_llm_provider(run.settings)
        run.log.info(f"Commenting {len(refs)} tables with the {_provider_label(llm)}")
        connections = ConnectionPool(run.db_url, DB_CONNECTIONS_PER_BATCH)
        try:
            connections.release(connections.get())  # an unreachable database fails the batch at once
            # The batch's tables start together: one progress write (beside them) names the first as current.
            started = shared_pool().submit(run.tasks.update_progress, run.task_id, STEP,
                                            {"current_table": refs[0].display_name})
            results = run_bounded(lambda ref: _process_table(run, ref, schema, llm, connections), refs,
                                  table_workers(run.settings, len(refs)))
            started.result()
        finally:
            connections.close()
        # The TableDocs and file texts of the batch, for merge, qa_generation and training_load: one work file
        # per batch, not one per table.
        docs = [result.pop("doc") for result in results if "doc" in result]
        texts = {name: text for result in results for name, text in result.pop("files", {}).items()}
        written = shared_pool().submit(run.files.put_text, f"{TABLE_DOCS}{refs[0].file_stem}.json",
                                        json.dumps({"docs": docs, "files": texts}, ensure_ascii=False))
        # Its tables run side by side and end together: their progress records go in one write.
        records = {result["table"]: ({k: v for k, v in result.items() if k != "table"}, result["ok"])
                   for result in results}
        run.tasks.record_items_progress(run.task_id, STEP, "tables", records)
        written.result()
        return {"tables": results, "llm_usage": llm.usage.to_dict()}


def read_batches(run: StepRun) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """What every ddl_generation batch left in `work/tables/*.json` (one file per batch, named after its first
    table, read DOC_READ_WORKERS at a time): the TableDocs as dicts, ordered by table file stem, and the texts
    of the .ddl / _detail.md files it wrote, by file name."""
    names = run.files.list_names(TABLE_DOCS)
    batches = [json.loads(text) for text in run_bounded(run.files.get_text, names, DOC_READ_WORKERS)]
    docs = [doc for batch in batches for doc in batch["docs"]]
    files = {name: text for batch in batches for name, text in batch["files"].items()}
    return sorted(docs, key=lambda doc: TableMeta.from_dict(doc["meta"]).ref.file_stem), files


def read_batch_docs(run: StepRun) -> list[dict[str, Any]]:
    return read_batches(run)[0]


def write_docs_bundle(run: StepRun) -> int:
    """Gather the batches' TableDocs into DOCS_BUNDLE (one file for qa_generation) and the texts of the files
    they wrote into FILES_BUNDLE (for training_load, which checks them against S3); returns how many tables."""
    docs, files = read_batches(run)
    run_bounded(lambda item: run.files.put_text(*item),
                [(DOCS_BUNDLE, json.dumps(docs, ensure_ascii=False)),
                 (FILES_BUNDLE, json.dumps(files, ensure_ascii=False))], 2)
    return len(docs)


@step_lambda("step_ddl_merge")
def merge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER) as run:
        ok, failed, usages, crashed = [], dict(event.get("missing") or {}), [], {}
        for batch in event.get("results") or []:
            if batch.get("failed"):
                # The whole Lambda for this batch failed (caught by the Map); its tables are failed.
                reason = "batch failed: " + ": ".join(describe_failure(batch.get("error")))
                tables = batch.get("tables") or []
                for item in tables.get("tables", []) if isinstance(tables, dict) else tables:
                    name = TableRef.from_dict(item).display_name
                    failed[name] = crashed[name] = reason
                    run.log.error(f"Table {name} failed: {reason}")
                continue
            usages.append(batch.get("llm_usage") or {})
            for item in batch.get("tables") or []:
                if item.get("ok"):
                    ok.append(item)
                else:
                    failed[item["table"]] = item.get("error", "unknown error")
        # Counters from the merged results: exact even when a crashed batch had recorded some tables.
        run.tasks.update_progress(run.task_id, STEP, {"done": len(ok), "failed": len(failed), "current_table": None})
        run.tasks.record_items_progress(run.task_id, STEP, "tables",
                                        {name: ({"ok": False, "error": reason}, False)
                                         for name, reason in crashed.items()}, counted=False)
        if not ok:
            first = next(iter(failed.items()), ("", "no tables"))
            raise StepFailed(f"ddl_generation produced no table: {len(failed)} failed (e.g. {first[0]}: {first[1]})")
        write_docs_bundle(run)
        result = {
            "tables_total": len(ok) + len(failed),
            "tables_succeeded": len(ok),
            "tables_failed": len(failed),
            "failed_tables": failed,
            "files_written": 2 * len(ok),
            "seconds_per_table": {item["table"]: item["seconds"] for item in ok},
        }
        sources: dict[str, int] = {}
        for item in ok:
            for source, count in (item.get("comment_sources") or {}).items():
                sources[source] = sources.get(source, 0) + count
        providers = sorted({u.get("provider") for u in usages if u.get("provider")})
        result.update(comment_sources=sources, has_llm_comments=sources.get("llm", 0) > 0, comment_providers=providers)
        if failed:
            run.log.warning(f"ddl_generation finished with {len(failed)} failed tables: {', '.join(failed)}")
        run.log.info(f"ddl_generation completed: {len(ok)} tables, {2 * len(ok)} files; comments kept: "
                     f"{_sources_text(sources)} (provider: {', '.join(providers) or 'none'})")
        run.tasks.mark_step_completed(run.task_id, STEP, result, sum_usage(usages))
        return {"tables_succeeded": len(ok), "tables_failed": len(failed)}

