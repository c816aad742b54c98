"""ddl_generation: plan (bulk introspection), per-batch DDL/MD generation in a Map, then merge.

No invocation's work grows with the number of tables, but for one thing: the plan runs a constant number of
catalog queries, each Map iteration handles one small batch, and the merge only sums small results. The task's key
index (relationship inference matches every table's columns against every table's keys) is read and built once per
warm Lambda container and execution, not once per batch (`_candidate_keys`).
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

from chalicelib.errors import FileNotFound, LLMRateLimited, LLMTimeout, StepFailed
from chalicelib.pipeline import db, ddl, introspect, relationships, tablelist
from chalicelib.pipeline.db_pool import ConnectionPool
from chalicelib.pipeline.models import TableMeta, TableRef
from chalicelib.providers.factory import get_llm_provider
from chalicelib.steps import map_io
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.concurrency import run_bounded, shared_pool
from chalicelib.steps.runtime import StepRun, bind_step_log, describe_failure, step_run, sum_usage

STEP = "ddl_generation"
LOGGER = "DDLMDGenerator"
SCHEMA_FILE = "work/schema.json"  # no longer written (every table's metadata in one file); removed by the plan
BATCH_SCHEMAS = "work/batches/"
TABLE_DOCS = "work/tables/"
# No longer written (every table's doc in one file, so in one Lambda's memory): qa_generation streams the batch
# files; removed by the plan.
DOCS_BUNDLE = "work/docs.json"
FILES_BUNDLE = "work/files.json"  # no longer written: a bundle of every file's text (removed by the next plan)
DOC_READ_WORKERS = 8  # parallel S3 reads of per-table docs
# Connections of one DDL batch: its tables borrow one for the samples and one for the enum check, never across
# their LLM call, so a few serve the batch (and the database sees a few connections per Lambda, not one per table).
DB_CONNECTIONS_PER_BATCH = 4
INTROSPECT_CHUNK = 1000  # names introspected per round by the plan: one chunk's metadata in memory at a time
MISSING_FILE = "work/ddl/missing.json"  # {table: reason} of listed tables the plan could not introspect
# The single-column keys of the plan's documented tables (one catalog query per task): each batch infers its
# tables' relationships to these keys, and no others.
KEYS_FILE = "work/ddl/keys.json"
REPORT_FILE = "work/ddl/tables.json"  # the last merge's per-table results: {succeeded: [...], failed: {...}}
RESULT_DETAIL_MAX = 100  # tables named in the step result (the task item); all of them are in REPORT_FILE


def _clear_previous_outputs(run: StepRun) -> None:
    """A re-run replaces the step's outputs: files of tables no longer listed must not linger. Listed a page at
    a time and deleted DELETE_BATCH per request."""
    top = (f["name"] for f in run.files.store.iter_files(run.task_id, top_level=True))
    run.files.delete_many(name for name in top if name.endswith(".ddl") or name.endswith("_detail.md"))
    run.files.delete_many(run.files.iter_names(TABLE_DOCS))
    run.files.delete_many(run.files.iter_names(BATCH_SCHEMAS))
    run.files.delete_many(name for name in (DOCS_BUNDLE, FILES_BUNDLE, SCHEMA_FILE) if run.files.exists(name))


@step_lambda("step_ddl_plan")
def plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Introspect the listed tables INTROSPECT_CHUNK names at a time (one chunk's metadata in memory), write each
    batch's metadata to work/batches/{i}.json and the batches to the Distributed Map's item manifest; returns
    only references and counts."""
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        names = tablelist.parse_table_list(run.files.get_text("table_list.txt"))
        run.log.info("Introspecting {tables} tables", tables=len(names))
        _clear_previous_outputs(run)
        size = max(1, run.settings.ddl_batch_size)
        seen: set[TableRef] = set()
        pending: list[TableMeta] = []
        batches: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}

        def write_batches(final: bool) -> None:
            ready = []
            while len(pending) >= size or (final and pending):
                chunk = pending[:size]
                del pending[:size]
                ready.append((len(batches), chunk))
                batches.append({"index": len(batches), "tables": [meta.ref.to_dict() for meta in chunk]})
            run_bounded(lambda item: run.files.put_text(
                f"{BATCH_SCHEMAS}{item[0]:04d}.json",
                json.dumps({meta.ref.display_name: meta.to_dict() for meta in item[1]}, ensure_ascii=False),
            ), ready, DOC_READ_WORKERS)

        conn = db.connect(run.db_url)
        try:
            for start in range(0, len(names), INTROSPECT_CHUNK):
                chunk_names = names[start:start + INTROSPECT_CHUNK]
                found, missing = introspect.introspect_tables(
                    conn, chunk_names, exact_count_threshold=run.settings.exact_count_threshold
                )
                # Written names resolved to catalog names; two spellings of one table are documented once.
                for name in chunk_names:
                    if name in found:
                        meta = found[name]
                        if meta.ref in seen:
                            run.log.info("Table {listed} is {table}, already listed: documented once",
                                         listed=name.text, table=meta.ref.display_name)
                            continue
                        seen.add(meta.ref)
                        pending.append(meta)
                skipped.update({name.text: str(reason) for name, reason in missing.items()})
                write_batches(final=False)
                del found, missing
            keys = relationships.load_candidate_keys(conn, sorted(seen))
        finally:
            conn.close()
        write_batches(final=True)
        for name, reason in skipped.items():
            run.log.error("Table {table} skipped: {reason}", table=name, reason=reason)
        if not seen:
            raise StepFailed(f"none of the {len(names)} listed tables could be introspected"
                             + (f" (e.g. {next(iter(skipped.values()))})" if skipped else ""))
        run.files.put_text(MISSING_FILE, json.dumps(skipped, ensure_ascii=False))
        run.files.put_text(KEYS_FILE, json.dumps(keys.to_rows(), ensure_ascii=False))
        run.tasks.update_progress(run.task_id, STEP,
                                  {"total": len(seen) + len(skipped), "done": 0, "failed": len(skipped),
                                   "tables": {}})
        run.tasks.record_items_progress(
            run.task_id, STEP, "tables",
            {name: ({"ok": False, "error": reason}, False) for name, reason in skipped.items()},
            counted=False,  # already in `failed` above
        )
        refs = map_io.write_items(run, "ddl", batches)
        return {**refs, "tables": len(seen), "missing": len(skipped)}


def _context_is_chinese(run: StepRun, meta: TableMeta) -> bool:
    if (run.business_context or "").strip():
        return ddl.is_chinese(run.business_context)
    return ddl.is_chinese(meta.comment, *(c.comment for c in meta.columns))


def _infer_relationships(run: StepRun, connections: ConnectionPool, meta: TableMeta,
                         keys: relationships.KeyIndex) -> None:
    """The table's outgoing relationships no foreign key declares (chalicelib.pipeline.relationships), into
    `meta.inferred_keys`: bounded data checks on a connection of the batch."""
    with connections.lease() as conn:
        meta.inferred_keys = relationships.infer_relationships(conn, meta, keys,
                                                               chinese=_context_is_chinese(run, meta))
    if meta.inferred_keys:
        run.log.info("Table {table}: {count} relationships inferred", table=meta.ref.display_name,
                     count=len(meta.inferred_keys), evidence=[fk.evidence for fk in meta.inferred_keys])


def _generate_table(run: StepRun, connections: ConnectionPool, meta: TableMeta, llm,
                    keys: relationships.KeyIndex) -> dict[str, Any]:
    started = time.monotonic()
    _infer_relationships(run, connections, meta, keys)
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


def _process_table(run: StepRun, ref: TableRef, schema: dict[str, Any], llm, connections: ConnectionPool,
                   keys: relationships.KeyIndex) -> dict[str, Any]:
    """One table, in a worker thread: its log lines; a connection of the batch is lent for each database phase
    only. The result carries the TableDoc (`doc`) and file texts when it succeeded. A failure is recorded on the
    table, except a throttled or unavailable LLM (LLMRateLimited, LLMTimeout): retrying can fix that, so it is
    raised and the state machine retries the batch."""
    name = ref.display_name
    started = time.monotonic()
    with bind_step_log(run.log):
        run.log.info("开始处理表: {table}", table=name)
        try:
            if name not in schema:
                raise StepFailed(f"table {name} is not in this run's introspected schema")
            result = _generate_table(run, connections, TableMeta.from_dict(schema[name]), llm, keys)
        except (LLMRateLimited, LLMTimeout) as exc:
            run.log.warning("table left to a retry of its batch", table=name, error=type(exc).__name__,
                            reason=exc.message)
            raise
        except Exception as exc:  # recorded per table; the step decides in merge
            reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            run.log.error("Table {table} failed ({provider}): {reason}", table=name, provider=_provider_label(llm),
                          reason=reason)
            result = {"table": name, "ok": False, "error": reason, "seconds": round(time.monotonic() - started, 3)}
        else:
            run.log.info("Table {table} done in {seconds} s; comments kept: {comments} ({provider})", table=name,
                         seconds=result["seconds"], comments=_sources_text(result["comment_sources"]),
                         provider=_provider_label(llm))
        return result


def _introspect_batch(run: StepRun, refs: list[TableRef]) -> dict[str, Any]:
    """The metadata of a batch given as a plain list of tables (not by the plan, which wrote it to S3): only
    these tables are introspected."""
    conn = db.connect(run.db_url)
    try:
        found, _missing = introspect.introspect_tables(conn, refs,
                                                       exact_count_threshold=run.settings.exact_count_threshold)
    finally:
        conn.close()
    return {meta.ref.display_name: meta.to_dict() for meta in found.values()}


# The last key index built in this process, kept for the next batch of the same task (a warm Lambda container runs
# many batches of one execution): (task id, the keys file's ETag, the index). One entry: memory stays bounded.
_KEY_INDEX: list[tuple[str, str, relationships.KeyIndex]] = []
_KEY_INDEX_LOCK = threading.Lock()


def _candidate_keys(run: StepRun, refs: list[TableRef], connections: ConnectionPool, from_plan: bool
                    ) -> relationships.KeyIndex:
    """The single-column keys of the task's tables: the plan's KEYS_FILE; for a batch given as a plain list, those
    of its own tables (one catalog query).

    KEYS_FILE holds every table's keys, so reading and indexing it in every batch made the DDL step quadratic in
    the tables (at 10,000 tables four fifths of its CPU). The index is kept per process and reused while the file's
    ETag is the same (a HeadObject per batch); a new plan writes a new file, so a stale index is never used."""
    if from_plan:
        try:
            etag = run.files.head(KEYS_FILE).get("etag") or ""
        except FileNotFound:
            etag = None
        if etag is not None:
            with _KEY_INDEX_LOCK:
                if _KEY_INDEX and _KEY_INDEX[0][:2] == (run.task_id, etag) and etag:
                    return _KEY_INDEX[0][2]
                index = relationships.KeyIndex.from_rows(json.loads(run.files.get_text(KEYS_FILE)))
                _KEY_INDEX[:] = [(run.task_id, etag, index)]
                return index
    with connections.lease() as conn:
        return relationships.load_candidate_keys(conn, refs)


def table_workers(settings: Any, batch_len: int) -> int:
    """Tables of one batch processed at once: the whole batch, capped by the LLM concurrency limit."""
    return max(1, min(batch_len, settings.llm_max_concurrency))


@step_lambda("step_ddl_tables")
def generate_tables(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One Map iteration: a small batch of tables, processed concurrently (bounded thread pool, one DB
    connection per worker). A failing table is recorded, the others go on."""
    with step_run(event, STEP, logger_name=LOGGER) as run:
        batch = event["tables"]
        from_plan = isinstance(batch, dict)
        if from_plan:  # {"index", "tables"} from the plan; a plain list of tables is accepted too
            refs = [TableRef.from_dict(item) for item in batch["tables"]]
            schema = json.loads(run.files.get_text(f"{BATCH_SCHEMAS}{int(batch['index']):04d}.json"))
        else:
            refs = [TableRef.from_dict(item) for item in batch]
            schema = _introspect_batch(run, refs)
        if not refs:
            return {"tables": [], "llm_usage": {}}
        llm = get_llm_provider(run.settings)
        run.log.info("Commenting {tables} tables with the {provider}", tables=len(refs), provider=_provider_label(llm))
        connections = ConnectionPool(run.db_url, DB_CONNECTIONS_PER_BATCH)
        try:
            connections.release(connections.get())  # an unreachable database fails the batch at once
            keys = _candidate_keys(run, refs, connections, from_plan)
            # The batch's tables start together: one progress write (beside them) names the first as current.
            started = shared_pool().submit(run.tasks.update_progress, run.task_id, STEP,
                                            {"current_table": refs[0].display_name})
            results = run_bounded(lambda ref: _process_table(run, ref, schema, llm, connections, keys), refs,
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


def read_batches(run: StepRun, with_files: bool = True) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """What every ddl_generation batch left in `work/tables/*.json` (one file per batch, named after its first
    table, read DOC_READ_WORKERS at a time, a group of files in memory at once): the TableDocs as dicts, ordered
    by table file stem, and (unless `with_files` is False) the texts of the .ddl / _detail.md files it wrote."""
    names = list(run.files.iter_names(TABLE_DOCS))
    docs: list[dict[str, Any]] = []
    files: dict[str, str] = {}
    for start in range(0, len(names), 4 * DOC_READ_WORKERS):
        for text in run_bounded(run.files.get_text, names[start:start + 4 * DOC_READ_WORKERS], DOC_READ_WORKERS):
            batch = json.loads(text)
            docs += batch["docs"]
            if with_files:
                files.update(batch["files"])
    return sorted(docs, key=lambda doc: TableMeta.from_dict(doc["meta"]).ref.file_stem), files


def read_batch_docs(run: StepRun) -> list[dict[str, Any]]:
    return read_batches(run, with_files=False)[0]


def _missing_tables(run: StepRun, missing: Any) -> dict[str, str]:
    """The tables the plan could not introspect: its MISSING_FILE (the plan returns their count), or the map
    itself from callers that pass it."""
    if isinstance(missing, dict):
        return dict(missing)
    if not missing:
        return {}
    return json.loads(run.files.get_text(MISSING_FILE))


@step_lambda("step_ddl_merge")
def merge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sum the batches' results (read from the Distributed Map's ResultWriter files, one at a time); the per-table
    report goes to REPORT_FILE, the step result keeps counts and the first RESULT_DETAIL_MAX tables."""
    with step_run(event, STEP, logger_name=LOGGER) as run:
        failed = _missing_tables(run, event.get("missing"))
        ok: list[dict[str, Any]] = []
        usages, crashed = [], {}
        for batch in map_io.iter_outputs(run, event.get("results")):
            if batch.get("failed"):
                # The whole Lambda for this batch failed (caught by the Map); its tables are failed.
                reason = "batch failed: " + ": ".join(describe_failure(batch.get("error")))
                tables = batch.get("tables") or []
                for item in tables.get("tables", []) if isinstance(tables, dict) else tables:
                    name = TableRef.from_dict(item).display_name
                    failed[name] = crashed[name] = reason
                    run.log.error("Table {table} failed: {reason}", table=name, reason=reason)
                continue
            usages.append(batch.get("llm_usage") or {})
            for item in batch.get("tables") or []:
                if item.get("ok"):
                    ok.append({k: item[k] for k in ("table", "seconds", "comment_sources") if k in item})
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
        run.files.put_text(REPORT_FILE, json.dumps({"succeeded": ok, "failed": failed}, ensure_ascii=False))
        result = {
            "tables_total": len(ok) + len(failed),
            "tables_succeeded": len(ok),
            "tables_failed": len(failed),
            # The first RESULT_DETAIL_MAX of each: the task item stays small at any table count.
            "failed_tables": dict(list(failed.items())[:RESULT_DETAIL_MAX]),
            "files_written": 2 * len(ok),
            "seconds_per_table": {item["table"]: item["seconds"] for item in ok[:RESULT_DETAIL_MAX]},
            "report_file": REPORT_FILE,
        }
        sources: dict[str, int] = {}
        for item in ok:
            for source, count in (item.get("comment_sources") or {}).items():
                sources[source] = sources.get(source, 0) + count
        providers = sorted({u.get("provider") for u in usages if u.get("provider")})
        result.update(comment_sources=sources, has_llm_comments=sources.get("llm", 0) > 0, comment_providers=providers)
        if failed:
            run.log.warning("ddl_generation finished with failed tables", failed=len(failed),
                            first_failed=list(failed)[:RESULT_DETAIL_MAX], report_file=REPORT_FILE)
        run.log.info("ddl_generation completed: {tables} tables, {files} files; comments kept: {comments} "
                     "(provider: {providers})", tables=len(ok), files=2 * len(ok), comments=_sources_text(sources),
                     providers=", ".join(providers) or "none")
        run.tasks.mark_step_completed(run.task_id, STEP, result, sum_usage(usages))
        return {"tables_succeeded": len(ok), "tables_failed": len(failed)}
