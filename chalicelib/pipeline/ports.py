"""The ports the domain calls: what it asks of a language model and of an embedding model.

chalicelib.providers implements them (an OpenAI-compatible adapter, the heuristic stand-in, MiniLM) and
chalicelib.providers.factory picks one; the domain never imports a provider.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from chalicelib.pipeline.models import CommentSuggestion, LLMUsage, QAPair, RepairRequest, TableDoc, TableMeta, Theme


class LLMProvider(Protocol):
    """What the pipeline asks of a language model (or of the rules standing in for one)."""

    name: str
    kind: str  # "llm" (a language model wrote it) or "heuristic" (rules over the schema)
    usage: LLMUsage

    def suggest_table_comments(self, meta: TableMeta, samples: list[dict], business_context: str) -> CommentSuggestion:
        ...

    def extract_themes(self, docs: list[TableDoc], business_context: str, count: int) -> list[Theme]:
        ...

    def generate_pairs(self, theme: Theme, docs: list[TableDoc], business_context: str, count: int) -> list[QAPair]:
        ...

    def repair_sql(self, requests: list[RepairRequest], docs: list[TableDoc]) -> dict[int, str]:
        ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    """Vectors for training_load: one list of `dimension` floats per text, in the order given."""

    model_name: str
    dimension: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...
