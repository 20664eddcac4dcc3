"""Sampling at temperature > 0   (docs/spec.md §12, "sample").

  inv  = float32(1) / float32(temperature)
  p    = softmax(logits * inv)                          float32 products, spec'd softmax
  u    = float32(draw(seed, position) >> 40) * 2**-24   exact float32 in [0, 1)
  c[j] = c[j-1] + p[j], c[-1] = +0.0                    float32, ascending j
  token = the smallest j with u < c[j];
          if there is none (rounding left c short of u), the largest j with p[j] > 0;
          if there is none either (p is NaN), argmax(logits)
draw(seed, position) is the first 64-bit word of the Philox-4x64-10 block with
key = seed and counter = position + 1: a counter-based generator, so the draw
for a position does not depend on how many draws came before it.  p is NaN
exactly when a logit is NaN (argmax then picks the first NaN, so a broken model
shows up), when some logits[j] * inv is +Inf (an infinite logit, overflow, or a
temperature so small that inv is +Inf), or when every logits[j] * inv is -Inf:
then the choice is greedy, the limit of sampling as the temperature goes to 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _runtime_checks
from ._bits import real_to_f32
from .argmax import argmax
from .softmax import softmax

TWO_POW_M24 = np.float32(2.0**-24)


def draw(seed: int, position: int) -> int:
    """Word 0 of Philox-4x64-10(key = seed, counter = position + 1); seed < 2**128, position < 2**64."""
    # numpy's Philox adds one to its counter before it makes a block, so counter=position yields
    # the block of position + 1 (tests/test_reference_runtime.py checks this against a transcription).
    return int(np.random.Philox(key=seed, counter=position).random_raw())


def uniform(seed: Any, position: Any) -> np.float32:
    """The top 24 bits of draw(seed, position) as a float32 in [0, 1)."""
    seed = _runtime_checks.unsigned("seed", seed, 128)
    position = _runtime_checks.unsigned("position", position, 64)
    return np.float32(draw(seed, position) >> 40) * TWO_POW_M24


def sample(logits: np.ndarray, temperature: float, seed: int, position: int) -> int:
    """One token from a (n,) float32 logits row, n >= 1; temperature a finite real > 0."""
    row = _runtime_checks.f32_array("logits", logits, "(n,)", 1)
    if row.size < 1:
        raise ValueError("logits must hold at least one value, got shape (0,)")
    _runtime_checks.finite_positive("temperature", temperature)
    u = uniform(seed, position)
    with np.errstate(all="ignore"):  # T rounding to 0, Inf and NaN logits: the rule below covers them
        inv = np.float32(1.0) / real_to_f32(temperature)
        p = softmax((row * inv)[None, :])[0]
    c = np.add.accumulate(p, dtype=np.float32)  # accumulate is the sequential running sum
    above = np.flatnonzero(u < c)
    if above.size:
        return int(above[0])
    positive = np.flatnonzero(p > 0)
    if positive.size:
        return int(positive[-1])
    return int(argmax(row[None, :])[0])
