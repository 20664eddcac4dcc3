"""The runtime's per-token reference ops against literal scalar transcriptions of the spec,
and the accuracy of exp32 / sincos32 against float64."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reprosparse.reference.argmax import argmax
from reprosparse.reference.attention import attention, attention_scale
from reprosparse.reference.exp import exp32
from reprosparse.reference.rmsnorm import rmsnorm
from reprosparse.reference.rope import ln64, rope
from reprosparse.reference.sample import sample, uniform
from reprosparse.reference.softmax import softmax
from reprosparse.reference.trig import sincos32

import spec_scalar_runtime as S

F32 = np.float32


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    both_nan = np.isnan(a) & np.isnan(b)
    return a.shape == b.shape and bool(np.all(both_nan | (a.view(np.uint32) == b.view(np.uint32))))


any_f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
finite_f32 = st.floats(min_value=-8, max_value=8, width=32)


def f32_matrix(
    rows: st.SearchStrategy[int],
    cols: st.SearchStrategy[int],
    elements: st.SearchStrategy[float] = finite_f32,
) -> st.SearchStrategy[np.ndarray]:
    return st.tuples(rows, cols).flatmap(lambda s: hnp.arrays(np.float32, s, elements=elements))


@given(hnp.arrays(np.float32, st.integers(1, 64), elements=any_f32))
def test_exp32_matches_scalar_spec(x: np.ndarray) -> None:
    with np.errstate(all="ignore"):
        want = np.array([S.exp32(v) for v in x], np.float32)
    assert same_bits(exp32(x), want)


def test_exp32_special_values() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 89.0, -105.0, 88.72283, -103.5], np.float32)
    y = exp32(x)
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == 0 and y[3] == 1 and y[4] == 1
    assert y[5] == np.inf and y[6] == 0 and np.isfinite(y[7]) and 0 < y[8] < np.finfo(np.float32).tiny


@given(hnp.arrays(np.float32, st.integers(1, 32), elements=st.floats(-3e4, 3e4, width=32)))
def test_sincos32_matches_scalar_spec(a: np.ndarray) -> None:
    s, c = sincos32(a)
    want = [S.sincos32(v) for v in a]
    assert same_bits(s, np.array([w[0] for w in want], np.float32))
    assert same_bits(c, np.array([w[1] for w in want], np.float32))


def _ulp_error(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the float32 spacing at the exact value."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


def test_exp32_accuracy_vs_float64(record_property: Callable[[str, object], None]) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.uniform(-104, 88.72, 2_000_000).astype(np.float32),
        np.linspace(-1, 1, 200_001, dtype=np.float32),
        np.linspace(-104, -87, 200_001, dtype=np.float32),  # subnormal results
    ])
    err = _ulp_error(exp32(x), np.exp(x.astype(np.float64)))
    worst = float(err.max())
    record_property("exp32_max_ulp", worst)
    print(f"exp32 max error {worst:.3f} ulp")
    assert worst < 2.0  # docs/spec.md §12 states the measured maximum, about 1 ulp


def test_sincos32_accuracy_vs_float64(record_property: Callable[[str, object], None]) -> None:
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.uniform(-4096, 4096, 1_000_000), rng.uniform(-2, 2, 200_000)]).astype(np.float32)
    s, c = sincos32(a)
    a64 = a.astype(np.float64)
    worst = max(float(_ulp_error(s, np.sin(a64)).max()), float(_ulp_error(c, np.cos(a64)).max()))
    record_property("sincos32_max_ulp", worst)
    print(f"sincos32 max error {worst:.3f} ulp")
    assert worst <= 0.5 + 1e-3  # float64 work rounded once: correctly rounded bar double rounding


@pytest.mark.parametrize("base", [10000.0, 500000.0, 1.0, 0.25, 1e30, 3.0])
def test_ln64_accuracy(base: float) -> None:
    assert abs(ln64(base) - math.log(base)) <= 2 * math.ulp(math.log(base) or 1.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_ln64_rejects_bad_base(bad: float) -> None:
    with pytest.raises(ValueError, match="rope base"):
        ln64(bad)


@settings(max_examples=40, deadline=None)
@given(
    f32_matrix(st.integers(1, 4), st.sampled_from([2, 4, 8, 16])),
    st.integers(1, 3),
    st.lists(st.integers(0, 5000), min_size=4, max_size=4),
    st.sampled_from([10000.0, 500000.0]),
)
def test_rope_matches_scalar_spec(x2: np.ndarray, heads: int, pos4: list[int], base: float) -> None:
    t = x2.shape[0]
    per_head = F32(1.5) ** np.arange(heads, dtype=np.float32)
    x = np.repeat(x2[:, None, :], heads, axis=1) * per_head[None, :, None]
    positions = np.array(pos4[:t])
    y = rope(x, positions, base)
    for r in range(t):
        for h in range(heads):
            want = S.rope_row(list(x[r, h]), int(positions[r]), base, ln64)
            assert same_bits(y[r, h], np.array(want, np.float32))


@given(f32_matrix(st.integers(1, 5), st.integers(1, 40)), st.sampled_from([1e-5, 1e-6, 0.0]))
def test_rmsnorm_matches_scalar_spec(x: np.ndarray, eps: float) -> None:
    w = np.linspace(-2, 2, x.shape[1]).astype(np.float16)
    with np.errstate(all="ignore"):
        got = rmsnorm(x, w, eps)
        want = np.array([S.rmsnorm_row(list(row), list(w.astype(np.float32)), eps) for row in x], np.float32)
    assert same_bits(got, want)


@given(f32_matrix(st.integers(1, 5), st.integers(1, 40), any_f32), st.data())
def test_softmax_matches_scalar_spec(x: np.ndarray, data: st.DataObject) -> None:
    lens = np.array([data.draw(st.integers(1, x.shape[1])) for _ in range(x.shape[0])])
    with np.errstate(all="ignore"):
        got = softmax(x, lens)
        for r in range(x.shape[0]):
            want = S.softmax_row(list(x[r, : lens[r]]))
            assert same_bits(got[r, : lens[r]], np.array(want, np.float32))
            assert same_bits(got[r, lens[r] :], np.zeros(x.shape[1] - lens[r], np.float32))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6), st.sampled_from([(2, 1), (2, 2), (4, 2)]), st.sampled_from([2, 8, 20]),
    st.integers(0, 2**32 - 1),
)
def test_attention_matches_scalar_spec(p_len: int, heads: tuple[int, int], hd: int, seed: int) -> None:
    n_head, n_kv = heads
    rng = np.random.default_rng(seed)
    q = rng.normal(0, 2, (p_len, n_head, hd)).astype(np.float32)
    k = rng.normal(0, 2, (p_len, n_kv, hd)).astype(np.float32)
    v = rng.normal(0, 2, (p_len, n_kv, hd)).astype(np.float32)
    positions = rng.permutation(p_len)[: rng.integers(1, p_len + 1)]
    got = attention(q[positions], k, v, positions)
    for r, p in enumerate(positions):
        for h in range(n_head):
            g = h // (n_head // n_kv)
            want = S.attention_row(list(q[p, h]), [list(k[j, g]) for j in range(p + 1)],
                                   [list(v[j, g]) for j in range(p + 1)])
            assert same_bits(got[r, h], np.array(want, np.float32))


def test_attention_rows_do_not_depend_on_the_batch() -> None:
    rng = np.random.default_rng(5)
    q = rng.normal(size=(9, 4, 16)).astype(np.float32)
    k = rng.normal(size=(9, 2, 16)).astype(np.float32)
    v = rng.normal(size=(9, 2, 16)).astype(np.float32)
    together = attention(q, k, v, np.arange(9))
    for p in range(9):
        alone = attention(q[p : p + 1], k[: p + 1], v[: p + 1], np.array([p]))
        assert same_bits(together[p : p + 1], alone)


def test_attention_scale_values() -> None:
    assert attention_scale(64).view(np.uint32) == 0x3E000000
    assert attention_scale(128).view(np.uint32) == 0x3DB504F3


ARGMAX_VALUES = st.sampled_from([0.0, -0.0, 1.0, -1.0, np.inf, np.nan])


@given(f32_matrix(st.integers(1, 4), st.integers(1, 30), ARGMAX_VALUES))
def test_argmax_matches_scalar_spec(x: np.ndarray) -> None:
    assert list(argmax(x)) == [S.argmax_row(list(row)) for row in x]


def _spec_uniform(seed: int, position: int) -> np.float32:
    """The spec's u, computed here rather than by the code under test: the first random_raw() of
    Philox-4x64-10 with key=seed, counter=position; its top 24 bits times 2**-24 (exact in float32)."""
    raw = int(np.random.Philox(key=seed, counter=position).random_raw())
    return F32(math.ldexp(raw // 2**40, -24))


@given(
    hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(-20, 20, width=32)),
    st.sampled_from([0.1, 0.8, 1.0, 3.0]), st.integers(0, 2**63), st.integers(0, 10_000),
)
def test_sample_matches_scalar_spec(logits: np.ndarray, temperature: float, seed: int, position: int) -> None:
    with np.errstate(all="ignore"):
        want = S.sample_row(list(logits), temperature, _spec_uniform(seed, position))
    assert sample(logits, temperature, seed, position) == want


def test_uniform_is_counter_based() -> None:
    draws = [uniform(7, p) for p in range(100)]
    assert draws == [uniform(7, p) for p in range(100)]  # no hidden state
    assert len(set(draws)) > 90 and all(0 <= d < 1 for d in draws)
    assert uniform(8, 0) != uniform(7, 0)
