"""The fast-mode bound holds for the deterministic order and is not vacuous."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reprosparse import reference
from reprosparse.reference import bounds

from strategies import lead, mixed, rows, tokens

SETTINGS = settings(max_examples=80, deadline=None)
dtypes = st.sampled_from(["float32", "float16"])


def _scaled(data, shape, dtype="float32", specials=True):
    """Mixed values times a random power of two, to reach the subnormal and huge ranges."""
    v = data.draw(mixed(shape, dtype, specials))
    if dtype == "float16":
        return v
    with np.errstate(all="ignore"):
        return (v * np.float32(2.0 ** data.draw(st.integers(-140, 100)))).astype(np.float32)


@SETTINGS
@given(st.data(), st.integers(1, 64), st.integers(1, 40), tokens, dtypes)
def test_deterministic_matvec_is_inside_the_bound(data, d, n, t, dtype):
    W = _scaled(data, (n, d), dtype)
    x = _scaled(data, (*lead(t), d))
    b = bounds.matvec(W, x)
    assert b.contains(reference.matvec(W, x).reshape(b.centre.shape)).all()


@SETTINGS
@given(st.data(), st.integers(1, 8), st.integers(1, 800), tokens)
def test_deterministic_sparse_axpy_is_inside_the_bound(data, d, n, t):
    W = _scaled(data, (n, d))
    r = data.draw(rows(n))
    h = _scaled(data, (*lead(t), r.size))
    b = bounds.sparse_axpy(W, h, r)
    assert b.contains(reference.sparse_axpy(W, h, r).reshape(b.centre.shape)).all()


@SETTINGS
@given(st.data(), st.integers(1, 24), st.integers(1, 600), st.integers(1, 5), tokens, dtypes, st.booleans())
def test_deterministic_sparse_ffn_is_inside_the_bound(data, d, n, d_out, t, dtype, specials):
    x = _scaled(data, (*lead(t), d), specials=specials)
    gate, up = data.draw(mixed((n, d), dtype, specials)), data.draw(mixed((n, d), dtype, specials))
    down_t = data.draw(mixed((n, d_out), dtype, specials))
    mask = np.random.default_rng(data.draw(st.integers(0, 99))).random((*lead(t), n)) < 0.3
    b = bounds.sparse_ffn(x, gate, up, down_t, mask)
    got = reference.sparse_ffn(x, gate, up, down_t, mask)
    assert b.contains(got.reshape(b.centre.shape)).all()


@SETTINGS
@given(st.data(), st.integers(1, 24), st.integers(1, 12), st.integers(1, 40), tokens, dtypes)
def test_deterministic_predict_is_allowed(data, d, r, n, t, dtype):
    x = data.draw(mixed((*lead(t), d)))
    fc1, fc2 = data.draw(mixed((r, d), dtype)), data.draw(mixed((n, r), dtype))
    thr = data.draw(st.sampled_from([0.0, 0.5, -2.0]))
    assert bounds.predict_allows(x, fc1, fc2, thr, reference.predict(x, fc1, fc2, thr)).all()


def test_bound_is_tight_enough_to_reject_a_wrong_answer():
    rng = np.random.default_rng(7)
    W = rng.standard_normal((50, 4096)).astype(np.float32)
    x = rng.standard_normal(4096).astype(np.float32)
    b = bounds.matvec(W, x)
    y = reference.matvec(W, x).astype(np.float64)
    assert b.contains((y + 2 * b.radius[0]).astype(np.float32)).sum() == 0
    # The bound is far below the result's own magnitude: it constrains the answer.
    assert np.all(b.radius < 1e-3 * np.abs(W.astype(np.float64)) @ np.abs(x.astype(np.float64)))


def test_special_values_have_fixed_answers():
    W = np.array([[np.inf, 1.0], [np.inf, -np.inf], [np.nan, 0.0], [0.0, 1.0]], np.float32)
    x = np.array([2.0, 0.0], np.float32)
    b = bounds.matvec(W, x)
    kinds = [bounds.KIND_NAMES[k] for k in b.kind[0]]
    assert kinds == ["+inf", "nan", "nan", "finite"]
    assert not b.contains(np.array([[np.inf, np.inf, np.nan, 0.0]], np.float32))[0, 1]


def test_zero_h_terms_stay_skipped_in_the_bound():
    W = np.array([[np.inf], [1.0]], np.float32)
    b = bounds.sparse_axpy(W, np.array([0.0, 2.0], np.float32), np.array([0, 1], np.int32))
    assert bounds.KIND_NAMES[b.kind[0, 0]] == "finite" and b.centre[0, 0] == 2.0


def test_possible_overflow_is_free_not_hidden():
    big = np.float32(3e38)
    W = np.array([[big, big, -big]], np.float32)
    b = bounds.matvec(W, np.ones(3, np.float32))
    assert b.kind[0, 0] == bounds.FREE


def test_float32_overflow_of_h_is_not_hidden_by_float64():
    """relu(g) * u can overflow in float32 (then Inf * 0 = NaN) though float64 holds it: no finite claim."""
    big = np.float32(2.0**70)
    x = np.ones(1, np.float32)
    gate, up, down_t = np.array([[big]]), np.array([[big]]), np.zeros((1, 1), np.float32)
    mask = np.ones(1, bool)
    got = reference.sparse_ffn(x, gate, up, down_t, mask)
    assert np.isnan(got[0])
    b = bounds.sparse_ffn(x, gate, up, down_t, mask)
    assert b.kind[0, 0] == bounds.FREE and b.contains(got.reshape(b.centre.shape)).all()


def _exact_requirement(W: np.ndarray, x: np.ndarray) -> list[Fraction]:
    """Per row: gamma_n * S + n * eta + |centre - y|, in exact arithmetic, for the float64 centre of dot_bound.

    A fast result within gamma_n * S + n * eta of the exact y (spec §10) is then within this of the centre.
    """
    b = bounds.dot_bound(W, x[None, :])
    n = W.shape[1]
    nu = Fraction(n, 2**24)
    gamma_n = nu / (1 - nu)
    out = []
    for i, row in enumerate(W):
        terms = [Fraction(float(a)) * Fraction(float(v)) for a, v in zip(row, x, strict=True)]
        y, s = sum(terms), sum(abs(t) for t in terms)
        out.append(gamma_n * s + n * Fraction(2) ** -149 + abs(Fraction(float(b.centre[0, i])) - y))
    return out


@SETTINGS
@given(st.data(), st.integers(1, 48), st.integers(1, 4))
def test_dot_bound_radius_covers_the_exact_requirement(data, d, n):
    """The float64 radius is checked against exact rational arithmetic, not against float64 again."""
    W = _scaled(data, (n, d), specials=False)
    x = _scaled(data, (d,), specials=False)
    b = bounds.dot_bound(W, x[None, :])
    for i, need in enumerate(_exact_requirement(W, x)):
        if b.kind[0, i] == bounds.FINITE:
            assert Fraction(float(b.radius[0, i])) >= need


def test_dot_bound_radius_covers_lost_small_terms():
    """One large term and many just below half an ulp of it: float64 sums may drop them all."""
    d = 20000
    W = np.full((2, d), 2.0**-27, np.float32)
    W[1, 1::2] *= -1  # cancellation: y small, S large
    x = np.full(d, 2.0**-26, np.float32)
    W[:, :64] = 1.0
    x[:64] = 1.0
    b = bounds.dot_bound(W, x[None, :])
    assert (b.kind == bounds.FINITE).all()
    for i, need in enumerate(_exact_requirement(W, x)):
        assert Fraction(float(b.radius[0, i])) >= need


def test_exact_sum_bound_survives_an_order_that_drops_every_small_term():
    """abs_sum is itself rounded in float64; the bound must hold for the worst order, not BLAS's."""
    k = 1000
    s = 1.0
    for _ in range(k):
        s += 2.0**-53  # a tie each time: rounds to even, back to 1.0
    assert s == 1.0
    exact = 1 + k * Fraction(2) ** -53
    assert Fraction(float(bounds.exact_sum_bound(np.float64(s), k + 1))) >= exact
