"""sql_validation's results: one record per pair, the report of a batch or a whole file, what the pair file
becomes, and the summary / modification logs written beside it."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib.pipeline.models import QAPair


@dataclass
class PairResult:
    index: int
    question: str
    original_sql: str
    final_sql: str  # what the pair file should hold: the repaired SQL, or the original when not repaired
    valid_before: bool
    valid_after: bool
    error: str | None  # latest error (None when valid after)
    repaired: bool = False
    rounds: int = 0  # repair rounds this pair took part in
    dropped: bool = False  # still invalid at the end: removed when the file is modified
    original_error: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)  # [{round, sql, error}] per repair attempt

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairResult:
        return cls(**data)


@dataclass
class ValidationReport:
    results: list[PairResult]
    repair_enabled: bool = False
    max_rounds: int = 0
    rounds_used: int = 0
    duration_seconds: float = 0.0
    repair_error: str | None = None  # set when the LLM failed for good during repair

    @property
    def total(self) -> int:
        return len(self.results)

    def counts(self) -> dict[str, Any]:
        total = len(self.results)
        valid_before = sum(r.valid_before for r in self.results)
        valid_after = sum(r.valid_after for r in self.results)

        def rate(n: int) -> float:
            return round(100.0 * n / total, 2) if total else 100.0

        return {
            "total": total,
            "valid_before": valid_before,
            "invalid_before": total - valid_before,
            "valid_after": valid_after,
            "invalid_after": total - valid_after,
            "repaired": sum(r.repaired for r in self.results),
            "dropped": sum(r.dropped for r in self.results),
            "success_rate_before": rate(valid_before),
            "success_rate": rate(valid_after),
            "rounds_used": self.rounds_used,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "repair_enabled": self.repair_enabled,
            "max_rounds": self.max_rounds,
            "rounds_used": self.rounds_used,
            "duration_seconds": self.duration_seconds,
            "repair_error": self.repair_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        return cls(
            results=[PairResult.from_dict(r) for r in data["results"]],
            repair_enabled=bool(data.get("repair_enabled", False)),
            max_rounds=int(data.get("max_rounds", 0)),
            rounds_used=int(data.get("rounds_used", 0)),
            duration_seconds=float(data.get("duration_seconds", 0.0)),
            repair_error=data.get("repair_error"),
        )


def merge_reports(reports: Sequence[ValidationReport]) -> ValidationReport:
    """One report from the reports of consecutive batches (results ordered by index)."""
    results = sorted((r for report in reports for r in report.results), key=lambda r: r.index)
    return ValidationReport(
        results=results,
        repair_enabled=any(r.repair_enabled for r in reports),
        max_rounds=max((r.max_rounds for r in reports), default=0),
        rounds_used=max((r.rounds_used for r in reports), default=0),
        duration_seconds=round(sum(r.duration_seconds for r in reports), 3),
        repair_error=next((r.repair_error for r in reports if r.repair_error), None),
    )


def apply_report(pairs: list[QAPair], report: ValidationReport) -> list[QAPair]:
    """The pair list after validation: repaired SQL replaces the old one, still-invalid pairs are dropped."""
    by_index = {r.index: r for r in report.results}
    out: list[QAPair] = []
    for index, pair in enumerate(pairs):
        result = by_index.get(index)
        if result is None:
            out.append(pair)
        elif result.valid_after:
            out.append(QAPair(question=pair.question, sql=result.final_sql if result.repaired else pair.sql))
    return out


def render_summary(report: ValidationReport, *, file_name: str, ts: str) -> str:
    c = report.counts()
    lines = [
        "SQL validation summary",
        "======================",
        f"File: {file_name}",
        f"Time: {ts}",
        f"Duration: {report.duration_seconds:.2f} s",
        "",
        f"Total statements: {c['total']}",
        f"Valid before repair: {c['valid_before']} ({c['success_rate_before']:.2f}%)",
        f"Invalid before repair: {c['invalid_before']}",
        f"Valid after repair: {c['valid_after']}",
        f"Success rate: {c['success_rate']:.2f}%",
        f"Repair: {'enabled' if report.repair_enabled else 'disabled'}"
        + (f", rounds used {report.rounds_used}/{report.max_rounds}" if report.repair_enabled else ""),
        f"Repaired: {c['repaired']}",
        f"Dropped (unrepairable): {c['dropped']}",
    ]
    if report.repair_error:
        lines.append(f"Repair stopped early: {report.repair_error}")
    failed = [r for r in report.results if not r.valid_before]
    lines += ["", f"Errors ({len(failed)})", "----------"]
    if not failed:
        lines.append("none")
    for r in failed:
        lines += [
            f"[{r.index + 1}] {r.question}",
            f"  SQL: {r.original_sql}",
            f"  Error: {r.original_error}",
        ]
        for attempt in r.attempts:
            lines.append(f"  Round {attempt['round']}: {attempt['sql']}")
            lines.append(f"    -> {'valid' if attempt['error'] is None else attempt['error']}")
        lines.append(_outcome(r, "  Result: repaired: ", "  Result: still invalid: "))
    return "\n".join(lines) + "\n"


def _outcome(result: PairResult, repaired: str, invalid: str) -> str:
    """The repaired SQL or the last error, after the label that says which."""
    return f"{repaired}{result.final_sql}" if result.repaired else f"{invalid}{result.error}"


def render_modifications_log(report: ValidationReport, ts: str) -> str:
    """Every change made to the pair file: repaired SQL (old and new) and dropped pairs with the reason."""
    changes = [r for r in report.results if r.repaired or r.dropped]
    lines = [f"File modifications {ts}", f"Changes: {len(changes)} "
             f"(repaired {sum(r.repaired for r in changes)}, dropped {sum(r.dropped for r in changes)})", ""]
    for r in changes:
        lines.append(f"[{r.index + 1}] {r.question}")
        lines += [f"  old SQL: {r.original_sql}", _outcome(r, "  new SQL: ", "  DROPPED: "), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
