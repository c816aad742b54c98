"""Task and step status in DynamoDB: one item per task, read through GSIs (never a Scan).

The item keeps the secret `db_connection` sealed with KMS (task_items.py); `get_task` opens it again, and
api/task_view.py makes the only view the API returns and masks it.
Encoding and masking: task_items.py; progress writes of fan-out steps: task_progress.py.
Nested maps (`step_status`, `steps`, `progress`, `llm_usage`, `results`) are updated by path so concurrent
Map iterations of one step never overwrite each other.
"""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws import get_dynamodb
from chalicelib.config import STEP_NAMES, get_settings
from chalicelib.errors import TaskAlreadyRunning, TaskNotFound
from chalicelib.stores.task_items import (
    SEALED_FIELD,
    conditional_failed,
    from_dynamo,
    mask_secrets,
    open_task_item,
    seal_task_item,
    step_key,
    to_dynamo,
)
from chalicelib.stores.task_listing import COUNTER_KEY, ENTITY, GSI_BY_CREATED, GSI_BY_STATUS, TaskListing
from chalicelib.stores.task_progress import (
    COUNTERS,
    TaskProgressWrites,
    merge_counts,
    step_count_keys,
    sum_counters,
)

TASK_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled", "partial_completed")
FINAL_STATUSES = ("completed", "partial_completed", "failed", "cancelled")
STEP_STATUSES = ("pending", "running", "completed", "failed", "skipped")
_TASK_ID = re.compile(r"^task_\d{8}_\d{6}(_\d{1,4})?$")
_MAX_ID_SUFFIX = 1000

TABLE_DEFINITION: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "task_id", "KeyType": "HASH"}],
    "AttributeDefinitions": [
        {"AttributeName": "task_id", "AttributeType": "S"},
        {"AttributeName": "entity", "AttributeType": "S"},
        {"AttributeName": "status", "AttributeType": "S"},
        {"AttributeName": "created_sort", "AttributeType": "S"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": GSI_BY_CREATED,
            "KeySchema": [
                {"AttributeName": "entity", "KeyType": "HASH"},
                {"AttributeName": "created_sort", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {
            "IndexName": GSI_BY_STATUS,
            "KeySchema": [
                {"AttributeName": "status", "KeyType": "HASH"},
                {"AttributeName": "created_sort", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def create_table(dynamodb_resource: Any, name: str) -> Any:
    """Create the task table (local stack and tests) and wait until it exists."""
    table = dynamodb_resource.create_table(TableName=name, **TABLE_DEFINITION)
    table.wait_until_exists()
    return table


def now_iso() -> str:
    """UTC now as `2025-06-27T14:30:52` (no timezone suffix, as the API shows it)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def is_task_id(value: str) -> bool:
    return bool(_TASK_ID.match(value or ""))


def _fresh_step() -> dict[str, Any]:
    return {"step_status": "pending", "started_at": None, "completed_at": None, "error_message": None,
            "result": None}


# What the step Lambdas read of their task (chalicelib/steps: StepRun, lifecycle, training_load).
STEP_FIELDS = ("task_id", "status", "execution", "step_status", "current_step", "parameters", "db_connection",
               SEALED_FIELD, "db_name", "started_at", "created_at", "llm_usage")


class TaskStore(TaskListing, TaskProgressWrites):
    """DynamoDB adapter for task items. Give it a table (tests) or let it build one from the settings."""

    def __init__(self, table: Any = None):
        self._table = table

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = get_dynamodb().Table(get_settings().table_name)
        return self._table

    # ---- creation and reads -------------------------------------------------------------------------

    def create_task(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a new pending task; allocates `task_YYYYMMDD_HHMMSS` (+ `_2`, `_3`… when taken)."""
        moment = datetime.now(UTC)
        created_at = moment.strftime("%Y-%m-%dT%H:%M:%S")
        base = "task_" + moment.strftime("%Y%m%d_%H%M%S")
        item = {
            **fields,
            "entity": ENTITY,
            "status": "pending",
            "created_at": created_at,
            "updated_at": created_at,
            "started_at": None,
            "completed_at": None,
            "error_message": None,
            "task_name_lower": (fields.get("task_name") or "").lower(),
            "step_status": {step: "pending" for step in STEP_NAMES},
            "steps": {step: _fresh_step() for step in STEP_NAMES},
            "progress": {step: {} for step in STEP_NAMES},
            "llm_usage": {},
            "results": {},
            "current_step": {},
            "execution": {},
        }
        for attempt in range(1, _MAX_ID_SUFFIX + 1):
            task_id = base if attempt == 1 else f"{base}_{attempt}"
            item["task_id"] = task_id
            item["created_sort"] = f"{created_at}#{task_id}"
            try:
                self._put_new_task(item)
                return from_dynamo(dict(item))
            except ClientError as exc:
                if not conditional_failed(exc):
                    raise
        raise RuntimeError(f"could not allocate a task id for {base}")

    def _put_new_task(self, item: dict[str, Any]) -> None:
        """The task item (ConditionalCheckFailed when the id is taken), then +1 on the counter item.

        Two writes rather than TransactWriteItems: moto's transactions snapshot and restore the whole table,
        which would undo concurrent writes on the local stack. A crash between the two leaves the total one
        short; nothing else reads the counter."""
        self.table.put_item(Item=to_dynamo(seal_task_item(item)), ConditionExpression="attribute_not_exists(task_id)")
        self.table.update_item(Key={"task_id": COUNTER_KEY}, UpdateExpression="ADD tasks_total :one",
                               ExpressionAttributeValues={":one": 1})

    def get_task(self, task_id: str) -> dict[str, Any]:
        """The raw item (including the secret db_connection) with each step's counters summed over its counts item
        and shards (task_progress.py); TaskNotFound when absent. A GetItem and a BatchGetItem of the counters,
        consistent."""
        item = self._read(task_id)
        keys = {step: step_count_keys(task_id, step) for step in STEP_NAMES}
        # Only the counters: the shards also hold the re-delivery marks, one per batch.
        found = self._batch_read([key for step_keys in keys.values() for key in step_keys], ("task_id", *COUNTERS))
        counts = {step: sum_counters([found[key] for key in step_keys if key in found])
                  for step, step_keys in keys.items() if any(key in found for key in step_keys)}
        return open_task_item(merge_counts(item, counts))

    def _batch_read(self, keys: list[str], fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """{key: decoded item, only `fields`} of the items that exist among `keys` (at most 100), read
        consistently; the keys DynamoDB leaves unprocessed (throttling) are asked for again."""
        name = self.table.name
        names = {f"#f{i}": field for i, field in enumerate(fields)}
        # The resource's client: plain values in and out (boto3 converts DynamoDB's typed form), as for the table.
        request = {name: {"Keys": [{"task_id": key} for key in keys], "ConsistentRead": True,
                          "ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}}
        found: dict[str, dict[str, Any]] = {}
        for _attempt in range(10):
            answer = self.table.meta.client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(name, []):
                decoded = from_dynamo(item)
                found[decoded["task_id"]] = decoded
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
            time.sleep(0.05 * (_attempt + 1))
        raise RuntimeError(f"DynamoDB left {len(request[name]['Keys'])} keys of a task read unprocessed")

    def get_task_for_step(self, task_id: str) -> dict[str, Any]:
        """The attributes a step Lambda reads of its task (STEP_FIELDS, db_connection opened): not the per-table
        progress, step results and table list, which grow with the tables and which every invocation of every
        step (a thousand DDL batches at 10,000 tables) would otherwise read, send and parse."""
        return open_task_item(self._read(task_id, STEP_FIELDS))

    def get_run_state(self, task_id: str) -> dict[str, Any]:
        """Only what tells whether a step may still write (`status`, `execution`): a step checks it before each
        write, and the whole item (per-table progress included) would be read, sent and parsed every time."""
        return self._read(task_id, ("status", "execution"))

    def _read(self, task_id: str, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The item (only `fields` when given), decoded, its db_connection still sealed; TaskNotFound when absent."""
        if not is_task_id(task_id):
            raise TaskNotFound(f"task {task_id!r} not found")
        projection: dict[str, Any] = {}
        if fields:
            names = {f"#f{i}": name for i, name in enumerate(fields)}
            projection = {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
        found = self.table.get_item(Key={"task_id": task_id}, ConsistentRead=True, **projection).get("Item")
        if not found:
            raise TaskNotFound(f"task {task_id} not found")
        return from_dynamo(found)

    # ---- table list and executions ------------------------------------------------------------------

    def set_table_list(self, task_id: str, info: dict[str, Any]) -> None:
        """Record the uploaded table list (file name, size, path, count, tables, uploaded_at)."""
        self._update(task_id, "SET table_list = :info, updated_at = :now", {":info": info})

    def set_fields(self, task_id: str, fields: dict[str, Any]) -> None:
        """Set top-level attributes (e.g. business_context given with a table list)."""
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":f{i}": value for i, value in enumerate(fields.values())}
        sets = ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
        self._update(task_id, f"SET {sets}, updated_at = :now", values, names)

    def claim_execution(self, task_id: str, execution_mode: str, step_name: str | None, plan: dict[str, Any],
                        *, execution_id: str | None = None) -> dict[str, Any]:
        """Mark the task in_progress unless it already is (conditional write: one of two racing calls wins).

        `plan` = {"steps": [...to run...], "skipped": [...], "backup_vector_tables", "truncate_vector_tables"}.
        Steps to run are reset to pending; the others keep their state.
        """
        now = now_iso()
        names = {"#status": "status"}
        values: dict[str, Any] = {
            ":running": "in_progress",
            ":now": now,
            ":pending": "pending",
            ":empty": {},
            ":current": {"execution_id": execution_id, "step": (plan.get("steps") or [step_name])[0],
                         "status": "pending", "started_at": now},
            ":execution": {"execution_id": execution_id, "execution_mode": execution_mode,
                           "step_name": step_name, "plan": plan, "execution_arn": None, "claimed_at": now},
        }
        sets = ["#status = :running", "started_at = :now", "updated_at = :now", "current_step = :current",
                "execution = :execution"]
        for i, step in enumerate(plan.get("steps", [])):
            names[f"#s{i}"] = step
            values[f":fresh{i}"] = _fresh_step()
            sets += [f"step_status.#s{i} = :pending", f"steps.#s{i} = :fresh{i}", f"progress.#s{i} = :empty"]
        try:
            result = self.table.update_item(
                Key={"task_id": task_id},
                UpdateExpression="SET " + ", ".join(sets) + " REMOVE completed_at, error_message",
                ConditionExpression="attribute_exists(task_id) AND #status <> :running",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_dynamo(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            self.get_task(task_id)  # TaskNotFound when it does not exist
            raise TaskAlreadyRunning(f"task {task_id} is already running") from None
        self.reset_counts(task_id, list(plan.get("steps", [])))
        return from_dynamo(result["Attributes"])

    def set_execution(self, task_id: str, execution_arn: str, execution_id: str) -> None:
        self._update(task_id, "SET execution.execution_arn = :arn, execution.execution_id = :eid, updated_at = :now",
                     {":arn": execution_arn, ":eid": execution_id})

    def release_claim(self, task_id: str, error_message: str) -> None:
        """StartExecution failed after a successful claim: the task is failed with the reason, not left running."""
        self._update(task_id, "SET #status = :failed, error_message = :err, completed_at = :now, updated_at = :now, "
                     "current_step.#cs = :failed",
                     {":failed": "failed", ":err": error_message}, {"#status": "status", "#cs": "status"})

    # ---- step transitions (called by the step Lambdas) ----------------------------------------------

    def mark_step_started(self, task_id: str, step: str, execution_id: str | None) -> None:
        now = now_iso()
        self._update(
            task_id,
            "SET step_status.#s = :running, steps.#s.step_status = :running, steps.#s.started_at = :now, "
            "steps.#s.completed_at = :none, steps.#s.error_message = :none, current_step = :current, "
            "updated_at = :now",
            {":running": "running", ":none": None,
             ":current": {"execution_id": execution_id, "step": step, "status": "running", "started_at": now}},
            {"#s": step_key(step)}, now=now,
        )

    def set_current_step(self, task_id: str, name: str, execution_id: str | None) -> None:
        """Show a pre-step (vector backup/truncate) as the current step; it has no entry in step_status."""
        now = now_iso()
        self._update(task_id, "SET current_step = :current, updated_at = :now",
                     {":current": {"execution_id": execution_id, "step": name, "status": "running",
                                   "started_at": now}}, now=now)

    def set_result(self, task_id: str, name: str, result: dict[str, Any]) -> None:
        """Result of a pre-step (vector_backup, vector_truncate) under results.{name}."""
        self._update(task_id, "SET results.#n = :result, updated_at = :now", {":result": result}, {"#n": name})

    def mark_step_completed(self, task_id: str, step: str, result: dict[str, Any],
                            llm_usage: dict[str, Any] | None = None) -> None:
        expr = ("SET step_status.#s = :done, steps.#s.step_status = :done, steps.#s.completed_at = :now, "
                "steps.#s.#r = :result, results.#s = :result, current_step.#cs = :done, updated_at = :now")
        values: dict[str, Any] = {":done": "completed", ":result": result}
        if llm_usage is not None:
            expr += ", llm_usage.#s = :usage"
            values[":usage"] = llm_usage
        self._update(task_id, expr, values, {"#s": step_key(step), "#r": "result", "#cs": "status"})

    def mark_step_failed(self, task_id: str, step: str, error_message: str) -> None:
        self._update(
            task_id,
            "SET step_status.#s = :failed, steps.#s.step_status = :failed, steps.#s.completed_at = :now, "
            "steps.#s.error_message = :err, current_step.#cs = :failed, updated_at = :now",
            {":failed": "failed", ":err": mask_secrets(error_message)}, {"#s": step_key(step), "#cs": "status"},
        )

    def mark_step_skipped(self, task_id: str, step: str) -> None:
        self._update(task_id, "SET step_status.#s = :skipped, steps.#s.step_status = :skipped, updated_at = :now",
                     {":skipped": "skipped"}, {"#s": step_key(step)})

    def finish_task(self, task_id: str, status: str, error_message: str | None = None) -> bool:
        """Final status. A cancelled task stays cancelled (a late step cannot overwrite it); returns False then."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"not a final task status: {status}")
        values: dict[str, Any] = {":st": status, ":err": mask_secrets(error_message) if error_message else None,
                                  ":cancelled": "cancelled"}
        condition = "attribute_exists(task_id)"
        if status != "cancelled":
            condition += " AND #status <> :cancelled"
        try:
            self._update(task_id, "SET #status = :st, completed_at = :now, error_message = :err, updated_at = :now",
                         values, {"#status": "status"}, condition=condition)
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            self.get_task(task_id)
            return False
        return True

    # ---- helpers ------------------------------------------------------------------------------------

    def _update(self, task_id: str, expression: str, values: dict[str, Any], names: dict[str, str] | None = None,
                *, now: str | None = None, touch: bool = True,
                condition: str | None = "attribute_exists(task_id)") -> None:
        """An UpdateItem of the item `task_id` (a task, or one of its counts items); `condition` None: none."""
        values = dict(values)
        if touch or ":now" in expression:
            values[":now"] = now or now_iso()
        kwargs: dict[str, Any] = {
            "Key": {"task_id": task_id},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": to_dynamo(values),
        }
        if condition is not None:
            kwargs["ConditionExpression"] = condition
        # DynamoDB refuses placeholders the expressions do not use: callers may pass a superset.
        text = expression + " " + (condition or "")
        used_names = set(re.findall(r"#\w+", text))
        if names and used_names:
            kwargs["ExpressionAttributeNames"] = {k: v for k, v in names.items() if k in used_names}
        used = set(re.findall(r":\w+", text))
        kwargs["ExpressionAttributeValues"] = {k: v for k, v in kwargs["ExpressionAttributeValues"].items()
                                               if k in used}
        if not kwargs["ExpressionAttributeValues"]:  # a REMOVE: DynamoDB refuses an empty map
            del kwargs["ExpressionAttributeValues"]
        try:
            self.table.update_item(**kwargs)
        except ClientError as exc:
            if conditional_failed(exc) and condition == "attribute_exists(task_id)":
                raise TaskNotFound(f"task {task_id} not found") from None
            raise

    def _delete_items(self, keys: list[str]) -> None:
        """Delete the items `keys` (absent ones are no error), 25 per BatchWriteItem; what DynamoDB leaves
        unprocessed (throttling) is sent again."""
        name = self.table.name
        for start in range(0, len(keys), 25):
            request = {name: [{"DeleteRequest": {"Key": {"task_id": key}}} for key in keys[start:start + 25]]}
            for _attempt in range(10):
                request = self.table.meta.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(0.05 * (_attempt + 1))
            else:
                raise RuntimeError(f"DynamoDB left {len(request[name])} deletes of a task's counts unprocessed")
