"""How much a prompt may hold: a conservative, tokenizer-free token estimate, the budget every LLM call is built
against (LLM_CONTEXT_TOKENS minus LLM_ANSWER_TOKENS), and schema text cut to fit it.

The prompt builders (chalicelib.providers.prompts) use this to show a model only what fits: the tables a theme
or a failing query uses, in full while they fit and leaner after; a compact one-line-per-table summary (name,
comment, foreign-key targets) for themes, in chunks when even that is too long.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.pipeline import sqltext
from chalicelib.pipeline.models import RepairRequest, TableDoc, TableRef
from chalicelib.pipeline.schema_text import find_doc, render_schema_text

# Chat formats wrap every message in a few tokens of their own (role, separators) and prime the answer.
MESSAGE_OVERHEAD_TOKENS = 8
_ASCII_PIECES = re.compile(r"[A-Za-z]+|[0-9]+|\n+|[ \t\r\f\v]+|[^A-Za-z0-9\s]")


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens `text` takes in the BPE tokenizers of current chat models, without one.

    Calibration (a deliberate over-count, so that a prompt estimated under the budget fits):
    - every non-ASCII character counts 1 token: a CJK character is about 0.6-0.8 tokens for GPT-4o (o200k), Qwen
      and DeepSeek and about 1 for most of them in cl100k; accented letters and symbols are at most that;
    - a run of ASCII letters counts 1 token per 4 letters (rounded up, at least 1): English words are ~1 token
      each and identifiers split at `_`, which counts on its own;
    - a run of digits 1 token per 3 digits (tokenizers group digits by up to three);
    - every ASCII punctuation character 1 token (SQL and JSON are punctuation-dense);
    - blanks between words nothing (they merge into the next word's token), a run of newlines 1.

    Never more than one token per character, and the estimate of a concatenation never exceeds the sum of its
    parts', so the parts of a prompt can be estimated one by one and cut by characters.
    """
    if not text:
        return 0
    ascii_text = text.encode("ascii", "ignore").decode("ascii")
    tokens = len(text) - len(ascii_text)
    for piece in _ASCII_PIECES.findall(ascii_text):
        first = piece[0]
        if first.isalpha():
            tokens += -(-len(piece) // 4)
        elif first.isdigit():
            tokens += -(-len(piece) // 3)
        elif first == "\n":
            tokens += 1
        elif not first.isspace():
            tokens += 1
    return tokens


def estimate_messages(messages: Iterable[dict[str, Any]]) -> int:
    """Tokens of a chat request's messages, each with its overhead."""
    return sum(estimate_tokens(str(m.get("content") or "")) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def clip_to_tokens(text: str, tokens: int, marker: str = "…") -> str:
    """`text`, cut (by characters, which is safe: a token is at least one character) to at most `tokens`."""
    if estimate_tokens(text) <= tokens:
        return text
    keep = max(0, tokens - len(marker))
    return text[:keep] + marker if keep else ""


@dataclass(frozen=True)
class PromptBudget:
    """The tokens a request's messages may take: the context window minus what is kept for the answer."""

    context_tokens: int = 32768
    answer_tokens: int = 4096

    @classmethod
    def from_settings(cls, settings: Any) -> PromptBudget:
        return cls(int(getattr(settings, "llm_context_tokens", cls.context_tokens)),
                   int(getattr(settings, "llm_answer_tokens", cls.answer_tokens)))

    @property
    def prompt_tokens(self) -> int:
        return max(512, self.context_tokens - self.answer_tokens)


# -- schema text within a budget --------------------------------------------------------------------------------


def lean_doc(doc: TableDoc) -> TableDoc:
    """The doc without column comments, enum values, profiled values and ranges: column names and types, keys, the
    table comment."""
    meta = replace(doc.meta, columns=[replace(c, comment=None, enum_values=None) for c in doc.meta.columns])
    return replace(doc, meta=meta, column_comments={}, enums={}, column_values={}, value_ranges={})


def _truncated_doc(doc: TableDoc, tokens: int) -> TableDoc | None:
    """The lean doc with as many leading columns as fit in `tokens` (None when not even one does)."""
    lean = lean_doc(doc)
    columns = lean.meta.columns
    low, high = 0, len(columns)
    while low < high:  # the most columns that fit
        middle = (low + high + 1) // 2
        candidate = replace(lean, meta=replace(lean.meta, columns=columns[:middle], foreign_keys=[], inferred_keys=[]))
        if estimate_tokens(render_schema_text([candidate])) <= tokens:
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return None
    return replace(lean, meta=replace(lean.meta, columns=columns[:low], foreign_keys=[], inferred_keys=[]))


def fit_schema_text(docs: list[TableDoc], tokens: int) -> tuple[str, list[TableDoc]]:
    """(schema text, docs shown) within `tokens`: the docs in order, each in full while the full text fits, then
    lean (no comments or values), the first one cut to its leading columns if nothing else fits; the rest are
    left out. The caller names the tables left out when it matters."""
    parts: list[str] = []
    shown: list[TableDoc] = []
    used = 0
    separator = estimate_tokens("\n\n")
    for doc in docs:
        room = tokens - used - (separator if parts else 0)
        if room < 16:
            break
        for candidate in (doc, lean_doc(doc)):
            text = render_schema_text([candidate])
            cost = estimate_tokens(text)
            if cost <= room:
                break
        else:
            if shown:
                continue  # a later, smaller table may still fit
            cut = _truncated_doc(doc, room)
            if cut is None:
                continue
            candidate, text = cut, render_schema_text([cut])
            cost = estimate_tokens(text)
        parts.append(text)
        shown.append(doc)
        used += cost + (separator if len(parts) > 1 else 0)
    return "\n\n".join(parts), shown


def summary_line(doc: TableDoc) -> str:
    """One line per table for theme extraction: `schema.table -- comment -> referenced tables`."""
    meta = doc.meta
    line = meta.ref.display_name
    comment = doc.table_comment or meta.comment
    if comment:
        line += f" -- {' '.join(comment.split())[:120]}"
    targets = list(dict.fromkeys(TableRef(fk.ref_schema, fk.ref_table).display_name for fk in meta.relationships))
    if targets:
        line += " -> " + ", ".join(targets)
    return line


def clustered(docs: list[TableDoc]) -> list[TableDoc]:
    """The docs grouped by foreign-key cluster (tables that reference each other side by side, clusters in order of
    first appearance), so that a chunk of the summary keeps related tables together."""
    index = {doc.meta.ref: i for i, doc in enumerate(docs)}
    parent = list(range(len(docs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, doc in enumerate(docs):
        for fk in doc.meta.relationships:
            j = index.get(TableRef(fk.ref_schema, fk.ref_table))
            if j is not None:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    order: dict[int, list[TableDoc]] = {}
    for i, doc in enumerate(docs):
        order.setdefault(root(i), []).append(doc)
    return [doc for group in order.values() for doc in group]


def chunk_lines(lines: list[str], tokens: int) -> list[list[str]]:
    """The lines packed in order into chunks of at most `tokens` each (a line longer than that is cut)."""
    chunks: list[list[str]] = [[]]
    used = 0
    for line in lines:
        cost = estimate_tokens(line) + 1
        if cost > tokens:
            line, cost = clip_to_tokens(line, tokens - 1), tokens
        if chunks[-1] and used + cost > tokens:
            chunks.append([])
            used = 0
        chunks[-1].append(line)
        used += cost
    return [chunk for chunk in chunks if chunk]


# -- the tables a failing query uses ----------------------------------------------------------------------------


def select_repair_docs(requests: list[RepairRequest], docs: list[TableDoc], close_matches: int = 2
                       ) -> list[TableDoc]:
    """The docs of the tables the failing queries name (read by PostgreSQL's parser), in order; a name that is no
    known table (a typo, often the error itself) brings the closest known names instead."""
    chosen: list[TableDoc] = []
    names: dict[str, TableDoc] | None = None
    for request in requests:
        for schema, name in sqltext.referenced_tables(request.sql):
            written = f"{schema}.{name}" if schema else name
            doc = find_doc(written, docs)
            if doc is not None:
                candidates = [doc]
            else:
                if names is None:
                    names = {d.meta.ref.name.lower(): d for d in docs}
                candidates = [names[m] for m in difflib.get_close_matches(name.lower(), list(names), close_matches)]
            chosen.extend(d for d in candidates if d not in chosen)
    return chosen
