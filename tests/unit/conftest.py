"""Fixtures of the store tests: moto S3 and DynamoDB behind the project's stores."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib.stores.files import FileStore
from chalicelib.stores.tasks import TaskStore, create_table
from tests.support.aws_api import make_moto_dynamodb_writes_atomic


@pytest.fixture
def moto_credentials(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def files(moto_credentials):
    """A FileStore on a moto bucket."""
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="logs-bucket")
        yield FileStore(bucket="logs-bucket")


@pytest.fixture
def store(moto_credentials, monkeypatch):
    """A TaskStore on a moto table whose conditional writes are atomic per item, as in DynamoDB."""
    make_moto_dynamodb_writes_atomic(monkeypatch)
    with mock_aws():
        yield TaskStore(create_table(boto3.resource("dynamodb"), "tasks"))
