"""One `openai.OpenAI` client per endpoint and process, shared by every invocation and thread, and what it says
about the retries it made.

Building a client costs tens of milliseconds of CPU (an httpx client and its TLS context); a warm Lambda
reuses it, as it reuses its boto3 clients. The client is thread-safe and keeps its connection pool. It does the
first, quick retries itself (`max_retries`: 408/409/429/5xx, timeouts and connection errors) but never waits
long between them: its exponential backoff (from 0.5 s) and a server's Retry-After are both capped at
`max_wait` seconds (LLM_MAX_RETRY_WAIT_SECONDS), and a Retry-After longer than that is not waited for at all,
the error is raised at once. What it cannot get past quickly propagates to the state machine's Retry, which
waits outside the Lambda (a Lambda billed for sleeping, and holding a Map slot, helps nobody).
"""
from __future__ import annotations

import math
import threading
from typing import Any

_clients: dict[tuple[str, str, float, int, float], Any] = {}
_lock = threading.Lock()

# The SDK numbers every attempt in this request header (0 for the first); the last request sent tells how many
# retries a call took, whether it then succeeded or failed.
_RETRY_COUNT_HEADER = "x-stainless-retry-count"
DEFAULT_MAX_WAIT_SECONDS = 2.0


def _bounded_client_class() -> type:
    """`openai.OpenAI` whose waits between retries never exceed `max_retry_wait` (imported lazily: the SDK is
    heavy and only the LLM and embedding adapters need it)."""
    import openai

    class BoundedRetryOpenAI(openai.OpenAI):
        max_retry_wait: float = DEFAULT_MAX_WAIT_SECONDS

        def _calculate_retry_timeout(self, remaining_retries: int, options: Any, response_headers: Any = None
                                     ) -> float:
            return min(super()._calculate_retry_timeout(remaining_retries, options, response_headers),
                       self.max_retry_wait)

        def _should_retry(self, response: Any) -> bool:
            retry_after = self._parse_retry_after_header(response.headers)
            if retry_after is not None and math.isfinite(retry_after) and retry_after > self.max_retry_wait:
                return False  # the server asks for a longer pause than a Lambda should sleep: the state machine waits
            return super()._should_retry(response)

    return BoundedRetryOpenAI


def shared_openai_client(base_url: str, api_key: str, timeout: float, max_retries: int,
                         max_wait: float = DEFAULT_MAX_WAIT_SECONDS) -> Any:
    """The process's client for this endpoint, key, per-attempt timeout, retry budget and longest wait."""
    key = (base_url, api_key, float(timeout), max(0, int(max_retries)), max(0.0, float(max_wait)))
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _bounded_client_class()(base_url=base_url, api_key=api_key, timeout=timeout,
                                                             max_retries=key[3])
            client.max_retry_wait = key[4]
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


# -- structured output, negotiated once per endpoint ------------------------------------------------------------

# What to send as `response_format`, best first: a JSON schema (structured outputs), JSON mode, nothing.
RESPONSE_FORMATS = ("json_schema", "json_object", "text")
_formats: dict[tuple[str, str], str] = {}
# A 400 whose message says one of these refuses the response_format, not the request (OpenAI, vLLM, DeepSeek,
# Ollama and llama.cpp word it differently).
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "structured output", "guided_json", "grammar")


def response_format_for(base_url: str, model: str, first: str = "auto") -> str:
    """The format this endpoint and model are known to accept, else where to start trying (`first`, `auto`:
    the best)."""
    with _lock:
        known = _formats.get((base_url, model))
    if known is not None:
        return known
    return RESPONSE_FORMATS[0] if first == "auto" else first


def remember_response_format(base_url: str, model: str, fmt: str) -> None:
    """Recorded after a call in this format succeeded: later calls (every provider of the process) start there."""
    with _lock:
        _formats[(base_url, model)] = fmt


def next_response_format(fmt: str) -> str | None:
    """The format to try after `fmt` was refused (None after plain text)."""
    position = RESPONSE_FORMATS.index(fmt)
    return RESPONSE_FORMATS[position + 1] if position + 1 < len(RESPONSE_FORMATS) else None


def refuses_response_format(status: int, message: str) -> bool:
    return status in (400, 422) and any(word in message.lower() for word in _FORMAT_WORDS)


def is_context_length_error(status: int, code: Any, message: str) -> bool:
    """OpenAI's `context_length_exceeded` (and the wording of compatible servers)."""
    text = message.lower()
    return status in (400, 413, 422) and (code == "context_length_exceeded" or "context length" in text
                                           or "context_length" in text or "maximum context" in text
                                           or "too many tokens" in text)
