"""Quantized models with the tensor types PowerInfer's own quantized files use.

PowerInfer's `quantize` (llama.cpp's, extended to the predictor) turns a
model's matrices into the chosen type: attention, FFN, the predictors
fc1/fc2 and token_embd; output.weight becomes Q6_K for Q4_0 files and stays
Q8_0 for Q8_0 files; norms stay F32.  A head whose rows are not a whole
number of 256-weight Q6_K blocks (a toy model's) stays Q8_0 here, as llama.cpp
falls back to another type for such tensors.

Q8_0 and Q4_0 blocks are made by gguf-py's quantizer (gguf.quants, a port of
ggml's reference quantization); gguf-py has no Q6_K quantizer, so
`quantize_q6_k` follows ggml's scheme in a simple form.  Both are elementwise
numpy ops and maxima, so the same bytes on every machine.  Every row length
must be a multiple of the 32-weight block:
the predictor's rank (fc1's rows, fc2's columns) is padded with zero rows and
columns to one, which changes no logit: a zero fc1 row gives relu(+0.0) =
+0.0 and a zero fc2 column adds only zero products to lanes that never hold
-0.0 (spec §1), so the padded predictor decides as the unpadded one would on
the same dequantized weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..reference.quant import QuantizedMatrix, block, pack_q6_k
from .gguf_file import _gguf
from .weights import MATRICES, Layer, Model

BLOCK = block("q8_0")  # the block of a model file's main type (Q8_0 and Q4_0 alike)
#: matrix types of a model file: make_model's dtype -> (most matrices, output.weight), PowerInfer's
HEAD_TYPE = {"q8_0": "q8_0", "q4_0": "q6_k"}


def quantize(w: np.ndarray, qtype: str) -> QuantizedMatrix:
    """An (n, d) float matrix, d a multiple of the type's block (32, Q6_K 256), as qtype blocks."""
    if qtype not in ("q8_0", "q4_0", "q6_k"):
        raise ValueError(f"qtype must be q8_0, q4_0 or q6_k, got {qtype!r}")
    if w.ndim != 2 or w.shape[1] % block(qtype):
        raise ValueError(f"{qtype} matrices need rows of a multiple of {block(qtype)} weights, got shape {w.shape}")
    w = np.ascontiguousarray(w, np.float32)
    if qtype == "q6_k":
        raw = quantize_q6_k(w)
    else:
        gguf = _gguf()
        kind = gguf.GGMLQuantizationType[qtype.upper()]
        raw = gguf.quants.quantize(w, kind)
    return QuantizedMatrix(raw.reshape(w.shape[0], -1), (w.shape[0], w.shape[1]), qtype)


def _nearest(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """round(v) (ties to even, as ggml's nearest_int) clipped to [lo, hi], as int32."""
    return np.clip(np.rint(v), lo, hi).astype(np.int32)


def quantize_q6_k(w: np.ndarray) -> np.ndarray:
    """(n, d) float32, d a multiple of 256 -> Q6_K blocks (n, d / 256, 210), ggml's scheme simplified.

    Each run of 16 weights gets the scale s = -x/32 of its largest-magnitude weight x (so x maps
    to the code -32, whose magnitude is the one only the negative side has); the block's d =
    -max|s|/128 in float16 maps its largest s to the int8 -128; the int8 sub-scales are s/d
    rounded; and every weight is requantized against the scale it will be read with,
    float32(d) * sc, clipped to -32..31 (a zero scale gives code 0, value 0)."""
    n, d = w.shape
    x = w.reshape(n, d // 256, 16, 16).astype(np.float32)
    pick = np.take_along_axis(x, np.abs(x).argmax(axis=3)[..., None], axis=3)[..., 0]  # (n, nb, 16)
    s = pick / np.float32(-32)
    top = np.take_along_axis(s, np.abs(s).argmax(axis=2)[..., None], axis=2)  # (n, nb, 1)
    scale = (top / np.float32(-128)).astype(np.float16)  # d, as stored
    d32 = scale.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # all-zero blocks: d = 0, all codes 0
        sc = np.where(d32 != 0, _nearest(s / d32, -128, 127), 0)
        step = (d32 * sc.astype(np.float32))[..., None]  # the exact scale a reader uses
        q = np.where(step != 0, _nearest(x / step, -32, 31), 0)
    return pack_q6_k((q + 32).reshape(n, d // 256, 256), sc, scale[..., 0])


def _pad_rank(layer: Layer) -> Layer:
    """fc1 (rank, dim) and fc2 (n_ff, rank) with rank padded by zeros to a multiple of 32."""
    fc1, fc2 = np.asarray(layer.fc1, np.float32), np.asarray(layer.fc2, np.float32)
    rank = fc1.shape[0]
    padded = -(-rank // BLOCK) * BLOCK
    fc1 = np.concatenate([fc1, np.zeros((padded - rank, fc1.shape[1]), np.float32)])
    fc2 = np.concatenate([fc2, np.zeros((fc2.shape[0], padded - rank), np.float32)], axis=1)
    return dataclasses.replace(layer, fc1=fc1, fc2=fc2)


def quantize_model(model: Model, qtype: str) -> Model:
    """`model` (float weights) with PowerInfer's tensor types for a `qtype` file."""
    if qtype not in HEAD_TYPE:
        raise ValueError(f"qtype must be one of {', '.join(HEAD_TYPE)}, got {qtype!r}")
    if model.hyper.dim % BLOCK:
        raise ValueError(f"a {qtype} model needs a width that is a multiple of {BLOCK}, got {model.hyper.dim}")
    head = HEAD_TYPE[qtype] if model.hyper.dim % block(HEAD_TYPE[qtype]) == 0 else "q8_0"  # see above
    layers = []
    for layer in model.layers:
        layer = _pad_rank(layer)
        blocks: dict[str, Any] = {name: quantize(np.asarray(getattr(layer, name), np.float32), qtype)
                                  for name in MATRICES}
        layers.append(dataclasses.replace(layer, **blocks))
    return dataclasses.replace(
        model, layers=tuple(layers),
        token_embd=quantize(np.asarray(model.token_embd, np.float32), qtype),
        output=quantize(np.asarray(model.output, np.float32), head),
    )
