"""Argument checks of the runtime operators (docs/spec.md §12, "Arguments").

Like the checks of the weight-heavy operators (_checks.py), they run before
any work and raise TypeError (not an array, wrong dtype, not a number) or
ValueError (wrong number of axes, shapes that disagree, a value out of range),
naming the argument and what was expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._checks import array

F32 = np.dtype(np.float32)


def f32_array(name: str, a: Any, layout: str = "", ndim: int | None = None) -> np.ndarray:
    """A float32 ndarray; with ndim, of exactly that many axes (`layout` names them)."""
    a = array(name, a)
    if a.dtype != F32:
        raise TypeError(f"{name} must have dtype float32, got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {a.shape}")
    return a


def rows_of(name: str, a: Any, layout: str) -> np.ndarray:
    """A float32 (t, n) array with n >= 1: a batch of rows for softmax and argmax."""
    a = f32_array(name, a, layout, 2)
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column {layout}, got shape {a.shape}")
    return a


def int_vector(name: str, a: Any, length: int, lo: int, hi: int) -> np.ndarray:
    """A 1-D integer ndarray of `length` values in [lo, hi), as int64."""
    a = array(name, a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {a.dtype}")
    if a.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), one per row, got {a.shape}")
    if a.size and (a.min() < lo or a.max() >= hi):
        bad = a[(a < lo) | (a >= hi)][0]
        raise ValueError(f"{name} must lie in [{lo}, {hi}); found {int(bad)}")
    return a.astype(np.int64)


def real(name: str, value: Any) -> numbers.Real:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return value


def finite_positive(name: str, value: Any) -> float:
    """A real number whose float64 value is finite and > 0."""
    try:
        v = float(real(name, value))
    except OverflowError:
        v = math.inf
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def unsigned(name: str, value: Any, bits: int) -> int:
    """An integer in [0, 2**bits)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if not 0 <= v < 1 << bits:
        raise ValueError(f"{name} must lie in [0, 2**{bits}), got {v}")
    return v
