"""sparse_ffn and dense_ffn, the ReLU-LLaMA FFN   (docs/spec.md, "sparse_ffn").

rows are the neurons that any token's mask selects; h = relu(g) * u is set to
+0.0 wherever the token's own mask is False, so a token never sees the rest of
its batch.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .lane_dot import lane_dot_rows
from .quant import Weights
from .relu import relu
from .sparse_axpy import sparse_axpy


def ffn_rows(mask2: np.ndarray) -> np.ndarray:
    """Neurons selected by any token, as the int32 rows of the spec."""
    return np.flatnonzero(mask2.any(axis=0)).astype(np.int32)


def gated_h(g: np.ndarray, u: np.ndarray, own: np.ndarray) -> np.ndarray:
    """h = relu(g) * u, then +0.0 where the token's own mask is False."""
    with np.errstate(all="ignore"):  # relu(g) = 0 times u = Inf is NaN by the spec
        h = relu(g) * u
    h[~own] = np.float32(0.0)
    return h


def sparse_ffn(
    x: np.ndarray, gate: Weights, up: Weights, down_t: Weights, mask: np.ndarray
) -> np.ndarray:
    x, gate, up, down_t = _checks.ffn_args(x, gate, up, down_t)
    mask2 = _checks.as_2d(_checks.mask("mask", mask, x, gate.shape[0]))
    x2 = _checks.as_2d(x)
    rows = ffn_rows(mask2)
    g = lane_dot_rows(gate, rows, x2)
    u = lane_dot_rows(up, rows, x2)
    y = sparse_axpy(down_t, gated_h(g, u, mask2[:, rows]), rows)
    return _checks.like_input(y, x)


def dense_ffn(x: np.ndarray, gate: Weights, up: Weights, down_t: Weights) -> np.ndarray:
    x, gate, up, down_t = _checks.ffn_args(x, gate, up, down_t)
    return sparse_ffn(x, gate, up, down_t, np.ones((*x.shape[:-1], gate.shape[0]), bool))
