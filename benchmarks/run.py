"""`make bench`: every benchmarks/bench_*.py in turn, as `python -m benchmarks.<name>`.

benchmarks/results.txt is truncated first; each script appends its lines. Fails (exit 1) when a script fails or
prints no `BENCH ` line. The BENCH lines are printed again at the end as a summary.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS

HERE = Path(__file__).resolve().parent


def main() -> int:
    RESULTS.write_text("", encoding="utf-8")
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    failures: list[str] = []
    lines: list[str] = []
    for name in names:
        started = time.monotonic()
        sys.stdout.write(f"== {name}\n")
        sys.stdout.flush()
        proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], cwd=HERE.parent, capture_output=True,
                              text=True, check=False)
        bench = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
        sys.stdout.write("".join(f"{line}\n" for line in proc.stdout.splitlines() if line.startswith(("BENCH ", "  "))))
        sys.stdout.write(f"   ({name}: {time.monotonic() - started:.0f} s)\n")
        if proc.returncode != 0 or not bench:
            reason = f"exit status {proc.returncode}" if proc.returncode else "no BENCH line"
            failures.append(f"{name}: {reason}")
            sys.stdout.write(f"   FAILED ({reason}); last output:\n{_tail(proc.stdout + proc.stderr)}\n")
        lines += bench
        sys.stdout.flush()
    sys.stdout.write("\n" + "".join(f"{line}\n" for line in lines))
    if failures:
        sys.stdout.write("benchmarks failed: " + "; ".join(failures) + "\n")
        return 1
    sys.stdout.write(f"results in {RESULTS.relative_to(HERE.parent)}\n")
    return 0


def _tail(text: str, count: int = 25) -> str:
    return "\n".join("   | " + line for line in text.strip().splitlines()[-count:])


if __name__ == "__main__":
    sys.exit(main())
