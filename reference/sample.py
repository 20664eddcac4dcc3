"""Sampling at temperature > 0   (docs/spec.md §12, "sample").

  inv  = float32(1) / float32(temperature)
  p    = softmax(logits * inv)                          float32 products, spec'd softmax
  u    = (top 24 bits of draw(seed, position)) * 2**-24  exact float32 in [0, 1)
  c[j] = c[j-1] + p[j], c[-1] = +0.0                    float32, ascending j
  token = the smallest j with u < c[j]; if there is none (rounding left c short
          of 1), the largest j with p[j] > 0
draw(seed, position) is the first 64-bit output of numpy's Philox-4x64 bit
generator with key=seed and counter=position: a counter-based generator, so
the draw for a position does not depend on how many draws came before it.
A row with a NaN logit has no distribution; it takes the greedy choice (the
first NaN, see argmax).
"""

from __future__ import annotations

import numpy as np

from .argmax import argmax
from .softmax import softmax

TWO_POW_M24 = np.float32(2.0**-24)


def uniform(seed: int, position: int) -> np.float32:
    if seed < 0 or position < 0:
        raise ValueError(f"seed and position must be >= 0, got {seed}, {position}")
    raw = int(np.random.Philox(key=seed, counter=position).random_raw())
    return np.float32(raw >> 40) * TWO_POW_M24


def sample(logits: np.ndarray, temperature: float, seed: int, position: int) -> int:
    """One token from a (vocab,) float32 logits row."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
    row = np.asarray(logits, np.float32)[None, :]
    if np.isnan(row).any():
        return int(argmax(row)[0])
    inv = np.float32(1.0) / np.float32(temperature)
    p = softmax(row * inv)[0]
    c = np.add.accumulate(p, dtype=np.float32)  # accumulate is the sequential running sum
    u = uniform(seed, position)
    above = np.flatnonzero(u < c)
    if above.size:
        return int(above[0])
    return int(np.flatnonzero(p > 0)[-1])
