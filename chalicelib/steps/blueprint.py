"""The Blueprint that carries every step Lambda (app.py registers it) and `step_lambda`, how a step registers."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from chalice import Blueprint

from chalicelib.observability import instrument_step
from chalicelib.tasklog import lambda_logger

steps_bp = Blueprint(__name__)


def step_lambda(name: str) -> Callable[[Callable[[dict, Any], Any]], Any]:
    """`@step_lambda("step_ddl_plan")`: a Lambda function of the blueprint whose CloudWatch records carry the
    invocation's keys (function name and ARN, request id, cold start: powertools' inject_lambda_context), traced
    by X-Ray and measured in CloudWatch metrics (chalicelib/observability.py)."""

    def register(handler: Callable[[dict, Any], Any]) -> Any:
        return steps_bp.lambda_function(name=name)(instrument_step(name, with_lambda_context(handler)))

    return register


def with_lambda_context(handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
    """The handler with powertools' Lambda context keys on every record it logs (the logger is built on first
    use, at the configured level, never at import time)."""

    @functools.wraps(handler)
    def invoke(event: dict, context: Any) -> Any:
        if context is None:  # called as a plain function (no Lambda runtime): there are no invocation keys
            return handler(event, context)
        return lambda_logger().inject_lambda_context(handler)(event, context)

    return invoke
