"""Conformance cases: enumerable, seeded, named.

A case is an op plus the parameters that generate its inputs; its id
("sparse_axpy/values/nan") is all a reproduction needs, because the inputs
are regenerated from a seed derived from that id.  Families vary one thing
at a time around a small default shape:

- shapes:  d = 1, 15, 16, 17, 4095; n not a multiple of 256; t = 0, 1, 3, 64; 1-D x
- values:  normal, wide exponent range, heavy cancellation, subnormals,
           signed zeros, +-Inf, NaN, near overflow
- masks:   empty, one neuron, 1%, 10%, 50%, all, clustered at block edges
- float16: float16 weights (normal values, subnormals, Inf/NaN)
- ties:    predict only; every logit is the same exact sum in another order and
           the threshold is that sum, so any other summation order flips neurons
- llama:   LLaMA-7B layer shapes, 4096 x 11008 at 10% active (not in --quick)
- q8_0, q4_0, q6_k: GGML quantized weights (raw blocks with every scale kind, see
           quant_cases.py) at d = 32, 64, 4096 (Q6_K: 256, 768, 4096; its block is 256)

The runtime's per-token operators have their own families (runtime_cases.py),
listed after these, and then the whole decoder layer's (layer_cases.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reprosparse.reference import OPS
from reprosparse.reference.quant import TYPES as QUANT_TYPES
from reprosparse.reference.quant import block

from .quant_cases import QUANT_KINDS, quantized

VALUE_KINDS = ("normal", "wide", "cancel", "subnormal", "signed_zero", "inf", "nan", "near_overflow")
DENSITIES: tuple[str | float, ...] = ("empty", "one", 0.01, 0.1, 0.5, "all", "block_edges")
DEFAULT: dict[str, Any] = {
    "n": 300, "d": 33, "t": 3, "d_out": 24, "r": 16, "dtype": "float32", "values": "normal", "density": 0.1,
}


@dataclass(frozen=True)
class Case:
    op: str
    family: str
    name: str
    params: dict[str, Any] = field(hash=False)
    quick: bool = True

    @property
    def id(self) -> str:
        return f"{self.op}/{self.family}/{self.name}"

    @property
    def seed(self) -> int:
        return int.from_bytes(hashlib.sha256(self.id.encode()).digest()[:8], "little")

    def inputs(self) -> dict[str, Any]:
        """The op's arguments by name, generated afresh from the seed (nothing is kept)."""
        return _make_inputs(self.op, {**DEFAULT, **self.params}, np.random.default_rng(self.seed))


def _family(op: str, family: str, variants: dict[str, dict[str, Any]], quick: bool = True) -> list[Case]:
    return [Case(op, family, name, params, quick) for name, params in variants.items()]


def all_cases(quick: bool = False) -> list[Case]:
    """Every case of every op, in a fixed order; quick drops the LLaMA-sized ones."""
    cases: list[Case] = []
    for op in OPS:
        shapes: dict[str, dict[str, Any]] = {f"d={d}": {"d": d} for d in (1, 15, 16, 17, 4095)}
        shapes |= {f"t={t}": {"t": t} for t in (0, 1, 64)}
        shapes |= {f"n={n}": {"n": n, "density": 0.5} for n in (1, 257, 513)}
        shapes["x-1d"] = {"t": None}
        cases += _family(op, "shapes", shapes)
        cases += _family(op, "values", {v: {"values": v} for v in VALUE_KINDS})
        if op == "predict":
            ties = {f"{dt}": {"values": "ties", "dtype": dt} for dt in ("float32", "float16")}
            cases += _family(op, "ties", ties)
        if op not in ("matvec", "predict", "dense_ffn"):
            masks = {str(m): {"density": m, "n": 1000} for m in DENSITIES}
            cases += _family(op, "masks", masks)
        cases += _family(
            op, "float16",
            {v: {"dtype": "float16", "values": v, "n": 513} for v in ("normal", "subnormal", "inf", "nan")},
        )
        for qt in QUANT_TYPES:  # d, d_out and r multiples of the type's block: 32 weights, 256 for Q6_K
            size = block(qt)
            small = max(64, size)
            variants = {v: {"dtype": qt, "values": v, "n": 513, "d": small, "d_out": small, "r": size}
                        for v in QUANT_KINDS}
            widths = (32, 4096) if size == 32 else (256, 768, 4096)
            variants |= {f"d={d}": {"dtype": qt, "n": 300, "d": d, "d_out": d, "r": d} for d in widths}
            cases += _family(op, qt, variants)
        if op in ("matvec", "predict"):
            llama = {"4096x11008": {"n": 11008, "d": 4096, "t": 1, "r": 1024, "dtype": "float16"}}
        elif op == "sparse_axpy":
            llama = {"11008x4096-10%": {"n": 11008, "d_out": 4096, "t": 1, "density": 0.1, "dtype": "float16"}}
        else:
            llama = {"4096x11008-10%": {"n": 11008, "d": 4096, "d_out": 4096, "t": 1, "density": 0.1,
                                        "dtype": "float16"},
                     "4096x11008-10%-q4_0": {"n": 11008, "d": 4096, "d_out": 4096, "t": 1, "density": 0.1,
                                             "dtype": "q4_0"}}
        cases += _family(op, "llama", llama, quick=False)
    from . import layer_cases, runtime_cases  # imported here: they build on this module's Case and values

    cases += runtime_cases.all_cases() + layer_cases.all_cases()
    return [c for c in cases if c.quick or not quick]


def find(case_id: str) -> Case:
    for case in all_cases():
        if case.id == case_id:
            return case
    raise KeyError(f"no conformance case {case_id!r}; list them with `reprosparse conformance --list`")


# ---- input generation ----------------------------------------------------

def _values(rng: np.random.Generator, shape: tuple[int, ...], kind: str, dtype: str = "float32") -> np.ndarray:
    """Random values of one family; float16 kinds stay inside float16's range."""
    half = dtype == "float16"
    v = rng.standard_normal(shape)
    if kind == "wide":
        v = np.sign(v) * np.exp2(rng.uniform(-12 if half else -40, 12 if half else 40, shape))
    elif kind == "cancel":
        # Pairs of large equal-and-opposite values dominate small ones, so the
        # result is far smaller than the sum of magnitudes.
        big = rng.standard_normal(shape) * (2.0**10 if half else 2.0**20)
        v = np.where(rng.random(shape) < 0.5, big, -big) + v
    elif kind == "subnormal":
        tiny = 2.0**-20 if half else 2.0**-70  # products fall into float32's subnormal range
        v = v * tiny
        sub = rng.random(shape) < 0.2
        smallest = 2.0**-24 if half else 2.0**-149
        v[sub] = rng.integers(-64, 64, int(sub.sum())) * smallest
    elif kind == "signed_zero":
        z = rng.random(shape)
        v[z < 0.3] = 0.0
        v[(z >= 0.3) & (z < 0.6)] = -0.0
    elif kind == "inf":
        z = rng.random(shape)
        v[z < 0.02] = np.inf
        v[(z >= 0.02) & (z < 0.04)] = -np.inf
    elif kind == "nan":
        v[rng.random(shape) < 0.03] = np.nan
    elif kind == "near_overflow":
        v = v * (2.0**12 if half else 2.0**62)
    return v.astype(dtype)


def _weights(rng: np.random.Generator, shape: tuple[int, int], kind: str, dtype: str) -> Any:
    """A weight matrix: float values of `kind`, or quantized blocks of that kind."""
    if dtype in QUANT_TYPES:
        return quantized(rng, shape, kind, dtype)
    return _values(rng, shape, kind, dtype)


def _rows(rng: np.random.Generator, n: int, density: str | float) -> np.ndarray:
    if density == "empty":
        picked = np.zeros(n, bool)
    elif density == "one":
        picked = np.zeros(n, bool)
        picked[rng.integers(n)] = True
    elif density == "all":
        picked = np.ones(n, bool)
    elif density == "block_edges":
        # The first and last neurons of every 256-block, where partitions split.
        i = np.arange(n)
        picked = (i % 256 < 2) | (i % 256 > 253)
    else:
        picked = rng.random(n) < float(density)
    return np.flatnonzero(picked).astype(np.int32)


def _mask(rng: np.random.Generator, t: int | None, n: int, density: str | float) -> np.ndarray:
    """Each token draws its own neurons, so the batch's union differs from any token's set."""
    tokens = 1 if t is None else t
    mask = np.zeros((tokens, n), bool)
    for ti in range(tokens):
        mask[ti, _rows(rng, n, density)] = True
    return mask[0] if t is None else mask


def _make_inputs(op: str, p: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    from . import layer_cases, runtime_cases

    if op in runtime_cases.OPS:
        return runtime_cases.make_inputs(op, p, rng)
    if op == layer_cases.OP:
        return layer_cases.make_inputs(p, rng)
    n, d, t, dtype, kind = p["n"], p["d"], p["t"], p["dtype"], p["values"]
    lead = () if t is None else (t,)
    if op in ("matvec", "sparse_matvec"):
        args = {"W": _weights(rng, (n, d), kind, dtype), "x": _values(rng, (*lead, d), kind)}
        if op == "sparse_matvec":
            args["rows"] = _rows(rng, n, p["density"])
        return args
    if op == "sparse_axpy":
        rows = _rows(rng, n, p["density"])
        h = _values(rng, (*lead, rows.size), kind)
        h[rng.random(h.shape) < 0.25] = 0.0  # zero terms must be skipped, even against Inf weights
        return {"W": _weights(rng, (n, p["d_out"]), kind, dtype), "h": h, "rows": rows}
    if op == "predict" and kind == "ties":
        return _predict_ties(rng, p)
    if op == "predict":
        x = _values(rng, (*lead, d), kind)
        fc1 = _weights(rng, (p["r"], d), kind, dtype)
        fc2 = _weights(rng, (n, p["r"]), kind, dtype)
        return {"x": x, "fc1": fc1, "fc2": fc2, "threshold": float(rng.choice([0.0, 0.5, -1.0]))}
    args = {
        "x": _values(rng, (*lead, d), kind),
        "gate": _weights(rng, (n, d), kind, dtype),
        "up": _weights(rng, (n, d), kind, dtype),
        "down_t": _weights(rng, (n, p["d_out"]), kind, dtype),
    }
    if op == "sparse_ffn":
        args["mask"] = _mask(rng, t, n, p["density"])
    return args


def _predict_ties(rng: np.random.Generator, p: dict[str, Any]) -> dict[str, Any]:
    """Logits that all equal one exact sum, taken in different orders, at the threshold.

    With d = 1 and all-ones fc1, every hidden activation is the input c itself;
    every fc2 row is a permutation of one vector v, so each logit sums the same
    rounded products v[k] * c, only in another order.  The threshold is that
    sum, so which neurons land on which side depends only on the order of the
    additions.
    """
    r, n, t = p["r"], p["n"], p["t"]
    c = np.abs(rng.standard_normal(1)).astype(np.float32) + np.float32(0.5)
    fc1 = np.ones((r, 1), p["dtype"])
    v = rng.standard_normal(r).astype(p["dtype"])
    fc2 = np.stack([rng.permutation(v) for _ in range(n)])
    exact = float(np.sum((v.astype(np.float32) * c[0]).astype(np.float64)))
    x = c if t is None else np.tile(c, (t, 1))
    return {"x": x, "fc1": fc1, "fc2": fc2, "threshold": float(np.float32(exact))}
