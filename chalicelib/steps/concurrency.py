"""Threads of a step Lambda: one process-wide executor, and `run_bounded` to map a call over items a few at a
time (DDL tables of a batch, S3 reads of many files)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
POOL_THREADS = 64


def shared_pool() -> ThreadPoolExecutor:
    """One executor per process, reused by every invocation: a warm Lambda (and the local stack, where all
    step Lambdas share a process) keeps its worker threads and with them their cached boto3 clients."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="step-worker")
        return _POOL


def run_bounded(fn: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """`[fn(item) for item in items]` with at most `workers` calls at once; results in item order; the first
    exception is raised after every call ended. `workers` pool threads each take the next item until none is
    left, so the same few threads (and their boto3 clients) serve the whole list.
    `fn` must not itself call run_bounded (the shared pool is not reentrant)."""
    workers = min(workers, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    results: list[Any] = [None] * len(items)
    failures: list[BaseException] = []
    position = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                return
            try:
                results[index] = fn(items[index])
            except BaseException as exc:  # re-raised in the caller's thread
                failures.append(exc)

    pool = shared_pool()
    futures = [pool.submit(work) for _ in range(workers)]
    for future in futures:
        future.result()
    if failures:
        raise failures[0]
    return results
