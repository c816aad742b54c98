"""A task whose execution ended without the state machine recording it (an abort, a timeout, an error no
`Catch` can handle such as `States.DataLimitExceeded`): the task is failed with the cause, in one conditional
write that changes nothing unless the task is still in_progress with that very execution."""
from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import STEP_NAMES
from chalicelib.stores.task_items import conditional_failed, mask_secrets, to_dynamo
from chalicelib.stores.tasks import TaskStore, now_iso

MAX_CAUSE_CHARS = 2000
_TASK_ID_PREFIX = re.compile(r"^(task_\d{8}_\d{6}(?:_\d{1,4})?)_")


def lost_execution_message(status: str, error: str | None, cause: str | None) -> str:
    """`execution FAILED: States.DataLimitExceeded: The state/task … returned a result with a size exceeding …`"""
    parts = [f"execution {status}"] + [part for part in (error, (cause or "")[:MAX_CAUSE_CHARS]) if part]
    return ": ".join(parts)


def task_id_of_execution(name: str | None, execution_input: str | None) -> str | None:
    """The task an execution runs: its input's `task_id`, else the prefix of its name (the API names each
    execution `<task_id>_<mode>_exec_<stamp>_<suffix>`)."""
    try:
        task_id = (json.loads(execution_input) if execution_input else {}).get("task_id")
    except (ValueError, AttributeError):
        task_id = None
    if isinstance(task_id, str) and task_id:
        return task_id
    match = _TASK_ID_PREFIX.match(name or "")
    return match.group(1) if match else None


def fail_lost_execution(store: TaskStore, task_id: str, execution_arn: str, execution_name: str | None,
                        message: str) -> bool:
    """Mark the task failed with `message`, and its running steps too, if it is still in_progress and its
    current execution is this one (by ARN, or by name when the API had not recorded the ARN yet). Returns
    whether the task changed; a task that finished, was cancelled or runs another execution is left alone."""
    task = store.get_task(task_id)
    running = [step for step in STEP_NAMES if (task.get("step_status") or {}).get(step) == "running"]
    names = {"#status": "status", "#cs": "status"}
    values: dict[str, Any] = {":running": "in_progress", ":failed": "failed", ":err": mask_secrets(message),
                              ":now": now_iso(), ":arn": execution_arn, ":name": execution_name or execution_arn}
    sets = ["#status = :failed", "error_message = :err", "completed_at = :now", "updated_at = :now"]
    if isinstance(task.get("current_step"), dict) and task["current_step"]:
        sets.append("current_step.#cs = :failed")
    for i, step in enumerate(running):
        names[f"#s{i}"] = step
        sets += [f"step_status.#s{i} = :failed", f"steps.#s{i}.step_status = :failed",
                 f"steps.#s{i}.completed_at = :now", f"steps.#s{i}.error_message = :err"]
    expression = "SET " + ", ".join(sets)
    used = {name: value for name, value in names.items() if name in expression or name == "#status"}
    try:
        store.table.update_item(
            Key={"task_id": task_id},
            UpdateExpression=expression,
            ConditionExpression="#status = :running AND (execution.execution_arn = :arn OR "
                                "execution.execution_id = :name)",
            ExpressionAttributeNames=used,
            ExpressionAttributeValues=to_dynamo(values),
        )
    except ClientError as exc:
        if conditional_failed(exc):
            return False
        raise
    return True
