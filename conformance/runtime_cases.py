"""Conformance cases of the runtime's per-token backend operations (docs/spec.md §12).

The ops are Backend's: rmsnorm, rope, attention (one sequence), attention_batch
(several sequences, rows interleaved), softmax, argmax and add.  Families, each
around a small default:

- shapes:  widths with and without a 16-lane tail; t = 0, 1, 64; for attention,
           head widths 1 to 128, grouped-query heads, long caches, prefill and decode
- values:  normal, wide, cancel, subnormal, signed zeros, +-Inf, NaN, near overflow
- float16: rmsnorm's float16 weight
- positions: rope near 2**24 and several bases; causal prefill rows
- split:   sizes at which the kernels spread the work over threads
- store:   attention_batch with new_k and new_v, stored in the caches before attending

The expected output is the reference's (for attention_batch, the reference's
attention of each sequence; for add, one float32 addition per element).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reprosparse import reference

from .cases import VALUE_KINDS, Case, _values

#: Backend methods of the runtime ops, in the order cases are listed
OPS = ("rmsnorm", "rope", "attention", "attention_batch", "softmax", "argmax", "add")
DEFAULT: dict[str, Any] = {
    "t": 3, "d": 33, "n": 40, "n_head": 4, "n_kv": 2, "head_dim": 16, "cache": 20, "base": 10000.0,
    "values": "normal", "dtype": "float32", "positions": "random", "store": False,
}


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


def expected(op: str, inputs: dict[str, Any]) -> Any:
    """The reference's output for one runtime op (special values are valid inputs, so no warnings)."""
    with np.errstate(all="ignore"):
        if op == "add":
            return _add(**inputs)
        return getattr(reference, op)(**inputs)


def all_cases(quick: bool = False) -> list[Case]:
    cases: list[Case] = []

    def family(op: str, name: str, variants: dict[str, dict[str, Any]]) -> None:
        cases.extend(Case(op, name, v, {**DEFAULT, **p}) for v, p in variants.items())

    rows = {f"t={t}": {"t": t} for t in (0, 1, 64)}
    values = {v: {"values": v} for v in VALUE_KINDS}
    for op in ("rmsnorm", "softmax", "argmax", "add"):
        family(op, "shapes", {**{f"d={d}": {"d": d, "n": d} for d in (1, 15, 16, 17, 4096)}, **rows})
        family(op, "values", values)
    family("rmsnorm", "float16", {v: {"dtype": "float16", "values": v} for v in ("normal", "subnormal", "inf")})
    family("rope", "shapes", {**{f"head_dim={hd}": {"head_dim": hd} for hd in (2, 6, 64, 128)},
                              "n_head=32": {"n_head": 32, "head_dim": 128}, **rows})
    family("rope", "values", values)
    family("rope", "positions", {
        "large": {"positions": "large"},
        **{f"base={b}": {"base": b, "head_dim": 64} for b in (0.5, 10000.0, 500000.0, 1e6)},
    })
    for op in ("attention", "attention_batch"):
        family(op, "shapes", {
            **{f"head_dim={hd}": {"head_dim": hd} for hd in (1, 15, 16, 17, 128)},
            "mha": {"n_kv": 4}, "mqa": {"n_kv": 1, "n_head": 8}, "gqa-32/8": {"n_head": 32, "n_kv": 8},
            "cache=1": {"cache": 1}, "cache=300": {"cache": 300},
            "prefill-64": {"t": 64, "cache": 64, "positions": "prefill"},
            "decode-llama": {"t": 1, "n_head": 32, "n_kv": 32, "head_dim": 128, "cache": 130},
            **rows,
        })
        family(op, "values", values)
    # attention_batch storing each row's key and value first (the runtime's decode and prefill steps)
    family("attention_batch", "store", {
        "decode": {"store": True}, "prefill-17": {"store": True, "t": 17, "positions": "prefill"},
        "values-nan": {"store": True, "values": "nan"}, "llama": {"store": True, "t": 4, "n_head": 32, "n_kv": 32,
                                                                 "head_dim": 128, "cache": 64},
    })
    # Big enough that the kernels really split the work over threads (small calls run on one), so the
    # thread sweep compares different partitions.
    split: dict[str, dict[str, Any]] = {
        "rmsnorm": {"t": 512, "d": 4096}, "softmax": {"t": 64, "n": 4096}, "argmax": {"t": 64, "n": 32000},
        "add": {"t": 512, "d": 4096}, "rope": {"t": 128, "n_head": 32, "head_dim": 128},
        "attention": {"t": 32, "n_head": 32, "n_kv": 8, "head_dim": 128, "cache": 200, "positions": "prefill"},
        "attention_batch": {"t": 32, "n_head": 32, "n_kv": 8, "head_dim": 128, "cache": 200},
    }
    for op, p in split.items():
        family(op, "split", {"threads": p})
    return cases


def _positions(rng: np.random.Generator, p: dict[str, Any], t: int, limit: int) -> np.ndarray:
    if p["positions"] == "prefill":  # the last t rows of the cache, in order: a causal prompt
        return np.arange(limit - t, limit, dtype=np.int64)
    if p["positions"] == "large":
        return rng.integers((1 << 24) - 4096, 1 << 24, t)
    return rng.integers(0, limit, t)


def make_inputs(op: str, p: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    t, kind = p["t"], p["values"]
    if op in ("softmax", "argmax"):
        x = _values(rng, (t, p["n"]), kind)
        if op == "argmax":
            return {"x": x}
        return {"x": x, "lengths": rng.integers(1, p["n"] + 1, t)}
    if op == "rmsnorm":
        return {"x": _values(rng, (t, p["d"]), kind), "weight": _values(rng, (p["d"],), kind, p["dtype"]),
                "eps": 1e-5}
    if op == "add":
        return {"a": _values(rng, (t, p["d"]), kind), "b": _values(rng, (t, p["d"]), kind)}
    if op == "rope":
        x = _values(rng, (t, p["n_head"], p["head_dim"]), kind)
        return {"x": x, "positions": _positions(rng, p, t, 1 << 20), "base": p["base"]}
    hd, n_kv = p["head_dim"], p["n_kv"]
    q = _values(rng, (t, p["n_head"], hd), kind)
    if op == "attention":
        k, v = (_values(rng, (p["cache"], n_kv, hd), kind) for _ in range(2))
        return {"q": q, "k": k, "v": v, "positions": _positions(rng, p, t, p["cache"])}
    # three sequences of different cache lengths; rows belong to them in a shuffled order
    lengths = [p["cache"], max(1, p["cache"] // 2), p["cache"] + 3]
    ks = [_values(rng, (n, n_kv, hd), kind) for n in lengths]
    vs = [_values(rng, (n, n_kv, hd), kind) for n in lengths]
    seq = rng.integers(0, 3, t)
    positions = np.array([rng.integers(0, lengths[s]) for s in seq], np.int64)
    if p["positions"] == "prefill":  # sequence 0 holds the prompt, in order
        seq[:] = 0
        positions = _positions(rng, p, t, lengths[0])
    args = {"q": q, "k": ks, "v": vs, "seq": seq, "positions": positions}
    if p["store"]:
        if p["positions"] != "prefill":  # distinct positions within a sequence, as a real step has
            seq = np.arange(t) % 3
            positions = np.empty(t, np.int64)
            for s in range(3):
                rows = seq == s
                positions[rows] = rng.permutation(lengths[s])[: int(rows.sum())]
            args |= {"seq": seq, "positions": positions}
        args |= {"new_k": _values(rng, (t, n_kv, hd), kind), "new_v": _values(rng, (t, n_kv, hd), kind)}
    return args
