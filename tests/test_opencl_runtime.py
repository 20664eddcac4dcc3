"""The opencl backend's runtime ops (kernels/runtime.cl): native, exact, and refused rather than wrong.

The conformance suite (test_conformance.py) checks the bits of every runtime
case on every backend; these tests make sure that on opencl those bits come
from the kernels, not from the inherited reference, and that a device whose
kernels fail their self-test runs the reference instead and says so.  Then
decoder_layer (layer.py): the same kernels chained on the device, waiting
only where the spec needs the host, with the reference's bits on make_model's
layers.  Skipped when pyopencl or a device is missing.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from reprosparse import reference as ref
from reprosparse.backends import _runtime_ops
from reprosparse.backends._base import Backend
from reprosparse.conformance import runtime_cases
from reprosparse.conformance.compare import mismatch
from reprosparse.model import make_model
from reprosparse.reference.quant import QuantizedMatrix

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
    m = make_model(layers=1, dim=32, ff=40, vocab=260, heads=4, kv_heads=2, seed=1)
    assert_layer(run_layer(b, m, "sparse", "deterministic"), run_layer(ref, m, "sparse"))  # composed, on the host
    files = len(list(own_cache.glob("*.json")))
    again = load()
    assert again.plan.runtime == why and len(list(own_cache.glob("*.json"))) == files


def test_layout_faults_leave_the_runtime_kernels_alone(own_cache, monkeypatch):
    """The weight ops' deterministic float16 programs fail their self-test: the runtime kernels still run,
    and a deterministic layer whose float16 matrix comes after float32 ones is refused before it stores
    anything in the caches (every matrix's program is found first), in a stack before its first layer runs."""
    monkeypatch.setenv(verify.FAULT_ENV, "wrong-bit:deterministic:float16")
    b = load()
    if b.plan.runtime is not None and "binary64" in b.plan.runtime:
        pytest.skip(b.plan.runtime)
    assert b.plan.runtime is None and b.refuses("deterministic")
    m = make_model(layers=1, dim=32, ff=40, vocab=260, heads=4, kv_heads=2, seed=1, dtype="f32")
    layer = dataclasses.replace(m.layers[0], wo=m.layers[0].wo.astype(np.float16))
    hp = m.hyper
    k, v = ([np.ones((4, hp.n_head_kv, hp.head_dim), np.float32)] for _ in range(2))
    x, seq, pos = m.token_embd[[1, 2]].astype(np.float32), np.zeros(2, np.int64), np.array([0, 1])
    kw = {"n_head": hp.n_head, "n_head_kv": hp.n_head_kv, "eps": hp.eps, "rope_base": hp.rope_base,
          "mode": "deterministic"}
    with pytest.raises(ocl.DeterministicUnsupported, match="float16"):
        b.decoder_layer(x, layer, k, v, seq, pos, **kw)
    assert (k[0] == 1).all() and (v[0] == 1).all()
    stack_k, stack_v = ([[np.ones_like(k[0])] for _ in range(2)] for _ in range(2))
    with pytest.raises(ocl.DeterministicUnsupported, match="float16"):  # the second layer's: before the first runs
        b.decoder_layers(x, [m.layers[0], layer], stack_k, stack_v, seq, pos, **kw)
    assert all((c[0] == 1).all() for c in stack_k + stack_v)


# ---- decoder_layer: the kernels chained on the device (layer.py) ----


@pytest.fixture(scope="module", params=["f16", "f32", "q4_0"])
def model(request):
    return make_model(layers=1, dim=64, ff=200, vocab=300, heads=4, kv_heads=2, seed=7, dtype=request.param)


def run_layer(backend, model, ffn, mode=None, layer=None, threshold=None):
    """A step of sequence 0's 5-token prompt and one decode row each for sequences 1 and 2 through
    `backend` (a Backend, or the reference module); (out, h, mask, k caches, v caches)."""
    hp = model.hyper
    rng = np.random.default_rng(3)
    k, v = ([rng.standard_normal((12, hp.n_head_kv, hp.head_dim)).astype(np.float32) for _ in range(3)]
            for _ in range(2))
    seq, positions = np.array([0] * 5 + [1, 2]), np.array([*range(5), 7, 11])
    x = model.token_embd[rng.integers(0, hp.vocab, seq.size)].astype(np.float32)
    kw = {"n_head": hp.n_head, "n_head_kv": hp.n_head_kv, "eps": hp.eps, "rope_base": hp.rope_base, "ffn": ffn,
          "threshold": hp.sparse_threshold if threshold is None else threshold, **({"mode": mode} if mode else {})}
    with np.errstate(all="ignore"):
        out, h, mask = backend.decoder_layer(x, model.layers[0] if layer is None else layer, k, v, seq, positions,
                                             **kw)
    return out, h, mask, k, v


def assert_layer(got, want):
    for name, g, w in zip(("out", "h"), got, want, strict=False):
        assert mismatch(g, w) is None, f"{name}: {mismatch(g, w)}"
    assert (got[2] is None) == (want[2] is None) and (want[2] is None or np.array_equal(got[2], want[2]))
    for g, w in zip(got[3] + got[4], want[3] + want[4], strict=True):  # the caches, stored rows included
        assert mismatch(g, w) is None


#: the host-side hooks: each is a round trip (upload, launch, wait, read back) the layer must not make
ROUND_TRIPS = ("_rmsnorm", "_rope", "_attention_batch", "_add", "_matvec", "_sparse_matvec", "_sparse_axpy",
               "_sparse_ffn", "_predict")


@pytest.fixture
def waits(monkeypatch):
    """The blocking flags of the device reads; any hook's round trip fails the test."""
    flags: list[bool] = []
    read = ocl.OpenCLBackend._read

    def counted(self, host, buffer, op, blocking=True):
        flags.append(blocking)
        return read(self, host, buffer, op, blocking)

    monkeypatch.setattr(ocl.OpenCLBackend, "_read", counted)
    for hook in ROUND_TRIPS:
        monkeypatch.setattr(ocl.OpenCLBackend, hook, lambda *a, hook=hook: pytest.fail(f"{hook}: a round trip"))
    return flags


@pytest.mark.parametrize("ffn", ["sparse", "dense"])
def test_layer_runs_on_the_device_and_waits_where_the_spec_needs_the_host(native, no_reference, waits, model, ffn):
    """The reference's bits (output, h, mask, the stored caches) with every runtime op on its kernel, and
    the host waiting 4 times (the new keys and values, the predictor's two products, the results), or
    2 with a dense FFN: not once per operator."""
    want = run_layer(ref, model, ffn)
    if want[2] is not None:
        assert 0 < want[2].sum() < want[2].size  # a real sparse step, neither empty nor dense
    assert_layer(run_layer(native, model, ffn, "deterministic"), want)
    assert sum(waits) == (4 if ffn == "sparse" else 2)


@pytest.mark.parametrize("weights", ["uploaded", "resident"])
def test_layer_on_a_device_with_its_own_memory(native, waits, model, weights):
    """As on a GPU: no zero-copy, so the caches' rows, the inputs and (uploaded) the active rows of a matrix travel
    every call, or (resident) read-only matrices stay on the device; the same bits and the same waits."""
    frozen = dataclasses.replace(model, layers=tuple(dataclasses.replace(layer, **{
        f: read_only(getattr(layer, f)) for f in ("wq", "wk", "wv", "wo", "gate", "up", "down_t", "fc1", "fc2")})
        for layer in model.layers))
    gpu_like = load(zero_copy=False, weight_cache_bytes=(64 << 20) if weights == "resident" else 0)
    assert_layer(run_layer(gpu_like, frozen, "sparse", "deterministic"), run_layer(ref, model, "sparse"))
    assert sum(waits) == 4
    assert (len(gpu_like.weights) > 0) == (weights == "resident")


def read_only(w):
    """A copy nothing can write (the weight cache keeps only such arrays), like a read-only model file's."""
    data = (w.data if isinstance(w, QuantizedMatrix) else w).copy()
    data.flags.writeable = False
    return QuantizedMatrix(data, w.shape, w.type) if isinstance(w, QuantizedMatrix) else data


@pytest.mark.parametrize("ffn", ["sparse", "dense"])
def test_layer_on_the_device_is_its_own_composition_in_fast_mode(native, model, ffn, monkeypatch):
    """The same kernels on the same inputs: the chained layer gives the op-by-op composition's bits."""
    got = run_layer(native, model, ffn, "fast")
    monkeypatch.setattr(ocl.OpenCLBackend, "_decoder_layer", Backend._decoder_layer)
    assert_layer(got, run_layer(native, model, ffn, "fast"))


def test_layer_with_mixed_weight_types_and_with_no_active_neuron(native, no_reference, model):
    """An FFN whose matrices differ in type runs the fused kernels' composition on h read back; a step
    whose predictor selects no neuron adds +0.0 (out = r + 0, which turns -0.0 into +0.0)."""
    up = model.layers[0].up
    mixed = dataclasses.replace(model.layers[0], up=up.dequantize() if isinstance(up, QuantizedMatrix)
                                else up.astype(np.float32 if up.dtype == np.float16 else np.float16))
    assert_layer(run_layer(native, model, "sparse", "deterministic", layer=mixed),
                 run_layer(ref, model, "sparse", layer=mixed))
    none = run_layer(native, model, "sparse", "deterministic", threshold=1e30)
    assert not none[2].any()
    assert_layer(none, run_layer(ref, model, "sparse", threshold=1e30))
