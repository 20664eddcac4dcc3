"""Conformance cases of `decoder_layer`, one whole decoder layer (docs/spec.md §12).

The expected result is `reference.decoder_layer`'s: the layer's output, the
FFN input h, the mask, and the caches after the step's keys and values are
stored, packed into one float32 vector (`packed`) so that one bitwise
comparison covers them all.  Families, around a small grouped-query layer
(dim 32, 4 heads over 2 KV heads, 40 FFN neurons, predictor rank 8) and a
step of 3 rows over 3 sequences:

- shapes:  one decode row, a 6-row prefill of one sequence, a dense FFN,
           float16 weights, t = 0
- values:  x with wide, subnormal, +-Inf and NaN values
- split:   a layer big enough that every operator splits its work over threads

Fast mode has no bound for a whole layer (it is the composition of operators
whose bounds the other cases check), so its cases are checked in
deterministic mode only.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from reprosparse import reference
from reprosparse.reference.quant import QuantizedMatrix

from . import quant_cases
from .cases import Case, _values

OP = "decoder_layer"
DEFAULT: dict[str, Any] = {
    "t": 3, "dim": 32, "n_head": 4, "n_kv": 2, "n_ff": 40, "rank": 8, "dtype": "float32", "values": "normal",
    "ffn": "sparse", "prefill": False,
}


def all_cases() -> list[Case]:
    variants: dict[str, dict[str, dict[str, Any]]] = {
        "shapes": {"default": {}, "decode": {"t": 1}, "prefill-6": {"t": 6, "prefill": True},
                   "dense": {"ffn": "dense"}, "float16": {"dtype": "float16"}, "t=0": {"t": 0},
                   "mha": {"n_kv": 4}},
        "values": {v: {"values": v} for v in ("wide", "subnormal", "inf", "nan")},
        "split": {"threads": {"t": 4, "dim": 256, "n_head": 8, "n_kv": 4, "n_ff": 700, "rank": 64}},
    }
    return [Case(OP, fam, name, {**DEFAULT, **p}) for fam, vs in variants.items() for name, p in vs.items()]


def small_layer(rng: np.random.Generator, dim: int, kv_rows: int, n_ff: int, rank: int, dtype: str,
                predictor: bool = True) -> SimpleNamespace:
    """The fields of a model's Layer: matrices of float32, float16 or a quantized type (norm vectors then
    float32), scaled so activations stay O(1) through the layer; without fc1 and fc2 if not `predictor`
    (a dense FFN never reads them)."""
    quant = dtype in quant_cases.TYPES

    def w(rows: int, cols: int) -> np.ndarray | QuantizedMatrix:
        if quant:
            return quant_cases.quantized(rng, (rows, cols), "normal", dtype)
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(dtype)

    def norm() -> np.ndarray:
        return (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32 if quant else dtype)

    return SimpleNamespace(
        attn_norm=norm(), wq=w(dim, dim), wk=w(kv_rows, dim), wv=w(kv_rows, dim), wo=w(dim, dim), ffn_norm=norm(),
        gate=w(n_ff, dim), up=w(n_ff, dim), down_t=w(n_ff, dim),
        **({"fc1": w(rank, dim), "fc2": w(n_ff, rank)} if predictor else {}))


def make_inputs(p: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    t, dim, n_kv, n_ff, rank, dtype = p["t"], p["dim"], p["n_kv"], p["n_ff"], p["rank"], p["dtype"]
    hd = dim // p["n_head"]

    layer = small_layer(rng, dim, n_kv * hd, n_ff, rank, dtype)
    lengths = [t + 4, max(1, t), t + 9]
    k = [_values(rng, (n, n_kv, hd), "normal") for n in lengths]
    v = [_values(rng, (n, n_kv, hd), "normal") for n in lengths]
    if p["prefill"]:  # sequence 0's prompt, in order
        seq, positions = np.zeros(t, np.int64), np.arange(t, dtype=np.int64)
    else:  # rows of the three sequences interleaved, at distinct positions within each
        seq = np.arange(t, dtype=np.int64) % 3
        positions = np.empty(t, np.int64)
        for s in range(3):
            rows = seq == s
            positions[rows] = rng.permutation(lengths[s])[: int(rows.sum())]
    return {"x": _values(rng, (t, dim), p["values"]), "layer": layer, "k": k, "v": v, "seq": seq,
            "positions": positions, "n_head": p["n_head"], "n_head_kv": n_kv, "eps": 1e-5, "rope_base": 10000.0,
            "threshold": 0.0, "ffn": p["ffn"]}


def packed(result: Any, inputs: dict[str, Any]) -> Any:
    """(out, h, mask or None) and the caches as one float32 vector; anything else as it came."""
    if not (isinstance(result, tuple) and len(result) == 3):
        return result
    out, h, mask = result
    parts = [out, h, *([] if mask is None else [np.asarray(mask, np.float32)]), *inputs["k"], *inputs["v"]]
    return np.concatenate([np.asarray(a, np.float32).ravel() for a in parts])


def expected(inputs: dict[str, Any]) -> np.ndarray:
    with np.errstate(all="ignore"):
        return packed(reference.decoder_layer(**inputs), inputs)
