"""Q8_0, Q4_0 and Q6_K weights on the opencl backend (spec §13): blocks dequantized in the kernels' registers.

Every layout against the reference on the same QuantizedMatrix: the reference dequantizes on the
host with numpy (reference/quant.py), the kernels byte by byte in OpenCL C, so equal bits test the
kernels' block reading, nibble order, Q6_K's bit layout and sub-block scales, and scale conversion.
Widths are counted in blocks of the type (32 weights, Q6_K 256).  The self-test's refusal of a
quantized type alone is in test_opencl_selftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import reference as ref
from reprosparse.backends import BackendUnavailable, WeightsUnsupported
from reprosparse.conformance.quant_cases import QUANT_KINDS, quantized
from reprosparse.reference import bounds
from reprosparse.reference.quant import BLOCK_BYTES, QuantizedMatrix, block, take_rows

cl = pytest.importorskip("pyopencl", reason="pyopencl is not installed (pip install '.[opencl]')")

import opencl_loaded  # noqa: E402
from opencl_loaded import assert_bits  # noqa: E402

from reprosparse.backends import opencl  # noqa: E402
from reprosparse.backends.opencl import backend as ocl  # noqa: E402
from reprosparse.backends.opencl import programs  # noqa: E402

QTYPES = ("q8_0", "q4_0", "q6_k")


@pytest.fixture(scope="module", params=tuple(programs.LAYOUTS))
def backend(request) -> ocl.OpenCLBackend:
    return opencl_loaded.with_layout(request.param)


def inputs(rng: np.random.Generator, n: int, d: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = (rng.standard_normal((t, d)) * np.exp2(rng.integers(-6, 6, (t, d)))).astype(np.float32)
    rows = np.array(sorted({0, 1, 31, 255, 256, 257, n - 1} | set(rng.choice(n, 20).tolist())), np.int32)
    h = rng.standard_normal((t, rows.size)).astype(np.float32)
    h[rng.random(h.shape) < 0.2] = 0.0
    h[rng.random(h.shape) < 0.1] = -0.0
    return x, rows, h


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("kind", QUANT_KINDS)
def test_every_block_kind(backend, qtype, kind):
    """Subnormal, signed-zero, Inf and NaN scales, every int8 and nibble: the reference's bits in
    deterministic mode, the bound in fast mode, for every primitive."""
    rng = np.random.default_rng(QUANT_KINDS.index(kind))
    n, d, t = 300, 3 * block(qtype), 3
    W = quantized(rng, (n, d), kind, qtype)
    x, rows, h = inputs(rng, n, d, t)
    with np.errstate(all="ignore"):
        assert_bits(backend.matvec(W, x, mode="deterministic"), ref.matvec(W, x))
        assert_bits(backend.sparse_matvec(W, x, rows, mode="deterministic"), ref.sparse_matvec(W, x, rows))
        assert_bits(backend.sparse_axpy(W, h, rows, mode="deterministic"), ref.sparse_axpy(W, h, rows))
        for op, args in (("matvec", (W, x)), ("sparse_matvec", (W, x, rows)), ("sparse_axpy", (W, h, rows))):
            ok = getattr(bounds, op)(*args).contains(getattr(backend, op)(*args, mode="fast"))
            assert ok.all(), f"{op}: {int((~ok).sum())} elements outside the fast-mode bound"


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("t", [1, 4, 9])
def test_ffn_and_predict(backend, qtype, t):
    """The fused sparse_ffn (gate/up rows and down_t columns of blocks), dense_ffn and predict, with
    token counts for each tokens-per-work-item program and its tail."""
    rng = np.random.default_rng(t)
    n, d, d_out, r = 600, 2 * block(qtype), 3 * block(qtype), block(qtype)
    gate, up, down_t = (quantized(rng, (n, dd), "normal", qtype) for dd in (d, d, d_out))
    fc1, fc2 = quantized(rng, (r, d), "wide", qtype), quantized(rng, (n, r), "normal", qtype)
    x = rng.standard_normal((t, d)).astype(np.float32)
    mask = rng.random((t, n)) < 0.2
    mask[0, 255:258] = True
    assert_bits(backend.sparse_ffn(x, gate, up, down_t, mask, mode="deterministic"),
                ref.sparse_ffn(x, gate, up, down_t, mask))
    assert_bits(backend.dense_ffn(x, gate, up, down_t, mode="deterministic"), ref.dense_ffn(x, gate, up, down_t))
    assert np.array_equal(backend.predict(x, fc1, fc2, 0.1, mode="deterministic"), ref.predict(x, fc1, fc2, 0.1))
    ok = bounds.sparse_ffn(x, gate, up, down_t, mask).contains(
        backend.sparse_ffn(x, gate, up, down_t, mask, mode="fast"))
    assert ok.all()


def test_mixed_weight_types_in_one_ffn(backend):
    """gate q4_0, up float16, down_t q8_0: each matrix through the program of its own type."""
    rng = np.random.default_rng(3)
    n, d = 300, 64
    gate = quantized(rng, (n, d), "normal", "q4_0")
    up = rng.standard_normal((n, d)).astype(np.float16)
    down_t = quantized(rng, (n, 32), "normal", "q8_0")
    x = rng.standard_normal((2, d)).astype(np.float32)
    mask = rng.random((2, n)) < 0.3
    assert_bits(backend.sparse_ffn(x, gate, up, down_t, mask, mode="deterministic"),
                ref.sparse_ffn(x, gate, up, down_t, mask))


@pytest.mark.parametrize("qtype", ["q4_0", "q6_k"])
def test_batch_rows_and_column_slices_keep_their_bits(backend, qtype):
    """Each token's and each row's bits are its own: a batch equals its tokens one by one, a
    gathered QuantizedMatrix of rows its rows of the whole, whole-block column slices the columns."""
    rng = np.random.default_rng(4)
    k, per = block(qtype), BLOCK_BYTES[qtype]
    n, d = 520, 4 * k
    W = quantized(rng, (n, d), "wide", qtype)
    x, rows, h = inputs(rng, n, d, 9)
    batch = backend.sparse_matvec(W, x, rows, mode="deterministic")
    for i in range(x.shape[0]):
        assert_bits(backend.sparse_matvec(W, x[i], rows, mode="deterministic"), batch[i])
    assert_bits(backend.matvec(take_rows(W, rows), x, mode="deterministic"), batch)
    y = backend.sparse_axpy(W, h, rows, mode="deterministic")
    cols = QuantizedMatrix(np.ascontiguousarray(W.data[:, per:3 * per]), (n, 2 * k), qtype)  # blocks 1 and 2
    assert_bits(backend.sparse_axpy(cols, h, rows, mode="deterministic"), y[:, k:3 * k])


@pytest.mark.parametrize("qtype", QTYPES)
def test_uploaded_and_resident_blocks_give_the_same_bits(backend, qtype):
    """The paths of devices with their own memory: active rows of blocks gathered and uploaded per
    call, or the whole read-only block array kept on the device (once, keyed on the bytes)."""
    layout = next(iter(set(backend.plan.layouts.values())))
    rng = np.random.default_rng(5)
    n, d = 513, 2 * block(qtype)
    writable = [quantized(rng, (n, d), "normal", qtype) for _ in range(3)]
    # bytes objects cannot be written at all, as a read-only mapped model file cannot
    frozen = [QuantizedMatrix(np.frombuffer(q.data.tobytes(), np.uint8), q.shape, q.type) for q in writable]
    x, rows, h = inputs(rng, n, d, 3)
    mask = rng.random((3, n)) < 0.2
    for budget in (0, 1 << 20):
        b = opencl.load(layout=layout, weight_cache_bytes=budget, zero_copy=False)
        assert isinstance(b, ocl.OpenCLBackend)
        for mats in (writable, frozen):
            W = mats[0]
            assert_bits(b.sparse_matvec(W, x, rows, mode="deterministic"), ref.sparse_matvec(W, x, rows))
            assert_bits(b.sparse_axpy(W, h, rows, mode="deterministic"), ref.sparse_axpy(W, h, rows))
            assert_bits(b.sparse_ffn(x, *mats, mask, mode="deterministic"), ref.sparse_ffn(x, *mats, mask))
        # QuantizedMatrix makes its bytes a read-only view, but `writable`'s own writable memory
        # underneath: never cached, as a writable float array is not; `frozen`'s blocks are, once each.
        assert len(b.weights) == (3 if budget else 0)
        assert b.weights.nbytes == (sum(q.nbytes for q in frozen) if budget else 0)


def test_unknown_and_bad_quantized_weights_fail_before_device_work(backend, monkeypatch):
    """A type the kernels do not know (a new GGML type) is refused by name; bad blocks raise the
    reference's errors; neither reaches a kernel."""
    launched: list[str] = []
    monkeypatch.setattr(backend, "_launch", lambda v, k, *a: launched.append(k))
    q = quantized(np.random.default_rng(6), (40, 64), "normal", "q4_0")
    x = np.zeros(64, np.float32)
    monkeypatch.setattr(type(backend), "weight_types", ("float32", "float16", "q8_0"))  # as if q4_0 were new
    with pytest.raises(WeightsUnsupported, match=r"W: the opencl backend does not take q4_0 weights"):
        backend.matvec(q, x)
    monkeypatch.undo()
    monkeypatch.setattr(backend, "_launch", lambda v, k, *a: launched.append(k))
    bad = QuantizedMatrix(q.data, q.shape, q.type)
    object.__setattr__(bad, "_shape", (40, 128))
    with pytest.raises(ValueError, match=r"W\.data must have shape \(40, 72\)"):
        backend.matvec(bad, np.zeros(128, np.float32))
    with pytest.raises(ValueError, match=r"x must have 64 columns"):
        backend.matvec(q, np.zeros(32, np.float32))
    with pytest.raises(ValueError, match=r"rows"):
        backend.sparse_axpy(q, np.zeros((1, 2), np.float32), np.array([3, 1], np.int32))
    assert launched == []


def test_the_registry_backend_takes_quantized_weights():
    status = rs.available_backends().get("opencl")
    if status is None or not status.available:
        pytest.skip("opencl unavailable")
    assert {"q8_0", "q4_0", "q6_k"} <= set(rs.get_backend("opencl").weight_types)


def test_a_q4_0_model_on_opencl_alone_and_partitioned_gives_the_references_bits():
    """Prefill and decode of a q4_0 model (Q8_0 head) in a batch: opencl alone, and opencl beside
    another backend with the rows and whole-block columns split between them, give numpy's tokens
    and logit bits."""
    pytest.importorskip("gguf")
    from reprosparse.backends.numpy_backend import NumpyBackend
    from reprosparse.model import Runtime, generate, make_model
    from reprosparse.partition import Executor, Partition

    try:
        b = opencl.load()
    except BackendUnavailable as exc:
        pytest.skip(f"no usable OpenCL device: {exc}")
    model = make_model(layers=1, dim=64, ff=512, vocab=300, heads=4, seed=4, dtype="q4_0")
    other = rs.get_backend("cython") if rs.available_backends()["cython"].available else NumpyBackend()

    def logits(backend) -> tuple[list[list[int]], np.ndarray]:
        out = generate(Runtime(model, backend, mode="deterministic"), [[5, 9, 200, 31, 7], [1, 2]], 4)
        return [g.tokens for g in out], np.stack([g.logits for g in out])

    want_tokens, want = logits(NumpyBackend())
    for backend in (b, Partition([Executor(b, 1), Executor(other, 1)], row_unit=256, column_unit=32)):
        tokens, got = logits(backend)
        assert tokens == want_tokens and got.tobytes() == want.tobytes()
