"""The cython backend's runtime ops (csrc/rs_runtime.c) against the reference, bit for bit.

The conformance suite (conformance/runtime_cases.py) runs every op over its
families, thread counts and batch splits; here: exp32 and sincos32 swept over
far more inputs than a case holds, the golden vectors, and the checks that keep
bad input away from native code.
"""

from __future__ import annotations

import numpy as np
import pytest

from reprosparse import reference as ref
from reprosparse.conformance import golden
from reprosparse.conformance.compare import mismatch

kernels = pytest.importorskip("reprosparse.backends._cython_kernels")
from reprosparse.backends.cython_backend import CythonBackend  # noqa: E402


@pytest.fixture(scope="module")
def backend():
    return CythonBackend()


def _every_kind_of_float32(rng, n):
    """Random bit patterns (every exponent, subnormals, Inf and NaN included) plus the ranges that matter."""
    bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([bits, rng.uniform(-110, 95, n).astype(np.float32),
                           np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72283, 88.72284, -104.0], np.float32)])


def test_exp32_bits_over_every_kind_of_input():
    x = _every_kind_of_float32(np.random.default_rng(0), 400_000)
    assert mismatch(kernels.exp32(x), ref.exp32(x)) is None


def test_sincos32_bits_over_every_kind_of_input():
    rng = np.random.default_rng(1)
    a = np.concatenate([_every_kind_of_float32(rng, 200_000),
                        rng.uniform(-(2.0**24), 2.0**24, 200_000).astype(np.float32),
                        (np.pi / 2 * 2.0**20 + np.arange(-8, 8)).astype(np.float32)])
    got = kernels.sincos32(a)
    with np.errstate(invalid="ignore"):  # signalling NaN patterns among the inputs
        want = ref.sincos32(a)
    assert mismatch(got[0], want[0]) is None and mismatch(got[1], want[1]) is None


def test_golden_runtime_vectors(backend):
    """golden.json's runtime vectors, through the backend's public ops and the kernels' exp32 and sincos32."""

    def run(op, inputs):
        if op in ("exp32", "sincos32"):
            return getattr(kernels, op)(*inputs.values())
        return getattr(backend, op)(**inputs, mode="deterministic", threads=2)

    ops = ("exp32", "sincos32", "rope", "rmsnorm", "softmax", "attention", "argmax")
    assert {e["op"] for e in golden.load()} >= set(ops)
    assert golden.check(run, ops) == []


def test_thread_count_never_changes_attention_bits(backend):
    """A LLaMA-shaped prefill over a long cache: enough work that every thread count really splits it."""
    rng = np.random.default_rng(2)
    q = rng.standard_normal((32, 32, 128)).astype(np.float32)
    k, v = (rng.standard_normal((600, 8, 128)).astype(np.float32) for _ in range(2))
    positions = np.arange(568, 600)
    want = ref.attention(q, k, v, positions)
    for threads in (1, 2, 3, 5, 8):
        assert mismatch(backend.attention(q, k, v, positions, threads=threads), want) is None, threads


def test_non_contiguous_inputs_are_copied_not_misread(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 64)).astype(np.float32)[:, ::2]
    w = rng.standard_normal(32).astype(np.float32)
    assert mismatch(backend.rmsnorm(x, w, 1e-6), ref.rmsnorm(x, w, 1e-6)) is None
    assert mismatch(backend.softmax(x.T), ref.softmax(x.T)) is None


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda k: k.rope(np.zeros((2, 1, 4), np.float32), np.array([0, 1 << 24]), 10000.0, 1), ValueError,
         "out of range"),
        (lambda k: k.rope(np.zeros((2, 1, 4), np.float32), np.array([0, 1], np.int32), 10000.0, 1), TypeError,
         "positions"),
        (lambda k: k.attention(np.zeros((1, 2, 4), np.float32), [np.zeros((3, 1, 4), np.float32)],
                               [np.zeros((3, 1, 4), np.float32)], np.zeros(1, np.int64), np.array([3]), None, None, 1),
         ValueError, "out of range"),
        (lambda k: k.attention(np.zeros((1, 2, 4), np.float32), [np.zeros((3, 1, 4), np.float32)],
                               [np.zeros((3, 1, 4), np.float32)], np.array([1]), np.array([0]), None, None, 1),
         ValueError, "out of range"),
        (lambda k: k.attention(np.zeros((1, 2, 4), np.float32), [np.zeros((3, 1, 4), np.float32)],
                               [np.zeros((2, 1, 4), np.float32)], np.zeros(1, np.int64), np.array([0]), None, None, 1),
         ValueError, "every k and v"),
        (lambda k: k.softmax(np.zeros((1, 3), np.float32), np.array([4]), 1), ValueError, "out of range"),
        (lambda k: k.rmsnorm(np.zeros((1, 3), np.float32), np.zeros(4, np.float32), 0.0, 1), ValueError, "weight"),
        (lambda k: k.add(np.zeros(3, np.float32), np.zeros(4, np.float32), 1), ValueError, "shape"),
        (lambda k: k.argmax(np.zeros((2, 0), np.float32), 1), ValueError, "column"),
    ],
)
def test_direct_kernel_calls_refuse_what_would_read_out_of_bounds(call, error, words):
    """A caller that skips the Backend's checks still gets an exception, never a wild read."""
    with pytest.raises(error, match=words):
        call(kernels)


def test_backend_names_the_bad_argument_before_native_code(backend):
    q = np.zeros((2, 4, 8), np.float32)
    k = np.zeros((5, 2, 8), np.float32)
    with pytest.raises(ValueError, match="positions"):
        backend.attention(q, k, k, np.array([0, 5]))
    with pytest.raises(ValueError, match=r"v\[1\]"):
        backend.attention_batch(q, [k, k], [k, k[:3]], np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(TypeError, match="k must be a list"):
        backend.attention_batch(q, k, [k], np.array([0, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="seq"):
        backend.attention_batch(q, [k], [k], np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="positions must lie inside"):
        backend.attention_batch(q, [k, k[:2]], [k, k[:2]], np.array([0, 1]), np.array([4, 2]))
    with pytest.raises(TypeError, match="eps"):
        backend.rmsnorm(np.zeros((1, 3), np.float32), np.zeros(3, np.float32), True)
    with pytest.raises(TypeError, match="b must have dtype float32"):
        backend.add(np.zeros(3, np.float32), np.zeros(3, np.float64))


def test_attention_batch_stores_the_new_rows_like_the_reference_hook(backend):
    """The cache update inside attention_batch: the same caches and bits as the numpy backend's reference hook."""
    from reprosparse.backends.numpy_backend import NumpyBackend

    rng = np.random.default_rng(4)
    q = rng.standard_normal((5, 4, 16)).astype(np.float32)
    new_k, new_v = (rng.standard_normal((5, 2, 16)).astype(np.float32) for _ in range(2))
    seq, positions = np.array([0, 0, 0, 1, 1]), np.array([7, 8, 9, 2, 3])  # a prefill and a two-token step
    k0 = [rng.standard_normal((12, 2, 16)).astype(np.float32) for _ in range(2)]
    results = []
    for be in (backend, NumpyBackend()):
        k = [a.copy() for a in k0]
        v = [a * np.float32(0.5) for a in k0]
        out = be.attention_batch(q, k, v, seq, positions, new_k, new_v, threads=2)
        assert np.array_equal(k[0][7:10], new_k[:3]) and np.array_equal(v[1][2:4], new_v[3:])
        results.append(out)
    assert mismatch(results[0], results[1]) is None


def test_attention_batch_refuses_a_store_it_could_not_make(backend):
    q = np.zeros((1, 2, 4), np.float32)
    new = np.zeros((1, 1, 4), np.float32)
    strided = np.zeros((6, 1, 4), np.float32)[::2]
    with pytest.raises(ValueError, match=r"k\[0\] must be C-contiguous and writeable"):
        backend.attention_batch(q, [strided], [strided.copy()], np.array([0]), np.array([0]), new, new)
    with pytest.raises(ValueError, match="together"):
        backend.attention_batch(q, [strided.copy()], [strided.copy()], np.array([0]), np.array([0]), new)
    with pytest.raises(ValueError, match="new_v must have shape"):
        backend.attention_batch(q, [strided.copy()], [strided.copy()], np.array([0]), np.array([0]), new,
                                np.zeros((1, 1, 3), np.float32))
