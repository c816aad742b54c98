"""The target of the EventBridge rule on the state machine's "Execution Status Change" (FAILED, TIMED_OUT,
ABORTED; infra/resources.json `ExecutionEndedRule`): a task whose execution ended that way while the task still
says in_progress (an abort, a timeout, an error no Catch handles, such as States.DataLimitExceeded) is marked
failed with the cause, so that it never stays in_progress and can be executed again."""
from __future__ import annotations

from typing import Any

from chalicelib.steps.blueprint import step_lambda
from chalicelib.stores.files import FileStore
from chalicelib.stores.task_reconcile import fail_lost_execution, lost_execution_message, task_id_of_execution
from chalicelib.stores.tasks import TaskStore
from chalicelib.tasklog import TaskLogger, lambda_logger

RECONCILE_FUNCTION = "step_reconcile"
ENDED_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
RECONCILER = "ExecutionReconciler"


def reconcile_execution_end(detail: dict[str, Any], store: TaskStore | None = None) -> dict[str, Any]:
    """What the Lambda does with an event's `detail`: {task_id, changed, reason}."""
    status, arn = detail.get("status"), detail.get("executionArn")
    task_id = task_id_of_execution(detail.get("name"), detail.get("input"))
    if status not in ENDED_STATUSES or not arn or not task_id:
        lambda_logger().warning("execution event ignored", extra={"status": status, "execution_arn": arn,
                                                                   "task_id": task_id})
        return {"task_id": task_id, "changed": False, "reason": "not an ended execution of a task"}
    message = lost_execution_message(status, detail.get("error"), detail.get("cause"))
    changed = fail_lost_execution(store or TaskStore(), task_id, arn, detail.get("name"), message)
    if changed:
        with TaskLogger(task_id, logger_name=RECONCILER, files=FileStore()) as log:
            log.error("task marked failed, its execution ended: %s", message)
    lambda_logger().info("execution end reconciled", extra={"task_id": task_id, "status": status,
                                                            "execution_arn": arn, "changed": changed})
    return {"task_id": task_id, "changed": changed,
            "reason": message if changed else "the task no longer runs this execution"}


@step_lambda(RECONCILE_FUNCTION)
def reconcile(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return reconcile_execution_end(event.get("detail") or {})
