"""One `openai.OpenAI` client per endpoint and process, shared by every invocation and thread, and what it says
about the retries it made.

Building a client costs tens of milliseconds of CPU (an httpx client and its TLS context); a warm Lambda
reuses it, as it reuses its boto3 clients. The client is thread-safe and keeps its connection pool. It does the
retrying itself (`max_retries`: 408/409/429/5xx, timeouts and connection errors, exponential backoff from 0.5 s,
Retry-After honoured); what it cannot get past propagates to the state machine's Retry/Catch.
"""
from __future__ import annotations

import threading
from typing import Any

_clients: dict[tuple[str, str, float, int], Any] = {}
_lock = threading.Lock()

# The SDK numbers every attempt in this request header (0 for the first); the last request sent tells how many
# retries a call took, whether it then succeeded or failed.
_RETRY_COUNT_HEADER = "x-stainless-retry-count"


def shared_openai_client(base_url: str, api_key: str, timeout: float, max_retries: int) -> Any:
    """The process's client for this endpoint, key, per-attempt timeout and retry budget."""
    key = (base_url, api_key, float(timeout), max(0, int(max_retries)))
    with _lock:
        client = _clients.get(key)
        if client is None:
            import openai

            client = _clients[key] = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout,
                                                   max_retries=key[3])
        return client


def retries_taken(request: Any) -> int | None:
    """How many retries the client had made when it sent `request` (the last attempt of a call), or None when the
    request does not say (then the number is not known and must not be reported as if it were)."""
    headers = getattr(request, "headers", None)
    raw = headers.get(_RETRY_COUNT_HEADER) if headers is not None else None
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None
