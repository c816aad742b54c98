"""One instance of an offline model per process (warm Lambdas and the local workers reuse it), built on first use."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessModel(Generic[T]):
    """`ProcessModel(build).get()`: `build()` runs once, under a lock of its own (so a caller may hold a lock of
    the model's calls while getting it); a failing build raises and is tried again by the next call."""

    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._model: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._build()
        return self._model
