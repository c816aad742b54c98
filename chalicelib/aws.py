"""Lazy boto3 getters. Nothing is created at import time; the environment is read on every call.

boto3 honours AWS_ENDPOINT_URL (moto server, LocalStack) by itself. Low-level clients are thread-safe and
shared by every thread of the process (one per environment snapshot), so their connection pools are reused
across invocations; resources are not thread-safe and are cached per thread. The boto3 Session behind them is
shared (one per environment snapshot, clients created under a lock): a fresh Session re-parses botocore's
service models, which costs tens of milliseconds of CPU per client; a warm one builds a client in a few.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config

_local = threading.local()
_sessions: dict[tuple[str | None, ...], boto3.session.Session] = {}
_sessions_lock = threading.Lock()
_clients: dict[tuple[str | None, ...], Any] = {}
# Map iterations call in parallel; the default pool of 10 connections would make them queue.
_CLIENT_CONFIG = Config(max_pool_connections=64)


def _env_key(kind: str, service: str) -> tuple[str | None, ...]:
    return (
        kind,
        service,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_PROFILE"),
    )


def _get(kind: str, service: str) -> Any:
    key = _env_key(kind, service)
    if kind == "client":
        cache = _clients
    else:
        cache = getattr(_local, "cache", None) or {}
        _local.cache = cache
    found = cache.get(key)
    if found is None:
        with _sessions_lock:  # a Session is not thread-safe while it builds clients
            found = cache.get(key)
            if found is None:
                session = _sessions.get(key[2:])
                if session is None:
                    session = _sessions[key[2:]] = boto3.session.Session()
                build = session.client if kind == "client" else session.resource
                found = build(service, config=_CLIENT_CONFIG)
                if kind == "client" and service == "s3":
                    found.meta.events.register_last("before-call.s3", _send_small_uploads_at_once)
                cache[key] = found
    return found


# Uploads up to this size are sent at once: botocore's `Expect: 100-continue` would make every small PutObject
# (the task's .ddl/.md files, logs, work files) wait for the server's interim answer first, a second round trip.
SMALL_UPLOAD_BYTES = 1024 * 1024


def _send_small_uploads_at_once(params: dict[str, Any], **kwargs: Any) -> None:
    from botocore.utils import determine_content_length

    headers = params.get("headers") or {}
    if headers.get("Expect") == "100-continue":
        size = determine_content_length(params.get("body"))
        if size is not None and size <= SMALL_UPLOAD_BYTES:
            del headers["Expect"]


def get_s3() -> Any:
    """An S3 client for the current environment."""
    return _get("client", "s3")


def get_dynamodb() -> Any:
    """A DynamoDB service resource for the current environment."""
    return _get("resource", "dynamodb")


def get_sfn() -> Any:
    """A Step Functions client for the current environment."""
    return _get("client", "stepfunctions")


def get_secretsmanager() -> Any:
    """A Secrets Manager client for the current environment."""
    return _get("client", "secretsmanager")


def get_ssm() -> Any:
    """An SSM (Parameter Store) client for the current environment."""
    return _get("client", "ssm")


def get_kms() -> Any:
    """A KMS client for the current environment."""
    return _get("client", "kms")
