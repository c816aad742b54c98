"""EventBridge for the local stack: when an execution of moto's Step Functions ends, the "Step Functions
Execution Status Change" event AWS would emit is matched against the rules of infra/resources.json
(AWS::Events::Rule, the one source of the pattern and the target) and delivered to the target Lambda through
moto's Lambda Invoke, as EventBridge invokes it on AWS (asynchronously, the event as the payload).

    events = ExecutionEvents(rules_from_template(function_names, state_machine_arn), invoke)
    undo = watch_moto_executions(events.publish)      # moto's executions report their end to `events`
"""
from __future__ import annotations

import datetime
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.local.lambdas import ACCOUNT_ID, REGION
from infra.template import RESOURCES_PATH, STATE_MACHINE_RESOURCE, logical_id_for

logger = logging.getLogger(__name__)

# The Lambda functions the rules of infra/resources.json target (chalicelib/steps/reconcile.py registers it);
# the local stack creates them beside the step functions of the state machine.
EVENT_FUNCTION_NAMES = ("step_reconcile",)
DETAIL_TYPE = "Step Functions Execution Status Change"
FINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: Any  # moto.events.models.EventPattern
    functions: tuple[str, ...]


def rules_from_template(function_names: Sequence[str], state_machine_arn: str,
                        path: Path = RESOURCES_PATH) -> list[Rule]:
    """The AWS::Events::Rule resources of the template whose targets are Lambda functions of the stack: the
    pattern with `Ref` of the state machine resolved to the local ARN, the targets as function names."""
    from moto.events.models import EventPattern, EventPatternParser

    resources = json.loads(path.read_text(encoding="utf-8"))["Resources"]
    by_logical_id = {logical_id_for(name): name for name in function_names}
    rules = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Events::Rule":
            continue
        properties = resource["Properties"]
        raw = json.dumps(_resolve(properties["EventPattern"], state_machine_arn), ensure_ascii=False)
        targets = []
        for target in properties.get("Targets", []):
            arn = target.get("Arn")
            function = by_logical_id.get(arn["Fn::GetAtt"][0]) if isinstance(arn, dict) and "Fn::GetAtt" in arn \
                else None
            if function is None:
                raise ValueError(f"rule {logical_id}: target {target.get('Id')} is not a Lambda function of the "
                                 "local stack")
            targets.append(function)
        rules.append(Rule(logical_id, EventPattern(raw, EventPatternParser(raw).parse()), tuple(targets)))
    return rules


def _resolve(value: Any, state_machine_arn: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            if value["Ref"] != STATE_MACHINE_RESOURCE:
                raise ValueError(f"event pattern refers to {value['Ref']}: only the state machine resolves locally")
            return state_machine_arn
        return {key: _resolve(item, state_machine_arn) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, state_machine_arn) for item in value]
    return value


def status_change_event(described: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge event of an execution's status change, from its DescribeExecution answer."""

    def millis(moment: Any) -> int | None:
        return int(moment.timestamp() * 1000) if isinstance(moment, datetime.datetime) else None

    status = str(getattr(described.get("status"), "value", described.get("status")))
    detail = {
        "executionArn": described["executionArn"],
        "stateMachineArn": described["stateMachineArn"],
        "name": described.get("name"),
        "status": status,
        "startDate": millis(described.get("startDate")),
        "stopDate": millis(described.get("stopDate")),
        "input": described.get("input"),
        "output": described.get("output"),
        "error": described.get("error"),
        "cause": described.get("cause"),
    }
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": DETAIL_TYPE, "source": "aws.states",
        "account": ACCOUNT_ID, "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION, "resources": [described["executionArn"]], "detail": detail,
    }


class ExecutionEvents:
    """Matches each published event against the rules and invokes their targets, one event at a time in a
    thread of its own (EventBridge delivers asynchronously; the execution never waits for its target).
    A target that fails is logged with its error; nothing retries it (EventBridge would, for 24 h)."""

    def __init__(self, rules: Sequence[Rule], invoke: Callable[[str, dict[str, Any]], tuple[Any, str | None]]):
        self.rules = list(rules)
        self._invoke = invoke
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._deliver_all, name="local-eventbridge", daemon=True)
        self._thread.start()
        self.delivered: list[tuple[str, str]] = []  # (function, execution ARN), for tests and diagnostics

    def publish(self, described: dict[str, Any]) -> None:
        self._queue.put(status_change_event(described))

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every event published so far was delivered."""
        done = threading.Event()
        self._queue.put({"_drained": done})
        done.wait(timeout)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _deliver_all(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            if "_drained" in event:
                event["_drained"].set()
                continue
            for rule in self.rules:
                if rule.pattern.matches_event(event):
                    for function in rule.functions:
                        self._deliver(rule, function, event)

    def _deliver(self, rule: Rule, function: str, event: dict[str, Any]) -> None:
        arn = event["detail"]["executionArn"]
        try:
            answer, error = self._invoke(function, event)
        except Exception:
            logger.exception("event target %s of rule %s could not be invoked for %s", function, rule.name, arn)
            return
        if error:
            logger.error("event target %s of rule %s failed for %s: %s", function, rule.name, arn, answer)
        self.delivered.append((function, arn))


WORKER_START_SECONDS = 5.0  # how long a StopExecution waits for moto's worker thread to start


def watch_moto_executions(publish: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """moto's executions call `publish(DescribeExecution answer)` once when they end. StopExecution ends an
    execution at once as on AWS (moto kept it RUNNING until its running task returned) and keeps the error and
    cause it was given (moto dropped them); a StopExecution that arrives before moto's worker thread has built
    its environment waits for it (moto answered 500 there; AWS stops a just-started execution). Returns the undo."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
    from moto.stepfunctions.responses import StepFunctionResponse

    original_terminated, original_stop = BaseExecutionWorkerCommunication.terminated, Execution.stop
    original_stop_request = StepFunctionResponse.stop_execution
    if getattr(original_terminated, "_data_pipeline_events", False):
        raise RuntimeError("another LocalStack watches executions in this process")
    lock = threading.Lock()
    request = threading.local()  # the StopExecution request's error and cause, for Execution.stop

    def stop_request(self: Any) -> Any:
        request.details = (self._get_param("error"), self._get_param("cause"))
        try:
            return original_stop_request(self)
        finally:
            request.details = None

    def report(execution: Any) -> None:
        with lock:
            if getattr(execution, "_data_pipeline_reported", False):
                return
            execution._data_pipeline_reported = True
        try:
            publish(execution.to_describe_output())
        except Exception:
            logger.exception("could not publish the end of execution %s", execution.exec_arn)

    def terminated(self: Any) -> None:
        if getattr(self.execution, "_data_pipeline_reported", False):
            return  # stopped earlier: its status stays ABORTED, as StopExecution answered
        original_terminated(self)
        if self.execution.exec_status is not None and str(self.execution.exec_status.value) in FINAL_STATUSES:
            report(self.execution)

    def stop(self: Any, stop_date: datetime.datetime, error: str | None, cause: str | None) -> None:
        given_error, given_cause = getattr(request, "details", None) or (None, None)
        error, cause = error or given_error or None, cause or given_cause or None
        worker, deadline = self.exec_worker, time.monotonic() + WORKER_START_SECONDS
        while worker is not None and getattr(worker, "env", True) is None and time.monotonic() < deadline:
            time.sleep(0.005)  # the worker thread is starting: its environment is set at once
        original_stop(self, stop_date, error, cause)
        if self.exec_status == ExecutionStatus.RUNNING:
            self.exec_status = ExecutionStatus.ABORTED
            self.stop_date = stop_date
            self.error, self.cause = error, cause
            report(self)

    terminated._data_pipeline_events = True  # type: ignore[attr-defined]
    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]
    Execution.stop = stop  # type: ignore[method-assign]
    StepFunctionResponse.stop_execution = stop_request  # type: ignore[method-assign]

    def undo() -> None:
        BaseExecutionWorkerCommunication.terminated = original_terminated  # type: ignore[method-assign]
        Execution.stop = original_stop  # type: ignore[method-assign]
        StepFunctionResponse.stop_execution = original_stop_request  # type: ignore[method-assign]

    return undo
