"""sincos32: sine and cosine of float32 angles   (docs/spec.md §12, "sin and cos").

Only the rotary tables use them.  The work is done in IEEE float64 basic
operations and rounded once to float32 at the end: Cody-Waite reduction by
pi/2 with fdlibm's 33-bit split of pi/2 (k*PIO2_1 is exact for |k| < 2**20),
then Taylor polynomials of fixed degree on [-pi/4, pi/4] in Horner form, then
the quadrant k mod 4 picks sign and function.
"""

from __future__ import annotations

import math

import numpy as np

from . import _runtime_checks
from ._bits import f64

TWO_OVER_PI = f64("0x1.45f306dc9c883p-1")
PIO2_1 = f64("0x1.921fb54400000p+0")  # first 33 bits of pi/2
PIO2_1T = f64("0x1.0b4611a626331p-34")  # pi/2 - PIO2_1
# S[n] = (-1)**n / (2n+1)!, C[n] = (-1)**n / (2n)!, each the correctly rounded float64 quotient.
S = tuple((-1) ** n / math.factorial(2 * n + 1) for n in range(8))
C = tuple((-1) ** n / math.factorial(2 * n) for n in range(9))


def _horner(coeffs: tuple[float, ...], z: np.ndarray) -> np.ndarray:
    """coeffs[0] + z*(coeffs[1] + z*(...)), from the highest coefficient down."""
    p = np.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        p = p * z
        p = p + c
    return p


def sincos32(angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sin(angle), cos(angle)): two float32 arrays of the shape of the float32 array `angle`."""
    a = _runtime_checks.f32_array("angle", angle).astype(np.float64)  # exact
    finite = np.isfinite(a)
    a_ok = np.where(finite, a, 0.0)
    k = np.rint(a_ok * TWO_OVER_PI)
    r = a_ok - k * PIO2_1
    r = r - k * PIO2_1T
    z = r * r
    # Angles beyond about 1e30 overflow z; the spec keeps the IEEE results, so no warning.
    with np.errstate(over="ignore", invalid="ignore"):
        s = r * _horner(S, z)
        c = _horner(C, z)
        q = (k - 4.0 * np.floor(k * 0.25)).astype(np.int64)  # k mod 4, exact for every integer-valued k
        sin = np.choose(q, (s, c, -s, -c))
        cos = np.choose(q, (c, -s, -c, s))
        nan = np.float64(np.nan)
        return (
            np.where(finite, sin, nan).astype(np.float32),
            np.where(finite, cos, nan).astype(np.float32),
        )
