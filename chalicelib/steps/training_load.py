"""training_load: DDL, documentation sections and Question-SQL pairs embedded into pgvector."""
from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

from chalicelib.errors import DatabaseConnectionError
from chalicelib.pipeline import training
from chalicelib.pipeline.models import QAPair
from chalicelib.providers.factory import get_embedding_provider
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.concurrency import run_bounded
from chalicelib.steps.ddl_generation import DOC_READ_WORKERS, TABLE_DOCS
from chalicelib.steps.qa_generation import current_pair_file
from chalicelib.steps.runtime import StepRun, ensure_not_cancelled, step_run

STEP = "training_load"
LOGGER = "TrainingDataLoader"
FILES_PER_ROUND = 1000  # .ddl / _detail.md files read, split and embedded per round (their texts in memory)
BATCH_FILES_PER_READ = 32  # ddl_generation batch work files read side by side


def iter_task_texts(run: StepRun, names: list[str], etags: dict[str, str]) -> Iterator[dict[str, str]]:
    """The texts of `names` as they are in S3 now, FILES_PER_ROUND at a time (one round in memory). Each
    ddl_generation batch left the texts it wrote in its work file (work/tables/*.json); a text from there is used
    only when its MD5 is the ETag S3 lists for that file (so a file changed or rewritten since is read again);
    every other file is read from S3, DOC_READ_WORKERS at a time."""
    remaining = set(names)
    bundled = 0
    group: dict[str, str] = {}
    batch_files = list(run.files.iter_names(TABLE_DOCS))
    for start in range(0, len(batch_files), BATCH_FILES_PER_READ):
        for text in run_bounded(run.files.get_text, batch_files[start:start + BATCH_FILES_PER_READ],
                                DOC_READ_WORKERS):
            for name, body in json.loads(text).get("files", {}).items():
                if name in remaining and _md5(body) == etags.get(name):
                    group[name] = body
                    remaining.discard(name)
        if len(group) >= FILES_PER_ROUND:
            bundled += len(group)
            yield group
            group = {}
    bundled += len(group)
    if group:
        yield group
    missing = sorted(remaining)
    for start in range(0, len(missing), FILES_PER_ROUND):
        chunk = missing[start:start + FILES_PER_ROUND]
        yield dict(zip(chunk, run_bounded(run.files.get_text, chunk, DOC_READ_WORKERS), strict=True))
    run.log.info("{files} files: {bundled} from the ddl_generation bundle (checked against their ETags), {read} "
                 "read from S3", files=len(names), bundled=bundled, read=len(missing))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _add_counts(total: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """Counts of one round of load_training_data added to those of the earlier rounds."""
    if not total:
        return dict(counts)
    out = dict(counts)
    for key in ("ddl", "documentation", "sql", "skipped_existing", "skipped_same_document"):
        if key in counts:
            out[key] = total.get(key, 0) + counts[key]
    out["index_created"] = bool(total.get("index_created")) or bool(counts.get("index_created"))
    return out


def provenance(run: StepRun, ddl_files: list[str], documentation_files: list[str], pair_file: str
               ) -> training.Provenance:
    """What the loaded rows record about where they came from: the task, its database, the file of each row and
    the provider (and LLM model) that the generating step recorded in the task's llm_usage."""
    usage = run.task.get("llm_usage") or {}
    ddl_writer = training.describe_writer((usage.get("ddl_generation") or {}).get("provider"))
    qa_writer = training.describe_writer((usage.get("qa_generation") or {}).get("provider"))
    db_name = run.task.get("db_name")
    if not db_name:
        try:
            db_name = run.db_name
        except DatabaseConnectionError as exc:
            run.log.warning("provenance: no database name recorded ({error})", error=exc.message)
    return training.Provenance(task_id=run.task_id, db_name=db_name, ddl_files=ddl_files,
                               documentation_files=documentation_files, pair_file=pair_file,
                               writers={"ddl": ddl_writer, "documentation": ddl_writer, "sql": qa_writer})


@step_lambda("step_training_load")
def load(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        etags = run.files.list_top_level_etags()
        ddl_names = sorted(n for n in etags if n.endswith(".ddl"))
        md_names = sorted(n for n in etags if n.endswith("_detail.md"))
        pair_file = current_pair_file(run)
        pairs = [QAPair.from_dict(item) for item in json.loads(run.files.get_text(pair_file))]
        embedder = get_embedding_provider(run.settings)
        run.log.info("training load started", ddl_files=len(ddl_names), documentation_files=len(md_names),
                     pairs=len(pairs), embedding_model=embedder.model_name, dimension=embedder.dimension,
                     files_per_round=FILES_PER_ROUND)
        counts: dict[str, Any] = {}
        sections_total = 0
        rounds = iter_task_texts(run, ddl_names + md_names, etags)
        for texts in itertools.chain(rounds, [{}]):
            names = sorted(texts)
            ddl_round = [n for n in names if n.endswith(".ddl")]
            sections = [(n, section) for n in names if n.endswith("_detail.md")
                        for section in training.split_markdown_sections(texts[n])]
            sections_total += len(sections)
            round_pairs = pairs if not texts else []  # the pairs go with the last (empty) round, and the index
            counts = _add_counts(counts, training.load_training_data(
                run.pgvector_url,
                embedder,
                ddl=[texts[n] for n in ddl_round],
                documentation=[section for _, section in sections],
                pairs=round_pairs,
                batch_size=run.settings.embedding_batch_size,
                provenance=provenance(run, ddl_round, [n for n, _ in sections], pair_file),
                before_write=lambda: ensure_not_cancelled(run.tasks, run.task_id, event.get("execution_id")),
                create_index=not texts,  # once, after the last round: built over every row, not grown row by row
            ))
        run.log.info("documentation sections loaded", sections=sections_total, files=len(md_names))
        result = {**counts, "embedding_model": embedder.model_name, "embedding_dim": embedder.dimension}
        run.log.info("training_load completed: {counts}", counts=counts)
        run.tasks.mark_step_completed(run.task_id, STEP, result)
        return {"loaded": {name: counts[name] for name in ("ddl", "documentation", "sql")}}
