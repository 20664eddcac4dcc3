"""RMSNorm   (docs/spec.md §12, "rmsnorm").

Per row of d values: ss = lane_dot(x, x); mean = ss / float32(d);
v = mean + float32(eps); s = sqrt(v); inv = 1 / s; y[j] = (x[j] * inv) * w[j].
sqrt and division are IEEE's correctly rounded float32 operations.
"""

from __future__ import annotations

import numpy as np

from . import _runtime_checks
from .lane_dot import lane_dot_rows


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x (t, d) float32, weight (d,) float32 or float16, eps a real number -> (t, d) float32."""
    x, weight, eps32 = _runtime_checks.rmsnorm_args(x, weight, eps)
    w = weight.astype(np.float32)  # float16 converts exactly
    # One lane_dot per row, so a row's sum of squares never depends on the other rows.
    ss = np.array([lane_dot_rows(row[None, :], None, row[None, :])[0, 0] for row in x], np.float32)
    mean = ss / np.float32(x.shape[1])
    inv = np.float32(1.0) / np.sqrt(mean + eps32)
    return (x * inv[:, None]) * w[None, :]
