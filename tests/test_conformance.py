"""The conformance suite against every available backend (see conformance/pytest_plugin.py)."""

import pytest

from reprosparse.backends import BackendUnavailable
from reprosparse.backends.numpy_backend import NumpyBackend
from reprosparse.conformance import IS_THE_REFERENCE, Expected, all_cases, check_case, independent_passes, summarise


def test_conformance(conformance_target):
    conformance_target.check()


def test_the_reference_is_not_counted_as_passing_against_itself():
    """numpy deterministic runs the reference's code: its comparison with the reference is a marker, not a pass."""
    case = next(c for c in all_cases(quick=True) if c.op == "sparse_ffn" and c.inputs()["x"].ndim == 2)
    exp = Expected.of(case)
    numpy_checks = list(check_case(NumpyBackend(), "deterministic", exp))
    assert [r.check for r in numpy_checks if not r.independent] == [IS_THE_REFERENCE]
    assert not {"reference", "repeat"} & {r.check for r in numpy_checks}
    # Its batch and sparse=dense checks compare two different computations, so they still run and count.
    assert {"sparse=dense"} <= {r.check for r in numpy_checks if r.independent}
    assert any(r.check.startswith("alone[") for r in numpy_checks)

    class Subclass(NumpyBackend):  # may override any hook, so it is no longer the reference
        name = "subclass"

    for backend, mode in ((Subclass(), "deterministic"), (NumpyBackend(), "fast")):
        checks = list(check_case(backend, mode, exp))
        assert all(r.independent for r in checks), (backend, mode)
    assert "reference" in {r.check for r in check_case(Subclass(), "deterministic", exp)}

    rows = {r.mode: r for r in summarise(numpy_checks + list(check_case(NumpyBackend(), "fast", exp)))}
    assert rows["deterministic"].is_reference and rows["deterministic"].passed_text == "is the reference"
    assert not rows["fast"].is_reference and rows["fast"].passed_text == "1"
    assert independent_passes(numpy_checks) == len(numpy_checks) - 1 == sum(r.passed for r in numpy_checks) - 1


@pytest.fixture(scope="module")
def quick_expectations():
    return [Expected.of(case) for case in all_cases(quick=True)]


@pytest.mark.parametrize("isa", ["scalar", "sse2", "avx2", "avx512"])
def test_cython_conformance_under_each_isa(isa, quick_expectations, monkeypatch):
    """The quick conformance suite on every ISA variant this CPU runs, not only the one `auto` picks."""
    try:
        from reprosparse.backends import _cython_kernels as kernels
        from reprosparse.backends.cython_backend import CythonBackend
    except (ImportError, BackendUnavailable) as exc:
        pytest.skip(f"cython backend unavailable: {exc}")
    if isa not in kernels.SUPPORTED:
        pytest.skip(f"{isa} is not supported here (this CPU and build: {', '.join(kernels.SUPPORTED)})")
    if isa == CythonBackend().isa:
        pytest.skip(f"{isa} is the ISA the cython backend uses in this run: test_conformance checks it")
    monkeypatch.setenv("REPROSPARSE_CYTHON_ISA", isa)  # the backend reads it, and reproductions show it
    backend = CythonBackend()
    assert backend.isa == isa
    failed = [r for exp in quick_expectations for mode in ("deterministic", "fast")
              for r in check_case(backend, mode, exp) if not r.passed]
    assert not failed, "\n".join(f"{r.case.id} {r.mode} [{r.check}] {r.detail}\n    reproduce: {r.reproduction}"
                                 for r in failed[:20])
