"""Test helper (helper A): the HTTP API inside moto, with bucket, table and a trivial state machine."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from chalice.test import Client
from moto import mock_aws

from chalicelib.stores.tasks import create_table
from infra.local.stack import make_moto_dynamodb_writes_atomic  # noqa: F401  (re-exported for tests)

BUCKET = "dp-test-bucket"
TABLE = "dp-test-tasks"
PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


@contextmanager
def api_environment(monkeypatch, project_dir) -> Iterator[Client]:
    """moto + env + resources; the Chalice test client reads no .chalice config (project_dir is empty)."""
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "DATA_PIPELINE_BUCKET": BUCKET,
                        "DATA_PIPELINE_TABLE": TABLE,
                        "DATA_PIPELINE_DB_URL": "postgresql://app:pw@localhost:5432/highway_db"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "DATA_PIPELINE_STATE_MACHINE_ARN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        create_table(boto3.resource("dynamodb"), TABLE)
        iam = boto3.client("iam")
        role = iam.create_role(RoleName="sfn-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        arn = boto3.client("stepfunctions").create_state_machine(
            name="data_pipeline", definition=PASS_DEFINITION, roleArn=role)["stateMachineArn"]
        monkeypatch.setenv("DATA_PIPELINE_STATE_MACHINE_ARN", arn)
        from app import app

        yield Client(app, project_dir=str(project_dir))


def send_api_key(client: Client, monkeypatch, key: str = "deployed-test-key") -> None:
    """As a deployment must: DATA_PIPELINE_API_KEY set and every request of `client` carrying the Bearer key
    (for tests that act as the stack on AWS, DATA_PIPELINE_LOCAL=0, where an open API is refused)."""
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", key)
    request = client.http.request

    def with_key(method: str, path: str, headers: dict | None = None, body: bytes = b""):
        return request(method, path, headers={"Authorization": f"Bearer {key}", **(headers or {})}, body=body)

    monkeypatch.setattr(client.http, "request", with_key)


def post_json(client: Client, path: str, body, headers: dict | None = None):
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.http.post(path, headers={"Content-Type": "application/json", **(headers or {})},
                            body=raw.encode() if isinstance(raw, str) else raw)


def multipart(filename: str, data: bytes, field: str = "file") -> tuple[dict, bytes]:
    boundary = "----dptestboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body
