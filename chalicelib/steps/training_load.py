"""training_load: DDL, documentation sections and Question-SQL pairs embedded into pgvector."""
from __future__ import annotations

import json
from typing import Any

from chalicelib.pipeline import training
from chalicelib.pipeline.models import QAPair
from chalicelib.providers.embeddings import get_embedding_provider
from chalicelib.steps.blueprint import steps_bp
from chalicelib.steps.ddl_generation import DOC_READ_WORKERS, run_bounded
from chalicelib.steps.qa_generation import current_pair_file
from chalicelib.steps.runtime import step_run

STEP = "training_load"
LOGGER = "TrainingDataLoader"


@steps_bp.lambda_function(name="step_training_load")
def load(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        names = sorted(run.files.list_names())
        ddl_names = [n for n in names if "/" not in n and n.endswith(".ddl")]
        md_names = [n for n in names if "/" not in n and n.endswith("_detail.md")]
        texts = run_bounded(run.files.get_text, ddl_names + md_names, DOC_READ_WORKERS)  # in name order
        ddl = texts[: len(ddl_names)]
        documentation = [section for text in texts[len(ddl_names):]
                         for section in training.split_markdown_sections(text)]
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
        )
        result = {**counts, "embedding_model": embedder.model_name, "embedding_dim": embedder.dimension}
        run.log.info(f"training_load completed: {json.dumps(counts, ensure_ascii=False)}")
        run.tasks.mark_step_completed(run.task_id, STEP, result)
        return {"loaded": {name: counts[name] for name in ("ddl", "documentation", "sql")}}
