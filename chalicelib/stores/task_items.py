"""Task items as DynamoDB stores them: number encoding, secret masking, sealed passwords, update-expression helpers.

A task's own `db_connection` never reaches DynamoDB with its password: `seal_task_item` stores the URL masked
(`postgresql://user:***@host/db`) and the whole URL encrypted with KMS in `db_connection_sealed` (encryption
context: the task id); `open_task_item` decrypts it again for the step Lambdas and the API (cached per container).
A value that cannot be opened (a local stack's moto key is gone after a restart) leaves the task readable and fails
only the connection (UnopenedConnection).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws import get_kms
from chalicelib.config import STEP_NAMES, get_settings
from chalicelib.errors import TaskSecretError, ValidationError
from chalicelib.pipeline.db import mask_url

log = logging.getLogger(__name__)

# `token` but not `prompt_tokens` / `completion_tokens` (LLM usage counts are not secrets).
_SECRET_KEYS = re.compile(r"pass(word|wd)?|secret|sealed|api_key|token(?!s)", re.IGNORECASE)


def to_dynamo(value: Any) -> Any:
    """Floats become Decimal (DynamoDB refuses floats); containers are converted recursively."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Decimals back to int/float; containers converted recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [from_dynamo(v) for v in value]
    return value


def mask_secrets(value: Any) -> Any:
    """A copy with passwords masked: URLs through mask_url, values of password-like keys replaced."""
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEYS.search(str(k)) and v else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str) and ("://" in value or "password" in value.lower()):
        return mask_url(value)
    return value


SEALED_FIELD = "db_connection_sealed"
_SEALED_PREFIX = "kms:v1:"
# The local stack (and tests) have no key from the template: one is made in its (moto) KMS on first use.
LOCAL_KEY_ALIAS = "alias/data-pipeline-local"
_opened_lock = threading.Lock()
_opened: dict[str, str] = {}
_MAX_OPENED = 512


def seal_task_item(item: dict[str, Any]) -> dict[str, Any]:
    """The item as it may be stored: a db_connection holding a password is masked, the URL sealed with KMS."""
    url = item.get("db_connection")
    if not isinstance(url, str) or mask_url(url) == url:
        return item
    context = {"task_id": str(item["task_id"]), "field": "db_connection"}
    blob = _encrypt(url.encode("utf-8"), context)
    return {**item, "db_connection": mask_url(url), SEALED_FIELD: _SEALED_PREFIX + base64.b64encode(blob).decode()}


def open_task_item(item: dict[str, Any]) -> dict[str, Any]:
    """The item with its sealed db_connection decrypted (the raw item of `TaskStore.get_task`)."""
    sealed = item.get(SEALED_FIELD)
    if not sealed:
        return item
    opened = {k: v for k, v in item.items() if k != SEALED_FIELD}
    with _opened_lock:
        url = _opened.get(sealed)
    if url is None:
        try:
            url = _open_sealed(str(sealed), item.get("task_id"))
        except TaskSecretError as exc:
            opened["db_connection"] = UnopenedConnection(str(item.get("db_connection") or ""), exc)
            return opened
        with _opened_lock:
            if len(_opened) >= _MAX_OPENED:
                _opened.clear()
            _opened[sealed] = url
    opened["db_connection"] = url
    return opened


def _open_sealed(sealed: str, task_id: Any) -> str:
    try:
        if not sealed.startswith(_SEALED_PREFIX):
            raise ValueError("no prefix")
        blob = base64.b64decode(sealed[len(_SEALED_PREFIX):], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise TaskSecretError(f"task {task_id}: db_connection_sealed is not a sealed value") from exc
    return _decrypt(blob, {"task_id": str(task_id), "field": "db_connection"}, task_id)


class UnopenedConnection(str):
    """The masked db_connection of a task whose sealed password could not be opened. Reading the task (status,
    lists, files) still works; connecting with it raises `unopened_error` (config.get_business_db_url /
    get_vector_db_url), so the step that needs the database fails naming the cause."""

    unopened_error: TaskSecretError

    def __new__(cls, masked: str, error: TaskSecretError) -> UnopenedConnection:
        value = super().__new__(cls, masked)
        value.unopened_error = error
        return value


def _key_id() -> str:
    settings = get_settings()
    if settings.kms_key_id:
        return settings.kms_key_id
    if settings.local_stack:
        return LOCAL_KEY_ALIAS
    raise TaskSecretError("DATA_PIPELINE_KMS_KEY_ID is not set: a db_connection with a password is never stored in "
                          "clear, so this task cannot be created (give the URL without a password, or set the key)")


def _encrypt(plaintext: bytes, context: dict[str, str]) -> bytes:
    key_id = _key_id()
    try:
        try:
            return get_kms().encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)["CiphertextBlob"]
        except ClientError as exc:
            if key_id != LOCAL_KEY_ALIAS or exc.response.get("Error", {}).get("Code") != "NotFoundException":
                raise
            _create_local_key()
            return get_kms().encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)["CiphertextBlob"]
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        log.error("db_connection not sealed", extra={"kms_key": key_id, "error_code": code})
        raise TaskSecretError(f"the db_connection password could not be encrypted with KMS key {key_id} ({code}); "
                              "the task was not stored") from exc


def _create_local_key() -> None:
    kms = get_kms()
    key_id = kms.create_key(Description="data_pipeline local stack: task db_connection passwords")["KeyMetadata"][
        "KeyId"]
    try:
        kms.create_alias(AliasName=LOCAL_KEY_ALIAS, TargetKeyId=key_id)
    except ClientError as exc:  # another process made it first: use theirs
        if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
            raise


def _decrypt(blob: bytes, context: dict[str, str], task_id: Any) -> str:
    try:
        return get_kms().decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"].decode("utf-8")
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        log.error("db_connection not opened", extra={"task_id": task_id, "error_code": code})
        raise TaskSecretError(f"task {task_id}: its db_connection password could not be decrypted with KMS ({code}); "
                              "a local stack forgets its KMS key when it restarts: create the task again") from exc


def step_key(step: str) -> str:
    if step not in STEP_NAMES:
        raise ValidationError(f"unknown step {step!r}", invalid_params=["step_name"])
    return step


def invalid_path(exc: ClientError) -> bool:
    """DynamoDB refused an update because a parent map of a document path does not exist."""
    error = exc.response.get("Error", {})
    return error.get("Code") == "ValidationException" and "document path" in str(error.get("Message", ""))


def conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


_INDEX_KEYS = {"by_created": "entity", "by_status": "status"}


def encode_cursor(item: dict[str, Any], index: str) -> str:
    """An opaque page cursor: the index and the key attributes of the last task returned."""
    key = {"task_id": item["task_id"], "created_sort": item["created_sort"],
           _INDEX_KEYS[index]: item[_INDEX_KEYS[index]]}
    raw = json.dumps({"index": index, "key": key}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None, index: str) -> dict[str, Any] | None:
    """The ExclusiveStartKey of a cursor made by `encode_cursor` for the same index; a 400 naming `cursor` else."""
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key = data["key"]
        valid = (data["index"] == index and set(key) == {"task_id", "created_sort", _INDEX_KEYS[index]}
                 and all(isinstance(v, str) for v in key.values()))
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise ValidationError("cursor is not a cursor of this listing (use the next_cursor of the previous page, "
                              "with the same filters)", invalid_params=["cursor"])
    return key

