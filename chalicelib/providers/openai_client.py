"""One `openai.OpenAI` client per endpoint and process, shared by every invocation and thread.

Building a client costs tens of milliseconds of CPU (an httpx client and its TLS context); a warm Lambda
reuses it, as it reuses its boto3 clients. The client is thread-safe and keeps its connection pool.
"""
from __future__ import annotations

import threading
from typing import Any

_clients: dict[tuple[str, str, float], Any] = {}
_lock = threading.Lock()


def shared_openai_client(base_url: str, api_key: str, timeout: float) -> Any:
    """The process's client for this endpoint, key and timeout (SDK retries off: callers retry themselves)."""
    key = (base_url, api_key, float(timeout))
    with _lock:
        client = _clients.get(key)
        if client is None:
            import openai

            client = _clients[key] = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout,
                                                   max_retries=0)
        return client
