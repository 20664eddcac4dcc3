"""Literal scalar transcriptions of docs/spec.md §12, one float32 operation per line.

The vectorised reference is tested against these: plain Python loops over
numpy float32 scalars (float64 work uses Python floats, which are IEEE
binary64), so that the two can only agree if the vectorisation kept the
spec's order of operations.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import numpy as np

F = np.float32


def bits_f32(bits: int) -> np.float32:
    return F(struct.unpack("<f", struct.pack("<I", bits))[0])


def lane_dot(w: list[np.float32], x: list[np.float32]) -> np.float32:
    acc = [F(0.0)] * 16
    for k in range(len(w)):
        acc[k % 16] = acc[k % 16] + F(w[k]) * F(x[k])
    for s in (8, 4, 2, 1):
        for q in range(s):
            acc[q] = acc[q] + acc[q + s]
    return acc[0]


def exp32(x: np.float32) -> np.float32:
    x = F(x)
    if math.isnan(x):
        return x
    if x > bits_f32(0x42B17217):
        return F(math.inf)
    if x < bits_f32(0xC2D00000):
        return F(0.0)
    t = x * bits_f32(0x3FB8AA3B)
    k = np.rint(t)
    r = x - k * bits_f32(0x3F318000)
    r = r - k * bits_f32(0xB95E8083)
    z = r * r
    p = bits_f32(0x39506967)
    for c in (0x3AB743CE, 0x3C088908, 0x3D2AA9C1, 0x3E2AAAAA, 0x3F000000):
        p = p * r
        p = p + bits_f32(c)
    p = p * z
    p = p + r
    p = p + F(1.0)
    ki = int(k)
    k1 = ki // 2
    k2 = ki - k1
    return (p * bits_f32((k1 + 127) << 23)) * bits_f32((k2 + 127) << 23)


def sincos32(angle: np.float32) -> tuple[np.float32, np.float32]:
    a = float(F(angle))
    if not math.isfinite(a):
        return F(math.nan), F(math.nan)
    t = a * float.fromhex("0x1.45f306dc9c883p-1")
    k = math.copysign(float(round(t)), t)  # IEEE roundToIntegralTiesToEven: half-even, sign kept
    r = a - k * float.fromhex("0x1.921fb54400000p+0")
    r = r - k * float.fromhex("0x1.0b4611a626331p-34")
    z = r * r
    ps = (-1) ** 7 / math.factorial(15)
    for n in range(6, -1, -1):
        ps = ps * z
        ps = ps + (-1) ** n / math.factorial(2 * n + 1)
    s = r * ps
    c = (-1) ** 8 / math.factorial(16)
    for n in range(7, -1, -1):
        c = c * z
        c = c + (-1) ** n / math.factorial(2 * n)
    q = int(k) % 4
    sin = (s, c, -s, -c)[q]
    cos = (c, -s, -c, s)[q]
    return F(sin), F(cos)


def rope_row(x: list[np.float32], pos: int, base: float, ln64: Callable[[float], float]) -> list[np.float32]:
    d = len(x)
    ln_base = F(ln64(base))
    y = [F(0.0)] * d
    for i in range(d // 2):
        e = F(-2.0 * i) / F(d)
        theta = exp32(e * ln_base)
        angle = F(pos) * theta
        s, c = sincos32(angle)
        y[2 * i] = x[2 * i] * c - x[2 * i + 1] * s
        y[2 * i + 1] = x[2 * i] * s + x[2 * i + 1] * c
    return y


def rmsnorm_row(x: list[np.float32], w: list[np.float32], eps: float) -> list[np.float32]:
    ss = lane_dot(x, x)
    mean = ss / F(len(x))
    v = mean + F(eps)
    s = np.sqrt(v)
    inv = F(1.0) / s
    return [(x[j] * inv) * F(w[j]) for j in range(len(x))]


def softmax_row(x: list[np.float32]) -> list[np.float32]:
    m = x[0]
    found = False
    for v in x:
        if not math.isnan(v) and (not found or v > m):
            m, found = v, True
    e = [exp32(v - m) for v in x]
    s = lane_dot(e, [F(1.0)] * len(e))
    return [v / s for v in e]


def attention_row(
    q: list[np.float32], ks: list[list[np.float32]], vs: list[list[np.float32]]
) -> list[np.float32]:
    scale = F(1.0) / np.sqrt(F(len(q)))
    scores = [lane_dot(q, k) * scale for k in ks]
    a = softmax_row(scores)
    o = [F(0.0)] * len(q)
    for j in range(len(ks)):
        for i in range(len(q)):
            o[i] = o[i] + a[j] * vs[j][i]
    return o


def argmax_row(x: list[np.float32]) -> int:
    for j, v in enumerate(x):
        if math.isnan(v):
            return j
    best = 0
    for j, v in enumerate(x):
        if v > x[best]:
            best = j
    return best


PHILOX_M = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
PHILOX_W = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)
MASK64 = (1 << 64) - 1


def philox4x64_10(counter: list[int], key: list[int]) -> list[int]:
    """The Philox-4x64-10 block of a 4-word counter under a 2-word key (spec §12, "sample")."""
    c = list(counter)
    k0, k1 = key
    for _ in range(10):
        p0 = PHILOX_M[0] * c[0]  # full 128-bit products
        p1 = PHILOX_M[1] * c[2]
        c = [(p1 >> 64) ^ c[1] ^ k0, p1 & MASK64, (p0 >> 64) ^ c[3] ^ k1, p0 & MASK64]
        k0 = (k0 + PHILOX_W[0]) & MASK64
        k1 = (k1 + PHILOX_W[1]) & MASK64
    return c


def draw(seed: int, pos: int) -> int:
    n = pos + 1
    return philox4x64_10([n & MASK64, n >> 64, 0, 0], [seed & MASK64, seed >> 64])[0]


def sample_row(logits: list[np.float32], temperature: float, seed: int, pos: int) -> int:
    inv = F(1.0) / F(temperature)
    p = softmax_row([v * inv for v in logits])
    u = F(draw(seed, pos) >> 40) * F(2.0**-24)
    c = F(0.0)
    for j, pj in enumerate(p):
        c = c + pj
        if u < c:
            return j
    positive = [j for j, pj in enumerate(p) if pj > 0]
    if positive:
        return positive[-1]
    return argmax_row(logits)
