"""A task's own db_connection password never sits in clear in DynamoDB (#12 item 3): it is sealed with KMS (the
local stack's moto KMS here), masked on every read, and the step Lambdas still connect with it."""
from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.config import get_business_db_url, get_settings, get_vector_db_url
from chalicelib.errors import TaskSecretError
from chalicelib.stores import task_items
from chalicelib.stores.tasks import TaskStore, create_table
from tests.conftest import run_sql

pytestmark = pytest.mark.slow

PASSWORD = "S3cret-h4-Pa55"


def _with_password(url: str) -> str:
    """The pgserver URL (trust authentication: any password logs in) with a password in it."""
    assert "postgres:@" in url, url
    return url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)


def _raw_item(stack, task_id: str) -> dict:
    return stack.client("dynamodb").get_item(TableName=stack.table_name, Key={"task_id": {"S": task_id}})["Item"]


def test_the_password_is_sealed_in_dynamodb_masked_in_answers_and_the_steps_still_connect(pipeline, scratch_db):
    # A table only the task's own database has: a step that documents it connected with the sealed URL.
    run_sql(scratch_db, "create table h4_sealed_only (id int primary key, note text)")
    url = _with_password(scratch_db)
    task_id = pipeline.create_task(task_name="sealed", db_connection=url, business_context="密封测试")

    raw = _raw_item(pipeline.stack, task_id)
    assert PASSWORD not in json.dumps(raw, ensure_ascii=False)
    assert raw["db_connection"]["S"] == url.replace(PASSWORD, "***")
    assert raw[task_items.SEALED_FIELD]["S"].startswith("kms:v1:")

    status = pipeline.status(task_id)
    assert PASSWORD not in json.dumps(status, ensure_ascii=False)
    assert status["parameters"]["db_connection"] == url.replace(PASSWORD, "***")

    pipeline.upload_tables(task_id, ["public.h4_sealed_only"])
    pipeline.execute(task_id, execution_mode="step", step_name="ddl_generation")
    final = pipeline.wait(task_id)
    assert final["step_status"]["ddl_generation"] == "completed", final
    assert "h4_sealed_only.ddl" in pipeline.files(task_id)
    assert PASSWORD not in json.dumps(_raw_item(pipeline.stack, task_id), ensure_ascii=False)
    assert TaskStore().get_task(task_id)["db_connection"] == url  # the stores open it for the steps


def test_a_url_without_password_is_stored_as_it_is(pipeline, scratch_db):
    task_id = pipeline.create_task(task_name="no password", db_connection=scratch_db)
    raw = _raw_item(pipeline.stack, task_id)
    assert raw["db_connection"]["S"] == scratch_db and task_items.SEALED_FIELD not in raw


@pytest.fixture
def moto_table(monkeypatch):
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "DATA_PIPELINE_TABLE": "h4-tasks"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name in ("DATA_PIPELINE_KMS_KEY_ID", "DATA_PIPELINE_DB_URL", "PGVECTOR_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield create_table(boto3.resource("dynamodb"), "h4-tasks")


def test_the_deployed_key_seals_with_the_task_id_as_encryption_context(moto_table, monkeypatch):
    kms = boto3.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("DATA_PIPELINE_KMS_KEY_ID", key_id)
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")
    store = TaskStore(moto_table)
    task = store.create_task({"db_connection": f"postgresql://app:{PASSWORD}@db.internal/sales"})
    raw = moto_table.get_item(Key={"task_id": task["task_id"]})["Item"]
    blob = task_items.base64.b64decode(raw[task_items.SEALED_FIELD].removeprefix("kms:v1:"))
    plain = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"task_id": task["task_id"], "field": "db_connection"})
    assert plain["KeyId"].endswith(key_id) and PASSWORD.encode() in plain["Plaintext"]
    with pytest.raises(kms.exceptions.InvalidCiphertextException):  # bound to its task: not usable for another
        kms.decrypt(CiphertextBlob=blob,
                    EncryptionContext={"task_id": "task_20990101_000000", "field": "db_connection"})
    assert store.get_task(task["task_id"])["db_connection"] == f"postgresql://app:{PASSWORD}@db.internal/sales"


def test_without_a_key_a_deployment_refuses_to_store_a_password(moto_table, monkeypatch):
    monkeypatch.setenv("DATA_PIPELINE_LOCAL", "0")
    with pytest.raises(TaskSecretError, match="DATA_PIPELINE_KMS_KEY_ID"):
        TaskStore(moto_table).create_task({"db_connection": f"postgresql://app:{PASSWORD}@db.internal/sales"})
    assert moto_table.scan()["Items"] == []


@pytest.mark.parametrize("sealed", ["kms:v1:" + task_items.base64.b64encode(b"junk").decode(), "kms:v1:%%%",
                                    "plain"])
def test_a_sealed_value_that_cannot_be_opened_fails_the_connection_naming_the_task(moto_table, sealed):
    """As after a local stack restart (its moto KMS key is gone): the task still reads, masked; connecting with
    it is a TaskSecretError naming the task, never an attempt with the masked URL."""
    store = TaskStore(moto_table)
    task = store.create_task({"db_connection": f"postgresql://app:{PASSWORD}@db.internal/sales"})
    moto_table.update_item(Key={"task_id": task["task_id"]}, UpdateExpression="SET db_connection_sealed = :v",
                           ExpressionAttributeValues={":v": sealed})
    item = store.get_task(task["task_id"])
    assert item["db_connection"] == "postgresql://app:***@db.internal/sales"
    for connect in (get_business_db_url, get_vector_db_url):
        with pytest.raises(TaskSecretError, match=task["task_id"]):
            connect(item["db_connection"], get_settings())
