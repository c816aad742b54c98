"""Domain exceptions. Each carries the API error code and HTTP status it maps to.

The API layer maps them to the envelope in one place; step Lambdas let them propagate so the
state machine's Retry/Catch can tell them apart by class name.

The classes are the error catalogue `chalicelib/data/errors.json` (class, parent, code, status, meaning): the one
source the exceptions, the OpenAPI document and the README's error table are built from. A class is written there,
not here; `DataPipelineError` is the one class with a body.
"""
from __future__ import annotations

import json
from pathlib import Path

CATALOGUE_PATH = Path(__file__).resolve().parent / "data" / "errors.json"
CATALOGUE: dict = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))


def meaning(entry: dict) -> str:
    """The entry's text for people."""
    return entry["meaning"]


class DataPipelineError(Exception):
    """Base class. `code` is the API error code, `status` the HTTP status."""

    code = "INTERNAL_ERROR"
    status = 500

    def __init_subclass__(cls, *, code: str | None = None, status: int | None = None, **kwargs: object):
        """`class X(ValidationError, code="X_CODE", status=400)`: a subclass names its code (and status)."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status

    def __init__(self, message: str, *, invalid_params: list[str] | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.invalid_params = invalid_params or []
        self.details = details


def _build_classes() -> dict[str, type[DataPipelineError]]:
    built: dict[str, type[DataPipelineError]] = {"DataPipelineError": DataPipelineError}
    for entry in CATALOGUE["classes"]:
        name = entry["class"]
        if name == DataPipelineError.__name__:
            if (entry["code"], entry["status"]) != (DataPipelineError.code, DataPipelineError.status):
                raise RuntimeError(f"{CATALOGUE_PATH}: DataPipelineError's code/status differ from the class")
            continue
        if name in built or entry.get("parent") not in built:
            raise RuntimeError(f"{CATALOGUE_PATH}: {name} is defined twice or before its parent {entry.get('parent')}")
        namespace = {"__doc__": meaning(entry)[:1].upper() + meaning(entry)[1:] + ".", "__module__": __name__}
        built[name] = type(name, (built[entry["parent"]],), namespace,
                           code=entry.get("code"), status=entry.get("status"))
    return built


_CLASSES = _build_classes()
globals().update(_CLASSES)
__all__ = ["CATALOGUE", "meaning", *_CLASSES]

