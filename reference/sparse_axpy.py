"""sparse_axpy: y = sum of h[a] * W[rows[a]]   (docs/spec.md, "sparse_axpy").

Neurons fall into blocks of 256 by index.  Inside a block, terms are added in
ascending row order into a partial p that starts at +0.0; the partials are then
added into y (from +0.0) in ascending block order.  Terms whose h is +0.0 or
-0.0 are skipped.

The code advances every block of a token together: step k adds the k-th live
term of each block that has one, which is the spec's order within each block.
Blocks without live terms are not visited: their partial is +0.0, and adding
+0.0 to a y that started at +0.0 changes no bit.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .quant import Weights

BLOCK = 256


def sparse_axpy(W: Weights, h: np.ndarray, rows: np.ndarray) -> np.ndarray:
    W, h, rows = _checks.sparse_axpy_args(W, h, rows)
    h2 = _checks.as_2d(h)
    y = np.zeros((h2.shape[0], W.shape[1]), np.float32)
    with np.errstate(all="ignore"):  # Inf and NaN are valid inputs, not accidents
        for ti in range(h2.shape[0]):
            _token(W, h2[ti], rows, y[ti])
    return _checks.like_input(y, h)


def _token(W: Weights, h: np.ndarray, rows: np.ndarray, y: np.ndarray) -> None:
    """y (+0.0 on entry) becomes one token's sparse_axpy."""
    live = np.flatnonzero(h != 0)  # NaN != 0, so NaN terms stay
    if live.size == 0:
        return
    block_of = rows[live] // BLOCK
    _, first, count = np.unique(block_of, return_index=True, return_counts=True)
    slot = np.repeat(np.arange(first.size), count)
    rank = np.arange(live.size) - np.repeat(first, count)
    partial = np.zeros((first.size, W.shape[1]), np.float32)
    for k in range(int(count.max())):
        at = np.flatnonzero(rank == k)
        a = live[at]
        term = h[a][:, None] * W[rows[a]].astype(np.float32)
        partial[slot[at]] = partial[slot[at]] + term
    for b in range(first.size):
        np.add(y, partial[b], out=y)
