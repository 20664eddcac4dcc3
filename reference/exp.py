"""exp32: the float32 exponential of the runtime spec   (docs/spec.md §12, "exp").

Built from IEEE float32 basic operations only, so every platform gets the same
bits: Cody-Waite range reduction x = k*ln2 + r with a two-constant ln2, a
fixed degree-7 polynomial for exp(r) (the coefficients of Cephes' expf), and
scaling by 2**k in two exact halves so that a result that lands in the
subnormal range is rounded exactly once.
"""

from __future__ import annotations

import numpy as np

from . import _runtime_checks
from ._bits import f32, pow2_f32

LOG2E = f32(0x3FB8AA3B)  # float32(1/ln 2)
LN2_HI = f32(0x3F318000)  # 0.693359375: 10 significant bits, so k*LN2_HI is exact for |k| <= 2**14
LN2_LO = f32(0xB95E8083)  # float32(ln 2 - LN2_HI)
# Horner order: P[0] is the coefficient of r**7, P[5] of r**2.
P = tuple(f32(b) for b in (0x39506967, 0x3AB743CE, 0x3C088908, 0x3D2AA9C1, 0x3E2AAAAA, 0x3F000000))
X_MAX = f32(0x42B17217)  # largest float32 below ln(FLT_MAX); above it the result is +Inf
X_MIN = f32(0xC2D00000)  # -104.0; below it exp is under 2**-150 and rounds to +0.0
ONE = np.float32(1.0)


def exp32(x: np.ndarray | np.floating) -> np.ndarray:
    """Elementwise exp of a float32 array (any shape) or float32 scalar, exactly as docs/spec.md §12 specifies."""
    x = _runtime_checks.f32_array("x", np.asarray(x) if isinstance(x, np.float32) else x)
    nan = np.isnan(x)
    over = x > X_MAX
    under = x < X_MIN
    # Out-of-range lanes compute on 0.0 and are replaced below, so no lane sees NaN or Inf.
    xs = np.where(nan | over | under, np.float32(0.0), x)
    k = np.rint(xs * LOG2E)  # float32 product, then round half to even (exact)
    r: np.ndarray = xs - k * LN2_HI
    r = r - k * LN2_LO
    z = r * r
    p = np.full_like(r, P[0])
    for c in P[1:]:
        p = p * r
        p = p + c
    p = p * z
    p = p + r
    p = p + ONE
    ki = k.astype(np.int32)
    k1 = ki >> 1  # floor(k / 2)
    y = (p * pow2_f32(k1)) * pow2_f32(ki - k1)  # first product exact, second rounds once
    y = np.where(over, np.float32(np.inf), y)
    y = np.where(under, np.float32(0.0), y)
    return np.where(nan, x, y).astype(np.float32, copy=False)
