"""OpenAIProvider: the LLM port (chalicelib.pipeline.ports.LLMProvider) over any OpenAI-compatible chat endpoint
(OpenAI, DeepSeek, Qwen, vLLM, Ollama…) through the `openai` client.

The client retries 429/5xx/timeouts/connection errors itself a few times, quickly (LLM_MAX_RETRIES, waits capped
at LLM_MAX_RETRY_WAIT_SECONDS: chalicelib.providers.openai_client); what is left propagates as the project's
error classes so the state machine can tell them apart: LLMRateLimited and LLMTimeout (retry later) from LLMError
and LLMBadAnswer (retrying will not help). An unusable answer is re-asked once. A process-wide semaphore bounds the
calls in flight (LLM_MAX_CONCURRENCY).

Each call kind (comments, themes, pairs, repair) has its temperature and max_tokens (Settings.llm_call_settings).
`response_format` is negotiated per endpoint and model: a JSON schema first, JSON mode next, plain text last; a
400 refusing the format moves to the next and what succeeded is remembered for the process (openai_client). The
robust parser (answers.extract_json) reads every answer whatever the format. A context-length 400 rebuilds the
prompt for a smaller budget (fewer sample values, then fewer tables) and asks again, at most
LLM_CONTEXT_SHRINKS times. Generated pairs are checked against the catalog (catalog_check): the pairs naming
unknown tables or columns are asked again once, naming them; those still naming unknown objects are dropped,
each with a logged reason.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlparse

import openai

from chalicelib import errors
from chalicelib.config import Settings
from chalicelib.pipeline.models import CommentSuggestion, LLMUsage, QAPair, RepairRequest, TableDoc, TableMeta, Theme
from chalicelib.pipeline.prompt_budget import (
    MESSAGE_OVERHEAD_TOKENS,
    PromptBudget,
    clip_to_tokens,
    estimate_messages,
    estimate_tokens,
)
from chalicelib.pipeline.schema_text import select_theme_docs
from chalicelib.pipeline.text import is_chinese
from chalicelib.providers import openai_client, prompts
from chalicelib.providers.answers import (
    AnswerError,
    catalog_reask_text,
    extract_json,
    keep_resolved_pairs,
    parse_comment_answer,
    parse_pairs_answer,
    parse_repairs_answer,
    parse_themes_answer,
    response_format,
    unknown_in_pairs,
)
from chalicelib.providers.openai_client import retries_taken, shared_openai_client

logger = logging.getLogger(__name__)

T = TypeVar("T")

PARALLEL_PARTS = 4  # parts of one question (summary chunks, wide-table columns) asked at once
REASK_ECHO_TOKENS = 2000  # at most this much of an unusable answer is shown back on the re-ask
SHRINK_FACTOR = 0.6  # each context-length retry builds the prompt for this share of the tokens last sent


class _ContextTooLong(Exception):
    """The endpoint refused a request for its context length; `sent` is our estimate of the prompt it got."""

    def __init__(self, status: int, sent: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.sent = sent
        self.detail = detail


class _FormatRefused(Exception):
    """The endpoint refused the request's response_format (a 400 naming it)."""

_SEMAPHORES: dict[int, threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()


def _process_semaphore(limit: int) -> threading.BoundedSemaphore:
    """One semaphore per configured limit, shared by every provider in the process."""
    limit = max(1, limit)
    with _SEMAPHORES_LOCK:
        if limit not in _SEMAPHORES:
            _SEMAPHORES[limit] = threading.BoundedSemaphore(limit)
        return _SEMAPHORES[limit]


def _merge_suggestions(parts: list[CommentSuggestion]) -> CommentSuggestion:
    """The answers for the parts of a wide table's columns as one: the first table comment, every column."""
    columns: dict[str, str] = {}
    candidates: list[str] = []
    for part in parts:
        columns.update(part.column_comments)
        candidates += [c for c in part.enum_candidates if c not in candidates]
    table_comment = next((p.table_comment for p in parts if p.table_comment), None)
    return CommentSuggestion(table_comment=table_comment, column_comments=columns, enum_candidates=candidates)


def _after(attempts: int | None) -> str:
    return f" after {attempts} attempts" if attempts is not None else ""


class OpenAIProvider:
    """Any OpenAI-compatible chat endpoint.

    `usage.calls` counts every HTTP request sent (the client's retries included) and `usage.retries` the repeated
    ones, both read from what the client reports per call; `usage.seconds` is the time spent in calls, the
    client's waits between retries included.
    """

    kind = "llm"

    def __init__(self, settings: Settings, *, client: openai.OpenAI | None = None):
        if not settings.llm_base_url:
            raise errors.LLMError("LLM_BASE_URL is not configured")
        self.settings = settings
        self.model = settings.llm_model
        self.name = f"openai-compatible:{self.model}"
        self.usage = LLMUsage(provider=self.name)
        parsed = urlparse(settings.llm_base_url)
        self.endpoint = parsed.netloc.rsplit("@", 1)[-1] or settings.llm_base_url
        self._client = client or shared_openai_client(
            settings.llm_base_url, settings.llm_api_key or "not-needed", settings.llm_timeout_seconds,
            settings.llm_max_retries, settings.llm_max_retry_wait_seconds,
        )
        self.budget = PromptBudget.from_settings(settings)
        self._semaphore = _process_semaphore(settings.llm_max_concurrency)
        self._usage_lock = threading.Lock()

    # -- the port ------------------------------------------------------------------------------------------

    def suggest_table_comments(self, meta: TableMeta, samples: list[dict], business_context: str) -> CommentSuggestion:
        lang = prompts.prompt_language(business_context)
        what = f"comments for {meta.ref.display_name}"

        def run(budget: PromptBudget) -> CommentSuggestion:
            asks = prompts.comments_prompts(meta, samples, business_context, lang, budget)
            if len(asks) == 1:
                return self._ask(asks[0], lang, parse_comment_answer, what, "comments", budget)
            logger.info("wide table asked in parts", extra={"table": meta.ref.display_name, "parts": len(asks)})
            return _merge_suggestions(self._ask_all(asks, lang, parse_comment_answer, what, "comments", budget))

        return self._shrinking(run, what)

    def extract_themes(self, docs: list[TableDoc], business_context: str, count: int) -> list[Theme]:
        """One call when the schema (or its summary) fits the budget; else one per chunk of the summary, and
        merge rounds over the candidates until one call can choose the `count` themes."""
        lang = prompts.prompt_language(business_context)

        def parse(value: Any) -> list[Theme]:
            return parse_themes_answer(value, count)

        def run(budget: PromptBudget) -> list[Theme]:
            asks = prompts.theme_prompts(docs, business_context, count, lang, budget)
            if len(asks) == 1:
                return self._ask(asks[0], lang, parse, "themes", "themes", budget)
            logger.info("schema summary asked in parts", extra={"tables": len(docs), "parts": len(asks)})
            candidates = [t for group in self._ask_all(asks, lang, parse, "themes", "themes", budget) for t in group]
            while len(candidates) > count:
                groups = prompts.merge_theme_groups(candidates, business_context, count, lang, budget)
                if len(groups) == 1:
                    return self._ask(groups[0][1], lang, parse, "merged themes", "themes", budget)
                merged = [t for group in self._ask_all([p for _, p in groups], lang, parse, "merged themes", "themes",
                                                       budget) for t in group]
                if len(merged) >= len(candidates):  # no group could be reduced: keep what there is
                    logger.warning("theme merge made no progress", extra={"candidates": len(candidates)})
                    return merged[:count]
                candidates = merged
            return candidates[:count]

        return self._shrinking(run, "themes")

    def generate_pairs(self, theme: Theme, docs: list[TableDoc], business_context: str, count: int) -> list[QAPair]:
        """The theme's pairs, checked against the whole catalog (`docs`): pairs naming unknown tables or columns
        are asked again once, naming them; what still names unknown objects is dropped with a logged reason."""
        lang = prompts.prompt_language(business_context)
        what = f"pairs for theme {theme.topic_name}"

        def parse(value: Any) -> list[QAPair]:
            return parse_pairs_answer(value, count)

        def run(budget: PromptBudget) -> list[QAPair]:
            prompt = prompts.pairs_prompt(theme, select_theme_docs(theme, docs), business_context, count, lang,
                                          budget)
            pairs, history = self._converse(self._messages(prompt, lang, what, budget), lang, parse, what, "pairs",
                                            budget)
            flagged = unknown_in_pairs(pairs, docs)
            if not flagged:
                return pairs
            logger.info("pairs name unknown objects; asked again",
                        extra={"theme": theme.topic_name, "pairs": len(flagged),
                               "unknown": sorted({p for problems in flagged.values() for p in problems})})
            reask = catalog_reask_text(pairs, flagged, docs, lang)
            messages = history + [{"role": "user", "content": clip_to_tokens(reask, max(
                64, budget.prompt_tokens - estimate_messages(history) - MESSAGE_OVERHEAD_TOKENS))}]
            try:
                again, _ = self._converse(messages, lang, parse, f"{what} (catalog re-ask)", "pairs", budget)
            except errors.LLMBadAnswer as exc:
                logger.warning("catalog re-ask gave no usable answer", extra={"theme": theme.topic_name,
                                                                              "error": str(exc)})
                again = []
            return keep_resolved_pairs(pairs, flagged, again, docs, theme.topic_name, count)

        return self._shrinking(run, what)

    def repair_sql(self, requests: list[RepairRequest], docs: list[TableDoc]) -> dict[int, str]:
        """Repairs by request index; each prompt shows only the tables its failing statements use."""
        if not requests:
            return {}
        lang = "zh" if any(is_chinese(r.question) for r in requests) else "en"

        def run(budget: PromptBudget) -> dict[int, str]:
            batches, skipped = prompts.repair_prompts(requests, docs, lang, budget)
            if skipped:
                logger.warning("statements too long to ask a repair for",
                               extra={"indexes": [r.index for r in skipped]})
            repairs: dict[int, str] = {}
            for batch, prompt in batches:
                indexes = {r.index for r in batch}
                repairs.update(self._ask(prompt, lang, lambda v, wanted=indexes: parse_repairs_answer(v, wanted),
                                         "sql repairs", "repair", budget))
            return repairs

        return self._shrinking(run, "sql repairs")

    # -- internals -----------------------------------------------------------------------------------------

    def _describe(self) -> str:
        return f"LLM endpoint {self.endpoint} (model {self.model})"

    def _shrinking(self, run: Callable[[PromptBudget], T], what: str) -> T:
        """`run(budget)`, rebuilt for a smaller budget after each context-length refusal (at most
        LLM_CONTEXT_SHRINKS times): the prompt builders then leave out sample values first, tables next."""
        budget = self.budget
        shrinks = max(0, self.settings.llm_context_shrinks)
        for attempt in range(shrinks + 1):
            try:
                return run(budget)
            except _ContextTooLong as exc:
                target = int(min(budget.prompt_tokens, exc.sent) * SHRINK_FACTOR)
                if attempt == shrinks or budget.prompt_tokens <= 512:
                    raise errors.LLMError(
                        f"{self._describe()} rejected the request with HTTP {exc.status} for its context length: "
                        f"the prompt for {what}, after {attempt} smaller prompt(s) (last about {exc.sent} tokens): "
                        f"{exc.detail}"
                    ) from None
                budget = PromptBudget(context_tokens=max(512, target) + budget.answer_tokens,
                                      answer_tokens=budget.answer_tokens)
                logger.warning("prompt over the endpoint's context length; asking with a smaller one",
                               extra={"what": what, "sent_tokens": exc.sent, "budget": budget.prompt_tokens,
                                      "attempt": attempt + 1})
        raise AssertionError("unreachable")

    def _ask_all(self, asks: list[str], lang: str, parse: Callable[[Any], T], what: str, kind: str,
                 budget: PromptBudget) -> list[T]:
        """Several independent prompts, a few at a time (the process semaphore still bounds the calls)."""
        workers = max(1, min(len(asks), PARALLEL_PARTS, self.settings.llm_max_concurrency))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-part") as pool:
            futures = [pool.submit(self._ask, prompt, lang, parse, f"{what} (part {n}/{len(asks)})", kind, budget)
                       for n, prompt in enumerate(asks, start=1)]
            return [future.result() for future in futures]

    def _messages(self, prompt: str, lang: str, what: str, budget: PromptBudget) -> list[dict[str, str]]:
        """The request's messages; checked against the budget (the builders keep to it; a prompt over it is a
        bug, not something to send)."""
        messages = [{"role": "system", "content": prompts.SYSTEM_PROMPTS[lang]}, {"role": "user", "content": prompt}]
        used = estimate_messages(messages)
        if used > budget.prompt_tokens:
            raise errors.LLMError(f"the prompt for {what} needs about {used} tokens, over the budget of "
                                  f"{budget.prompt_tokens} (LLM_CONTEXT_TOKENS minus LLM_ANSWER_TOKENS)")
        return messages

    def _ask(self, prompt: str, lang: str, parse: Callable[[Any], T], what: str, kind: str,
             budget: PromptBudget) -> T:
        return self._converse(self._messages(prompt, lang, what, budget), lang, parse, what, kind, budget)[0]

    def _converse(self, messages: list[dict[str, str]], lang: str, parse: Callable[[Any], T], what: str, kind: str,
                  budget: PromptBudget) -> tuple[T, list[dict[str, str]]]:
        """(the parsed answer, the conversation with that answer): one re-ask when the answer is unusable, then
        LLMBadAnswer."""
        limit = budget.prompt_tokens
        used = estimate_messages(messages)
        for attempt in (1, 2):
            answer = self._complete(messages, kind)
            # The answer is shown back (a re-ask) only as far as the budget allows.
            room = limit - used - 3 * MESSAGE_OVERHEAD_TOKENS
            try:
                value = parse(extract_json(answer))
            except AnswerError as exc:
                logger.warning("unusable LLM answer", extra={"what": what, "attempt": attempt, "error": str(exc)})
                if attempt == 2:
                    raise errors.LLMBadAnswer(
                        f"{self._describe()} gave an unusable answer for {what} twice: {exc}"
                    ) from None
                reask = prompts.reask_text(str(exc), lang)
                echo = clip_to_tokens(answer or "", max(0, min(room - estimate_tokens(reask), REASK_ECHO_TOKENS)))
                messages = messages + [{"role": "assistant", "content": echo}, {"role": "user", "content": reask}]
                used = estimate_messages(messages)
                continue
            echo = clip_to_tokens(answer or "", max(0, min(room // 2, REASK_ECHO_TOKENS)))
            return value, messages + [{"role": "assistant", "content": echo}]
        raise AssertionError("unreachable")

    def _scrub(self, text: str) -> str:
        key = self.settings.llm_api_key
        return text.replace(key, "***") if key else text

    def _complete(self, messages: list[dict[str, str]], kind: str) -> str | None:
        """The assistant's text in the best response_format the endpoint accepts (negotiated once per endpoint
        and model, then remembered); a failure the client could not get past becomes a project error."""
        base_url, first = self.settings.llm_base_url or "", self.settings.llm_response_format
        fmt = openai_client.response_format_for(base_url, self.model, first)
        while True:
            try:
                content = self._request(messages, kind, fmt)
            except _FormatRefused as exc:
                following = openai_client.next_response_format(fmt)
                logger.info("response_format refused; trying the next",
                            extra={"endpoint": self.endpoint, "model": self.model, "refused": fmt, "next": following,
                                   "detail": str(exc)})
                fmt = following or "text"
                continue
            openai_client.remember_response_format(base_url, self.model, fmt)
            return content

    def _request(self, messages: list[dict[str, str]], kind: str, fmt: str) -> str | None:
        temperature, max_tokens = self.settings.llm_call_settings(kind)
        extra: dict[str, Any] = {}
        wanted = response_format(kind, fmt)
        if wanted is not None:
            extra["response_format"] = wanted
        started = time.monotonic()
        try:
            with self._semaphore:
                started = time.monotonic()
                raw = self._client.chat.completions.with_raw_response.create(
                    model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens, **extra,
                )
                response = raw.parse()
        except openai.APIError as exc:
            attempts = self._record_failure(started, exc)
            if isinstance(exc, openai.APIStatusError):
                detail = self._scrub(str(getattr(exc, "message", "")))[:300]
                body = exc.body if isinstance(exc.body, dict) else {}
                code = body.get("code") or (body.get("error") or {}).get("code") if body else None
                if openai_client.is_context_length_error(exc.status_code, code, detail):
                    raise _ContextTooLong(exc.status_code, estimate_messages(messages), detail) from None
                if wanted is not None and openai_client.refuses_response_format(exc.status_code, detail):
                    raise _FormatRefused(detail) from None
            raise self._as_project_error(exc, attempts) from None
        self._record(started, raw.retries_taken, getattr(response, "usage", None))
        if not response.choices:
            return None
        return response.choices[0].message.content

    def _as_project_error(self, exc: openai.APIError, attempts: int | None) -> errors.LLMError:
        """Retryable failures (429; timeouts, 408/409/5xx, connection errors) become LLMRateLimited / LLMTimeout,
        which the state machine retries later; what retrying cannot fix (another 4xx, a refused request) is an
        LLMError that fails the table or theme for good. Every message names the cause."""
        if isinstance(exc, openai.RateLimitError):
            return errors.LLMRateLimited(f"{self._describe()} is rate limiting (HTTP 429){_after(attempts)}")
        if isinstance(exc, openai.APIStatusError):
            detail = self._scrub(str(getattr(exc, "message", "")))[:300]
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                return errors.LLMTimeout(f"{self._describe()} failed with HTTP {exc.status_code}{_after(attempts)}: "
                                         f"{detail}")
            return errors.LLMError(f"{self._describe()} rejected the request with HTTP {exc.status_code}: {detail}")
        if isinstance(exc, openai.APITimeoutError):
            return errors.LLMTimeout(f"{self._describe()} did not answer within {self.settings.llm_timeout_seconds:g} s"
                                     f"{_after(attempts)}")
        if isinstance(exc, openai.APIConnectionError):
            return errors.LLMTimeout(f"{self._describe()} could not be reached{_after(attempts)}: "
                                     f"{self._scrub(type(exc.__cause__ or exc).__name__)}")
        return errors.LLMError(f"{self._describe()} failed: {self._scrub(str(exc))[:300]}")

    def _record_failure(self, started: float, exc: openai.APIError) -> int | None:
        """Counts a failed call from the last request the client sent; returns its attempts (None if unknown)."""
        retries = retries_taken(getattr(exc, "request", None))
        self._record(started, retries, None)
        return None if retries is None else retries + 1

    def _record(self, started: float, retries: int | None, usage: Any) -> None:
        """`retries` None (not known) counts the one call known to have been made, and no retry."""
        elapsed = time.monotonic() - started
        with self._usage_lock:
            self.usage.calls += 1 + (retries or 0)
            self.usage.retries += retries or 0
            self.usage.seconds = round(self.usage.seconds + elapsed, 3)
            if usage is not None:
                self.usage.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
                self.usage.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        if retries:
            logger.info("LLM call needed retries", extra={"retries": retries, "seconds": round(elapsed, 2)})

