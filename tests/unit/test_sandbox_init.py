"""A step function's init phase builds the shared clients of the configured chat and embedding endpoints once,
before the first invocation needs them (chalicelib.steps.blueprint.prime_step_sandbox): the invocations then use
those very clients; nothing is built for an endpoint that is not configured; a broken setting is logged at init
and left to the invocation, which reports it."""
from __future__ import annotations

import logging

import pytest

from chalicelib.config import get_settings
from chalicelib.providers import openai_client
from chalicelib.providers.embeddings import OpenAIEmbeddings
from chalicelib.providers.factory import prime_shared_clients
from chalicelib.providers.openai_chat import OpenAIProvider
from chalicelib.steps.blueprint import in_step_sandbox, prime_step_sandbox

ENDPOINT_VARIABLES = ("LLM_BASE_URL", "LLM_API_KEY", "EMBEDDING_BASE_URL", "EMBEDDING_API_KEY", "EMBEDDING_MODEL")


@pytest.fixture
def no_clients(monkeypatch):
    monkeypatch.setattr(openai_client, "_clients", {})
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return openai_client._clients


def test_the_configured_endpoints_get_their_clients_at_init(no_clients, monkeypatch):
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LLM_API_KEY", "chat-key")
    monkeypatch.setenv("EMBEDDING_BASE_URL", "http://127.0.0.1:10/v1")
    monkeypatch.setenv("EMBEDDING_API_KEY", "embedding-key")
    assert prime_shared_clients() == 2
    primed = dict(no_clients)
    assert sorted(key[:2] for key in primed) == [("http://127.0.0.1:10/v1", "embedding-key"),
                                                  ("http://127.0.0.1:9/v1", "chat-key")]
    settings = get_settings()
    # What the invocations build afterwards is the primed client, not a new one.
    assert OpenAIProvider(settings)._client in primed.values()
    assert OpenAIEmbeddings(settings)._get_client() in primed.values()
    assert dict(no_clients) == primed
    assert prime_shared_clients() == 2 and dict(no_clients) == primed  # a second init builds nothing new


def test_nothing_is_built_for_endpoints_that_are_not_configured(no_clients, monkeypatch):
    from chalicelib.providers import embeddings

    monkeypatch.setattr(embeddings, "offline_embeddings", lambda *a: pytest.fail("the offline model was loaded"))
    assert prime_shared_clients() == 0
    assert no_clients == {}


def test_a_broken_setting_is_logged_at_init_and_left_to_the_invocation(no_clients, monkeypatch, caplog):
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "soon")
    with caplog.at_level(logging.WARNING, logger="chalicelib.steps.blueprint"):
        prime_step_sandbox()  # does not raise
    assert "the endpoint clients were not built" in caplog.text and "ValueError" in caplog.text
    assert no_clients == {}
    with pytest.raises(ValueError):
        get_settings()  # what the first invocation meets, and reports


@pytest.mark.parametrize(("execution_env", "function", "expected"), [
    ("AWS_Lambda_python3.11", "data-pipeline-dev-step_ddl_tables", True),
    ("AWS_Lambda_python3.11", "data-pipeline-dev", False),  # the API's function
    ("AWS_Lambda_python3.11", "data-pipeline-dev-api_key_authorizer", False),
    (None, "data-pipeline-dev-step_ddl_tables", False),  # not a Lambda sandbox (a test, the local stack)
])
def test_only_a_step_functions_sandbox_primes_at_import(monkeypatch, execution_env, function, expected):
    if execution_env is None:
        monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    else:
        monkeypatch.setenv("AWS_EXECUTION_ENV", execution_env)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", function)
    assert in_step_sandbox() is expected
