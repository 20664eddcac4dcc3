"""Golden vectors: committed inputs and the SHA-256 of the reference outputs.

golden.json lets an implementation in any language check itself without numpy:
every array is stored as base64 of its little-endian bytes in C order with its
dtype and shape, and `sha256` is the hash of the output's bytes in the same
layout after every NaN is replaced by the canonical quiet NaN 0x7fc00000 (the
spec makes NaN payloads irrelevant).  A boolean output (predict) is hashed as
one byte per element, 0 or 1, an integer output (argmax) as little-endian
int64, and a pair of outputs (sincos32) as the first followed by the second.

Regenerate (only when the spec changes):  python -m reprosparse.conformance.golden
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

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


def digest(out: np.ndarray | tuple[np.ndarray, ...]) -> str:
    """SHA-256 of an output as golden.json defines it (canonical NaN, little-endian, C order)."""
    if isinstance(out, tuple):
        return hashlib.sha256(b"".join(_raw(o) for o in out)).hexdigest()
    return hashlib.sha256(_raw(out)).hexdigest()


def _raw(out: np.ndarray) -> bytes:
    if out.dtype.kind in "iu":
        return np.ascontiguousarray(out, dtype="<i8").tobytes()
    if out.dtype == np.bool_:
        return out.astype(np.uint8).tobytes()
    bits = np.ascontiguousarray(out, dtype="<f4").view("<u4").copy()
    bits[np.isnan(out.reshape(bits.shape))] = CANONICAL_NAN
    return bits.tobytes()


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        le = value.astype(value.dtype.newbyteorder("<"), copy=False)
        return {"dtype": value.dtype.name, "shape": list(value.shape),
                "base64": base64.b64encode(np.ascontiguousarray(le).tobytes()).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "base64" in value:
        dtype = np.dtype(value["dtype"]).newbyteorder("<")
        raw = np.frombuffer(base64.b64decode(value["base64"]), dtype=dtype)
        return raw.astype(dtype.newbyteorder("="), copy=True).reshape(value["shape"])
    return value


def load() -> list[dict[str, Any]]:
    """The committed golden vectors, with inputs decoded to numpy arrays."""
    text = resources.files(__package__).joinpath(FILE).read_text()
    entries = json.loads(text)["cases"]
    for e in entries:
        e["inputs"] = {k: _decode(v) for k, v in e["inputs"].items()}
    return entries


def check(run_op: Callable[[str, dict[str, Any]], Any], ops: tuple[str, ...] = ()) -> list[str]:
    """Ids of the golden cases (of `ops`, default all) whose output digest differs.

    run_op(op, inputs) computes one output.
    """
    chosen = [e for e in load() if not ops or e["op"] in ops]
    return [e["id"] for e in chosen if digest(run_op(e["op"], e["inputs"])) != e["sha256"]]


def write(path: str) -> None:
    from reprosparse import reference

    named = [(case.id, case.op, case.inputs()) for case in CASES]
    rng = np.random.default_rng(20261127)
    named += [(f"{op}/golden/runtime", op, inputs) for op, inputs in _runtime_inputs(rng).items()]
    entries = []
    for case_id, op, inputs in named:
        out = getattr(reference, op)(**inputs)
        entries.append({"id": case_id, "op": op, "inputs": {k: _encode(v) for k, v in inputs.items()},
                        "sha256": digest(out)})
    doc = {"format": __doc__.split("\n\n")[1].replace("\n", " "), "cases": entries}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else str(resources.files(__package__).joinpath(FILE)))
