"""The conformance suite: proves that a backend gives the spec's bits (deterministic
mode) or stays inside the spec's error bound (fast mode).

    from reprosparse import conformance
    results = conformance.run([backend], ["deterministic", "fast"], conformance.all_cases(quick=True))
    assert not conformance.failures(results)

`reprosparse conformance` runs it from the command line; tests use
`reprosparse.conformance.pytest_plugin`.
"""

from .cases import Case, all_cases, find
from .report import failures, summarise
from .runner import THREAD_SWEEP, Expected, Result, check_case, run

__all__ = [
    "THREAD_SWEEP", "Case", "Expected", "Result", "all_cases", "check_case", "failures", "find", "run", "summarise",
]
