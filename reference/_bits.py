"""Constants of the runtime spec, given by their exact IEEE bit patterns."""

from __future__ import annotations

import numpy as np


def f32(bits: int) -> np.float32:
    """The float32 whose bit pattern is `bits` (docs/spec.md §12 lists them in hex)."""
    return np.float32(np.array(bits, np.uint32).view(np.float32)[()])


def f64(text: str) -> float:
    """The float64 written in C99 hex-float notation, e.g. "0x1.921fb544p+0"."""
    return float.fromhex(text)


def pow2_f32(k: np.ndarray) -> np.ndarray:
    """2**k as float32, built from its exponent bits; k must lie in [-126, 127]."""
    return ((k.astype(np.int64) + 127) << 23).astype(np.uint32).view(np.float32)
