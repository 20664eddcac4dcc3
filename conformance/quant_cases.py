"""Quantized weights for the conformance cases: raw Q8_0/Q4_0/Q6_K blocks (docs/spec.md §13).

The blocks are drawn directly, not quantized from floats, so that every byte
pattern a file may hold occurs: any int8 or nibble (any 6-bit code and int8
sub-block scale for Q6_K, -128 and negative ones included), scales of either
sign, subnormal scales, zero scales of both signs, and Inf and NaN scales
(NaN with several payloads).  The value kinds mirror the float families of
cases.py.
"""

from __future__ import annotations

import numpy as np

from reprosparse.reference.quant import BLOCK_BYTES, TYPES, QuantizedMatrix, block, pack_q6_k

#: the value kinds of the quantized families
QUANT_KINDS = ("normal", "wide", "subnormal", "signed_zero", "inf", "nan", "near_overflow")
_F16_NANS = np.array([0x7E00, 0xFE00, 0x7C01, 0x7FFF], np.uint16)


def _scales(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """float16 scale bits, one per block."""
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    if kind == "wide":  # every float16 exponent
        mag = np.exp2(rng.uniform(-24, 15.9, shape))
    elif kind == "subnormal":  # subnormal scales (k * 2^-24), and a few zeros
        mag = rng.integers(0, 1024, shape) * 2.0**-24
    elif kind == "near_overflow":
        mag = rng.uniform(2.0**14, 65504.0, shape)
    else:
        mag = np.abs(rng.standard_normal(shape)) * 0.05
    bits = (sign * mag).astype(np.float16).view(np.uint16)
    pick = rng.random(shape)
    if kind == "signed_zero":
        bits[pick < 0.2] = 0x0000
        bits[(pick >= 0.2) & (pick < 0.4)] = 0x8000
    elif kind == "inf":
        bits[pick < 0.03] = 0x7C00
        bits[(pick >= 0.03) & (pick < 0.06)] = 0xFC00
    elif kind == "nan":
        nan = pick < 0.04
        bits[nan] = rng.choice(_F16_NANS, int(nan.sum()))
    return bits


def _q6_k(rng: np.random.Generator, n: int, blocks: int, kind: str) -> np.ndarray:
    """Q6_K blocks (n, blocks, 210): any 6-bit codes and int8 sub-block scales, -128 and 127 forced
    into some; signed_zero: many zero codes (32) and zero sub-block scales as well as zero d."""
    q = rng.integers(0, 64, (n, blocks, 256), dtype=np.uint8)
    sc = rng.integers(-128, 128, (n, blocks, 16)).astype(np.int8)
    pick = rng.random(sc.shape)
    sc[pick < 0.05] = -128
    sc[(pick >= 0.05) & (pick < 0.08)] = 127
    if kind == "signed_zero":
        q[rng.random(q.shape) < 0.4] = 32
        sc[pick > 0.8] = 0
    return pack_q6_k(q, sc, _scales(rng, (n, blocks), kind).view(np.float16))


def quantized(rng: np.random.Generator, shape: tuple[int, int], kind: str, qtype: str) -> QuantizedMatrix:
    """A random (n, d) matrix of qtype blocks whose values are of `kind`."""
    if qtype not in TYPES:
        raise ValueError(f"qtype must be one of {', '.join(TYPES)}, got {qtype!r}")
    n, d = shape
    blocks = d // block(qtype)
    if qtype == "q6_k":
        return QuantizedMatrix(_q6_k(rng, n, blocks, kind).reshape(n, -1), (n, d), qtype)
    raw = rng.integers(0, 256, (n, blocks, BLOCK_BYTES[qtype]), dtype=np.uint8)
    if kind == "signed_zero":  # many zero quants: q = 0 is byte 0 (Q8_0) or nibble 8 (Q4_0)
        zero = rng.random(raw[:, :, 2:].shape) < 0.4
        raw[:, :, 2:][zero] = 0 if qtype == "q8_0" else 0x88
    raw[:, :, :2] = _scales(rng, (n, blocks), kind).astype("<u2").view(np.uint8).reshape(n, blocks, 2)
    return QuantizedMatrix(raw.reshape(n, -1), (n, d), qtype)
