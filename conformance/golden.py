"""Golden vectors: committed inputs and the SHA-256 of the reference outputs.

golden.json lets an implementation in any language check itself without numpy:
every array is stored as base64 of its little-endian bytes in C order with its
dtype and shape, and `sha256` is the hash of the output's bytes in the same
layout after every NaN is replaced by the canonical quiet NaN 0x7fc00000 (the
spec makes NaN payloads irrelevant).  A boolean output (predict) is hashed as
one byte per element, 0 or 1, an integer output (argmax, and sample's single
token) as little-endian int64, and a pair of outputs (sincos32) as the first
followed by the second.  A quantized weight matrix (spec §13) is stored as
its raw GGML block bytes in base64 with its `qtype` ("q8_0", "q4_0" or "q6_k") and
its `shape` [n, d].  Non-array inputs (rope's base, rmsnorm's eps, sample's
temperature, seed and position, decoder_layer's n_head, n_head_kv, eps,
rope_base and threshold) are plain JSON numbers; a seed can need 128 bits and
a position 64, so read them as arbitrary-precision integers.  The KV caches
`k` and `v` (attention_batch, decoder_layer) are JSON lists of arrays, one
per sequence, and decoder_layer's `layer` is a JSON object of its named
weights (attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down_t, and for a
sparse FFN fc1 and fc2), each an array or a quantized matrix; `ffn` is a JSON
string.  These two ops store the step's keys and values in the caches, so
their hashed output is what they return followed by the caches after the
call: attention_batch's output, decoder_layer's out, h and (unless the FFN is
dense) the mask as one byte per element, then k[0], k[1], ..., then v[0],
v[1], ...; every run starts from the caches as the file stores them.

Regenerate (only when the spec changes):  python -m reprosparse.conformance.golden
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable
from importlib import resources
from types import SimpleNamespace
from typing import Any

import numpy as np

from reprosparse.reference.quant import QuantizedMatrix

from . import layer_cases
from .cases import Case

FILE = "golden.json"
CANONICAL_NAN = np.uint32(0x7FC00000)

# Small inputs, one or more per op, covering blocks, tails, float16 and special values.
CASES = [
    Case("matvec", "golden", "normal", {"n": 40, "d": 37, "t": 2}),
    Case("matvec", "golden", "nan-inf", {"n": 40, "d": 37, "t": 2, "values": "nan"}),
    Case("matvec", "golden", "subnormal", {"n": 40, "d": 37, "t": 2, "values": "subnormal"}),
    Case("matvec", "golden", "float16-inf", {"n": 40, "d": 21, "t": 1, "values": "inf", "dtype": "float16"}),
    Case("sparse_matvec", "golden", "normal", {"n": 600, "d": 9, "t": 2, "density": 0.1}),
    Case("sparse_matvec", "golden", "signed-zero", {"n": 600, "d": 9, "t": 2, "values": "signed_zero"}),
    Case("sparse_axpy", "golden", "normal", {"n": 700, "d_out": 5, "t": 2, "density": 0.3}),
    Case("sparse_axpy", "golden", "inf", {"n": 700, "d_out": 5, "t": 2, "density": 0.3, "values": "inf"}),
    Case("sparse_axpy", "golden", "block-edges", {"n": 700, "d_out": 5, "t": 1, "density": "block_edges"}),
    Case("predict", "golden", "normal", {"n": 50, "d": 20, "r": 8, "t": 2}),
    Case("sparse_ffn", "golden", "normal", {"n": 600, "d": 8, "d_out": 4, "t": 3, "density": 0.2}),
    Case("sparse_ffn", "golden", "float16",
         {"n": 600, "d": 8, "d_out": 4, "t": 2, "density": 0.2, "dtype": "float16"}),
    Case("dense_ffn", "golden", "normal", {"n": 100, "d": 12, "d_out": 5, "t": 2}),
    # Quantized weights: raw blocks with NaN, Inf, subnormal and signed-zero scales (spec §13)
    Case("matvec", "golden", "q8_0-nan", {"n": 40, "d": 64, "t": 2, "values": "nan", "dtype": "q8_0"}),
    Case("matvec", "golden", "q4_0-subnormal", {"n": 40, "d": 64, "t": 2, "values": "subnormal", "dtype": "q4_0"}),
    Case("sparse_axpy", "golden", "q8_0-signed-zero",
         {"n": 700, "d_out": 32, "t": 2, "density": 0.3, "values": "signed_zero", "dtype": "q8_0"}),
    Case("sparse_axpy", "golden", "q4_0-inf",
         {"n": 700, "d_out": 32, "t": 2, "density": 0.3, "values": "inf", "dtype": "q4_0"}),
    Case("predict", "golden", "q4_0", {"n": 50, "d": 32, "r": 32, "t": 2, "dtype": "q4_0"}),
    Case("sparse_ffn", "golden", "q8_0", {"n": 600, "d": 32, "d_out": 32, "t": 2, "density": 0.2, "dtype": "q8_0"}),
    Case("sparse_ffn", "golden", "q4_0", {"n": 600, "d": 32, "d_out": 64, "t": 3, "density": 0.2, "dtype": "q4_0"}),
    # Q6_K: 256-weight blocks, int8 sub-block scales (-128 and zero ones included), d last in the block
    Case("matvec", "golden", "q6_k-nan", {"n": 41, "d": 256, "t": 2, "values": "nan", "dtype": "q6_k"}),
    Case("matvec", "golden", "q6_k-subnormal", {"n": 23, "d": 512, "t": 2, "values": "subnormal", "dtype": "q6_k"}),
    Case("sparse_matvec", "golden", "q6_k-inf",
         {"n": 301, "d": 256, "t": 2, "density": 0.3, "values": "inf", "dtype": "q6_k"}),
    Case("sparse_axpy", "golden", "q6_k-signed-zero",
         {"n": 700, "d_out": 256, "t": 2, "density": 0.3, "values": "signed_zero", "dtype": "q6_k"}),
    Case("predict", "golden", "q6_k", {"n": 51, "d": 256, "r": 256, "t": 2, "dtype": "q6_k"}),
    Case("sparse_ffn", "golden", "q6_k", {"n": 300, "d": 256, "d_out": 256, "t": 2, "density": 0.2, "dtype": "q6_k"}),
]


def _runtime_inputs(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Inputs of the runtime ops of spec §12, keyed by op (one golden vector each)."""
    f32 = np.float32
    exp_x = np.concatenate([
        rng.uniform(-105, 89, 2000), [0.0, -0.0, 88.72283, 88.72284, -103.97, -104.0, -104.01],
        [np.inf, -np.inf, np.nan], -np.exp2(rng.uniform(-149, 0, 40)),
    ]).astype(f32)
    logits = rng.standard_normal((3, 40)).astype(f32)
    logits[0, [7, 19]] = logits[0].max() + 1  # a tie: the lower index wins
    logits[1, 5] = np.nan
    q = rng.standard_normal((2, 4, 8)).astype(f32)
    return {
        "exp32": {"x": exp_x},
        "sincos32": {"angle": (rng.uniform(-4096, 4096, 1000)).astype(f32)},
        "rope": {"x": rng.standard_normal((3, 2, 8)).astype(f32), "positions": np.array([0, 1, 4097]),
                 "base": 10000.0},
        "rmsnorm": {"x": rng.standard_normal((3, 24)).astype(f32), "weight": rng.standard_normal(24).astype(f32),
                    "eps": 1e-6},
        "softmax": {"x": (rng.standard_normal((3, 19)) * 8).astype(f32)},
        "attention": {"q": q, "k": rng.standard_normal((5, 2, 8)).astype(f32),
                      "v": rng.standard_normal((5, 2, 8)).astype(f32), "positions": np.array([3, 4])},
        "argmax": {"x": logits},
    }


F32_MAX = float(np.finfo(np.float32).max)
F16_TINY = float(np.finfo(np.float16).smallest_subnormal)


def _edge_runtime_inputs(rng: np.random.Generator) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, op, inputs) of the runtime vectors that pin down edge cases of spec §12.

    They use their own generator, so the vectors above keep their inputs and hashes.
    """
    f32 = np.float32
    inf, nan = np.inf, np.nan
    out: list[tuple[str, str, dict[str, Any]]] = []
    # rope: several bases and head widths, positions up to the largest, 2**24 - 1
    for name, base, hd, heads, pos in [
        ("base500000-hd128", 500000.0, 128, 2, [0, 777, 2**24 - 1]),
        ("base1e6-hd64", 1e6, 64, 1, [1, 65535, 2**20, 2**24 - 2]),
        ("base10000-hd2", 10000.0, 2, 3, [5, 12345678, 2**24 - 1]),
        ("base0.5-hd6", 0.5, 6, 2, [3, 99999, 2**23 + 1]),  # base < 1: ln(base) < 0
    ]:
        x = rng.standard_normal((len(pos), heads, hd)).astype(f32)
        out.append((name, "rope", {"x": x, "positions": np.array(pos), "base": base}))
    # sincos32 far beyond +-4096: the rope range up to 2**24, the reduction's |k| = 2**20 edge, huge angles
    wide = rng.uniform(4096, 2**24, 400) * rng.choice([-1.0, 1.0], 400)
    edge = np.pi / 2 * 2.0**20 + np.array([-4.0, -1.0, 0.0, 1.0, 4.0])
    huge = [1e7, -1e7, 2.0**24 - 1, -(2.0**24), 1e10, 1e20, 1e30, F32_MAX, -F32_MAX]
    tiny = [0.0, -0.0, 1e-45, -1e-45, 1e-38, inf, -inf, nan]
    out.append(("wide", "sincos32", {"angle": np.concatenate([wide, edge, -edge, huge, tiny]).astype(f32)}))
    # softmax: NaN, +-Inf, all -Inf, all NaN, signed zeros, overflow of x - m, subnormals, one value
    rows = [[0.5, nan, 1.0, -2.0, 3.0, 0.0, 1.0, -1.0], [1.0, inf, -1.0, 0.0, 2.0, 3.0, 4.0, 5.0],
            [inf, 1.0, inf, 0.0, -inf, 2.0, 3.0, 4.0], [-inf, 1.0, -inf, 0.5, -inf, 2.0, -1.0, -inf],
            [-inf] * 8, [nan] * 8, [-0.0, 0.0, -0.0, -1.0, -2.0, -3.0, 0.0, -0.0],
            [3e38, -3e38, 1.0, 3e38, -F32_MAX, 0.0, F32_MAX, -1.0],
            [1e-45, -1e-45, 1e-40, 0.0, 2e-38, -3e-39, 0.0, 0.0],
            [103.0, 0.0, -1.0, 2.0, -103.0, 88.0, 89.0, 104.5]]
    out.append(("specials", "softmax", {"x": np.array(rows, f32)}))
    x = (rng.standard_normal((5, 21)) * 4).astype(f32)
    x[1, 9:] = nan  # beyond its length: never read
    x[2, 16] = inf
    x[3, 0] = -inf
    out.append(("lengths", "softmax", {"x": x, "lengths": np.array([1, 9, 16, 21, 20])}))
    # rmsnorm: float16 weights (subnormal, largest, signed zeros), then eps = 0 with zero, huge and subnormal rows
    w16 = rng.standard_normal(40).astype(np.float16)
    w16[:5] = [F16_TINY, -F16_TINY, 65504.0, -0.0, 0.0]
    out.append(("float16-weight", "rmsnorm",
                {"x": rng.standard_normal((3, 40)).astype(f32), "weight": w16, "eps": 1e-5}))
    x = rng.standard_normal((4, 17)).astype(f32)
    x[0] = 0.0
    x[1, 3] = 3e38
    x[2] = np.float32(1e-42) * x[2]
    x[3, 5] = nan
    out.append(("eps0-specials", "rmsnorm", {"x": x, "weight": np.linspace(-2, 2, 17).astype(np.float16), "eps": 0.0}))
    # sample: the ordinary draw and every way p can be NaN, a 128-bit seed and the counter's carry
    row = (rng.standard_normal(40) * 3).astype(f32)
    for name, logits, temp, seed, position in [
        ("normal", row, 0.8, 12345, 17),
        ("wide-seed-counter-carry", row, 1.0, 2**127 + 2**64 + 3, 2**64 - 1),
        ("hot", row, 1e39, 7, 3),  # float32(T) = +Inf: inv = 0, every p equal
        ("t-rounds-to-zero", row, 1e-46, 7, 3),  # inv = +Inf: greedy
        ("t-subnormal", row, 1e-45, 7, 3),  # 1 / float32(T) overflows: greedy
        ("inf-logit", np.where(np.arange(40) % 13 == 5, f32(inf), row), 0.8, 1, 2),
        ("all-minus-inf", np.full(40, -inf, f32), 0.8, 1, 2),
        ("nan-logit", np.where(np.arange(40) == 21, f32(nan), row), 0.8, 1, 2),
        ("overflow", np.array([3e38, -1.0, 3.1e38, 2.0], f32), 0.5, 1, 2),
        # A draw above the rounded total c[n-1] (found by search): the largest j with p[j] > 0
        ("short-total", (np.random.default_rng(4096005).standard_normal(4096) * 0.05).astype(f32), 1.0,
         20261127, 156232),
    ]:
        out.append((name, "sample", {"logits": logits, "temperature": temp, "seed": seed, "position": position}))
    return out


def _cache_op_inputs(rng: np.random.Generator) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, op, inputs) of the ops that store a step's keys and values in KV caches (spec §12).

    Their own generator keeps every vector above as it was.  A step mixes a prefill of one sequence
    (its earlier cache rows already filled) with decode rows of others, rows interleaved.
    """
    f32 = np.float32
    out: list[tuple[str, str, dict[str, Any]]] = []

    def caches(lengths: list[int], n_kv: int, hd: int) -> list[np.ndarray]:
        return [rng.standard_normal((n, n_kv, hd)).astype(f32) for n in lengths]

    # attention_batch, 4 query heads: sequence 0's prefill at 2..4 between decode rows of sequences 1 and
    # 2 (the latter its first token); rows after a sequence's last position hold NaN, which no row may read
    seq, positions = np.array([1, 0, 0, 0, 2]), np.array([5, 2, 3, 4, 0])
    k, v = caches([7, 8, 3], 2, 8), caches([7, 8, 3], 2, 8)
    for s, last in enumerate([4, 5, 0]):
        k[s][last + 1:] = v[s][last + 1:] = np.nan
    out.append(("gqa-prefill-decode", "attention_batch",
                {"q": rng.standard_normal((5, 4, 8)).astype(f32), "k": k, "v": v, "seq": seq, "positions": positions,
                 "new_k": rng.standard_normal((5, 2, 8)).astype(f32),
                 "new_v": rng.standard_normal((5, 2, 8)).astype(f32)}))
    # one KV head, an odd head width, and rows 0 and 2 storing to position 3 of sequence 1: the later row
    # wins, and both read its key and value
    out.append(("mqa-tie", "attention_batch",
                {"q": rng.standard_normal((4, 4, 5)).astype(f32), "k": caches([4, 6], 1, 5),
                 "v": caches([4, 6], 1, 5), "seq": np.array([1, 0, 1, 1]), "positions": np.array([3, 1, 3, 2]),
                 "new_k": rng.standard_normal((4, 1, 5)).astype(f32),
                 "new_v": rng.standard_normal((4, 1, 5)).astype(f32)}))
    out.append(("attend-only", "attention_batch",  # no new_k, new_v: the caches are read, not written
                {"q": rng.standard_normal((3, 4, 8)).astype(f32), "k": caches([5, 3], 2, 8), "v": caches([5, 3], 2, 8),
                 "seq": np.array([0, 1, 1]), "positions": np.array([4, 0, 2])}))
    # decoder_layer: dim 32, 4 heads over 2 KV heads of width 8, 40 FFN neurons, a predictor of rank 32 (one
    # Q4_0 block); sequence 0's prompt at 1..3 and decode rows of sequences 1 and 2
    for name, dtype, ffn in [("sparse-float32", "float32", "sparse"), ("sparse-float16", "float16", "sparse"),
                             ("dense", "float32", "dense"), ("sparse-q4_0", "q4_0", "sparse")]:
        out.append((name, "decoder_layer",
                    {"x": rng.standard_normal((5, 32)).astype(f32),
                     "layer": layer_cases.small_layer(rng, 32, 16, 40, 32, dtype, predictor=ffn == "sparse"),
                     "k": caches([5, 8, 5], 2, 8), "v": caches([5, 8, 5], 2, 8), "seq": np.array([0, 1, 0, 0, 2]),
                     "positions": np.array([1, 6, 2, 3, 4]), "n_head": 4, "n_head_kv": 2, "eps": 1e-5,
                     "rope_base": 10000.0, "ffn": ffn, **({"threshold": 0.0} if ffn == "sparse" else {})}))
    return out


#: the ops that store into their caches `k` and `v`: the caches after the call are part of the output
CACHE_OPS = ("attention_batch", "decoder_layer")


def hashed(op: str, out: Any, inputs: dict[str, Any]) -> Any:
    """What golden.json hashes of one run of `op` whose result is `out`: for an op of CACHE_OPS, what it
    returned (decoder_layer's None mask left out) and then inputs' caches, k before v; else `out`."""
    if op not in CACHE_OPS:
        return out
    returned = out if isinstance(out, tuple) else (out,)
    return (*(a for a in returned if a is not None), *inputs["k"], *inputs["v"])


def digest(out: np.ndarray | tuple[np.ndarray, ...] | int) -> str:
    """SHA-256 of an output as golden.json defines it (canonical NaN, little-endian, C order)."""
    if isinstance(out, tuple):
        return hashlib.sha256(b"".join(_raw(o) for o in out)).hexdigest()
    return hashlib.sha256(_raw(np.asarray(out))).hexdigest()


def _raw(out: np.ndarray) -> bytes:
    if out.dtype.kind in "iu":
        return np.ascontiguousarray(out, dtype="<i8").tobytes()
    if out.dtype == np.bool_:
        return out.astype(np.uint8).tobytes()
    bits = np.ascontiguousarray(out, dtype="<f4").view("<u4").copy()
    bits[np.isnan(out.reshape(bits.shape))] = CANONICAL_NAN
    return bits.tobytes()


def _encode(value: Any) -> Any:
    if isinstance(value, list):  # KV caches, one array per sequence
        return [_encode(v) for v in value]
    if isinstance(value, SimpleNamespace):  # a decoder layer's named weights
        return {name: _encode(v) for name, v in vars(value).items()}
    if isinstance(value, QuantizedMatrix):
        return {"qtype": value.type, "shape": list(value.shape),
                "base64": base64.b64encode(value.data.tobytes()).decode()}
    if isinstance(value, np.ndarray):
        le = value.astype(value.dtype.newbyteorder("<"), copy=False)
        return {"dtype": value.dtype.name, "shape": list(value.shape),
                "base64": base64.b64encode(np.ascontiguousarray(le).tobytes()).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict) and "qtype" in value:
        raw = np.frombuffer(base64.b64decode(value["base64"]), np.uint8).copy()
        return QuantizedMatrix(raw, tuple(value["shape"]), value["qtype"])
    if isinstance(value, dict) and "base64" in value:
        dtype = np.dtype(value["dtype"]).newbyteorder("<")
        raw = np.frombuffer(base64.b64decode(value["base64"]), dtype=dtype)
        return raw.astype(dtype.newbyteorder("="), copy=True).reshape(value["shape"])
    if isinstance(value, dict):  # a layer, whose weights decoder_layer reads as attributes
        return SimpleNamespace(**{name: _decode(v) for name, v in value.items()})
    return value


def load() -> list[dict[str, Any]]:
    """The committed golden vectors, with inputs decoded to numpy arrays (new ones at every call)."""
    text = resources.files(__package__).joinpath(FILE).read_text()
    entries = json.loads(text)["cases"]
    for e in entries:
        e["inputs"] = {k: _decode(v) for k, v in e["inputs"].items()}
    return entries


def check(run_op: Callable[[str, dict[str, Any]], Any], ops: tuple[str, ...] = ()) -> list[str]:
    """Ids of the golden cases (of `ops`, default all) whose output digest differs.

    run_op(op, inputs) computes one output; an op of CACHE_OPS stores into inputs' caches as it would
    into the caller's.  Each call decodes the file afresh, so no call sees another's stores.
    """
    chosen = [e for e in load() if not ops or e["op"] in ops]
    return [e["id"] for e in chosen
            if digest(hashed(e["op"], run_op(e["op"], e["inputs"]), e["inputs"])) != e["sha256"]]


def write(path: str) -> None:
    from reprosparse import reference

    named = [(case.id, case.op, case.inputs()) for case in CASES]
    rng = np.random.default_rng(20261127)
    named += [(f"{op}/golden/runtime", op, inputs) for op, inputs in _runtime_inputs(rng).items()]
    named += [(f"{op}/golden/{name}", op, inputs)
              for name, op, inputs in _edge_runtime_inputs(np.random.default_rng(20261128))]
    named += [(f"{op}/golden/{name}", op, inputs)
              for name, op, inputs in _cache_op_inputs(np.random.default_rng(20261129))]
    entries = []
    for case_id, op, inputs in named:
        encoded = {k: _encode(v) for k, v in inputs.items()}  # before the op stores into the caches
        with np.errstate(all="ignore"):  # special values are the point of several vectors
            out = getattr(reference, op)(**inputs)
        entries.append({"id": case_id, "op": op, "inputs": encoded, "sha256": digest(hashed(op, out, inputs))})
    doc = {"format": __doc__.split("\n\n")[1].replace("\n", " "), "cases": entries}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else str(resources.files(__package__).joinpath(FILE)))
