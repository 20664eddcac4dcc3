"""Expose the conformance suite to pytest, for this repo and for third-party backends.

In a conftest.py:  pytest_plugins = ["reprosparse.conformance.pytest_plugin"]
then a test that takes the `conformance_target` fixture runs once per
(backend, mode, case):

    def test_conformance(conformance_target):
        conformance_target.check()

Options: --reprosparse-backend NAME (repeatable; default every available
backend), --reprosparse-mode deterministic|fast|both, --reprosparse-full
(adds the LLaMA-sized cases).  The report header shows the REPROSPARSE_*
variables and every backend's availability; a failure shows its reproduction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import pytest

from reprosparse import _platform, _registry

from .cases import Case, all_cases, find
from .runner import REFUSES_WEIGHTS, Expected, check_case, checked_in


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reprosparse", "reprosparse conformance")
    group.addoption("--reprosparse-backend", action="append", metavar="NAME",
                    help="backend to check (repeatable; default: every available backend)")
    group.addoption("--reprosparse-mode", choices=("deterministic", "fast", "both"), default="both")
    group.addoption("--reprosparse-full", action="store_true", help="include the LLaMA-sized cases")


def pytest_report_header(config: pytest.Config) -> list[str]:
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("REPROSPARSE_"))
    lines = [f"reprosparse environment: {env or '(no REPROSPARSE_* variables)'}",
             f"flushes subnormals: {_platform.flushes_subnormals()}"]
    for s in _registry.available_backends().values():
        lines.append(f"reprosparse backend {s.name}: " + ("available" if s.available else f"UNAVAILABLE ({s.reason})"))
    return lines


@lru_cache(maxsize=1)  # parameters are case-major, so one case's expectations serve all its targets
def _expected(case_id: str) -> Expected:
    return Expected.of(find(case_id))


@dataclass
class Target:
    backend: str
    mode: str
    case: Case

    def check(self) -> None:
        results = list(check_case(_registry.get_backend(self.backend), self.mode, _expected(self.case.id)))
        refused = [r.detail for r in results if r.check == REFUSES_WEIGHTS]
        if refused:
            pytest.skip(refused[0])
        if not any(r.independent for r in results):
            # A pass here would be the reference agreeing with itself.
            pytest.skip(f"{self.backend} {self.mode} is the reference: this case has no independent check")
        failed = [r for r in results if not r.passed]
        assert not failed, "\n".join(
            f"[{r.check}] {r.detail}\n    reproduce: {r.reproduction}" for r in failed
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_target" not in metafunc.fixturenames:
        return
    config = metafunc.config
    statuses = _registry.available_backends()
    names = config.getoption("--reprosparse-backend") or list(statuses)
    mode = config.getoption("--reprosparse-mode")
    modes = ["deterministic", "fast"] if mode == "both" else [mode]
    params = []
    for case in all_cases(quick=not config.getoption("--reprosparse-full")):
        for name in names:
            status = statuses.get(name)
            # A backend asked for by name must run; one merely installed-but-unavailable is skipped.
            skip = status is not None and not status.available and not config.getoption("--reprosparse-backend")
            marks = [pytest.mark.skip(reason=f"backend {name} unavailable: {status.reason}")] if skip and status else []
            for m in (m for m in modes if checked_in(case.op, m)):
                params.append(pytest.param(Target(name, m, case), id=f"{name}-{m}-{case.id}", marks=marks))
    metafunc.parametrize("conformance_target", params)
