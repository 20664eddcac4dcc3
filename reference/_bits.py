"""Constants of the runtime spec, given by their exact IEEE bit patterns."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

import numpy as np


def f32(bits: int) -> np.float32:
    """The float32 whose bit pattern is `bits` (docs/spec.md §12 lists them in hex)."""
    return np.float32(np.array(bits, np.uint32).view(np.float32)[()])


def f64(text: str) -> float:
    """The float64 written in C99 hex-float notation, e.g. "0x1.921fb544p+0"."""
    return float.fromhex(text)


def pow2_f32(k: np.ndarray) -> np.ndarray:
    """2**k as float32, built from its exponent bits; k must lie in [-126, 127]."""
    return ((k.astype(np.int64) + 127) << 23).astype(np.uint32).view(np.float32)


def real_to_f32(value: Any) -> np.float32:
    """`value` rounded once to float32, to nearest even; beyond the float32 range that gives ±Inf.

    A binary floating-point value converts in one step.  An integer or fraction is
    rounded from its exact value: going through float() would round it to float64
    first, and that first rounding can move it onto a float32 tie (or raise
    OverflowError above 2**1024).
    """
    if not isinstance(value, numbers.Rational):
        with np.errstate(over="ignore"):
            return np.float32(value)
    x = Fraction(int(value.numerator), int(value.denominator))
    if x == 0:
        return np.float32(0.0)
    sign = -1.0 if x < 0 else 1.0
    mag = abs(x)
    # e: the exponent of the last of 24 significant bits, so that 2**23 <= mag / 2**e < 2**24,
    # but at least -149, the quantum of the subnormals.
    e = mag.numerator.bit_length() - mag.denominator.bit_length() - 23
    if mag < Fraction(2) ** (e + 23):
        e -= 1
    e = max(e, -149)
    q = round(mag / Fraction(2) ** e)  # Fraction rounds half to even
    if q.bit_length() + e > 128:  # q * 2**e >= 2**128: overflow, as IEEE rounding to nearest does
        return np.float32(sign * math.inf)
    return np.float32(sign * math.ldexp(q, e))  # exact: q <= 2**24, e >= -149
