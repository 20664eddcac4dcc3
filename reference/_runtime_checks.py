"""Argument checks of the runtime operators (docs/spec.md §12, "Arguments").

Like the checks of the weight-heavy operators (_checks.py), they run before
any work and raise TypeError (not an array, wrong dtype, not a number) or
ValueError (wrong number of axes, shapes that disagree, a value out of range),
naming the argument and what was expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._bits import real_to_f32
from ._checks import WEIGHT_DTYPES, array, ffn_args, predict_args, weights

F32 = np.dtype(np.float32)


def f32_array(name: str, a: Any, layout: str = "", ndim: int | None = None) -> np.ndarray:
    """A float32 ndarray; with ndim, of exactly that many axes (`layout` names them)."""
    a = array(name, a)
    if a.dtype != F32:
        raise TypeError(f"{name} must have dtype float32, got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {a.shape}")
    return a


def rows_of(name: str, a: Any, layout: str) -> np.ndarray:
    """A float32 (t, n) array with n >= 1: a batch of rows for softmax and argmax."""
    a = f32_array(name, a, layout, 2)
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column {layout}, got shape {a.shape}")
    return a


def int_vector(name: str, a: Any, length: int, lo: int, hi: int) -> np.ndarray:
    """A 1-D integer ndarray of `length` values in [lo, hi), as int64."""
    a = array(name, a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {a.dtype}")
    if a.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), one per row, got {a.shape}")
    if a.size and (a.min() < lo or a.max() >= hi):
        bad = a[(a < lo) | (a >= hi)][0]
        raise ValueError(f"{name} must lie in [{lo}, {hi}); found {int(bad)}")
    return a.astype(np.int64)


def real(name: str, value: Any) -> numbers.Real:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return value


def finite_positive(name: str, value: Any) -> float:
    """A real number whose float64 value is finite and > 0."""
    try:
        v = float(real(name, value))
    except OverflowError:
        v = math.inf
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def unsigned(name: str, value: Any, bits: int) -> int:
    """An integer in [0, 2**bits)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if not 0 <= v < 1 << bits:
        raise ValueError(f"{name} must lie in [0, 2**{bits}), got {v}")
    return v


# ---- whole-argument checks, shared by the reference operators and Backend's public methods ----


def rmsnorm_args(x: Any, weight: Any, eps: Any) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """(x (t, d) float32, weight (d,) float32 or float16, eps rounded once to float32)."""
    x = f32_array("x", x, "(t, d)", 2)
    return x, norm_weight("weight", weight, x), real_to_f32(real("eps", eps))


def norm_weight(name: str, w: Any, x: np.ndarray) -> np.ndarray:
    """rmsnorm's (d,) float32 or float16 weight for x (t, d)."""
    w = array(name, w)
    if w.dtype not in WEIGHT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float16, got {w.dtype}")
    if w.shape != (x.shape[1],):
        raise ValueError(f"{name} must have shape ({x.shape[1]},) to match x {x.shape}, got {w.shape}")
    return w


def rope_args(x: Any, positions: Any, base: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """(x (t, n_head, head_dim) float32 with an even head_dim >= 2, positions (t,) int64 in [0, 2**24), base)."""
    x = f32_array("x", x, "(t, n_head, head_dim)", 3)
    t, _, head_dim = x.shape
    if head_dim < 2 or head_dim % 2:
        raise ValueError(f"x must have an even head_dim >= 2 (its last axis), got shape {x.shape}")
    positions = int_vector("positions", positions, t, 0, 1 << 24)
    return x, positions, finite_positive("base", base)


def _cache(name: str, a: Any, q: np.ndarray) -> np.ndarray:
    """One (P, n_kv_head, head_dim) float32 cache array that fits the queries q."""
    a = f32_array(name, a, "(P, n_kv_head, head_dim)", 3)
    n_head, hd = q.shape[1], q.shape[2]
    if a.shape[2] != hd:
        raise ValueError(f"{name} must have head_dim {hd} like q {q.shape}, got shape {a.shape}")
    if a.shape[1] < 1 or n_head % a.shape[1]:
        raise ValueError(f"{name} must have n_kv_head >= 1 dividing n_head = {n_head}, got shape {a.shape}")
    return a


def attention_args(
    q: Any, k: Any, v: Any, positions: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(q (t, n_head, hd), k and v (P, n_kv_head, hd), positions (t,) int64 in [0, P))."""
    q = f32_array("q", q, "(t, n_head, head_dim)", 3)
    if q.shape[2] < 1:
        raise ValueError(f"q must have head_dim >= 1 (its last axis), got shape {q.shape}")
    k = _cache("k", k, q)
    v = f32_array("v", v, "(P, n_kv_head, head_dim)", 3)
    if v.shape != k.shape:
        raise ValueError(f"v must have the shape of k {k.shape}, got {v.shape}")
    return q, k, v, int_vector("positions", positions, q.shape[0], 0, k.shape[0])


def attention_batch_args(
    q: Any, k: Any, v: Any, seq: Any, positions: Any, new_k: Any = None, new_v: Any = None
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray, np.ndarray | None,
           np.ndarray | None]:
    """attention_args for several sequences: k[s], v[s] are sequence s's caches, row r is sequence seq[r]'s.

    new_k and new_v, if given, are (t, n_kv_head, head_dim) rows to store in the caches first, which must
    then be C-contiguous and writeable (a copy would take the stores).
    """
    for name, caches in (("k", k), ("v", v)):
        if not isinstance(caches, (list, tuple)):
            raise TypeError(f"{name} must be a list of cache arrays, one per sequence, got {type(caches).__name__}")
    if len(k) < 1 or len(v) != len(k):
        raise ValueError(f"k and v must be lists of the same length >= 1, got {len(k)} and {len(v)}")
    q = f32_array("q", q, "(t, n_head, head_dim)", 3)
    if q.shape[2] < 1:
        raise ValueError(f"q must have head_dim >= 1 (its last axis), got shape {q.shape}")
    ks = [_cache(f"k[{s}]", a, q) for s, a in enumerate(k)]
    vs = [f32_array(f"v[{s}]", a, "(P, n_kv_head, head_dim)", 3) for s, a in enumerate(v)]
    for s, (ka, va) in enumerate(zip(ks, vs, strict=True)):
        if va.shape != ka.shape or ka.shape[1] != ks[0].shape[1]:
            raise ValueError(f"v[{s}] must have the shape of k[{s}] {ka.shape} and every cache the same "
                             f"n_kv_head {ks[0].shape[1]}, got k[{s}] {ka.shape} and v[{s}] {va.shape}")
    t = q.shape[0]
    seq = int_vector("seq", seq, t, 0, len(ks))
    positions = int_vector("positions", positions, t, 0, 1 << 62)
    lengths = np.array([a.shape[0] for a in ks], np.int64)
    beyond = positions >= lengths[seq]
    if beyond.any():
        r = int(np.argmax(beyond))
        raise ValueError(f"positions must lie inside their sequence's cache; row {r} is at {int(positions[r])} "
                         f"but k[{int(seq[r])}] holds {int(lengths[seq[r]])} rows")
    if (new_k is None) != (new_v is None):
        raise ValueError("new_k and new_v must be given together")
    if new_k is not None:
        shape = (t, ks[0].shape[1], q.shape[2])
        new_k = f32_array("new_k", new_k, "(t, n_kv_head, head_dim)", 3)
        new_v = f32_array("new_v", new_v, "(t, n_kv_head, head_dim)", 3)
        for name, a in (("new_k", new_k), ("new_v", new_v)):
            if a.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, one row per row of q, got {a.shape}")
        writeable_caches(ks, vs)
    return q, ks, vs, seq, positions, new_k, new_v


def writeable_caches(ks: list[np.ndarray], vs: list[np.ndarray]) -> None:
    """Caches a step's keys and values can be stored in where they lie (a copy would take the stores)."""
    for name, caches in (("k", ks), ("v", vs)):
        for s, a in enumerate(caches):
            if not (a.flags.c_contiguous and a.flags.writeable):
                raise ValueError(f"{name}[{s}] must be C-contiguous and writeable to store new_k and new_v")


def softmax_args(x: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x (t, n) float32 with n >= 1, lengths (t,) int64 in [1, n]; None means n)."""
    x = rows_of("x", x, "(t, n)")
    t, n = x.shape
    if lengths is None:
        return x, np.full(t, n, np.int64)
    return x, int_vector("lengths", lengths, t, 1, n + 1)


def add_args(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 arrays of one shape."""
    a = f32_array("a", a)
    b = f32_array("b", b)
    if b.shape != a.shape:
        raise ValueError(f"b must have the shape of a {a.shape}, got {b.shape}")
    return a, b


#: the fields of a decoder layer's weights (reprosparse.model.weights.Layer): its norm vectors and its weight
#: matrices, the predictor's (read by a sparse FFN only) last
LAYER_NORMS = ("attn_norm", "ffn_norm")
PREDICTOR = ("fc1", "fc2")
LAYER_MATRICES = ("wq", "wk", "wv", "wo", "gate", "up", "down_t", *PREDICTOR)
FFN_KINDS = ("sparse", "dense")


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def _layer_fields(name: str, layer: Any, ffn: str) -> dict[str, Any]:
    """A layer's arrays by field name, unchecked; fc1 and fc2 left out for a dense FFN (which never reads them)."""
    names = LAYER_NORMS + (LAYER_MATRICES if ffn == "sparse" else LAYER_MATRICES[: -len(PREDICTOR)])
    missing = [f for f in names if not hasattr(layer, f)]
    if missing:
        raise TypeError(f"{name} must have the fields {', '.join(names)} (a model's Layer); "
                        f"{type(layer).__name__} lacks {', '.join(missing)}")
    return {f: getattr(layer, f) for f in names}


def _layer_weights(
    name: str, w: dict[str, Any], x: np.ndarray, n_kv: int, hd: int, ffn: str, threshold: Any
) -> tuple[dict[str, Any], np.float32 | None]:
    """A layer's fields (_layer_fields) checked against x (t, dim) and the heads; the threshold None for a
    dense FFN.  `name` names the layer in messages."""
    dim = x.shape[1]
    for f in LAYER_NORMS:
        w[f] = norm_weight(f"{name}.{f}", w[f], x)
    for f, rows in (("wq", dim), ("wk", n_kv * hd), ("wv", n_kv * hd), ("wo", dim)):
        w[f] = weights(f"{name}.{f}", w[f])
        if w[f].shape != (rows, dim):
            raise ValueError(f"{name}.{f} must have shape {(rows, dim)}, got {w[f].shape}")
    _, w["gate"], w["up"], w["down_t"] = ffn_args(x, w["gate"], w["up"], w["down_t"])
    if w["down_t"].shape[1] != dim:
        raise ValueError(f"{name}.down_t must have {dim} columns like x, got shape {w['down_t'].shape}")
    if ffn != "sparse":
        return w, None
    _, w["fc1"], w["fc2"], thr = predict_args(x, w["fc1"], w["fc2"], threshold)
    if w["fc2"].shape[0] != w["gate"].shape[0]:
        raise ValueError(f"{name}.fc2 must have one row per FFN neuron ({w['gate'].shape[0]}), "
                         f"got shape {w['fc2'].shape}")
    return w, thr


def decoder_layer_args(
    x: Any, layer: Any, k: Any, v: Any, seq: Any, positions: Any, n_head: Any, n_head_kv: Any, eps: Any,
    rope_base: Any, threshold: Any, ffn: Any, name: str = "layer",
) -> tuple[np.ndarray, dict[str, Any], list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray, int, int,
           np.float32, float, np.float32 | None]:
    """The checked arguments of decoder_layer; the layer's arrays as a dict by field name (fc1 and fc2
    left out for a dense FFN) and the threshold None for a dense FFN."""
    if ffn not in FFN_KINDS:
        raise ValueError(f"ffn must be one of {FFN_KINDS}, got {ffn!r}")
    x = f32_array("x", x, "(t, dim)", 2)
    fields = _layer_fields(name, layer, ffn)
    dim = weights(f"{name}.wq", fields["wq"]).shape[1]
    if x.shape[1] != dim:
        raise ValueError(f"x must have {dim} columns ({name}.wq's), got shape {x.shape}")
    n_head, n_kv = positive_int("n_head", n_head), positive_int("n_head_kv", n_head_kv)
    if dim % n_head or (dim // n_head) % 2:
        raise ValueError(f"n_head must split the width {dim} into heads of even width, got {n_head}")
    if n_head % n_kv:
        raise ValueError(f"n_head_kv must divide n_head = {n_head}, got {n_kv}")
    hd = dim // n_head
    w, thr = _layer_weights(name, fields, x, n_kv, hd, ffn, threshold)
    q = np.empty((x.shape[0], n_head, hd), np.float32)  # shapes only: the checks of the step's attention
    _, ks, vs, seq, positions, _, _ = attention_batch_args(q, k, v, seq, positions)
    if ks[0].shape[1] != n_kv:  # attention_batch_args made every cache's n_head_kv the same
        raise ValueError(f"the caches must have n_head_kv = {n_kv} heads, got k[0] of shape {ks[0].shape}")
    writeable_caches(ks, vs)
    if positions.size and positions.max() >= 1 << 24:
        raise ValueError(f"positions must lie in [0, 2**24) (rope), found {int(positions.max())}")
    return (x, w, ks, vs, seq, positions, n_head, n_kv, real_to_f32(real("eps", eps)),
            finite_positive("rope_base", rope_base), thr)


def decoder_layers_args(
    x: Any, layers: Any, k: Any, v: Any, seq: Any, positions: Any, n_head: Any, n_head_kv: Any, eps: Any,
    rope_base: Any, threshold: Any, ffn: Any,
) -> tuple[np.ndarray, list[dict[str, Any]], list[list[np.ndarray]], list[list[np.ndarray]], np.ndarray,
           np.ndarray, int, int, np.float32, float, np.float32 | None]:
    """decoder_layer_args for a stack: layers[i] with caches k[i], v[i] (lists of one array per sequence,
    each layer's of the shapes of layer 0's).  Every layer is checked before any runs."""
    for what, a in (("layers", layers), ("k", k), ("v", v)):
        if not isinstance(a, (list, tuple)):
            raise TypeError(f"{what} must be a list, one entry per layer, got {type(a).__name__}")
    if len(layers) < 1 or len(k) != len(layers) or len(v) != len(layers):
        raise ValueError(f"layers, k and v must be lists of the same length >= 1 (one entry per layer), "
                         f"got {len(layers)}, {len(k)} and {len(v)}")
    x, w0, k0, v0, seq, positions, n_head, n_kv, eps32, base, thr = decoder_layer_args(
        x, layers[0], k[0], v[0], seq, positions, n_head, n_head_kv, eps, rope_base, threshold, ffn, "layers[0]")
    ws, ks, vs = [w0], [k0], [v0]
    for i in range(1, len(layers)):
        name = f"layers[{i}]"
        ws.append(_layer_weights(name, _layer_fields(name, layers[i], ffn), x, n_kv, x.shape[1] // n_head, ffn,
                                 threshold)[0])
        for what, caches, first, out in (("k", k[i], k0, ks), ("v", v[i], v0, vs)):
            if not isinstance(caches, (list, tuple)) or len(caches) != len(first):
                raise ValueError(f"{what}[{i}] must be a list of {len(first)} cache arrays like {what}[0]")
            arrays = [f32_array(f"{what}[{i}][{s}]", a) for s, a in enumerate(caches)]
            for s, (a, a0) in enumerate(zip(arrays, first, strict=True)):
                if a.shape != a0.shape or not (a.flags.c_contiguous and a.flags.writeable):
                    raise ValueError(f"{what}[{i}][{s}] must be a C-contiguous, writeable array of the shape of "
                                     f"{what}[0][{s}] {a0.shape}, got shape {a.shape}")
            out.append(arrays)
    return x, ws, ks, vs, seq, positions, n_head, n_kv, eps32, base, thr
