"""Rotary position embedding   (docs/spec.md §12, "rope").

llama.cpp's "normal" mode (the one GGUF LLaMA files use): within each head the
pairs (2i, 2i+1) rotate by the angle pos * theta_i, theta_i = base**(-2i/d).
The tables come from spec'd basic operations only:

    ln_base = float32(ln64(base))                       float64 series, below
    e_i     = float32(-2i) / float32(d)                  float32 division
    theta_i = exp32(e_i * ln_base)                       float32 product, exp32
    angle   = float32(pos) * theta_i                     float32 product
    sin, cos = sincos32(angle)
    y[2i]   = x[2i]*cos - x[2i+1]*sin                    two products, one difference
    y[2i+1] = x[2i]*sin + x[2i+1]*cos                    two products, one sum
"""

from __future__ import annotations

import math

import numpy as np

from . import _runtime_checks
from ._bits import f64
from .exp import exp32
from .trig import sincos32

LN2_64 = f64("0x1.62e42fefa39efp-1")
# ATANH[j] = 1/(2j+1), the correctly rounded float64 quotient.
ATANH = tuple(1.0 / (2 * j + 1) for j in range(20))


def ln64(base: float) -> float:
    """ln(base) for a finite base > 0 in float64 basic operations.

    base = m * 2**e with m in [1, 2); ln m = 2*atanh(s), s = (m-1)/(m+1) <= 1/3,
    summed as 20 odd terms in Horner form (the truncation error is below 2**-60).
    """
    if not (math.isfinite(base) and base > 0):
        raise ValueError(f"rope base must be a finite positive number, got {base!r}")
    frac, exp = math.frexp(base)  # exact: base = frac * 2**exp, frac in [0.5, 1)
    m = frac * 2.0
    e = exp - 1
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    acc = ATANH[-1]
    for c in reversed(ATANH[:-1]):
        acc = acc * z
        acc = acc + c
    ln_m = 2.0 * (s * acc)
    return float(e) * LN2_64 + ln_m


def rope_theta(head_dim: int, base: float) -> np.ndarray:
    """theta_i for i in [0, head_dim/2), float32 (rope has checked head_dim and base)."""
    ln_base = np.float32(ln64(base))
    e = np.float32(-2.0) * np.arange(head_dim // 2, dtype=np.float32) / np.float32(head_dim)
    return exp32(e * ln_base)


def rope_tables(positions: np.ndarray, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """(sin, cos), each (len(positions), head_dim/2) float32.

    The positions lie in [0, 2**24), where float32 holds them exactly (rope checks them).
    """
    angle = positions.astype(np.float32)[:, None] * rope_theta(head_dim, base)[None, :]
    return sincos32(angle)


def rope(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """Rotate x (t, n_head, head_dim) float32; token r sits at positions[r] in [0, 2**24).

    Returns a new (t, n_head, head_dim) float32 array.
    """
    x, positions, base = _runtime_checks.rope_args(x, positions, base)
    sin, cos = rope_tables(positions, x.shape[2], base)
    sin = sin[:, None, :]
    cos = cos[:, None, :]
    even = x[..., 0::2]
    odd = x[..., 1::2]
    y = np.empty_like(x)
    y[..., 0::2] = even * cos - odd * sin
    y[..., 1::2] = even * sin + odd * cos
    return y
