"""OpenAIProvider: the LLM port (chalicelib.pipeline.ports.LLMProvider) over any OpenAI-compatible chat endpoint
(OpenAI, DeepSeek, Qwen, vLLM, Ollama…) through the `openai` client.

429/5xx/timeouts/connection errors are retried with backoff (LLM_MAX_RETRIES, Retry-After honoured); what is
left propagates as the project's error classes (LLMRateLimited, LLMTimeout, LLMError, LLMBadAnswer) so
the state machine can tell them apart. An unusable answer is re-asked once. A process-wide semaphore bounds the
calls in flight (LLM_MAX_CONCURRENCY).
"""
from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import openai

from chalicelib import errors
from chalicelib.config import Settings
from chalicelib.pipeline.models import CommentSuggestion, LLMUsage, QAPair, RepairRequest, TableDoc, TableMeta, Theme
from chalicelib.pipeline.schema_text import select_theme_docs
from chalicelib.pipeline.text import is_chinese
from chalicelib.providers import prompts
from chalicelib.providers.answers import (
    AnswerError,
    extract_json,
    parse_comment_answer,
    parse_pairs_answer,
    parse_repairs_answer,
    parse_themes_answer,
)
from chalicelib.providers.openai_client import shared_openai_client

logger = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0  # longest wait between attempts, Retry-After included

_SEMAPHORES: dict[int, threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()


def _process_semaphore(limit: int) -> threading.BoundedSemaphore:
    """One semaphore per configured limit, shared by every provider in the process."""
    limit = max(1, limit)
    with _SEMAPHORES_LOCK:
        if limit not in _SEMAPHORES:
            _SEMAPHORES[limit] = threading.BoundedSemaphore(limit)
        return _SEMAPHORES[limit]


def _retry_after_seconds(headers: Any) -> float | None:
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


class OpenAIProvider:
    """Any OpenAI-compatible chat endpoint.

    `usage.calls` counts every request sent (failed attempts included); `usage.retries` the repeated ones.
    """

    kind = "llm"

    def __init__(self, settings: Settings, *, client: openai.OpenAI | None = None,
                 backoff_base: float = BACKOFF_BASE_SECONDS, sleep: Callable[[float], None] = time.sleep):
        if not settings.llm_base_url:
            raise errors.LLMError("LLM_BASE_URL is not configured")
        self.settings = settings
        self.model = settings.llm_model
        self.name = f"openai-compatible:{self.model}"
        self.usage = LLMUsage(provider=self.name)
        parsed = urlparse(settings.llm_base_url)
        self.endpoint = parsed.netloc.rsplit("@", 1)[-1] or settings.llm_base_url
        self._client = client or shared_openai_client(
            settings.llm_base_url, settings.llm_api_key or "not-needed", settings.llm_timeout_seconds
        )
        self._semaphore = _process_semaphore(settings.llm_max_concurrency)
        self._backoff_base = backoff_base
        self._sleep = sleep
        self._usage_lock = threading.Lock()

    # -- the port ------------------------------------------------------------------------------------------

    def suggest_table_comments(self, meta: TableMeta, samples: list[dict], business_context: str) -> CommentSuggestion:
        lang = prompts.prompt_language(business_context)
        prompt = prompts.comments_prompt(meta, samples, business_context, lang)
        return self._ask(prompt, lang, parse_comment_answer, f"comments for {meta.ref.display_name}")

    def extract_themes(self, docs: list[TableDoc], business_context: str, count: int) -> list[Theme]:
        lang = prompts.prompt_language(business_context)
        prompt = prompts.themes_prompt(docs, business_context, count, lang)
        return self._ask(prompt, lang, lambda v: parse_themes_answer(v, count), "themes")

    def generate_pairs(self, theme: Theme, docs: list[TableDoc], business_context: str, count: int) -> list[QAPair]:
        lang = prompts.prompt_language(business_context)
        prompt = prompts.pairs_prompt(theme, select_theme_docs(theme, docs), business_context, count, lang)
        return self._ask(prompt, lang, lambda v: parse_pairs_answer(v, count), f"pairs for theme {theme.topic_name}")

    def repair_sql(self, requests: list[RepairRequest], docs: list[TableDoc]) -> dict[int, str]:
        if not requests:
            return {}
        lang = "zh" if any(is_chinese(r.question) for r in requests) else "en"
        indexes = {r.index for r in requests}
        prompt = prompts.repair_prompt(requests, docs, lang)
        return self._ask(prompt, lang, lambda v: parse_repairs_answer(v, indexes), "sql repairs")

    # -- internals -----------------------------------------------------------------------------------------

    def _describe(self) -> str:
        return f"LLM endpoint {self.endpoint} (model {self.model})"

    def _ask(self, prompt: str, lang: str, parse: Callable[[Any], T], what: str) -> T:
        """One question, one re-ask when the answer is unusable, then LLMBadAnswer."""
        messages: list[dict[str, str]] = [
            {"role": "system", "content": prompts.SYSTEM_PROMPTS[lang]},
            {"role": "user", "content": prompt},
        ]
        for attempt in (1, 2):
            answer = self._complete(messages)
            try:
                return parse(extract_json(answer))
            except AnswerError as exc:
                logger.warning("unusable LLM answer", extra={"what": what, "attempt": attempt, "error": str(exc)})
                if attempt == 2:
                    raise errors.LLMBadAnswer(
                        f"{self._describe()} gave an unusable answer for {what} twice: {exc}"
                    ) from None
                messages = messages + [
                    {"role": "assistant", "content": (answer or "")[:4000]},
                    {"role": "user", "content": prompts.reask_text(str(exc), lang)},
                ]
        raise AssertionError("unreachable")

    def _scrub(self, text: str) -> str:
        key = self.settings.llm_api_key
        return text.replace(key, "***") if key else text

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, BACKOFF_CAP_SECONDS)
        delay = self._backoff_base * (2 ** attempt)
        return min(delay + random.uniform(0, delay / 2), BACKOFF_CAP_SECONDS)

    def _complete(self, messages: list[dict[str, str]]) -> str | None:
        """The assistant's text, retrying 429/5xx/timeouts/connection errors with backoff."""
        max_retries = max(0, self.settings.llm_max_retries)
        failure: errors.LLMError | None = None
        for attempt in range(max_retries + 1):
            retry_after: float | None = None
            started = time.monotonic()
            try:
                with self._semaphore:
                    started = time.monotonic()
                    response = self._client.chat.completions.create(
                        model=self.model, messages=messages, temperature=0.2,
                    )
                self._record(started, response)
                if not response.choices:
                    return None
                return response.choices[0].message.content
            except openai.RateLimitError as exc:
                self._record(started, None)
                retry_after = _retry_after_seconds(exc.response.headers)
                failure = errors.LLMRateLimited(
                    f"{self._describe()} is rate limiting (HTTP 429) after {attempt + 1} attempts"
                )
            except openai.APIStatusError as exc:
                self._record(started, None)
                detail = self._scrub(str(getattr(exc, "message", "")))[:300]
                if exc.status_code < 500:
                    raise errors.LLMError(
                        f"{self._describe()} rejected the request with HTTP {exc.status_code}: {detail}"
                    ) from None
                retry_after = _retry_after_seconds(exc.response.headers)
                failure = errors.LLMError(
                    f"{self._describe()} failed with HTTP {exc.status_code} after {attempt + 1} attempts: {detail}"
                )
            except openai.APITimeoutError:
                self._record(started, None)
                failure = errors.LLMTimeout(
                    f"{self._describe()} did not answer within {self.settings.llm_timeout_seconds:g} s "
                    f"after {attempt + 1} attempts"
                )
            except openai.APIConnectionError as exc:
                self._record(started, None)
                failure = errors.LLMError(
                    f"{self._describe()} could not be reached after {attempt + 1} attempts: "
                    f"{self._scrub(type(exc.__cause__ or exc).__name__)}"
                )
            if attempt < max_retries:
                with self._usage_lock:
                    self.usage.retries += 1
                delay = self._backoff(attempt, retry_after)
                logger.info("retrying LLM call", extra={"attempt": attempt + 1, "delay": round(delay, 2),
                                                        "error": str(failure)})
                self._sleep(delay)
        assert failure is not None
        raise failure

    def _record(self, started: float, response: Any) -> None:
        elapsed = time.monotonic() - started
        usage = getattr(response, "usage", None)
        with self._usage_lock:
            self.usage.calls += 1
            self.usage.seconds = round(self.usage.seconds + elapsed, 3)
            if usage is not None:
                self.usage.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
                self.usage.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
