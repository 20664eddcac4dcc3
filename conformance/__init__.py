"""The conformance suite: proves that a backend gives the spec's bits (deterministic
mode) or stays inside the spec's error bound (fast mode).

    from reprosparse import conformance
    results = conformance.run([backend], ["deterministic", "fast"], conformance.all_cases(quick=True))
    assert not conformance.failures(results)

`reprosparse conformance` runs it from the command line; tests use
`reprosparse.conformance.pytest_plugin`.
"""

from .cases import Case, all_cases, find
from .report import failures, independent_passes, not_independent, summarise
from .runner import (
    IS_THE_REFERENCE,
    REFUSES_WEIGHTS,
    THREAD_SWEEP,
    Expected,
    Result,
    check_case,
    is_the_reference,
    run,
)

__all__ = [
    "IS_THE_REFERENCE", "REFUSES_WEIGHTS", "THREAD_SWEEP", "Case", "Expected", "Result", "all_cases", "check_case",
    "failures", "find", "independent_passes", "is_the_reference", "not_independent", "run", "summarise",
]
