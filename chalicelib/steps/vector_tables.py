"""Before the steps: back up the vector tables to the task's files, then (optionally) empty the embeddings."""
from __future__ import annotations

from typing import Any

from chalicelib.errors import VectorTruncateFailed
from chalicelib.pipeline import vectors
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.runtime import step_run

LOGGER = "VectorTableManager"


@step_lambda("step_vector_backup")
def backup(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, "vector_backup", logger_name=LOGGER) as run:
        run.tasks.set_current_step(run.task_id, "vector_backup", run.execution_id)
        run.log.info("Backing up langchain_pg_collection and langchain_pg_embedding")
        report = vectors.backup_vector_tables(run.pgvector_url, run.files, run.run_ts)
        run.tasks.set_result(run.task_id, "vector_backup", report)
        counts = report["counts"]
        run.log.info("Vector backup done: {counts}", counts=counts)
        return {"counts": counts, "files": report.get("files", [])}


@step_lambda("step_vector_truncate")
def truncate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, "vector_truncate", logger_name=LOGGER) as run:
        run.tasks.set_current_step(run.task_id, "vector_truncate", run.execution_id)
        backup_result = (event.get("results") or {}).get("vector_backup")
        if not backup_result or "counts" not in backup_result:
            # The state machine always backs up first; without a verified backup nothing is emptied.
            raise VectorTruncateFailed("no verified backup in this execution: langchain_pg_embedding left untouched")
        removed = vectors.truncate_embeddings(run.pgvector_url, backup_result["counts"])
        run.tasks.set_result(run.task_id, "vector_truncate", {"rows_removed": removed})
        run.log.info("langchain_pg_embedding truncated: {removed} rows removed (backed up first)", removed=removed)
        return {"rows_removed": removed}
