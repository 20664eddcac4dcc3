"""The vectorised reference equals a literal scalar transcription of the spec, bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reprosparse import reference
from reprosparse.conformance.compare import mismatch

import spec_scalar as spec
from strategies import any_f32, arrays, lead, mixed, rows, tokens

weight_dtypes = st.sampled_from(["float32", "float16"])
SETTINGS = settings(max_examples=60, deadline=None)


def assert_same(got, want):
    problem = mismatch(got, want)
    assert problem is None, problem


@SETTINGS
@given(st.data(), st.integers(1, 40), st.integers(1, 24), tokens, weight_dtypes)
def test_matvec(data, d, n, t, dtype):
    W = data.draw(mixed((n, d), dtype))
    x = data.draw(mixed((*lead(t), d)))
    assert_same(reference.matvec(W, x), spec.matvec(W, x))


@SETTINGS
@given(st.data(), st.integers(1, 20), st.integers(1, 20))
def test_matvec_any_float(data, d, n):
    """Every float32 bit pattern, not just the mixed distribution."""
    W = data.draw(arrays((n, d), any_f32))
    x = data.draw(arrays((d,), any_f32))
    assert_same(reference.matvec(W, x), spec.matvec(W, x))


@SETTINGS
@given(st.data(), st.integers(1, 40), st.integers(1, 700), tokens, weight_dtypes)
def test_sparse_matvec(data, d, n, t, dtype):
    W = data.draw(mixed((n, d), dtype))
    x = data.draw(mixed((*lead(t), d)))
    r = data.draw(rows(n))
    assert_same(reference.sparse_matvec(W, x, r), spec.sparse_matvec(W, x, r))


@SETTINGS
@given(st.data(), st.integers(1, 12), st.integers(1, 800), tokens, weight_dtypes)
def test_sparse_axpy(data, d, n, t, dtype):
    """n up to 800 puts rows into several 256-neuron blocks."""
    W = data.draw(mixed((n, d), dtype))
    r = data.draw(rows(n))
    h = data.draw(mixed((*lead(t), r.size)))
    assert_same(reference.sparse_axpy(W, h, r), spec.sparse_axpy(W, h, r))


@SETTINGS
@given(st.data(), st.integers(1, 6), st.integers(1, 600))
def test_sparse_axpy_any_float(data, d, n):
    W = data.draw(mixed((n, d)))
    r = data.draw(rows(n))
    h = data.draw(arrays((r.size,), any_f32))
    assert_same(reference.sparse_axpy(W, h, r), spec.sparse_axpy(W, h, r))


@SETTINGS
@given(st.data(), st.integers(1, 24), st.integers(1, 12), st.integers(1, 30), tokens, weight_dtypes,
       st.sampled_from([0.0, 0.25, -1.0, 1e-30]))
def test_predict(data, d, r, n, t, dtype, threshold):
    x = data.draw(mixed((*lead(t), d)))
    fc1 = data.draw(mixed((r, d), dtype))
    fc2 = data.draw(mixed((n, r), dtype))
    assert_same(reference.predict(x, fc1, fc2, threshold), spec.predict(x, fc1, fc2, threshold))


@SETTINGS
@given(st.data(), st.integers(1, 20), st.integers(1, 600), st.integers(1, 6), tokens, weight_dtypes,
       st.booleans())
def test_sparse_ffn(data, d, n, d_out, t, dtype, specials):
    x = data.draw(mixed((*lead(t), d), specials=specials))
    gate, up = data.draw(mixed((n, d), dtype, specials)), data.draw(mixed((n, d), dtype, specials))
    down_t = data.draw(mixed((n, d_out), dtype, specials))
    seed = data.draw(st.integers(0, 2**32 - 1))
    mask = np.random.default_rng(seed).random((*lead(t), n)) < data.draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    assert_same(reference.sparse_ffn(x, gate, up, down_t, mask), spec.sparse_ffn(x, gate, up, down_t, mask))


@settings(max_examples=20, deadline=None)
@given(st.data(), st.integers(1, 12), st.integers(1, 300), st.integers(1, 4), tokens)
def test_dense_ffn(data, d, n, d_out, t):
    x = data.draw(mixed((*lead(t), d)))
    gate, up, down_t = (data.draw(mixed(s)) for s in ((n, d), (n, d), (n, d_out)))
    assert_same(reference.dense_ffn(x, gate, up, down_t), spec.dense_ffn(x, gate, up, down_t))


def test_relu_edges():
    v = np.array([-0.0, 0.0, -1.0, 2.0**-149, -(2.0**-149), np.inf, -np.inf, np.nan], np.float32)
    got = reference.relu(v)
    want = np.array([spec.relu(e) for e in v], np.float32)
    assert_same(got, want)
    assert np.signbit(got[0]) == np.False_  # -0.0 becomes +0.0
