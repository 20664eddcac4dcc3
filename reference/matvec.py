"""matvec: y[i] = lane_dot(W[i], x)   (docs/spec.md, "matvec")."""

from __future__ import annotations

import numpy as np

from . import _checks
from .lane_dot import lane_dot_rows
from .quant import Weights


def matvec(W: Weights, x: np.ndarray) -> np.ndarray:
    W, x = _checks.matvec_args(W, x)
    return _checks.like_input(lane_dot_rows(W, None, _checks.as_2d(x)), x)
