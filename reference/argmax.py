"""Greedy token choice   (docs/spec.md §12, "argmax").

The index of the first NaN if a row has one (a broken model shows up as a
token rather than being hidden); otherwise the lowest index holding the
maximum, with +0.0 and -0.0 equal.
"""

from __future__ import annotations

import numpy as np

from . import _runtime_checks


def argmax(x: np.ndarray) -> np.ndarray:
    """x (t, n) float32, n >= 1 -> (t,) int64: one choice per row."""
    x = _runtime_checks.rows_of("x", x, "(t, n)")
    nan = np.isnan(x)
    has_nan = nan.any(axis=1)
    top = np.where(nan, np.float32(-np.inf), x).max(axis=1, keepdims=True)
    first_max = np.argmax((x == top) & ~nan, axis=1)
    return np.where(has_nan, np.argmax(nan, axis=1), first_max).astype(np.int64)
