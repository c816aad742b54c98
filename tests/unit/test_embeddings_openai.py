"""OpenAIEmbeddings with the real `openai` client against a tiny local HTTP stub (defined here)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib import errors
from chalicelib.config import get_settings
from chalicelib.providers.embeddings import OpenAIEmbeddings
from chalicelib.providers.factory import get_embedding_provider


class EmbeddingStub:
    """POST /v1/embeddings: answers from a script of (status, body-or-callable, headers); default 200 with vectors."""

    def __init__(self, dim: int = 4):
        self.dim = dim
        self.script: list[tuple[int, object, dict]] = []
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization"),
                                      "at": time.monotonic()})
                status, payload, headers = stub.script.pop(0) if stub.script else (200, None, {})
                if payload is None:
                    payload = stub.vectors(body["input"])
                elif callable(payload):
                    payload = payload(body["input"])
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def vectors(self, inputs, dim=None):
        dim = dim or self.dim
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), float(i)] + [0.5] * (dim - 2)}
                for i, t in enumerate(inputs)]
        data.reverse()  # servers may answer out of order; the index is what counts
        return {"object": "list", "model": "stub", "data": data, "usage": {"prompt_tokens": 1, "total_tokens": 1}}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = EmbeddingStub()
    yield s
    s.close()


def _settings(stub, **overrides):
    base = replace(get_settings(), embedding_base_url=stub.base_url, embedding_api_key="sk-test",
                   embedding_model="stub-embed", embedding_dim=None, embedding_batch_size=3, llm_max_retries=2,
                   llm_timeout_seconds=5)
    return replace(base, **overrides)


def _provider(stub, **overrides):
    return OpenAIEmbeddings(_settings(stub, **overrides))


def test_batches_and_order(stub):
    provider = _provider(stub)
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    vecs = provider.embed(texts)
    assert [v[0] for v in vecs] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [len(r["body"]["input"]) for r in stub.requests] == [3, 2]
    assert stub.requests[0]["path"] == "/v1/embeddings"
    assert stub.requests[0]["body"]["model"] == "stub-embed"
    assert stub.requests[0]["auth"] == "Bearer sk-test"
    assert provider.dimension == 4


def test_dimension_from_setting_or_first_answer(stub):
    provider = _provider(stub, embedding_dim=4)
    assert provider.dimension == 4 and stub.requests == []
    provider = _provider(stub)
    assert provider.dimension == 4 and len(stub.requests) == 1


def test_429_then_200_is_retried_with_retry_after(stub):
    stub.script = [(429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": "0.01"}),
                   (503, {"error": {"message": "busy"}}, {})]
    provider = _provider(stub)
    assert len(provider.embed(["x"])) == 1
    assert len(stub.requests) == 3
    # The openai client retries: it waits what Retry-After says (0.01 s), else its own backoff (0.5 s, 1 s, …).
    first_wait, second_wait = (b["at"] - a["at"] for a, b in zip(stub.requests, stub.requests[1:], strict=False))
    assert first_wait < 0.3 <= second_wait


def test_persistent_failure_raises_embedding_error(stub):
    stub.script = [(500, {"error": {"message": "down"}}, {})] * 3
    provider = _provider(stub)
    with pytest.raises(errors.EmbeddingError, match="3 attempt"):
        provider.embed(["x"])
    assert len(stub.requests) == 3


def test_client_error_is_not_retried(stub):
    stub.script = [(400, {"error": {"message": "bad input"}}, {})]
    provider = _provider(stub)
    with pytest.raises(errors.EmbeddingError, match="bad input"):
        provider.embed(["x"])
    assert len(stub.requests) == 1


def test_wrong_shapes_are_errors_not_vectors(stub):
    stub.script = [(200, lambda inputs: stub.vectors(inputs[:-1]), {})]
    provider = _provider(stub)
    with pytest.raises(errors.EmbeddingError, match="vectors for"):
        provider.embed(["a", "b"])
    stub.script = [(200, lambda inputs: stub.vectors(inputs, dim=6), {})]
    provider = _provider(stub, embedding_dim=4)
    with pytest.raises(errors.EmbeddingError, match="6 dimensions, expected 4"):
        provider.embed(["a"])


def test_unreachable_endpoint_raises(monkeypatch):
    settings = replace(get_settings(), embedding_base_url="http://127.0.0.1:9/v1", embedding_model="m",
                       llm_max_retries=1, llm_timeout_seconds=2)
    provider = OpenAIEmbeddings(settings)
    with pytest.raises(errors.EmbeddingError):
        provider.embed(["x"])


def test_get_embedding_provider_picks_remote(monkeypatch, stub):
    monkeypatch.setenv("EMBEDDING_BASE_URL", stub.base_url)
    monkeypatch.setenv("EMBEDDING_DIM", "4")
    provider = get_embedding_provider()
    assert isinstance(provider, OpenAIEmbeddings) and provider.dimension == 4
