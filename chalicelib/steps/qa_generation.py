"""qa_generation: extract business themes, generate pairs per theme in a Map, merge into the pair file.

Memory stays bounded at any table count: the TableDocs are streamed from ddl_generation's batch work files
(work/tables/*.json), a group of files at a time. Theme extraction keeps a compact doc per table (no samples,
distinct values or value ranges: theme prompts and the heuristic's themes use none of them). It then writes, per
theme, the full docs of the theme's tables and of the tables their relationships reach (work/qa/docs/{i}.json):
the pair generation of a theme and the merge read only those.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from chalicelib.errors import StepFailed
from chalicelib.pipeline import qa
from chalicelib.pipeline.models import QAPair, TableDoc, TableMeta, TableRef, Theme
from chalicelib.providers.factory import get_llm_provider
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.concurrency import run_bounded
from chalicelib.steps.ddl_generation import DOC_READ_WORKERS, TABLE_DOCS
from chalicelib.steps.runtime import StepRun, describe_failure, step_run, sum_usage

STEP = "qa_generation"
LOGGER = "QuestionSQLGenerator"
THEMES_FILE = "work/themes.json"
THEME_PAIRS = "work/qa/"
THEME_DOCS = "work/qa/docs/"  # per theme: the docs its pairs need ({i:03d}.json)
PAIR_FILE_POINTER = "work/pair_file.txt"
BATCH_FILES_PER_READ = 4 * DOC_READ_WORKERS  # batch work files in memory at once while streaming
DOCS_PER_WRITE = 2000  # full docs in memory at once while writing per-theme (or per-batch) doc files


def iter_batch_docs(run: StepRun) -> Iterator[tuple[str, dict[str, Any]]]:
    """(batch work file, TableDoc as a dict) of every table ddl_generation documented, BATCH_FILES_PER_READ files
    in memory at a time (read DOC_READ_WORKERS at once)."""
    names = list(run.files.iter_names(TABLE_DOCS))
    for start in range(0, len(names), BATCH_FILES_PER_READ):
        group = names[start:start + BATCH_FILES_PER_READ]
        for name, text in zip(group, run_bounded(run.files.get_text, group, DOC_READ_WORKERS), strict=True):
            for doc in json.loads(text).get("docs") or []:
                yield name, doc


def compact_doc(doc: TableDoc) -> TableDoc:
    """What theme extraction needs of a table: names, types, keys, relationships, comments and enums; without the
    sample rows, distinct values, value ranges and a view's query."""
    return replace(doc, meta=replace(doc.meta, definition=None), comment_sources={}, samples=[],
                   column_values={}, value_ranges={})


def _stem(doc: TableDoc) -> str:
    return doc.meta.ref.file_stem


def theme_docs_of_schema(run: StepRun) -> tuple[list[TableDoc], dict[str, str]]:
    """The compact docs (`compact_doc`) theme extraction works on, in file-name order, and the batch file of each
    table. Theme prompts (the schema text or its one-line summary) and the heuristic's themes read only what a
    compact doc keeps."""
    docs: list[TableDoc] = []
    where: dict[str, str] = {}
    for name, item in iter_batch_docs(run):
        doc = compact_doc(TableDoc.from_dict(item))
        where[doc.meta.ref.display_name] = name
        docs.append(doc)
    if not docs:
        raise StepFailed("no table documentation found for this task: run ddl_generation first")
    return sorted(docs, key=_stem), where


def relationship_targets(meta: TableMeta) -> list[str]:
    """The display names of the tables a table's relationships (declared, then inferred) reference."""
    return [TableRef(fk.ref_schema, fk.ref_table).display_name for fk in meta.relationships]


def with_neighbours(names: Iterable[str], targets: Mapping[str, Iterable[str]]) -> list[str]:
    """The tables named (display names, in order, once each), then the documented tables their relationships
    reference (joins may reach them). `targets`: every documented table -> its `relationship_targets`."""
    needed = list(dict.fromkeys(names))
    seen = set(needed)
    for name in list(needed):
        for target in targets.get(name, ()):
            if target not in seen and target in targets:
                needed.append(target)
                seen.add(target)
    return needed


def _item_stem(item: dict[str, Any]) -> str:
    return TableRef.from_dict(item["meta"]["ref"]).file_stem


def write_doc_files(run: StepRun, outputs: list[tuple[str, list[str]]], where: Mapping[str, str]) -> None:
    """Each (file, display names) of `outputs`: a JSON list of the full docs of those tables (in file-name order;
    names no batch file holds are left out), read again from the batch work files that hold them (`where`: display
    name -> batch file), BATCH_FILES_PER_READ at a time, the docs of at most DOCS_PER_WRITE tables in memory; the
    files are written DOC_READ_WORKERS at once."""
    for chunk in _chunks(outputs, where):
        wanted = {name for _file, names in chunk for name in names if name in where}
        files = sorted({where[name] for name in wanted})
        full: dict[str, dict[str, Any]] = {}
        for start in range(0, len(files), BATCH_FILES_PER_READ):
            for text in run_bounded(run.files.get_text, files[start:start + BATCH_FILES_PER_READ], DOC_READ_WORKERS):
                for item in json.loads(text).get("docs") or []:
                    name = TableRef.from_dict(item["meta"]["ref"]).display_name
                    if name in wanted:
                        full[name] = item

        def write(output: tuple[str, list[str]], full: dict[str, dict[str, Any]] = full) -> None:
            chosen = sorted((full[n] for n in dict.fromkeys(output[1]) if n in full), key=_item_stem)
            run.files.put_text(output[0], json.dumps(chosen, ensure_ascii=False))

        run_bounded(write, chunk, DOC_READ_WORKERS)


def _chunks(outputs: list[tuple[str, list[str]]], where: Mapping[str, str]
            ) -> Iterator[list[tuple[str, list[str]]]]:
    """`outputs` in order, cut where the documented tables a chunk needs would exceed DOCS_PER_WRITE (an output
    needing more on its own is a chunk of its own)."""
    chunk: list[tuple[str, list[str]]] = []
    wanted: set[str] = set()
    for output in outputs:
        names = {name for name in output[1] if name in where}
        if chunk and len(wanted | names) > DOCS_PER_WRITE:
            yield chunk
            chunk, wanted = [], set()
        chunk.append(output)
        wanted |= names
    if chunk:
        yield chunk


def write_theme_docs(run: StepRun, themes: list[Theme], docs: list[TableDoc], where: dict[str, str]) -> None:
    """Per theme, the full docs of its tables and of the tables their relationships reference to THEME_DOCS: only
    the batch files that hold them are read again."""
    targets = {doc.meta.ref.display_name: relationship_targets(doc.meta) for doc in docs}
    write_doc_files(run, [(f"{THEME_DOCS}{index:03d}.json", with_neighbours(theme.related_tables, targets))
                          for index, theme in enumerate(themes)], where)


def read_theme_docs(run: StepRun, index: int) -> list[TableDoc]:
    return [TableDoc.from_dict(item) for item in json.loads(run.files.get_text(f"{THEME_DOCS}{index:03d}.json"))]


def _distinct(docs: Iterable[TableDoc]) -> list[TableDoc]:
    seen: dict[str, TableDoc] = {}
    for doc in docs:
        seen.setdefault(doc.meta.ref.display_name, doc)
    return sorted(seen.values(), key=_stem)


def current_pair_file(run: StepRun) -> str:
    """Name of the pair file of the latest qa_generation run of this task."""
    if not run.files.exists(PAIR_FILE_POINTER):
        raise StepFailed("no Question-SQL pair file for this task: run qa_generation first")
    return run.files.get_text(PAIR_FILE_POINTER).strip()


@step_lambda("step_qa_themes")
def extract_themes(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        docs, where = theme_docs_of_schema(run)
        llm = get_llm_provider(run.settings)
        run.log.info("Extracting {themes} business themes from {tables} tables ({provider})",
                     themes=run.settings.theme_count, tables=len(docs), provider=llm.name)
        themes = qa.extract_themes(llm, docs, run.business_context, run.settings.theme_count)
        if not themes:
            raise StepFailed("no business theme could be extracted from the table documentation")
        run.files.delete_many(run.files.iter_names(THEME_PAIRS))
        write_theme_docs(run, themes, docs, where)
        run.files.put_text(THEMES_FILE, json.dumps([t.to_dict() for t in themes], ensure_ascii=False))
        for theme in themes:
            run.log.info("Theme: {theme} ({tables})", theme=theme.topic_name, tables=", ".join(theme.related_tables))
        run.tasks.update_progress(
            run.task_id, STEP,
            {"total": len(themes), "themes_total": len(themes), "done": 0, "failed": 0, "themes": {}},
        )
        return {"themes": [{"index": i} for i in range(len(themes))], "llm_usage": llm.usage.to_dict()}


@step_lambda("step_qa_theme")
def generate_theme_pairs(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER) as run:
        index = int(event["theme_index"])
        theme = Theme.from_dict(json.loads(run.files.get_text(THEMES_FILE))[index])
        started = time.monotonic()
        docs = read_theme_docs(run, index)
        llm = get_llm_provider(run.settings)
        pairs = qa.generate_theme_pairs(llm, theme, docs, run.business_context, run.settings.questions_per_theme)
        run.files.put_text(
            f"{THEME_PAIRS}{index:03d}.json", json.dumps([p.to_dict() for p in pairs], ensure_ascii=False)
        )
        run.log.info("Theme '{theme}': {pairs} Question-SQL pairs", theme=theme.topic_name, pairs=len(pairs))
        run.tasks.record_item_progress(
            run.task_id, STEP, "themes", theme.topic_name,
            {"ok": True, "pairs": len(pairs), "seconds": round(time.monotonic() - started, 3)}, ok=True,
        )
        return {"index": index, "pairs": len(pairs), "llm_usage": llm.usage.to_dict()}


@step_lambda("step_qa_merge")
def merge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER) as run:
        themes = [Theme.from_dict(t) for t in json.loads(run.files.get_text(THEMES_FILE))]
        groups, failed, usages = [], {}, [event.get("themes_usage") or {}]
        for item in event.get("results") or []:
            if item.get("failed"):
                name, message = describe_failure(item.get("error"))
                topic = themes[int(item["theme_index"])].topic_name
                failed[topic] = f"{name}: {message}"
                run.log.warning("Theme '{theme}' skipped: {error}: {reason}", theme=topic, error=name, reason=message)
                run.tasks.record_item_progress(run.task_id, STEP, "themes", topic,
                                               {"ok": False, "error": failed[topic]}, ok=False)
                continue
            usages.append(item.get("llm_usage") or {})
            text = run.files.get_text(f"{THEME_PAIRS}{int(item['index']):03d}.json")
            groups.append([QAPair.from_dict(p) for p in json.loads(text)])
        pairs = qa.merge_pairs(groups)
        if not pairs:
            raise StepFailed(f"no Question-SQL pair was generated ({len(failed)} of {len(themes)} themes failed)")
        for name in run.files.list_names("qs_"):
            if "/" not in name and "_pair.json" in name:
                run.files.delete(name)  # one current pair file per task; a re-run replaces it
        file_name = qa.pair_file_name(run.db_name, run.run_ts)
        run.files.put_text(file_name, qa.render_pairs_json(pairs))
        run.files.put_text("metadata.txt", qa.render_metadata_txt(themes, run.db_name))
        run.files.put_text("metadata_detail.md", qa.render_metadata_detail_md(
            themes, _distinct(doc for index in range(len(themes)) for doc in read_theme_docs(run, index))))
        run.files.put_text(PAIR_FILE_POINTER, file_name)
        generated = sum(len(g) for g in groups)
        result = {
            "pair_file": file_name,
            "themes": len(themes),
            "themes_failed": failed,
            "pairs_generated": generated,
            "duplicates_removed": generated - len(pairs),
            "pairs": len(pairs),
        }
        run.log.info("qa_generation completed: {pairs} pairs in {file}", pairs=len(pairs), file=file_name)
        run.tasks.mark_step_completed(run.task_id, STEP, result, sum_usage(usages))
        return {"pair_file": file_name, "pairs": len(pairs)}
