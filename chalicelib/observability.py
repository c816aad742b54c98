"""X-Ray tracing and CloudWatch metrics (EMF) of the Lambdas, through powertools.

- `get_tracer()`: the process's powertools Tracer. It patches boto3/botocore and the HTTP clients only in
  AWS Lambda; outside it (the local stack, tests, `chalice local`) powertools disables it by itself, and
  POWERTOOLS_TRACE_DISABLED=1 disables it anywhere.
- `instrument_step(name, handler)`: a step Lambda traced (`capture_lambda_handler`) and measured: its duration and
  what its result reports (tables processed/failed, pairs generated/validated/valid/repaired, LLM calls, tokens,
  retries; LLM errors and step errors from the exception), one EMF blob per invocation on stdout, dimension
  `function`, the task id as metadata (not a dimension: one CloudWatch metric per task would cost per task).
  Metrics are written when DATA_PIPELINE_METRICS is on (default: on in Lambda, off on the local stack).
- `traced(get_response, event)`: an HTTP request inside an X-Ray subsegment named after its route.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib.config import get_settings
from chalicelib.errors import LLMError

log = logging.getLogger(__name__)

NAMESPACE = "DataPipeline"
SERVICE = "data_pipeline"
_lock = threading.Lock()
_tracer: Any = None


def get_tracer() -> Any:
    """The process's powertools Tracer, built on first use (never at import: it patches modules)."""
    global _tracer
    with _lock:
        if _tracer is None:
            from aws_lambda_powertools import Tracer

            _tracer = Tracer(service=SERVICE)
        return _tracer


def traced(get_response: Callable[[Any], Any], event: Any) -> Any:
    """`get_response(event)`, inside a subsegment `## METHOD path` when tracing is on."""
    tracer = get_tracer()
    if tracer.disabled:
        return get_response(event)
    context = getattr(event, "context", None) or {}
    name = f"## {getattr(event, 'method', '?')} {context.get('resourcePath', getattr(event, 'path', '?'))}"
    with tracer.provider.in_subsegment(name[:200]) as subsegment:
        response = get_response(event)
        subsegment.put_annotation("status_code", getattr(response, "status_code", 0))
        return response


def step_metrics(result: Any) -> list[tuple[str, str, float]]:
    """(metric, unit, value) for what a step's result reports; keys a step does not return give nothing."""
    if not isinstance(result, dict):
        return []
    found: list[tuple[str, str, float]] = []
    tables = result.get("tables")
    if isinstance(tables, list) and tables and all(isinstance(t, dict) and "ok" in t for t in tables):
        found.append(("TablesProcessed", "Count", sum(1 for t in tables if t["ok"])))
        found.append(("TablesFailed", "Count", sum(1 for t in tables if not t["ok"])))
    for key, metric in (("tables_succeeded", "TablesSucceeded"), ("tables_failed", "TablesFailedTotal"),
                        ("pairs", "PairsGenerated"), ("total", "PairsValidated"), ("valid_after", "PairsValid"),
                        ("repaired", "PairsRepaired"), ("pairs_kept", "PairsKept")):
        if isinstance(result.get(key), int) and not isinstance(result.get(key), bool):
            found.append((metric, "Count", result[key]))
    usage = result.get("llm_usage")
    if isinstance(usage, dict) and usage.get("calls"):
        found.append(("LlmCalls", "Count", usage.get("calls") or 0))
        found.append(("LlmTokens", "Count", (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)))
        found.append(("LlmRetries", "Count", usage.get("retries") or 0))
    return found


def publish_step_metrics(name: str, event: Any, seconds: float, result: Any = None,
                         error: BaseException | None = None) -> None:
    """One EMF blob on stdout for a step invocation (nothing when DATA_PIPELINE_METRICS is off)."""
    if not get_settings().metrics_enabled:
        return
    from aws_lambda_powertools.metrics import EphemeralMetrics

    metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    metrics.add_dimension(name="function", value=name)
    metrics.add_metric(name="StepDuration", unit="Milliseconds", value=round(seconds * 1000.0, 1))
    for metric, unit, value in step_metrics(result):
        metrics.add_metric(name=metric, unit=unit, value=value)
    if error is not None:
        metrics.add_metric(name="StepErrors", unit="Count", value=1)
        if isinstance(error, LLMError):
            metrics.add_metric(name="LlmErrors", unit="Count", value=1)
        metrics.add_metadata(key="error_type", value=type(error).__name__)
    task_id = event.get("task_id") if isinstance(event, dict) else None
    if task_id:
        metrics.add_metadata(key="task_id", value=str(task_id))
    metrics.flush_metrics()


def instrument_step(name: str, handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
    """The step handler traced and measured (see the module docstring); exceptions propagate unchanged."""

    @functools.wraps(handler)
    def invoke(event: dict, context: Any) -> Any:
        started = time.monotonic()
        tracer = get_tracer()
        run = handler if tracer.disabled or context is None else tracer.capture_lambda_handler(handler)
        try:
            result = run(event, context)
        except BaseException as exc:
            _publish_quietly(name, event, time.monotonic() - started, error=exc)
            raise
        _publish_quietly(name, event, time.monotonic() - started, result=result)
        return result

    return invoke


def _publish_quietly(name: str, event: Any, seconds: float, **outcome: Any) -> None:
    """Metrics must never turn a step's success into a failure (or replace its error): a failure to write them
    is logged with its cause."""
    try:
        publish_step_metrics(name, event, seconds, **outcome)
    except Exception:
        log.exception("metrics not published", extra={"function": name})
