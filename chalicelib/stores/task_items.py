"""Task items as DynamoDB stores them: number encoding, secret masking, update-expression helpers."""
from __future__ import annotations

import base64
import binascii
import json
import re
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import STEP_NAMES
from chalicelib.errors import ValidationError
from chalicelib.pipeline.db import mask_url

# `token` but not `prompt_tokens` / `completion_tokens` (LLM usage counts are not secrets).
_SECRET_KEYS = re.compile(r"pass(word|wd)?|secret|api_key|token(?!s)", re.IGNORECASE)


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

