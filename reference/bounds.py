"""Fast-mode error bounds of docs/spec.md ("Fast mode"), evaluated in float64.

For every output element an op in fast mode may return, this computes a
`Bound`: the float64 centre, a radius, and the element's kind:

- FINITE: the result must be finite and |result - centre| <= radius;
- NAN / POS_INF / NEG_INF: the result must be that value (every evaluation
  order gives it, because no finite partial sum can overflow);
- FREE: the bound does not constrain the element (a partial sum may overflow,
  or a non-finite intermediate feeds a composite op); counted, never hidden.

The radius includes the error of the float64 centre itself and of the float64
sums of magnitudes it is built from, and it is rounded outward, so a
comparison against it is rigorous: it is an upper bound on |fast - centre| for
any summation order, with or without fused multiply-add, with gradual
underflow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import numpy as np

from . import _checks
from .ffn import ffn_rows
from .quant import Weights

P = ParamSpec("P")
R = TypeVar("R")

U32 = 2.0**-24  # unit roundoff of float32
U64 = 2.0**-53  # unit roundoff of float64
ETA = 2.0**-149  # smallest float32 subnormal
FLT_MAX = float(np.finfo(np.float32).max)

# Each radius is evaluated in float64 from nonnegative terms with at most 8 roundings along any
# path, each losing at most a factor (1 - U64); multiplying by 1 + 16 U64 afterwards makes it an
# upper bound again, with room left for the rounding of |got - centre| in Bound.contains:
# (1 - U64)**9 * (1 + 16 U64) >= 1 + U64.  (Keep the count in mind when a formula grows.)
OUTWARD = 1.0 + 16 * U64

FINITE, NAN, POS_INF, NEG_INF, FREE = range(5)
KIND_NAMES = ("finite", "nan", "+inf", "-inf", "free")


def gamma(n: np.ndarray | float, u: float) -> np.ndarray:
    """gamma_n = n u / (1 - n u), the classic bound for n roundings in a row."""
    nu = np.asarray(n, np.float64) * u
    return nu / (1.0 - nu)


def exact_sum_bound(s: np.ndarray, n: np.ndarray | float) -> np.ndarray:
    """An upper bound on an exact sum of n nonnegative products, from its float64 value s.

    In any order, with or without FMA, |s - exact| <= gamma_n(U64) * exact (Higham §3.1; the
    terms are nonnegative), so exact <= s / (1 - gamma_n) <= s * (1 + 2 gamma_n).
    """
    return s * (1.0 + 2.0 * gamma(n, U64))


@dataclass
class Bound:
    centre: np.ndarray  # float64
    radius: np.ndarray  # float64, >= 0
    kind: np.ndarray  # int8, one of FINITE..FREE

    def contains(self, got: np.ndarray) -> np.ndarray:
        """Elementwise: is `got` allowed by this bound?"""
        got64 = got.astype(np.float64)
        with np.errstate(invalid="ignore"):
            finite_ok = np.isfinite(got64) & (np.abs(got64 - self.centre) <= self.radius)
        return np.select(
            [self.kind == FINITE, self.kind == NAN, self.kind == POS_INF, self.kind == NEG_INF],
            [finite_ok, np.isnan(got64), got64 == np.inf, got64 == -np.inf],
            default=True,
        )

    def used(self, got: np.ndarray) -> np.ndarray:
        """|got - centre| / radius on FINITE elements (0 elsewhere): how much of the bound is used."""
        got64 = got.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(got64 - self.centre)
            frac = np.where(self.radius > 0, err / self.radius, np.where(err == 0, 0.0, np.inf))
        return np.where(self.kind == FINITE, frac, 0.0)


def _indicator_counts(a: np.ndarray, b: np.ndarray, skip_zero_b: bool) -> tuple[np.ndarray, ...]:
    """Counts of NaN, +Inf and -Inf terms of out[t, i] = sum_k a[i, k] * b[t, k].

    Indicator matrices keep the IEEE rules exact (0 * Inf is NaN), which a BLAS
    call on the raw values does not promise.
    """

    def mm(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return q.astype(np.float64) @ p.astype(np.float64).T  # (t, n)

    nan_a, nan_b = np.isnan(a), np.isnan(b)
    inf_a, inf_b = np.isinf(a), np.isinf(b)
    zero_a, zero_b = a == 0, b == 0
    live_b = ~zero_b if skip_zero_b else np.ones_like(zero_b)
    nan = mm(nan_a, live_b) + mm(np.ones_like(nan_a), nan_b) + mm(zero_a, inf_b)
    if not skip_zero_b:
        nan = nan + mm(inf_a, zero_b)
    pos_a, neg_a = a > 0, a < 0
    pos_b, neg_b = b > 0, b < 0
    pos = mm(inf_a & pos_a, pos_b) + mm(inf_a & neg_a, neg_b) + mm(pos_a, inf_b & pos_b) + mm(neg_a, inf_b & neg_b)
    neg = mm(inf_a & pos_a, neg_b) + mm(inf_a & neg_a, pos_b) + mm(pos_a, inf_b & neg_b) + mm(neg_a, inf_b & pos_b)
    return nan, pos, neg


def _quiet(fn: Callable[P, R]) -> Callable[P, R]:
    """Inf and NaN inputs are expected here; the kinds record them, warnings would only be noise."""

    @functools.wraps(fn)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapped


@_quiet
def dot_bound(a: np.ndarray, b: np.ndarray, skip_zero_b: bool = False) -> Bound:
    """Bound for out[t, i] = sum_k a[i, k] * b[t, k] in any order, with or without FMA.

    a: (n, k) float32/float16, b: (t, k) float32.  With skip_zero_b, terms whose
    b is zero are left out (sparse_axpy's rule), which also shortens n.
    """
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    fa, fb = np.isfinite(a64), np.isfinite(b64)
    a_fin, b_fin = np.where(fa, a64, 0.0), np.where(fb, b64, 0.0)
    # Products of two float32 values are exact in float64; only the sums round.
    centre = b_fin @ a_fin.T
    abs_sum = np.abs(b_fin) @ np.abs(a_fin).T
    terms = (b != 0).sum(axis=1) if skip_zero_b else np.full(b.shape[0], a.shape[1])
    n = np.maximum(terms, 1)[:, None].astype(np.float64)
    mag = exact_sum_bound(abs_sum, n)  # abs_sum itself was rounded in float64
    radius = ((gamma(n, U32) + gamma(n, U64)) * mag + n * ETA) * OUTWARD
    # A finite partial sum can only overflow if the sum of magnitudes (with its
    # rounding growth) can reach FLT_MAX; only a NaN result survives that.
    kind = np.where(mag * (1 + gamma(n, U32)) + n * ETA > FLT_MAX, FREE, FINITE).astype(np.int8)
    if not (fa.all() and fb.all()):
        nan, pos, neg = _indicator_counts(a, b, skip_zero_b)
        settled = kind == FINITE
        kind[(pos > 0) & settled] = POS_INF
        kind[(neg > 0) & settled] = NEG_INF
        kind[(nan > 0) | ((pos > 0) & (neg > 0))] = NAN
    return Bound(centre, radius, kind)


def _relu64(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0, v, 0.0)


def matvec(W: Weights, x: np.ndarray) -> Bound:
    W, x = _checks.matvec_args(W, x)
    W = _checks.dense(W)
    return dot_bound(W, _checks.as_2d(x))


def sparse_matvec(W: Weights, x: np.ndarray, rows: np.ndarray) -> Bound:
    W, x, rows = _checks.sparse_matvec_args(W, x, rows)
    W = _checks.dense(W)
    return dot_bound(W[rows], _checks.as_2d(x))


def sparse_axpy(W: Weights, h: np.ndarray, rows: np.ndarray) -> Bound:
    W, h, rows = _checks.sparse_axpy_args(W, h, rows)
    W = _checks.dense(W)
    return dot_bound(np.ascontiguousarray(W[rows].T), _checks.as_2d(h), skip_zero_b=True)


@_quiet
def _propagated_dot(a: np.ndarray, v: np.ndarray, rv: np.ndarray, free_v: np.ndarray) -> Bound:
    """Bound for out[t, i] = sum_k a[i, k] * v_hat[t, k] where |v_hat - v| <= rv.

    First the perturbation of the inputs, then the rounding of a fresh sum
    over the perturbed values (|v_hat| <= |v| + rv).
    """
    a64 = np.abs(a.astype(np.float64))
    n = float(max(a.shape[1], 1))
    # float64 holds values that float32 cannot: an input whose bound reaches past FLT_MAX
    # may be Inf in float32 (and Inf * 0 = NaN), so its token is not constrained.
    free_v = free_v | (np.abs(v) + rv > FLT_MAX)
    # Both sums of magnitudes are rounded in float64 (products included): bound them from above.
    shift = exact_sum_bound(rv @ a64.T, n)
    mag = exact_sum_bound((np.abs(v) + rv) @ a64.T, n)
    centre = v @ a.astype(np.float64).T
    radius = (shift + (gamma(n, U32) + gamma(n, U64)) * mag + n * ETA) * OUTWARD
    kind = np.full(centre.shape, FINITE, np.int8)
    bad = np.asarray(~np.isfinite(centre) | ~np.isfinite(radius) | (mag * (1 + gamma(n, U32)) + n * ETA > FLT_MAX))
    kind[bad | np.asarray(free_v.any(axis=1))[:, None]] = FREE
    return Bound(np.where(bad, 0.0, centre), np.where(bad, 0.0, radius), kind)


def _not_finite(b: Bound) -> np.ndarray:
    return b.kind != FINITE


def predict_margin(x: np.ndarray, fc1: Weights, fc2: Weights) -> Bound:
    """Bound on the predictor logits z; the fast mask may differ only where |z - thr| <= radius."""
    x, fc1, fc2, _ = _checks.predict_args(x, fc1, fc2, 0.0)
    fc1, fc2 = _checks.dense(fc1), _checks.dense(fc2)
    v = dot_bound(fc1, _checks.as_2d(x))
    free = _not_finite(v)
    a = _relu64(np.where(free, 0.0, v.centre))
    # relu is 1-Lipschitz, so |relu(v_hat) - relu(v)| <= radius of v.
    return _propagated_dot(fc2, a, np.where(free, 0.0, v.radius), free)


def predict_allows(x: np.ndarray, fc1: Weights, fc2: Weights, threshold: float, got: np.ndarray) -> np.ndarray:
    """Elementwise: is the fast-mode mask `got` allowed?"""
    z = predict_margin(x, fc1, fc2)
    thr = float(_checks.threshold(threshold))
    exact = z.centre >= thr
    undecided = (np.abs(z.centre - thr) <= z.radius) | (z.kind != FINITE)
    return (undecided | (_checks.as_2d(got) == exact)).reshape(got.shape)


@_quiet
def sparse_ffn(x: np.ndarray, gate: Weights, up: Weights, down_t: Weights, mask: np.ndarray) -> Bound:
    """Bound for sparse_ffn: the gate/up bounds pushed through relu(g) * u and the axpy."""
    x, gate, up, down_t = _checks.ffn_args(x, gate, up, down_t)
    gate, up, down_t = _checks.dense(gate), _checks.dense(up), _checks.dense(down_t)
    mask2 = _checks.as_2d(_checks.mask("mask", mask, x, gate.shape[0]))
    x2 = _checks.as_2d(x)
    rows = ffn_rows(mask2)
    g = dot_bound(gate[rows], x2)
    u = dot_bound(up[rows], x2)
    own = mask2[:, rows]
    free = (_not_finite(g) | _not_finite(u)) & own
    gc, gr = np.where(free, 0.0, g.centre), np.where(free, 0.0, g.radius)
    uc, ur = np.where(free, 0.0, u.centre), np.where(free, 0.0, u.radius)
    r = _relu64(gc)
    h = np.where(own, r * uc, 0.0)
    # |relu(g_hat) u_hat - relu(g) u| <= gr (|u| + ur) + |relu(g)| ur, plus one float32
    # rounding of the product (relative U32, absolute ETA/2) and the float64 rounding of h.
    rh = (gr * (np.abs(uc) + ur) + r * ur + U32 * (r + gr) * (np.abs(uc) + ur) + ETA + U64 * np.abs(h)) * OUTWARD
    rh = np.where(own, rh, 0.0)  # masked terms are exactly +0.0 in every mode
    return _propagated_dot(np.ascontiguousarray(down_t[rows].T), h, rh, free)


def dense_ffn(x: np.ndarray, gate: Weights, up: Weights, down_t: Weights) -> Bound:
    x, gate, up, down_t = _checks.ffn_args(x, gate, up, down_t)
    return sparse_ffn(x, gate, up, down_t, np.ones((*x.shape[:-1], gate.shape[0]), bool))
