"""Summaries of conformance results: per backend x mode x op x family, then the failures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .runner import REFUSES_WEIGHTS, Result


@dataclass
class Row:
    backend: str
    mode: str
    op: str
    family: str
    cases: set[str] = field(default_factory=set)
    failed_cases: set[str] = field(default_factory=set)
    checks: int = 0
    worst: float | None = None  # largest fraction of the error bound used (fast mode)
    free: int = 0
    #: the backend computes with the reference's code here: its passes are not independent evidence
    is_reference: bool = False
    #: the backend refuses these cases' weight type (why), so nothing was compared
    refused: str = ""

    @property
    def passed(self) -> int:
        return len(self.cases) - len(self.failed_cases)

    @property
    def passed_text(self) -> str:
        """The "passed" column: a count, or "is the reference" where a count would claim a comparison."""
        if self.is_reference and not self.failed_cases:
            return "is the reference"
        if self.refused and not self.failed_cases:
            return "refuses the weights"
        return str(self.passed)


def summarise(results: Iterable[Result]) -> list[Row]:
    rows: dict[tuple[str, str, str, str], Row] = {}
    for r in results:
        key = (r.backend, r.mode, r.case.op, r.case.family)
        row = rows.setdefault(key, Row(*key))
        row.cases.add(r.case.id)
        row.checks += r.independent
        if r.check == REFUSES_WEIGHTS:
            row.refused = r.detail
        else:
            row.is_reference |= not r.independent
        if not r.passed:
            row.failed_cases.add(r.case.id)
        if r.worst is not None:
            row.worst = max(row.worst or 0.0, r.worst)
        if r.check == "bound":  # count each case once, not once per thread count
            row.free += r.free
    return list(rows.values())


def failures(results: Iterable[Result]) -> list[Result]:
    return [r for r in results if not r.passed]


def independent_passes(results: Iterable[Result]) -> int:
    """Checks that passed and compared two different computations ("is the reference" markers excluded)."""
    return sum(r.passed and r.independent for r in results)


def not_independent(results: Iterable[Result]) -> int:
    """The "is the reference" markers (refused weight types are not counted either way)."""
    return sum(not r.independent and r.check != REFUSES_WEIGHTS for r in results)


def to_json(results: list[Result], path: str, header: dict[str, object]) -> None:
    payload = {
        "header": header,
        "summary": [
            {"backend": r.backend, "mode": r.mode, "op": r.op, "family": r.family, "cases": len(r.cases),
             "passed": r.passed, "checks": r.checks, "is_reference": r.is_reference,
             "worst_fraction_of_bound": r.worst, "unconstrained": r.free}
            for r in summarise(results)
        ],
        "independent_passes": independent_passes(results),
        "not_counted_is_the_reference": not_independent(results),
        "failures": [
            {"backend": r.backend, "mode": r.mode, "case": r.case.id, "check": r.check, "detail": r.detail,
             "reproduce": r.reproduction}
            for r in failures(results)
        ],
    }
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
