"""predict: mask = z >= threshold or z is NaN, z = matvec(fc2, relu(matvec(fc1, x)))
(docs/spec.md, "predict")."""

from __future__ import annotations

import numpy as np

from . import _checks
from .lane_dot import lane_dot_rows
from .quant import Weights
from .relu import relu


def predicted(z: np.ndarray, threshold: np.float32) -> np.ndarray:
    """The mask from the predictor's scores z: z >= threshold, or z is NaN."""
    return (z >= threshold) | np.isnan(z)


def predict(x: np.ndarray, fc1: Weights, fc2: Weights, threshold: float = 0.0) -> np.ndarray:
    x, fc1, fc2, thr = _checks.predict_args(x, fc1, fc2, threshold)
    hidden = relu(lane_dot_rows(fc1, None, _checks.as_2d(x)))
    z = lane_dot_rows(fc2, None, hidden)
    return _checks.like_input(predicted(z, thr), x)
