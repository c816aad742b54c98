"""The Blueprints that carry the step Lambdas (app.py registers them) and `step_lambda`, how a step registers.

Chalice names a blueprint's Lambda handler `{blueprint import name}.{function name}` (the `Handler` of the
packaged template), so every step module gets a Blueprint of its own, named after that module: the handler string
is then the module where the decorated function really lives (`chalicelib.steps.ddl_generation.plan`).
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from chalice import Blueprint

from chalicelib.observability import instrument_step
from chalicelib.tasklog import lambda_logger

_blueprints: dict[str, Blueprint] = {}


def step_blueprints() -> list[Blueprint]:
    """One Blueprint per step module that registered a Lambda (import chalicelib.steps first)."""
    return list(_blueprints.values())


def in_step_sandbox() -> bool:
    """True in the Lambda sandbox of a step function on AWS (Chalice names it `{app}-{stage}-step_…`); the local
    stack's workers run their own init (infra/local/lambdas.py)."""
    return bool(os.environ.get("AWS_EXECUTION_ENV")) and "step_" in os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")


def prime_step_sandbox() -> None:
    """A step function's init phase, once per sandbox before its first invocation: the shared clients of the
    configured chat and embedding endpoints (chalicelib.providers.factory.prime_shared_clients). A failure is
    logged and left to the first invocation, which reports it as the step's error (an init that raises would fail
    every start of the sandbox)."""
    from chalicelib.providers.factory import prime_shared_clients

    try:
        prime_shared_clients()
    except Exception:
        logging.getLogger(__name__).warning("step sandbox init: the endpoint clients were not built; the first "
                                            "invocation that needs them builds them", exc_info=True)


def step_lambda(name: str) -> Callable[[Callable[[dict, Any], Any]], Any]:
    """`@step_lambda("step_ddl_plan")`: a Lambda function of the blueprint whose CloudWatch records carry the
    invocation's keys (function name and ARN, request id, cold start: powertools' inject_lambda_context), traced
    by X-Ray and measured in CloudWatch metrics (chalicelib/observability.py)."""

    def register(handler: Callable[[dict, Any], Any]) -> Any:
        blueprint = _blueprints.setdefault(handler.__module__, Blueprint(handler.__module__))
        return blueprint.lambda_function(name=name)(instrument_step(name, with_lambda_context(handler)))

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
