"""predict's threshold is rounded once, to nearest even, from its exact value (docs/spec.md §8)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprosparse import reference
from reprosparse.reference import _checks

import spec_scalar

F32_MAX = float(np.finfo(np.float32).max)


def bits(v: np.float32) -> int:
    return int(np.float32(v).view(np.uint32))


# (threshold, the float32 it must become), each worked out by hand from the float32 grid:
# at 2**60 the float32 spacing is 2**37, so 2**36 is half a spacing.
CASES = [
    (2**60 + 2**36 + 1, 2.0**60 + 2.0**37),  # just above the tie: up (float64 first would make it a tie, then down)
    (2**60 + 2**36, 2.0**60),  # the tie itself: to even
    (2**60 + 3 * 2**36, 2.0**60 + 2.0**38),  # a tie between odd and even neighbours: to even, upwards
    (-(2**60 + 2**36 + 1), -(2.0**60 + 2.0**37)),
    (10**400, np.inf),  # beyond float32 (and float64): overflow rounds to Inf
    (-(10**400), -np.inf),
    (2**128 - 2**103, np.inf),  # the midpoint between FLT_MAX and 2**128 rounds to even, i.e. overflows
    (2**128 - 2**103 - 1, F32_MAX),
    (Fraction(3, 2**151), 2.0**-149),  # 1.5 subnormal quanta: up to the nearest
    (Fraction(1, 2**150), 0.0),  # half a quantum: to even, +0
    (Fraction(-1, 2**150), -0.0),  # the sign of a negative value that rounds to zero stays
    (Fraction(1, 3), float.fromhex("0x1.555556p-2")),
    (np.int64(-7), -7.0),
    (0, 0.0),
    (-0.0, -0.0),
    (1e-46, 0.0),
    (1e300, np.inf),
]


@pytest.mark.parametrize(("value", "want"), CASES)
def test_threshold_is_rounded_once_from_its_exact_value(value, want):
    x = np.zeros((1, 2), np.float32)
    fc1 = np.zeros((1, 2), np.float32)
    fc2 = np.zeros((1, 1), np.float32)
    assert bits(_checks.threshold(value)) == bits(np.float32(want))
    # predict compares the logit 0 with it: selected exactly when the rounded threshold is <= 0
    assert reference.predict(x, fc1, fc2, value)[0, 0] == (np.float32(want) <= 0)


def test_threshold_still_rejects_nan_and_non_reals():
    x, fc1, fc2 = np.zeros(2, np.float32), np.zeros((1, 2), np.float32), np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError, match="threshold"):
        reference.predict(x, fc1, fc2, float("nan"))
    with pytest.raises(TypeError, match="threshold"):
        reference.predict(x, fc1, fc2, True)


_ints = st.one_of(
    st.integers(-(2**140), 2**140),
    # float32 ties and their neighbours: m * 2**e + 2**(e - 1) + delta, m with 24 bits (spacing 2**e)
    st.builds(lambda m, e, d, s: s * (m * 2**e + 2 ** (e - 1) + d),
              st.integers(2**23, 2**24 - 1), st.integers(1, 110), st.integers(-2, 2), st.sampled_from([1, -1])),
)
_fractions = st.builds(Fraction, st.integers(-(2**200), 2**200), st.integers(1, 2**200))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_ints, _fractions))
def test_threshold_rounding_matches_the_scalar_transcription(value):
    assert bits(_checks.threshold(value)) == bits(spec_scalar.round_f32(value))
