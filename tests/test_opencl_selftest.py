"""The opencl backend's self-test: refusals, fallbacks, crash isolation and the verdict cache.

The faults are injected (REPROSPARSE_OPENCL_FAULT), so these paths run on
every machine, whatever its CPU and driver.  Each test has its own verdict
cache, so the self-test really runs in a child process.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from reprosparse import reference as ref
from reprosparse.backends import BackendUnavailable
from reprosparse.conformance.compare import mismatch

cl = pytest.importorskip("pyopencl", reason="pyopencl is not installed (pip install '.[opencl]')")

from reprosparse.backends import opencl  # noqa: E402
from reprosparse.backends.opencl import backend as ocl  # noqa: E402
from reprosparse.backends.opencl import verify  # noqa: E402

LAYOUT = "vector4"  # one layout keeps each child short


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(verify.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(verify.FAULT_ENV, raising=False)
    return tmp_path / "opencl-selftest"


def load(**kwargs) -> ocl.OpenCLBackend:
    try:
        got = opencl.load(**kwargs)
    except BackendUnavailable as exc:
        if "self-test" in str(exc) or "injected" in str(exc):
            raise
        pytest.skip(f"no usable OpenCL device: {exc}")
    assert isinstance(got, ocl.OpenCLBackend)
    return got


def small_case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((40, 33)).astype(np.float32), rng.standard_normal((3, 33)).astype(np.float32)


def test_verdicts_are_cached_and_keyed(own_cache):
    first = load(layout=LAYOUT)
    assert "4 combination(s) self-tested in a child process" in first.plan.provenance  # modes x float types
    every = sorted(own_cache.glob("*.json"))
    # the four combinations' verdicts, and the runtime kernels' (runtime_selftest.py)
    files = [f for f in every if json.loads(f.read_text())["key"]["job"] != list(verify.RUNTIME_JOB)]
    assert len(files) == 4 and len(every) == 5
    stored = json.loads(files[0].read_text())
    assert stored["ok"] is True and stored["key"]["source"] and stored["key"]["driver"]
    again = load(layout=LAYOUT)
    assert again.plan.provenance.startswith("verdicts read from") and again.plan.layouts == first.plan.layouts
    files[0].write_text("{ torn")  # a damaged entry is tested again, not trusted
    assert "1 combination(s) self-tested" in load(layout=LAYOUT).plan.provenance


def test_a_quantized_type_is_self_tested_when_first_used(own_cache):
    """Loading tests the float types only; the first q8_0 weights test q8_0 (both modes, once, cached),
    and q4_0 stays untested until it is used."""
    from reprosparse.conformance.quant_cases import quantized

    b = load(layout=LAYOUT)
    runtime_verdict = b.plan.runtime
    assert "q8_0 self-tested when first used" in b.info()["fast mode"]
    assert not b.plan.tested("q8_0") and len(list(own_cache.glob("*.json"))) == 4 + 1  # + the runtime kernels'
    W = quantized(np.random.default_rng(1), (40, 64), "normal", "q8_0")
    x = np.ones((2, 64), np.float32)
    assert mismatch(b.matvec(W, x, mode="deterministic"), ref.matvec(W, x)) is None
    assert "q8_0: 2 combination(s) self-tested in a child process" in b.plan.provenance
    assert b.plan.layout("fast", "q8_0") == LAYOUT and not b.plan.tested("q4_0")
    assert f"q8_0 verified ({LAYOUT} layout)" in b.info()["deterministic mode"]
    assert len(list(own_cache.glob("*.json"))) == 6 + 1
    assert b.plan.runtime == runtime_verdict  # the runtime kernels' verdict survives the new type's
    again = load(layout=LAYOUT)
    assert again.refuses_weights(W) is None and "q8_0: verdicts read from" in again.plan.provenance


def test_wrong_bit_refuses_deterministic_mode(monkeypatch):
    monkeypatch.setenv(verify.FAULT_ENV, "wrong-bit:deterministic")
    b = load(layout=LAYOUT)
    why = b.refuses("deterministic")
    assert why and "self-test failed" in why and f"{LAYOUT} layout" in why and "matvec" in why
    assert b.refuses("fast") is None
    assert "REFUSED" in b.info()["deterministic mode"] and "REFUSED" not in b.info()["fast mode"]
    W, x = small_case()
    with pytest.raises(ocl.DeterministicUnsupported, match=r"cannot run deterministic mode.*self-test failed"):
        b.matvec(W, x, mode="deterministic")
    got = b.matvec(W, x, mode="fast")
    assert np.abs(got - ref.matvec(W, x)).max() < 1e-4


@pytest.mark.parametrize("last_fails", ["", "wrong-bit:grouped:float16"], ids=["last-passes", "last-fails-float16"])
def test_wrong_bit_falls_back_to_the_next_layout(monkeypatch, last_fails):
    """With a wrong bit injected into every CPU layout but the last, each (mode, weight type) runs
    on the last one, or is refused with the last one's own reason where the driver fails it too
    (as Debian's PoCL 5.0 on an Intel Xeon failed grouped float16; simulated by last_fails)."""
    candidates = opencl.CPU_LAYOUTS
    assert candidates[-1] == "grouped"
    monkeypatch.setenv(verify.FAULT_ENV, last_fails)
    last = load(layout=candidates[-1]).plan
    monkeypatch.setenv(verify.FAULT_ENV, ",".join([*(f"wrong-bit:{c}" for c in candidates[:-1]), last_fails]))
    b = load()
    if b.plan.layouts and isinstance(b, ocl.OpenCLGpuBackend):
        pytest.skip("the fallback order tested here is the CPU devices'")
    assert b.plan.layouts == last.layouts, b.plan
    assert b.plan.refused.keys() == last.refused.keys()
    failed = "self-test failed: "
    for combo, why in b.plan.refused.items():
        own = last.refused[combo]
        if own.startswith(failed):  # every layout's failure, the last's own reason included
            assert why.startswith(failed + ", ".join(candidates[:-1])), why
            assert why.endswith(own.removeprefix(f"{failed}{candidates[-1]} layout: ")), why
        else:  # refused before any self-test (e.g. a device that flushes subnormals)
            assert why == own
    if ("deterministic", "float32") in b.plan.layouts:
        W, x = small_case()
        assert mismatch(b.matvec(W, x, mode="deterministic"), ref.matvec(W, x)) is None


def test_wrong_bit_everywhere_makes_the_backend_unavailable(monkeypatch):
    monkeypatch.setenv(verify.FAULT_ENV, "wrong-bit")
    every_mode = r"failed its self-test in every mode: deterministic mode: .*fast mode: "
    with pytest.raises(BackendUnavailable, match=every_mode):
        opencl.load(layout=LAYOUT)


def test_driver_crash_refuses_only_what_crashed(own_cache, monkeypatch):
    """The child aborts (as LLVM did on Zen 4) while testing float16 weights; this process lives on,
    float16 is refused with the signal and the driver's last words, float32 runs."""
    monkeypatch.setenv(verify.FAULT_ENV, "crash:float16")
    b = load(layout=LAYOUT)
    for mode in ("deterministic", "fast"):
        why = b.refuses(mode)
        assert why and why.startswith("float16 weights: self-test failed") and "SIGABRT" in why
        assert "injected fault: the driver aborts" in why
        assert b.plan.layout(mode, "float32") == LAYOUT
    W, x = small_case()
    with pytest.raises(ocl.DeterministicUnsupported, match=r"float16 weights.*SIGABRT"):
        b.matvec(W.astype(np.float16), x)
    assert mismatch(b.matvec(W, x), ref.matvec(W, x)) is None
    assert len(list(own_cache.glob("*.json"))) == 4 + 1, "a crash is a verdict on the driver: cached (+ runtime's)"
    assert load(layout=LAYOUT).plan.refused == b.plan.refused


@pytest.mark.parametrize(("fault", "bad", "good"), [
    ("wrong-bit:q4_0", "q4_0", "q8_0"), ("crash:fast:q8_0", "q8_0", "q4_0"), ("wrong-bit:q6_k", "q6_k", "q4_0"),
])
def test_a_failing_quantized_type_is_refused_alone(monkeypatch, fault, bad, good):
    """A driver that gets one quantized type wrong (or crashes on it) in one mode: that type is
    refused, by name, for every op and by the conformance suite; the modes and the other types run."""
    from reprosparse import conformance
    from reprosparse.backends import WeightsUnsupported
    from reprosparse.conformance.quant_cases import quantized

    monkeypatch.setenv(verify.FAULT_ENV, fault)
    b = load(layout=LAYOUT)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 256)).astype(np.float32)  # a whole block of every type
    for qtype in (bad, good):
        W = quantized(rng, (40, 256), "normal", qtype)
        if qtype == bad:
            why = b.refuses_weights(W)  # the first weights of the type: its self-test runs now
            assert why and f"refuses {bad} weights" in why and "self-test failed" in why
            with pytest.raises(WeightsUnsupported, match=rf"W: OpenCL device .* refuses {bad} weights"):
                b.matvec(W, x, mode="deterministic")
        else:
            assert mismatch(b.matvec(W, x, mode="deterministic"), ref.matvec(W, x)) is None
    assert b.refuses("deterministic") is None and b.refuses("fast") is None
    assert b.plan.refuses_type(bad) and b.plan.refuses_type(good) is None
    assert f"{bad} REFUSED" in b.info()["fast mode"] and f"{good} verified" in b.info()["fast mode"]
    exp = conformance.Expected.of(conformance.find(f"matvec/{bad}/normal"))
    results = list(conformance.check_case(b, "deterministic", exp))
    assert [r.check for r in results] == [conformance.REFUSES_WEIGHTS]
    W, x32 = small_case()
    assert mismatch(b.matvec(W, x32, mode="deterministic"), ref.matvec(W, x32)) is None


def test_a_child_that_never_finishes_is_refused_but_not_cached(own_cache, monkeypatch):
    monkeypatch.setattr(verify, "CHILD_TIMEOUT_S", 0.01)
    with pytest.raises(BackendUnavailable, match=r"did not finish within 0\.01 s"):
        opencl.load(layout=LAYOUT)
    assert not list(own_cache.glob("*.json"))


def test_bad_fault_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv(verify.FAULT_ENV, "wrong-bit,explode")
    with pytest.raises(BackendUnavailable, match=r"REPROSPARSE_OPENCL_FAULT=.*'explode' is not one of"):
        opencl.load(layout=LAYOUT)


@pytest.mark.parametrize(("spec", "job", "want"), [
    ("", ("fast", "vector8", "float32"), None),
    ("crash", ("fast", "vector8", "float32"), "crash"),
    ("wrong-bit:vector8", ("fast", "vector8", "float32"), "wrong-bit"),
    ("wrong-bit:vector8", ("fast", "vector4", "float32"), None),
    ("crash:fast:float16, wrong-bit", ("fast", "grouped", "float16"), "crash"),
    ("crash:fast:float16, wrong-bit", ("deterministic", "grouped", "float16"), "wrong-bit"),
    ("wrong-bit:q4_0", ("fast", "vector8", "q4_0"), "wrong-bit"),
    ("wrong-bit:q4_0", ("fast", "vector8", "q8_0"), None),
    ("wrong-bit:q6_k", ("deterministic", "grouped", "q6_k"), "wrong-bit"),
    ("wrong-bit:q6_k", ("deterministic", "grouped", "q4_0"), None),
])
def test_fault_filters(spec, job, want):
    assert verify.fault_for(job, verify.parse_faults(spec)) == want


def test_the_registry_reports_a_refused_mode(monkeypatch):
    from reprosparse import _registry

    monkeypatch.setenv(verify.FAULT_ENV, "wrong-bit:deterministic")
    monkeypatch.setattr(_registry, "_loaded", {})
    status = _registry.available_backends()["opencl"]
    if not status.available:
        pytest.skip(f"no usable OpenCL device: {status.reason}")
    assert "self-test failed" in status.refused["deterministic"] and "fast" not in status.refused
