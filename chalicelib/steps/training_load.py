"""training_load: DDL, documentation sections and Question-SQL pairs embedded into pgvector."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from chalicelib.errors import DatabaseConnectionError, FileNotFound
from chalicelib.pipeline import training
from chalicelib.pipeline.models import QAPair
from chalicelib.providers.factory import get_embedding_provider
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.concurrency import run_bounded
from chalicelib.steps.ddl_generation import DOC_READ_WORKERS, FILES_BUNDLE
from chalicelib.steps.qa_generation import current_pair_file
from chalicelib.steps.runtime import StepRun, ensure_not_cancelled, step_run

STEP = "training_load"
LOGGER = "TrainingDataLoader"


def read_task_files(run: StepRun, names: list[str], etags: dict[str, str]) -> dict[str, str]:
    """The texts of `names` as they are in S3 now. ddl_generation's FILES_BUNDLE holds the texts it wrote;
    a bundled text is used only when its MD5 is the ETag S3 lists for that file (so a file changed or
    rewritten since is read again), every other file is read from S3, DOC_READ_WORKERS at a time."""
    try:
        bundle = json.loads(run.files.get_text(FILES_BUNDLE))
    except FileNotFound:
        bundle = {}
    texts = {}
    for name in names:
        text = bundle.get(name)
        if text is not None and hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest() == etags[name]:
            texts[name] = text
    missing = [name for name in names if name not in texts]
    texts.update(zip(missing, run_bounded(run.files.get_text, missing, DOC_READ_WORKERS), strict=True))
    run.log.info(f"{len(names)} files: {len(names) - len(missing)} from the ddl_generation bundle (checked "
                 f"against their ETags), {len(missing)} read from S3")
    return texts


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
            run.log.warning(f"provenance: no database name recorded ({exc.message})")
    return training.Provenance(task_id=run.task_id, db_name=db_name, ddl_files=ddl_files,
                               documentation_files=documentation_files, pair_file=pair_file,
                               writers={"ddl": ddl_writer, "documentation": ddl_writer, "sql": qa_writer})


@step_lambda("step_training_load")
def load(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        etags = run.files.list_top_level_etags()
        ddl_names = sorted(n for n in etags if n.endswith(".ddl"))
        md_names = sorted(n for n in etags if n.endswith("_detail.md"))
        texts = read_task_files(run, ddl_names + md_names, etags)
        ddl = [texts[n] for n in ddl_names]
        sections = [(n, section) for n in md_names for section in training.split_markdown_sections(texts[n])]
        documentation = [section for _, section in sections]
        pair_file = current_pair_file(run)
        pairs = [QAPair.from_dict(item) for item in json.loads(run.files.get_text(pair_file))]
        embedder = get_embedding_provider(run.settings)
        run.log.info(
            f"Loading {len(ddl)} DDL, {len(documentation)} documentation sections and {len(pairs)} pairs "
            f"with {embedder.model_name} ({embedder.dimension}-d)"
        )
        counts = training.load_training_data(
            run.pgvector_url,
            embedder,
            ddl=ddl,
            documentation=documentation,
            pairs=pairs,
            batch_size=run.settings.embedding_batch_size,
            provenance=provenance(run, ddl_names, [n for n, _ in sections], pair_file),
            before_write=lambda: ensure_not_cancelled(run.tasks, run.task_id, event.get("execution_id")),
        )
        result = {**counts, "embedding_model": embedder.model_name, "embedding_dim": embedder.dimension}
        run.log.info(f"training_load completed: {json.dumps(counts, ensure_ascii=False)}")
        run.tasks.mark_step_completed(run.task_id, STEP, result)
        return {"loaded": {name: counts[name] for name in ("ddl", "documentation", "sql")}}
