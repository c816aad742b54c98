"""Secrets by reference (#12 item 3): `secretsmanager:` / `ssm:` values read from (moto) Secrets Manager and SSM
Parameter Store at run time, cached per container, errors naming the reference and never a value."""
from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from chalicelib import secrets
from chalicelib.config import get_settings
from chalicelib.errors import SecretUnavailable

DB_URL = "postgresql://reader:p%40ss@db.internal:5432/sales"


@pytest.fixture
def aws(monkeypatch):
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name in ("DATA_PIPELINE_DB_URL", "PGVECTOR_DB_URL", "LLM_API_KEY", "EMBEDDING_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    secrets.clear_cache()
    with mock_aws():
        yield
    secrets.clear_cache()


def test_database_urls_and_provider_keys_come_from_secrets_manager_and_ssm(aws, monkeypatch):
    boto3.client("secretsmanager").create_secret(Name="data-pipeline/db", SecretString=DB_URL)
    boto3.client("ssm").put_parameter(Name="/data-pipeline/llm-key", Value="sk-llm-123", Type="SecureString")
    boto3.client("ssm").put_parameter(Name="/data-pipeline/embedding-key", Value="sk-emb-456", Type="SecureString")
    monkeypatch.setenv("DATA_PIPELINE_DB_URL", "secretsmanager:data-pipeline/db")
    monkeypatch.setenv("LLM_API_KEY", "ssm:/data-pipeline/llm-key")
    monkeypatch.setenv("EMBEDDING_API_KEY", "ssm:/data-pipeline/embedding-key")
    settings = get_settings()
    assert settings.db_url == DB_URL
    assert settings.pgvector_db_url == DB_URL  # PGVECTOR_DB_URL unset: the business database's
    assert settings.llm_api_key == "sk-llm-123" and settings.embedding_api_key == "sk-emb-456"


def test_an_rds_json_secret_becomes_a_postgresql_url(aws, monkeypatch):
    rds = {"engine": "postgres", "username": "vanna", "password": "p@ss:/w0rd", "host": "vectors.internal",
           "port": 5433, "dbname": "rag"}
    arn = boto3.client("secretsmanager").create_secret(Name="data-pipeline/vectors",
                                                       SecretString=json.dumps(rds))["ARN"]
    monkeypatch.setenv("PGVECTOR_DB_URL", f"secretsmanager:{arn}")
    assert get_settings().pgvector_db_url == "postgresql://vanna:p%40ss%3A%2Fw0rd@vectors.internal:5433/rag"


def test_plain_values_are_used_as_they_are_without_any_aws_call(monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_DB_URL", DB_URL)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: a call would fail
    assert get_settings().db_url == DB_URL


def test_values_are_cached_until_the_ttl_then_read_again(aws, monkeypatch):
    client = boto3.client("secretsmanager")
    client.create_secret(Name="data-pipeline/llm", SecretString="old")
    monkeypatch.setenv("LLM_API_KEY", "secretsmanager:data-pipeline/llm")
    monkeypatch.setenv("DATA_PIPELINE_SECRET_CACHE_SECONDS", "0.4")
    assert get_settings().llm_api_key == "old"
    client.put_secret_value(SecretId="data-pipeline/llm", SecretString="new")
    assert get_settings().llm_api_key == "old"
    time.sleep(0.5)
    assert get_settings().llm_api_key == "new"


def test_a_missing_secret_names_the_variable_and_reference_not_a_value(aws, monkeypatch):
    boto3.client("ssm").put_parameter(Name="/data-pipeline/other", Value="hunter2", Type="SecureString")
    monkeypatch.setenv("DATA_PIPELINE_DB_URL", "secretsmanager:data-pipeline/absent")
    with pytest.raises(SecretUnavailable) as caught:
        get_settings()
    message = str(caught.value)
    assert "DATA_PIPELINE_DB_URL" in message and "data-pipeline/absent" in message
    assert "ResourceNotFoundException" in message
    monkeypatch.setenv("DATA_PIPELINE_DB_URL", "ssm:")
    with pytest.raises(SecretUnavailable, match="names no secret"):
        get_settings()


def test_a_json_secret_that_is_not_a_database_secret_is_refused(aws, monkeypatch):
    boto3.client("secretsmanager").create_secret(Name="data-pipeline/db", SecretString='{"password": "x"}')
    monkeypatch.setenv("DATA_PIPELINE_DB_URL", "secretsmanager:data-pipeline/db")
    with pytest.raises(SecretUnavailable, match="not a database secret") as caught:
        get_settings()
    assert '"x"' not in str(caught.value)
