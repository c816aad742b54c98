"""The API's view of a task item: no secrets, plain numbers, steps as an ordered list."""
from __future__ import annotations

from typing import Any

from chalicelib.config import STEP_NAMES
from chalicelib.stores.task_items import from_dynamo, mask_secrets


def public_task_view(item: dict[str, Any]) -> dict[str, Any]:
    """The API view of a task: no secrets, plain numbers, steps as an ordered list."""
    item = from_dynamo(item)
    steps_map = item.get("steps") or {}
    steps = []
    for step in STEP_NAMES:
        record = steps_map.get(step) or {}
        steps.append({
            "step_name": step,
            "step_status": (item.get("step_status") or {}).get(step, record.get("step_status", "pending")),
            "started_at": record.get("started_at"),
            "completed_at": record.get("completed_at"),
            "error_message": record.get("error_message"),
        })
    parameters = dict(item.get("parameters") or {})
    if item.get("db_connection"):
        parameters["db_connection"] = item["db_connection"]
    table_list = item.get("table_list") or {}
    execution = item.get("execution") or {}
    public = {
        "task_id": item["task_id"],
        "task_name": item.get("task_name"),
        "status": item.get("status"),
        "step_status": {s: (item.get("step_status") or {}).get(s, "pending") for s in STEP_NAMES},
        "created_at": item.get("created_at"),
        "started_at": item.get("started_at"),
        "completed_at": item.get("completed_at"),
        "updated_at": item.get("updated_at"),
        "created_by": item.get("created_by"),
        "db_name": item.get("db_name"),
        "business_context": item.get("business_context"),
        "parameters": parameters,
        "current_step": item.get("current_step") or None,
        "total_steps": len(STEP_NAMES),
        "steps": steps,
        "progress": {k: _shown(v) for k, v in (item.get("progress") or {}).items() if v},
        "results": item.get("results") or {},
        "llm_usage": item.get("llm_usage") or {},
        "error_message": item.get("error_message"),
        "has_table_list": bool(table_list),
        "table_count": table_list.get("table_count", 0),
        "execution": {k: execution.get(k) for k in ("execution_id", "execution_mode", "step_name")}
        if execution else None,
    }
    return mask_secrets(public)


def _shown(progress: Any) -> Any:
    """A step's progress without its bookkeeping keys (`_…`: counts of kept records, ids of counted chunks)."""
    if not isinstance(progress, dict):
        return progress
    return {k: v for k, v in progress.items() if not str(k).startswith("_")}
