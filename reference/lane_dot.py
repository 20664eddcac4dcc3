"""lane_dot: the one dot product of the spec (docs/spec.md, "lane_dot").

Sixteen lane accumulators start at +0.0; term k goes to lane k % 16 in
ascending k; then the halves are folded (8, 4, 2, 1) and lane 0 is the
result.  Products and sums are separate float32 roundings: numpy's elementwise
multiply and add never fuse, which is why this is written as two ufunc calls.

The code evaluates many rows at once, but each row sees exactly the spec's
sequence of operations.  Padding d to a multiple of 16 with zeros in both
operands adds 0*0 = +0 terms, which leave every accumulator unchanged because
an accumulator that starts at +0.0 can never become -0.0.
"""

from __future__ import annotations

import numpy as np

from .quant import Weights

LANES = 16
FOLDS = (8, 4, 2, 1)
_CHUNK_BYTES = 1 << 25  # bounds the temporary product buffer


def _padded(a: np.ndarray, width: int) -> np.ndarray:
    """a as float32 with its last axis zero-padded to `width` (float16 converts exactly)."""
    out = np.zeros((*a.shape[:-1], width), np.float32)
    out[..., : a.shape[-1]] = a
    return out


def fold(acc: np.ndarray) -> np.ndarray:
    """Fold (..., 16) lane accumulators into (...,) results."""
    for s in FOLDS:
        acc[..., :s] = acc[..., :s] + acc[..., s : 2 * s]
    return acc[..., 0]


def lane_dot_rows(w: Weights, rows: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """out[t, a] = lane_dot(w[rows[a]], x[t]); rows=None means every row.

    w: (n, d) float32/float16 or a QuantizedMatrix (its rows read as exact float32),
    x: (t, d) float32 -> (t, len(rows)) float32.
    """
    t, d = x.shape
    picked = w.shape[0] if rows is None else rows.shape[0]
    out = np.empty((t, picked), np.float32)
    chunks = -(-d // LANES)
    width = chunks * LANES
    xs = _padded(x, width).reshape(t, chunks, LANES)
    step = max(1, _CHUNK_BYTES // max(width * 4, 1))
    with np.errstate(all="ignore"):  # Inf and NaN are valid inputs, not accidents
        _lane_dot_chunks(w, rows, xs, out, step, width)
    return out


def _lane_dot_chunks(
    w: Weights, rows: np.ndarray | None, xs: np.ndarray, out: np.ndarray, step: int, width: int
) -> None:
    t, chunks, _ = xs.shape
    for start in range(0, out.shape[1], step):
        stop = min(out.shape[1], start + step)
        block = w[start:stop] if rows is None else w[rows[start:stop]]
        # (chunks, rows, 16): chunk c of every row is contiguous for the adds below.
        wt = _padded(block, width).reshape(stop - start, chunks, LANES).transpose(1, 0, 2)
        prod = np.empty((chunks, stop - start, LANES), np.float32)
        for ti in range(t):
            np.multiply(wt, xs[ti][:, None, :], out=prod)
            acc = np.zeros((stop - start, LANES), np.float32)
            for c in range(chunks):
                np.add(acc, prod[c], out=acc)
            out[ti, start:stop] = fold(acc)
