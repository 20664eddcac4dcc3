"""Bitwise comparison under the spec's one exception: NaNs are equal whatever their payload."""

from __future__ import annotations

import numpy as np


def same_bits(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Elementwise equality of bits, the sign of zero included, with NaN == NaN."""
    if want.dtype == np.bool_ or want.dtype.kind in "iu":  # predict's mask, argmax's indices
        return np.asarray(got == want)
    g = got.view(np.uint32)
    w = want.view(np.uint32)
    return (g == w) | (np.isnan(got) & np.isnan(want))


def _show(v: np.generic) -> str:
    if isinstance(v, np.bool_):
        return str(bool(v))
    if isinstance(v, np.integer):
        return str(int(v))
    return f"{float(v)!r} ({int(np.float32(v).view(np.uint32)):#010x})"


def mismatch(got: object, want: np.ndarray, limit: int = 3) -> str | None:
    """None if `got` has `want`'s type, shape and bits; else a description of the first differences."""
    if not isinstance(got, np.ndarray):
        return f"returned {type(got).__name__}, expected numpy.ndarray"
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"returned {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}"
    bad = np.argwhere(~same_bits(got, want))
    if bad.size == 0:
        return None
    shown = ", ".join(
        f"[{','.join(map(str, ix))}] got {_show(got[tuple(ix)])} want {_show(want[tuple(ix)])}" for ix in bad[:limit]
    )
    return f"{len(bad)} of {want.size} elements differ: {shown}"
