"""qa_generation: extract business themes, generate pairs per theme in a Map, merge into the pair file."""
from __future__ import annotations

import json
import time
from typing import Any

from chalicelib.errors import FileNotFound, StepFailed
from chalicelib.pipeline import qa
from chalicelib.pipeline.models import QAPair, TableDoc, Theme
from chalicelib.providers.factory import get_llm_provider
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.ddl_generation import DOCS_BUNDLE, read_batch_docs
from chalicelib.steps.runtime import StepRun, describe_failure, step_run, sum_usage

STEP = "qa_generation"
LOGGER = "QuestionSQLGenerator"
THEMES_FILE = "work/themes.json"
THEME_PAIRS = "work/qa/"
PAIR_FILE_POINTER = "work/pair_file.txt"


def load_table_docs(run: StepRun) -> list[TableDoc]:
    """The TableDocs ddl_generation left for this task, in file-name order: the merged bundle (one read) when
    the last ddl_generation run finished, else the files of its batches."""
    try:
        bundle = json.loads(run.files.get_text(DOCS_BUNDLE))
    except FileNotFound:
        bundle = None
    if bundle:
        return [TableDoc.from_dict(item) for item in bundle]
    docs = read_batch_docs(run)
    if not docs:
        raise StepFailed("no table documentation found for this task: run ddl_generation first")
    return [TableDoc.from_dict(item) for item in docs]


def current_pair_file(run: StepRun) -> str:
    """Name of the pair file of the latest qa_generation run of this task."""
    if not run.files.exists(PAIR_FILE_POINTER):
        raise StepFailed("no Question-SQL pair file for this task: run qa_generation first")
    return run.files.get_text(PAIR_FILE_POINTER).strip()


@step_lambda("step_qa_themes")
def extract_themes(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        docs = load_table_docs(run)
        llm = get_llm_provider(run.settings)
        run.log.info("Extracting {themes} business themes from {tables} tables ({provider})",
                     themes=run.settings.theme_count, tables=len(docs), provider=llm.name)
        themes = qa.extract_themes(llm, docs, run.business_context, run.settings.theme_count)
        if not themes:
            raise StepFailed("no business theme could be extracted from the table documentation")
        run.files.delete_many(run.files.iter_names(THEME_PAIRS))
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
        docs = load_table_docs(run)
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
        run.files.put_text("metadata_detail.md", qa.render_metadata_detail_md(themes, load_table_docs(run)))
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
