"""relu: v if v > 0, NaN stays NaN, otherwise +0.0   (docs/spec.md, "relu")."""

from __future__ import annotations

import numpy as np


def relu(v: np.ndarray) -> np.ndarray:
    keep = (v > 0) | np.isnan(v)
    return np.where(keep, v, np.float32(0.0)).astype(np.float32, copy=False)
