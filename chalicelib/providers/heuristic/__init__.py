"""HeuristicProvider: a deterministic, schema-driven stand-in used when no LLM is configured.

It is honest about what it is: comments come from existing comments and a vocabulary of common column names
(data/*.json; nothing is guessed when a name is unknown), themes from foreign-key clusters, Question→SQL pairs
from templates over real columns. Every SQL it writes is built from the catalog and must pass EXPLAIN. It does
not understand the business; an LLM writes far better comments and questions.
"""
from __future__ import annotations

from chalicelib.pipeline.models import CommentSuggestion, LLMUsage, QAPair, RepairRequest, TableDoc, TableMeta, Theme
from chalicelib.pipeline.schema_text import select_theme_docs
from chalicelib.pipeline.text import is_chinese
from chalicelib.providers.heuristic.columns import enum_candidates
from chalicelib.providers.heuristic.pairs import generate_template_pairs
from chalicelib.providers.heuristic.repair import repair_mechanically
from chalicelib.providers.heuristic.themes import extract_fk_themes
from chalicelib.providers.heuristic.vocabulary import guess_column_comment, guess_table_comment

HEURISTIC_NAME = "heuristic (no LLM configured)"


class HeuristicProvider:
    """Deterministic stand-in for an LLM (no network, no randomness). Not intelligent: see the module docstring.

    Implements chalicelib.pipeline.ports.LLMProvider; `usage.calls` counts the questions it was asked."""

    name = HEURISTIC_NAME
    kind = "heuristic"  # what wrote its comments (TableDoc.comment_sources); never reported as an LLM

    def __init__(self) -> None:
        self.usage = LLMUsage(provider=self.name)

    def _count_call(self) -> None:
        self.usage.calls += 1

    def suggest_table_comments(self, meta: TableMeta, samples: list[dict], business_context: str) -> CommentSuggestion:
        """Existing comments, plus vocabulary meanings of well-known column names; unknown names stay absent."""
        self._count_call()
        zh = is_chinese(business_context)
        comments: dict[str, str] = {}
        for col in meta.columns:
            comment = col.comment or guess_column_comment(col.name, zh)
            if comment:
                comments[col.name] = comment
        return CommentSuggestion(
            table_comment=meta.comment or guess_table_comment(meta.ref.name, zh),
            column_comments=comments,
            enum_candidates=enum_candidates(meta, samples),
        )

    def extract_themes(self, docs: list[TableDoc], business_context: str, count: int) -> list[Theme]:
        """Foreign-key clusters (big ones split by hub table), padded with per-table themes up to `count`."""
        self._count_call()
        return extract_fk_themes(docs, is_chinese(business_context), count)

    def generate_pairs(self, theme: Theme, docs: list[TableDoc], business_context: str, count: int) -> list[QAPair]:
        """Up to `count` template pairs over the theme's real columns, in a fixed order."""
        self._count_call()
        if count <= 0:
            return []
        return generate_template_pairs(select_theme_docs(theme, docs), docs, is_chinese(business_context), count)

    def repair_sql(self, requests: list[RepairRequest], docs: list[TableDoc]) -> dict[int, str]:
        """Mechanical fixes only (misspelt column/table names, missing ';'); what it cannot fix is omitted."""
        self._count_call()
        return repair_mechanically(requests, docs)
