"""Hypothesis strategies for spec-level inputs, shared by the property tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# Every float32, subnormals, infinities and NaN included.
any_f32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)
finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


def arrays(shape, elements=any_f32, dtype=np.float32):
    return hnp.arrays(np.dtype(dtype), shape, elements=elements)


@st.composite
def mixed(draw, shape, dtype="float32", specials=True):
    """Mostly ordinary values, spiked with subnormals, signed zeros and (optionally) Inf/NaN."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = rng.standard_normal(shape) * np.exp2(rng.integers(-8, 8, shape))
    z = rng.random(shape)
    v[z < 0.05] = 0.0
    v[(z >= 0.05) & (z < 0.1)] = -0.0
    tiny = 2.0**-24 if dtype == "float16" else 2.0**-149
    v[(z >= 0.1) & (z < 0.15)] = rng.integers(-5, 5, int(((z >= 0.1) & (z < 0.15)).sum())) * tiny
    if specials:
        v[(z >= 0.15) & (z < 0.16)] = np.inf
        v[(z >= 0.16) & (z < 0.17)] = -np.inf
        v[(z >= 0.17) & (z < 0.18)] = np.nan
    return v.astype(dtype)


@st.composite
def rows(draw, n):
    picked = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=min(n, 80)))
    return np.array(sorted(picked), np.int32)


tokens = st.sampled_from([None, 0, 1, 2, 3])  # None: a 1-D x


def lead(t):
    return () if t is None else (t,)
