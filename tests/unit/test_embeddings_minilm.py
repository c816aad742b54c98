"""The offline all-MiniLM-L6-v2 forward pass: shape, normalisation, determinism, semantics, batching."""
from __future__ import annotations

import numpy as np
import pytest

from chalicelib.providers import minilm
from chalicelib.providers.embeddings import MiniLMEmbeddings
from chalicelib.providers.factory import get_embedding_provider


@pytest.fixture(scope="module")
def provider():
    return MiniLMEmbeddings()


def _cos(a, b):
    return float(np.dot(a, b))


def test_dimension_and_unit_norm(provider):
    vecs = provider.embed(["A man is eating food.", "", "收费站"])
    assert provider.dimension == 384 and provider.model_name == "all-MiniLM-L6-v2"
    arr = np.array(vecs, dtype=np.float32)
    assert arr.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert all(isinstance(v, float) for v in vecs[0])


def test_deterministic_and_batch_equals_single(provider):
    texts = ["How many vehicles passed the toll station yesterday?", "短文本", "x " * 150, "select 1"]
    batch = np.array(provider.embed(texts))
    singles = np.array([provider.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    np.testing.assert_array_equal(batch, np.array(provider.embed(texts)))


def test_similar_sentences_are_closer(provider):
    e = np.array(provider.embed([
        "A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today.",
        "今天高速公路收费站的车流量", "收费站今日通行车辆数量", "我喜欢吃苹果",
    ]))
    assert _cos(e[0], e[1]) > 0.6 > _cos(e[0], e[2])
    # The reference model scores this pair ~0.755 (sentence-transformers).
    assert abs(_cos(e[0], e[1]) - 0.755) < 0.01
    assert _cos(e[3], e[4]) > _cos(e[3], e[5])


def test_long_input_is_truncated_not_rejected(provider):
    model = minilm.get_model()
    assert len(model.tokenizer.encode("word " * 1000).ids) == minilm.MAX_SEQ_LENGTH
    assert len(provider.embed(["word " * 1000])[0]) == 384


def test_model_is_a_process_singleton():
    assert minilm.get_model() is minilm.get_model()


def test_minilm_stays_selectable_by_embedding_model(monkeypatch):
    monkeypatch.delenv("EMBEDDING_BASE_URL", raising=False)
    monkeypatch.setenv("EMBEDDING_MODEL", "all-MiniLM-L6-v2")
    assert isinstance(get_embedding_provider(), MiniLMEmbeddings)
    assert MiniLMEmbeddings().embed([]) == []
