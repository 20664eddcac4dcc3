"""sparse_matvec: out[..., a] = lane_dot(W[rows[a]], x)   (docs/spec.md, "sparse_matvec")."""

from __future__ import annotations

import numpy as np

from . import _checks
from .lane_dot import lane_dot_rows
from .quant import Weights


def sparse_matvec(W: Weights, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    W, x, rows = _checks.sparse_matvec_args(W, x, rows)
    return _checks.like_input(lane_dot_rows(W, rows, _checks.as_2d(x)), x)
