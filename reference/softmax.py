"""softmax over a prefix of each row   (docs/spec.md §12, "softmax").

Row r uses x[r, :n] with n = lengths[r]:
  m    = the first (lowest index) maximal element, NaNs ignored; x[r, 0] if all are NaN
  e[j] = exp32(x[j] - m)                   float32 difference, then exp32
  s    = lane_dot(e, ones)                 the lane-ordered sum (e[j] * 1 is exact)
  p[j] = e[j] / s                          float32 division
Entries from n on are +0.0.  They also enter the lane sum as +0.0 terms, which
change no accumulator (lane accumulators start at +0.0 and e >= 0), so a row's
result is the same whatever width the surrounding array has.
"""

from __future__ import annotations

import numpy as np

from . import _runtime_checks
from .exp import exp32
from .lane_dot import lane_dot_rows


def softmax(x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """x (t, n) float32, n >= 1; lengths (t,) integers in [1, n], default n -> (t, n) float32."""
    x, lens = _runtime_checks.softmax_args(x, lengths)
    t, n = x.shape
    valid = np.arange(n)[None, :] < lens[:, None]
    usable = valid & ~np.isnan(x)
    top = np.where(usable, x, np.float32(-np.inf)).max(axis=1, keepdims=True)
    # The first maximal element, so that m's sign of zero is fixed; index 0 when all are NaN.
    first = np.argmax(usable & (x == top), axis=1)
    m = x[np.arange(t), first][:, None]
    with np.errstate(invalid="ignore"):
        e = np.where(valid, exp32(x - m), np.float32(0.0))
    s = lane_dot_rows(e, None, np.ones((1, n), np.float32))[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, e / s[:, None], np.float32(0.0))
