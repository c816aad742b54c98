"""Start and end of an execution: plan the run, mark it finished, or record why it failed."""
from __future__ import annotations

from typing import Any

from chalicelib.config import STEP_NAMES
from chalicelib.steps.blueprint import step_lambda
from chalicelib.steps.runtime import describe_failure, step_run

ORCHESTRATOR = "SchemaWorkflowOrchestrator"


def state_machine_plan(execution: dict[str, Any], settings: Any) -> dict[str, Any]:
    """The Choice flags the state machine reads, from the plan the API stored when it claimed the task."""
    plan = execution.get("plan") or {}
    steps = plan.get("steps") or []
    truncate = bool(plan.get("truncate_vector_tables"))
    return {
        "execution_mode": execution.get("execution_mode") or "complete",
        "backup": truncate or bool(plan.get("backup_vector_tables")),
        "truncate": truncate,
        "run": {name: name in steps for name in STEP_NAMES},
        "skipped": [name for name in plan.get("skipped") or [] if name in STEP_NAMES],
        "ddl_max_concurrency": settings.ddl_max_concurrency,
        "qa_max_concurrency": settings.qa_max_concurrency,
    }


@step_lambda("step_prepare")
def prepare(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, "prepare", logger_name=ORCHESTRATOR) as run:
        plan = state_machine_plan(run.task.get("execution") or {}, run.settings)
        for name in plan["skipped"]:
            run.tasks.mark_step_skipped(run.task_id, name)
        steps = [name for name, runs in plan["run"].items() if runs]
        run.log.info("Execution plan: mode={mode}, steps={steps}, backup_vector_tables={backup}, "
                     "truncate_vector_tables={truncate}", mode=plan["execution_mode"], steps=", ".join(steps),
                     backup=plan["backup"], truncate=plan["truncate"])
        return plan


@step_lambda("step_finalize")
def finalize(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, "finalize", logger_name=ORCHESTRATOR) as run:
        step_status = run.task.get("step_status") or {}
        finished = all(step_status.get(name) in ("completed", "skipped") for name in STEP_NAMES)
        status = "completed" if finished else "partial_completed"
        run.tasks.finish_task(run.task_id, status)
        run.log.info("Execution finished: task status {status}", status=status)
        return {"status": status}


@step_lambda("step_handle_failure")
def handle_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, "handle_failure", logger_name=ORCHESTRATOR) as run:
        name, message = describe_failure(event.get("error"))
        error_message = f"{name}: {message}"
        current = (run.task.get("current_step") or {}).get("step")
        # Only the four pipeline steps have a step status; a failed vector backup/truncate is recorded by the
        # task's status and error message (marking it as a step would be refused and leave the task running).
        if current in STEP_NAMES:
            run.tasks.mark_step_failed(run.task_id, current, error_message)
        run.tasks.finish_task(run.task_id, "failed", error_message)
        run.log.error("Execution failed in {step}: {error}", step=current or "preparation", error=error_message)
        return {"failed_step": current, "error": error_message}
