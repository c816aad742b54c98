"""The one place that picks the adapters behind the domain's ports (chalicelib.pipeline.ports) from the settings."""
from __future__ import annotations

from chalicelib.config import Settings, get_settings
from chalicelib.pipeline.ports import EmbeddingProvider, LLMProvider
from chalicelib.providers.embeddings import configured_embeddings
from chalicelib.providers.heuristic import HeuristicProvider
from chalicelib.providers.openai_chat import OpenAIProvider


def get_llm_provider(settings: Settings | None = None) -> LLMProvider:
    """OpenAIProvider when LLM_BASE_URL is configured, else the deterministic HeuristicProvider."""
    settings = settings or get_settings()
    if settings.has_llm:
        return OpenAIProvider(settings)
    return HeuristicProvider()


def get_embedding_provider(settings: Settings | None = None) -> EmbeddingProvider:
    """OpenAI-compatible embeddings when EMBEDDING_BASE_URL is set, else the offline model EMBEDDING_MODEL names
    (default providers.embeddings.DEFAULT_OFFLINE_MODEL)."""
    return configured_embeddings(settings or get_settings())
