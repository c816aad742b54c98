"""A small sampling profiler of every thread of this process (py-spy-like, pure Python): every `interval` seconds
it walks `sys._current_frames()` and counts, per function, the samples where it runs (self) and where it is on
the stack (inclusive). `python -m benchmarks.bench_wide_run --profile out.txt --workers 0` uses it."""
from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path


class Sampler:
    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.self_counts: collections.Counter[str] = collections.Counter()
        self.total_counts: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                seen: set[str] = set()
                top = True
                while frame is not None:
                    code = frame.f_code
                    name = f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{code.co_firstlineno} {code.co_name}"
                    if top:
                        self.self_counts[name] += 1
                        top = False
                    if name not in seen:
                        seen.add(name)
                        self.total_counts[name] += 1
                    frame = frame.f_back
                self.samples += 1

    def write(self, path: str | Path, label: str, top: int = 60) -> None:
        idle = ("wait", "select", "_wait_for_tstate_lock", "accept", "recv_into", "readinto", "poll", "sleep")
        with Path(path).open("a", encoding="utf-8") as sink:
            sink.write(f"== {label}: {self.samples} thread samples every {self.interval * 1000:.0f} ms, "
                       f"{time.strftime('%H:%M:%S')}\n-- self (excluding idle waits)\n")
            busy = [(n, c) for n, c in self.self_counts.most_common() if n.rsplit(" ", 1)[-1] not in idle]
            for name, count in busy[:top]:
                sink.write(f"{count:8d} {name}\n")
            sink.write("-- inclusive\n")
            for name, count in self.total_counts.most_common(top * 2):
                sink.write(f"{count:8d} {name}\n")
