"""The opencl backend's runtime ops (kernels/runtime.cl): native, exact, and refused rather than wrong.

The conformance suite (test_conformance.py) checks the bits of every runtime
case on every backend; these tests make sure that on opencl those bits come
from the kernels, not from the inherited reference, and that a device whose
kernels fail their self-test runs the reference instead and says so.
Skipped when pyopencl or a device is missing.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reprosparse import reference as ref
from reprosparse.backends import _runtime_ops
from reprosparse.conformance import runtime_cases
from reprosparse.conformance.compare import mismatch

cl = pytest.importorskip("pyopencl", reason="pyopencl is not installed (pip install '.[opencl]')")

import opencl_loaded  # noqa: E402

from reprosparse.backends.opencl import backend as ocl  # noqa: E402
from reprosparse.backends.opencl import runtime, runtime_selftest, verify  # noqa: E402

LAYOUT = "vector4"  # the runtime program does not depend on the layout; one keeps the self-test short


def load(**kwargs) -> ocl.OpenCLBackend:
    return opencl_loaded.load(layout=LAYOUT, **kwargs)


@pytest.fixture(scope="module")
def native() -> ocl.OpenCLBackend:
    """The backend with its runtime kernels verified on this device (the shared verdict cache)."""
    b = load()
    if b.plan.runtime is not None and b.plan.runtime.startswith("the device has no binary64"):
        pytest.skip(b.plan.runtime)
    assert b.plan.runtime is None, b.plan.runtime
    return b


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(verify.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(verify.FAULT_ENV, raising=False)
    return tmp_path / "opencl-selftest"


@pytest.fixture
def no_reference(monkeypatch):
    """The reference's runtime functions, as the hooks' defaults call them, raise: what still runs is native."""
    def refuse(*args, **kwargs):
        raise AssertionError("the reference ran")

    for name in ("rmsnorm", "rope", "attention_batch", "softmax", "argmax"):
        monkeypatch.setattr(_runtime_ops, name, refuse)


def some_case(op: str) -> runtime_cases.Case:
    return next(c for c in runtime_cases.all_cases() if c.op == op and c.family == "values" and c.name == "nan")


@pytest.mark.parametrize("op", runtime_cases.OPS)
def test_runtime_ops_run_the_kernels(native, no_reference, monkeypatch, op):
    """Each op gives the reference's bits with the hooks' reference disabled, and launches its kernel."""
    launched = []
    run = runtime.RuntimeKernels._runtime_run
    monkeypatch.setattr(runtime.RuntimeKernels, "_runtime_run",
                        lambda self, kernel, *a: (launched.append(kernel), run(self, kernel, *a)))
    case = some_case(op)
    want = runtime_cases.expected(op, case.inputs())  # reprosparse.reference's own functions, not the hooks'
    got = getattr(native, op)(**case.inputs())
    assert mismatch(got, want) is None, mismatch(got, want)
    assert launched == [{"attention_batch": "attention", "rmsnorm": "rmsnorm_f32"}.get(op, op)]


def test_info_says_where_the_runtime_ops_run(native):
    assert native.info()["runtime ops"].startswith("native kernels (runtime.cl)")


def test_float16_norm_weights(native, no_reference):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 37)).astype(np.float32)
    w = rng.standard_normal(37).astype(np.float16)
    w[:4] = [np.float16(2.0**-24), np.float16(-0.0), np.inf, np.nan]  # subnormal, -0.0, specials
    got = native.rmsnorm(x, w, 1e-6)
    with np.errstate(all="ignore"):
        assert mismatch(got, ref.rmsnorm(x, w, 1e-6)) is None


def test_batch_of_sequences_stores_then_attends(native, no_reference):
    """Three sequences of different lengths, GQA 6/2, rows interleaved, the decode step's store:
    each row's output and the caches are the reference's, whatever else is in the batch."""
    rng = np.random.default_rng(4)
    n_head, n_kv, hd, lengths = 6, 2, 20, (1, 7, 33)
    ks = [rng.standard_normal((n, n_kv, hd)).astype(np.float32) for n in lengths]
    vs = [rng.standard_normal((n, n_kv, hd)).astype(np.float32) for n in lengths]
    seq = np.array([2, 0, 1, 2])
    pos = np.array([32, 0, 6, 31])
    q = rng.standard_normal((4, n_head, hd)).astype(np.float32)
    new_k, new_v = (rng.standard_normal((4, n_kv, hd)).astype(np.float32) for _ in range(2))
    want_k, want_v = [k.copy() for k in ks], [v.copy() for v in vs]
    for r in range(4):
        want_k[seq[r]][pos[r]], want_v[seq[r]][pos[r]] = new_k[r], new_v[r]
    got = native.attention_batch(q, ks, vs, seq, pos, new_k, new_v)
    for s in range(3):
        assert mismatch(ks[s], want_k[s]) is None and mismatch(vs[s], want_v[s]) is None
        rows = seq == s
        alone = ref.attention(q[rows], want_k[s], want_v[s], pos[rows])
        assert mismatch(got[rows], alone) is None, s


def test_attention_tiles_rows_within_the_scratch_budget(native, monkeypatch):
    """A prefill whose scores exceed the scratch budget runs in tiles of rows, with the same bits."""
    small = load(scratch_bytes=2 * 4 * 20 * 4)  # two rows of 4 heads' scores over 20 positions
    launches = []
    run = runtime.RuntimeKernels._runtime_run
    monkeypatch.setattr(runtime.RuntimeKernels, "_runtime_run",
                        lambda self, kernel, size, *a: (launches.append(size), run(self, kernel, size, *a)))
    rng = np.random.default_rng(5)
    q = rng.standard_normal((7, 4, 16)).astype(np.float32)
    k, v = (rng.standard_normal((20, 2, 16)).astype(np.float32) for _ in range(2))
    pos = np.arange(13, 20)
    assert mismatch(small.attention(q, k, v, pos), ref.attention(q, k, v, pos)) is None
    assert launches == [(2, 4), (2, 4), (2, 4), (1, 4)]


def test_empty_calls_launch_nothing(native, monkeypatch):
    monkeypatch.setattr(runtime.RuntimeKernels, "_runtime_run", lambda *a: pytest.fail("launched"))
    assert native.rmsnorm(np.zeros((0, 8), np.float32), np.ones(8, np.float32), 1e-5).shape == (0, 8)
    assert native.add(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)).shape == (0, 3)
    assert native.argmax(np.zeros((0, 3), np.float32)).dtype == np.int64
    q = np.zeros((0, 2, 4), np.float32)
    assert native.attention(q, np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 4), np.float32),
                            np.zeros(0, np.int64)).shape == (0, 2, 4)


def test_devices_without_binary64_are_refused():
    assert "cl_khr_fp64" in runtime.unsupported(SimpleNamespace(extensions="cl_khr_fp16 cl_khr_byte_addressable_store"))
    assert runtime.unsupported(SimpleNamespace(extensions="cl_khr_fp16 cl_khr_fp64")) is None


def test_a_device_that_flushes_subnormals_runs_the_reference():
    assert runtime_selftest.verdict(object(), (0, 0), "it flushes") == "it flushes"


@pytest.mark.parametrize("fault", ["wrong-bit:runtime", "crash:runtime"])
def test_failed_runtime_selftest_falls_back_to_the_reference(own_cache, monkeypatch, fault):
    """A wrong bit or a crash in the runtime kernels' self-test: the weight ops still run, the runtime
    ops run the reference (same bits, no kernel launched), info says why; the verdict is cached."""
    monkeypatch.setenv(verify.FAULT_ENV, fault)
    b = load()
    why = b.plan.runtime
    assert why and why.startswith("self-test failed")
    assert ("SIGABRT" in why) if fault.startswith("crash") else ("differ" in why)
    assert b.refuses("deterministic") is None and b.refuses("fast") is None
    assert b.info()["runtime ops"] == f"the reference on the host (same bits, slower): {why}"
    monkeypatch.setattr(runtime.RuntimeKernels, "_runtime_run", lambda *a: pytest.fail("a kernel ran"))
    case = some_case("attention_batch")
    with np.errstate(all="ignore"):
        assert mismatch(b.attention_batch(**case.inputs()), runtime_cases.expected("attention_batch",
                                                                                    case.inputs())) is None
    files = len(list(own_cache.glob("*.json")))
    again = load()
    assert again.plan.runtime == why and len(list(own_cache.glob("*.json"))) == files


def test_layout_faults_leave_the_runtime_kernels_alone(own_cache, monkeypatch):
    monkeypatch.setenv(verify.FAULT_ENV, "wrong-bit:deterministic")
    b = load()
    if b.plan.runtime is not None and "binary64" in b.plan.runtime:
        pytest.skip(b.plan.runtime)
    assert b.plan.runtime is None and b.refuses("deterministic")
