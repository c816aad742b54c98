"""Stopping a task's Step Functions execution honestly: a task is reported cancelled only when its execution was
stopped or had already ended."""
from __future__ import annotations

import logging
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import TaskCancelFailed

logger = logging.getLogger("data_pipeline.api")

# StopExecution's answer for an execution that no longer runs (AWS keeps ended executions for 90 days; moto
# answers this for an ended one).
_ENDED = "ExecutionDoesNotExist"


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def _cause(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        code, message = _error_code(exc), str(exc.response.get("Error", {}).get("Message") or "")
        xml = re.search(r"<Code>([^<]*)</Code>\s*<Message>([^<]*)</Message>", message)
        if xml:  # an XML error body botocore did not parse (its status then stands in for the code)
            code, message = xml.groups()
        return f"{code}: {message[:200]}" if message else code
    return type(exc).__name__


def _execution_status(sfn: Any, arn: str) -> str:
    """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED …, or `ended` when Step Functions no longer knows it."""
    try:
        return str(sfn.describe_execution(executionArn=arn)["status"])
    except ClientError as exc:
        if _error_code(exc) == _ENDED:
            return "ended"
        raise


def stop_execution(sfn: Any, arn: str) -> str:
    """Stop the execution; what happened (`stopped`, or `had already ended (…)`) when the task may be marked
    cancelled. Any other outcome raises TaskCancelFailed naming the cause: the execution may still run."""
    name = arn.rsplit(":", 1)[-1]
    try:
        sfn.stop_execution(executionArn=arn, error="Cancelled", cause="cancelled through the API")
        return "stopped"
    except (ClientError, BotoCoreError) as exc:
        stop_error = exc
    if _error_code(stop_error) == _ENDED:
        return "had already ended"
    try:
        status = _execution_status(sfn, arn)
    except (ClientError, BotoCoreError) as exc:
        logger.error("stop execution failed", extra={"execution": name, "stop_error": _cause(stop_error),
                                                     "describe_error": _cause(exc)})
        raise TaskCancelFailed(f"could not stop execution {name}: {_cause(stop_error)}; its state is unknown "
                               f"({_cause(exc)}), so the task is not cancelled") from None
    if status != "RUNNING":
        return f"had already ended ({status})"
    logger.error("stop execution failed", extra={"execution": name, "stop_error": _cause(stop_error)})
    raise TaskCancelFailed(f"could not stop execution {name}: {_cause(stop_error)}; it is still running, so the "
                           "task is not cancelled") from None
