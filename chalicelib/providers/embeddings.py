"""Embedding adapters of the domain's EmbeddingProvider port (chalicelib.pipeline.ports): an OpenAI-compatible
endpoint, or the offline MiniLM model.

A failed embedding is an error (errors.EmbeddingError), never a random or zero vector.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib import errors
from chalicelib.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_REMOTE_MODEL = "text-embedding-3-small"
_MAX_BACKOFF_SECONDS = 30.0


class MiniLMEmbeddings:
    """all-MiniLM-L6-v2 (384-d) computed in-process; the model loads on the first call."""

    model_name = "all-MiniLM-L6-v2"
    dimension = 384

    def embed(self, texts: list[str]) -> list[list[float]]:
        from chalicelib.providers import minilm

        if not texts:
            return []
        return minilm.embed(list(texts)).tolist()


class OpenAIEmbeddings:
    """`POST {EMBEDDING_BASE_URL}/embeddings` through the official `openai` client, with our own retries.

    429, 5xx, timeouts and connection errors are retried with exponential backoff (Retry-After honoured);
    any other failure, or an answer of the wrong shape, raises errors.EmbeddingError.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 1.0,
    ):
        if not settings.embedding_base_url:
            raise errors.EmbeddingError("EMBEDDING_BASE_URL is not set")
        self.model_name = settings.embedding_model or DEFAULT_REMOTE_MODEL
        self._settings = settings
        self._client = client
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._max_retries = max(0, settings.llm_max_retries)
        self._batch_size = max(1, settings.embedding_batch_size)
        self._dimension: int | None = settings.embedding_dim
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        if self._client is None:
            from chalicelib.providers.openai_client import shared_openai_client

            self._client = shared_openai_client(self._settings.embedding_base_url,
                                                self._settings.embedding_api_key or "not-needed",
                                                self._settings.llm_timeout_seconds)
        return self._client

    @property
    def dimension(self) -> int:
        """EMBEDDING_DIM when configured, otherwise the length of a first answer (asked once)."""
        if self._dimension is None:
            self.embed(["dimension probe"])
        assert self._dimension is not None
        return self._dimension

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(self._embed_batch(list(texts[start:start + self._batch_size])))
        return vectors

    def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        import openai

        attempt = 0
        while True:
            try:
                response = self._get_client().embeddings.create(
                    model=self.model_name, input=batch, encoding_format="float"
                )
                return self._check_answer(response, len(batch))
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as exc:
                retryable, cause = True, exc
            except openai.APIStatusError as exc:
                retryable, cause = exc.status_code >= 500, exc
            except openai.OpenAIError as exc:
                retryable, cause = False, exc
            if not retryable or attempt >= self._max_retries:
                raise errors.EmbeddingError(
                    f"embedding request to {self.model_name} failed after {attempt + 1} attempt(s): "
                    f"{_describe(cause)}"
                ) from cause
            delay = self._backoff_delay(attempt, cause)
            logger.warning("embedding request failed (%s); retrying in %.1fs", _describe(cause), delay)
            self._sleep(delay)
            attempt += 1

    def _backoff_delay(self, attempt: int, exc: Exception) -> float:
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                return min(_MAX_BACKOFF_SECONDS, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(_MAX_BACKOFF_SECONDS, self._backoff_base * (2**attempt) * (1 + random.random() * 0.25))

    def _check_answer(self, response: Any, expected: int) -> list[list[float]]:
        data = sorted(getattr(response, "data", None) or [], key=lambda d: d.index)
        if len(data) != expected:
            raise errors.EmbeddingError(f"embedding answer has {len(data)} vectors for {expected} inputs")
        vectors: list[list[float]] = []
        for item in data:
            vec = item.embedding
            if not isinstance(vec, list) or not vec or not all(isinstance(v, int | float) for v in vec):
                raise errors.EmbeddingError("embedding answer holds something that is not a list of numbers")
            if not all(math.isfinite(v) for v in vec):
                raise errors.EmbeddingError("embedding answer holds NaN or infinite values")
            vectors.append([float(v) for v in vec])
        with self._lock:
            if self._dimension is None:
                self._dimension = len(vectors[0])
        for vec in vectors:
            if len(vec) != self._dimension:
                raise errors.EmbeddingError(
                    f"embedding has {len(vec)} dimensions, expected {self._dimension} (EMBEDDING_DIM)"
                )
        return vectors


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {str(exc)[:300]}"
