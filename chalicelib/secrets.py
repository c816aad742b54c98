"""Configuration values kept in Secrets Manager or SSM Parameter Store, read at run time and cached per container.

One scheme for every secret-bearing variable (DATA_PIPELINE_DB_URL, PGVECTOR_DB_URL, LLM_API_KEY,
EMBEDDING_API_KEY, DATA_PIPELINE_API_KEY): its value is either the secret itself (the local stack) or a reference

    secretsmanager:<secret name or ARN>     the secret's SecretString (AWSCURRENT)
    ssm:<parameter name>                    the parameter's value, SecureString decrypted

so no secret sits in a Lambda's environment (readable through GetFunctionConfiguration). A value is cached for
DATA_PIPELINE_SECRET_CACHE_SECONDS (default 60): a rotated secret is picked up within that time, no redeploy.
A database secret may also be the JSON Secrets Manager keeps for RDS (`username`, `password`, `host`, `port`,
`dbname`): it is turned into a `postgresql://` URL.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws import get_secretsmanager, get_ssm
from chalicelib.errors import SecretUnavailable

log = logging.getLogger(__name__)

SECRETS_MANAGER_PREFIX = "secretsmanager:"
SSM_PREFIX = "ssm:"
DEFAULT_CACHE_SECONDS = 60.0

_lock = threading.Lock()
_cache: dict[str, tuple[float, str]] = {}


def is_secret_reference(value: str | None) -> bool:
    return bool(value) and str(value).startswith((SECRETS_MANAGER_PREFIX, SSM_PREFIX))


def cache_seconds() -> float:
    raw = os.environ.get("DATA_PIPELINE_SECRET_CACHE_SECONDS", "").strip()
    try:
        return float(raw) if raw else DEFAULT_CACHE_SECONDS
    except ValueError as exc:
        raise ValueError(f"environment variable DATA_PIPELINE_SECRET_CACHE_SECONDS must be a number, got {raw!r}") \
            from exc


def clear_cache() -> None:
    """Forget every cached value (tests; a container never needs it: entries expire)."""
    with _lock:
        _cache.clear()


def resolve(value: str | None, *, variable: str = "a setting", clock: Callable[[], float] = time.monotonic,
            ) -> str | None:
    """`value` itself, or the secret it references (cached for `cache_seconds()`); SecretUnavailable when the
    reference cannot be read. `variable` names the setting in errors."""
    if not is_secret_reference(value):
        return value
    reference = str(value)
    now = clock()
    with _lock:
        cached = _cache.get(reference)
    if cached is not None and cached[0] > now:
        return cached[1]
    secret = _fetch(reference, variable)
    with _lock:
        _cache[reference] = (now + cache_seconds(), secret)
    return secret


def resolve_db_url(value: str | None, *, variable: str) -> str | None:
    """A database URL setting: as `resolve`, and an RDS-style JSON secret becomes a postgresql:// URL."""
    resolved = resolve(value, variable=variable)
    if resolved is None or not is_secret_reference(value) or not resolved.lstrip().startswith("{"):
        return resolved
    try:
        data = json.loads(resolved)
        user, password, host = data["username"], data["password"], data["host"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SecretUnavailable(f"{variable}: the secret {_name(str(value))} is JSON but not a database secret "
                                "(it needs username, password, host and dbname)") from exc
    port = data.get("port") or 5432
    database = data.get("dbname") or data.get("database") or "postgres"
    return f"postgresql://{quote(str(user), safe='')}:{quote(str(password), safe='')}@{host}:{port}/{database}"


def _name(reference: str) -> str:
    return reference.split(":", 1)[1]


def _fetch(reference: str, variable: str) -> str:
    name = _name(reference).strip()
    if not name:
        raise SecretUnavailable(f"{variable}: {reference!r} names no secret")
    try:
        if reference.startswith(SECRETS_MANAGER_PREFIX):
            answer = get_secretsmanager().get_secret_value(SecretId=name)
            secret = answer.get("SecretString")
            if secret is None:
                raise SecretUnavailable(f"{variable}: the secret {name} has no string value (binary secrets are not "
                                        "supported)")
        else:
            secret = get_ssm().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        log.error("secret unavailable", extra={"variable": variable, "reference": name, "error_code": code})
        raise SecretUnavailable(f"{variable}: {reference.split(':', 1)[0]} {name} could not be read ({code})") \
            from exc
    except BotoCoreError as exc:
        log.error("secret unavailable", extra={"variable": variable, "reference": name,
                                               "error_code": type(exc).__name__})
        raise SecretUnavailable(f"{variable}: {reference.split(':', 1)[0]} {name} could not be read "
                                f"({type(exc).__name__})") from exc
    return secret.strip()
