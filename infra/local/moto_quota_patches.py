"""Patches of moto for the AWS quotas it does not enforce, or not as AWS fails: Step Functions payloads and
history events, DynamoDB item size (their limits and switches: infra/local/quotas.py). Each returns a function
undoing it; applying one twice does nothing the second time."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_STATE_SIZE_CHECKERS = (
    "moto.stepfunctions.parser.asl.component.state.state",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service",
)
_ITERATION_WORKER = "moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iteration_worker"
HISTORY_LIMIT_ERROR = "States.Runtime"
_EXECUTION_END_EVENTS = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut")


def enforce_step_functions_quotas() -> Callable[[], None]:
    """Step Functions as AWS runs it: a state input/output above the payload quota fails the execution with
    `States.DataLimitExceeded`, which a `States.ALL` catcher or retrier does not match (only a rule naming it
    does); an execution whose history reaches the event quota fails. moto checks sizes against a fixed 256 KB
    and lets `States.ALL` catch the error (so the failure handler ran), and counts no events. Call the returned
    function to undo."""
    import importlib

    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    from infra.local.quotas import limit

    if getattr(ErrorEqualsDecl._eval_body, "_data_pipeline_quota", False):
        return lambda: None
    data_limit = StatesErrorNameType.StatesStatesDataLimitExceeded

    def is_within_size_quota(value: Any) -> bool:
        maximum = limit("state_payload")
        if maximum is None:
            return True
        text = value if isinstance(value, str) else to_json_str(value)
        return len(text.encode("utf-8")) <= maximum

    def error_equals(self: Any, env: Any) -> None:
        error_name = env.stack[-1]
        terminal = isinstance(error_name, StatesErrorName) and error_name.typ == data_limit
        if terminal and limit("state_payload") is not None and \
                not any(name.error_name == data_limit.to_name() for name in self.error_names):
            env.stack.pop()
            env.stack.append(False)  # States.ALL / States.TaskFailed do not match a terminal error
            return
        original_error_equals(self, env)

    def iteration_error_name(error_name: str) -> Any:
        # moto names a Map iteration's failure with CustomErrorName, which refuses "States." names (a
        # ValueError that turned the failure into a caught States.Runtime): the iteration fails with its error.
        if error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name=error_name)

    def evaluation_environment(self: Any) -> Any:
        env = original_environment(self)
        env.event_manager._data_pipeline_env = env  # the execution the history limit fails
        return env

    def add_event(self: Any, context: Any, event_type: Any, *args: Any, **kwargs: Any) -> int:
        event_id = original_add_event(self, context, event_type, *args, **kwargs)
        maximum = limit("history_events")
        env = getattr(self, "_data_pipeline_env", None)
        if maximum is not None and env is not None and event_id >= maximum and env.is_running() and \
                str(getattr(event_type, "value", event_type)) not in _EXECUTION_END_EVENTS:
            # AWS: once the history is full the execution fails, unless that last event ended it.
            env._data_pipeline_error = {
                "error": HISTORY_LIMIT_ERROR,
                "cause": f"The execution reached the maximum number of history events ({maximum}).",
            }
            env.set_error(env._data_pipeline_error)
        return event_id

    def set_error(self: Any, error: Any) -> None:
        # The states still finishing after the history limit report their own errors; the limit's stays.
        original_set_error(self, getattr(self, "_data_pipeline_error", None) or error)

    modules = [importlib.import_module(name) for name in _STATE_SIZE_CHECKERS]
    iteration_worker = importlib.import_module(_ITERATION_WORKER)
    saved_checkers = [module.is_within_size_quota for module in modules]
    original_error_equals = ErrorEqualsDecl._eval_body
    original_environment = ExecutionWorker._get_evaluation_environment
    original_add_event = EventManager.add_event
    original_set_error = Environment.set_error
    for module in modules:
        module.is_within_size_quota = is_within_size_quota
    iteration_worker.CustomErrorName = iteration_error_name
    error_equals._data_pipeline_quota = True  # type: ignore[attr-defined]
    ErrorEqualsDecl._eval_body = error_equals  # type: ignore[method-assign]
    ExecutionWorker._get_evaluation_environment = evaluation_environment  # type: ignore[method-assign]
    EventManager.add_event = add_event  # type: ignore[method-assign]
    Environment.set_error = set_error  # type: ignore[method-assign]

    def undo() -> None:
        for module, checker in zip(modules, saved_checkers, strict=True):
            module.is_within_size_quota = checker
        iteration_worker.CustomErrorName = CustomErrorName
        ErrorEqualsDecl._eval_body = original_error_equals  # type: ignore[method-assign]
        ExecutionWorker._get_evaluation_environment = original_environment  # type: ignore[method-assign]
        EventManager.add_event = original_add_event  # type: ignore[method-assign]
        Environment.set_error = original_set_error  # type: ignore[method-assign]

    return undo


class _FirstDeepcopy:
    """Stands in for the `copy` module in moto's DynamoDB models: inside `first_copy()` the first deepcopy made
    in this thread is kept (the list it yields holds it)."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._local = threading.local()

    def deepcopy(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._module.deepcopy(value, *args, **kwargs)
        kept = getattr(self._local, "kept", None)
        if kept is not None and not kept:
            kept.append(result)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    @contextmanager
    def first_copy(self) -> Iterator[list[Any]]:
        self._local.kept = kept = []
        try:
            yield kept
        finally:
            self._local.kept = None


def enforce_dynamodb_item_size() -> Callable[[], None]:
    """DynamoDB refuses an item above 400 KB (attribute names plus values) with a ValidationException, on
    PutItem and on an UpdateItem whose result would be larger (the item is left as it was). moto checks only
    top-level attributes against its own figure, so nested updates (`SET steps.#s.result = :r`) grew items
    without bound. Call the returned function to undo."""
    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.exceptions import ItemSizeTooLarge, ItemSizeToUpdateTooLarge
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType

    from infra.local.quotas import limit

    if getattr(DynamoDBBackend.update_item, "_data_pipeline_quota", False):
        return lambda: None
    original_put, original_update = DynamoDBBackend.put_item, DynamoDBBackend.update_item
    original_copy_module = dynamodb_models.copy
    recorder = _FirstDeepcopy(original_copy_module)

    def attrs_size(attrs: dict[str, Any]) -> int:
        return sum(len(name.encode("utf-8")) + DynamoType(value).size() for name, value in attrs.items())

    def put_item(self: Any, table_name: str, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        maximum = limit("dynamodb_item")
        if maximum is not None and attrs_size(item_attrs) > maximum:
            raise ItemSizeTooLarge()
        return original_put(self, table_name, item_attrs, *args, **kwargs)

    def update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        maximum = limit("dynamodb_item")
        table = self.get_table(table_name)
        if maximum is None or table.hash_key_attr not in key:  # moto answers a malformed key itself
            return original_update(self, table_name, key, *args, **kwargs)
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
        existed = table.get_item(hash_key, range_key) is not None
        # moto updates the stored item in place after copying it (`orig_item`): that copy is the undo.
        with recorder.first_copy() as before:
            item = original_update(self, table_name, key, *args, **kwargs)
        if item.size() <= maximum:
            return item
        items = table.items[hash_key] if range_key is not None else table.items
        slot = range_key if range_key is not None else hash_key
        if not existed:
            items.pop(slot, None)
        elif before:
            items[slot] = before[0]
        else:  # moto copies every item it updates; without that copy the update cannot be undone
            raise RuntimeError("moto made no copy of the item before updating it: cannot undo an oversize update")
        raise ItemSizeToUpdateTooLarge()

    update_item._data_pipeline_quota = True  # type: ignore[attr-defined]
    DynamoDBBackend.put_item = put_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    dynamodb_models.copy = recorder  # type: ignore[assignment]

    def undo() -> None:
        DynamoDBBackend.put_item = original_put  # type: ignore[method-assign]
        DynamoDBBackend.update_item = original_update  # type: ignore[method-assign]
        dynamodb_models.copy = original_copy_module

    return undo
