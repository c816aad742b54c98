"""Request parsing at the edge: JSON objects, typed fields, query parameters. Bad input is a 400 naming the field."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chalicelib.errors import InvalidConnectionString, ValidationError

_MISSING = object()
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_json_object(raw: bytes | str | None) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`."""
    if raw is None or (isinstance(raw, bytes | str) and not raw.strip()):
        return {}
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        body = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}", invalid_params=["body"]) from None
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object", invalid_params=["body"])
    return body


def get_str(body: dict[str, Any], name: str, *, max_length: int | None = None, required: bool = False,
            default: str | None = None) -> str | None:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise ValidationError(f"missing required parameter: {name}", invalid_params=[name])
        return default
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", invalid_params=[name])
    value = value.strip()
    if required and not value:
        raise ValidationError(f"{name} must not be empty", invalid_params=[name])
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{name} must be at most {max_length} characters", invalid_params=[name])
    return value or default


def get_bool(body: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be a boolean (true or false)", invalid_params=[name])
    return value


def get_int(body: dict[str, Any], name: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer", invalid_params=[name])
    return check_range(name, value, minimum, maximum)


def get_query_int(params: dict[str, str] | None, name: str, default: int, *, minimum: int | None = None,
                  maximum: int | None = None) -> int:
    raw = (params or {}).get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer", invalid_params=[name]) from None
    return check_range(name, value, minimum, maximum)


def check_range(name: str, value: int, minimum: int | None, maximum: int | None) -> int:
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name} must be at least {minimum}", invalid_params=[name])
    if maximum is not None and value > maximum:
        raise ValidationError(f"{name} must be at most {maximum}", invalid_params=[name])
    return value


def get_choice(value: str | None, name: str, choices: tuple[str, ...], *, error: type[ValidationError] =
               ValidationError) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise error(f"{name} must be one of: {', '.join(choices)}", invalid_params=[name])
    return value


def get_db_connection(body: dict[str, Any], name: str = "db_connection") -> str | None:
    """A postgresql:// or postgres:// URL, or None when absent (the configured default applies)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidConnectionString(f"{name} must be a non-empty string", invalid_params=[name])
    value = value.strip()
    if not value.lower().startswith(("postgresql://", "postgres://")):
        raise InvalidConnectionString(f"{name} must start with postgresql:// or postgres://", invalid_params=[name])
    return value


def parse_time(value: str | None, name: str, *, end: bool = False) -> str | None:
    """Normalise a time filter to `YYYY-MM-DDTHH:MM:SS`; a bare date ends at 23:59:59 when `end`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", invalid_params=[name])
    text = value.strip().replace("Z", "")
    for fmt in _TIME_FORMATS:
        try:
            moment = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d" and end:
            moment = moment.replace(hour=23, minute=59, second=59)
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    raise ValidationError(f"{name} must look like 2025-06-27T14:30:52", invalid_params=[name])
