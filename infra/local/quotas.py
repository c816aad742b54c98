"""The AWS quotas the local stack enforces, and their switches: moto enforces few of them, or not as AWS fails.

| quota | AWS | how it fails here (as on AWS) |
|---|---|---|
| state input/output | 256 KiB | `States.DataLimitExceeded`, which `States.ALL` does not catch: the execution fails |
| execution history | 25,000 events | the execution fails ("reached the maximum number of history events") |
| Lambda timeout | the function's configured seconds | `Sandbox.Timedout` ("Task timed out after N seconds") |
| Lambda payload | 6 MB request and response | `RequestEntityTooLargeException` / `Function.ResponseSizeTooLarge` |
| DynamoDB item | 400 KB | `ValidationException: Item size has exceeded the maximum allowed size` |
| API Gateway | 29 s, 10 MB | 504 `INTEGRATION_TIMEOUT`, 413 `PAYLOAD_TOO_LARGE` envelopes |

Every quota is on by default wherever LocalStack runs (`make serve`, `make demo`, the benchmarks, the tests).
`DATA_PIPELINE_LOCAL_QUOTAS=off` turns them all off; each one is switched or resized by its own variable
(`QUOTAS[…].env`): `off`, or a number replacing the limit (tests use small ones). The values are read when a
limit is checked, so a change of the environment applies to the next request.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

SWITCH = "DATA_PIPELINE_LOCAL_QUOTAS"
_OFF = ("off", "0", "false", "no")


@dataclass(frozen=True)
class Quota:
    name: str
    env: str
    default: int
    unit: str
    meaning: str


QUOTAS = {quota.name: quota for quota in (
    Quota("state_payload", "DATA_PIPELINE_QUOTA_STATE_PAYLOAD_BYTES", 256 * 1024, "bytes",
          "largest state input/output (Step Functions)"),
    Quota("history_events", "DATA_PIPELINE_QUOTA_HISTORY_EVENTS", 25_000, "events",
          "events in one execution's history (Step Functions)"),
    Quota("lambda_timeout", "DATA_PIPELINE_QUOTA_LAMBDA_TIMEOUT", 1, "on/off",
          "a Lambda invocation ends after the function's configured timeout (.chalice/config.json)"),
    Quota("lambda_payload", "DATA_PIPELINE_QUOTA_LAMBDA_PAYLOAD_BYTES", 6 * 1024 * 1024, "bytes",
          "largest Lambda invocation request and response (synchronous invoke)"),
    Quota("dynamodb_item", "DATA_PIPELINE_QUOTA_DYNAMODB_ITEM_BYTES", 400 * 1024, "bytes",
          "largest DynamoDB item (attribute names plus values)"),
    Quota("api_timeout", "DATA_PIPELINE_QUOTA_API_TIMEOUT_SECONDS", 29, "seconds",
          "API Gateway integration timeout"),
    Quota("api_payload", "DATA_PIPELINE_QUOTA_API_PAYLOAD_BYTES", 10 * 1024 * 1024, "bytes",
          "largest API Gateway request body"),
)}


def quotas_enabled() -> bool:
    """False when DATA_PIPELINE_LOCAL_QUOTAS says off (every quota off)."""
    return (os.environ.get(SWITCH) or "on").strip().lower() not in _OFF


def limit(name: str) -> int | None:
    """The limit of quota `name` now (None: not enforced). A malformed value is an error naming the variable."""
    quota = QUOTAS[name]
    if not quotas_enabled():
        return None
    raw = (os.environ.get(quota.env) or "").strip().lower()
    if not raw or raw in ("on", "true", "yes"):
        return quota.default
    if raw in _OFF:
        return None
    if quota.unit == "on/off":
        raise ValueError(f"{quota.env} must be on or off, got {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{quota.env} must be off or a number of {quota.unit}, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{quota.env} must be off or a positive number of {quota.unit}, got {raw!r}")
    return value


def describe_quotas() -> list[str]:
    """One line per quota with its current limit (what `make serve` prints)."""
    lines = []
    for quota in QUOTAS.values():
        value = limit(quota.name)
        if value is None:
            shown = "off"
        elif quota.name == "lambda_timeout":
            shown = "on"
        else:
            shown = f"{value:,} {quota.unit}"
        lines.append(f"{quota.meaning}: {shown}  ({quota.env})")
    return lines
