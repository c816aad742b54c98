"""What every benchmark shares: the one-line result format and the results file."""
from __future__ import annotations

import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.txt"


def format_result(name: str, value: float, unit: str, baseline: float, ratio: float) -> str:
    """`BENCH <name> <value> <unit> baseline=<value> ratio=<value>` (ratio > 1 means the project wins)."""
    return f"BENCH {name} {value:.4g} {unit} baseline={baseline:.4g} ratio={ratio:.3g}"


def report(name: str, value: float, unit: str, baseline: float, ratio: float, *extra: str) -> str:
    """Print the result line (and any extra lines) and append them to benchmarks/results.txt."""
    line = format_result(name, value, unit, baseline, ratio)
    lines = [line, *extra]
    for text in lines:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()
    with RESULTS.open("a", encoding="utf-8") as sink:
        sink.write("\n".join(lines) + "\n")
    return line
