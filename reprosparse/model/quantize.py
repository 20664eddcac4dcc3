"""Quantized models with the tensor types PowerInfer's own quantized files use.

PowerInfer's `quantize` (llama.cpp's, extended to the predictor) turns a
model's matrices into the chosen type: attention, FFN, the predictors
fc1/fc2 and token_embd; output.weight becomes Q6_K for Q4_0 files and stays
Q8_0 for Q8_0 files; norms stay F32.  reprosparse has no Q6_K yet, so a Q4_0
model's head is Q8_0 here: the one tensor that differs from PowerInfer's.

Blocks are made by gguf-py's quantizer (gguf.quants, a port of ggml's
reference quantization): elementwise numpy ops and a max, so the same bytes on
every machine.  Every row length must be a multiple of the 32-weight block:
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

from ..reference.quant import BLOCK, QuantizedMatrix
from .gguf_file import _gguf
from .weights import MATRICES, Layer, Model

#: matrix types of a model file: make_model's dtype -> (most matrices, output.weight)
HEAD_TYPE = {"q8_0": "q8_0", "q4_0": "q8_0"}  # PowerInfer: Q6_K for q4_0 files (not supported here)


def quantize(w: np.ndarray, qtype: str) -> QuantizedMatrix:
    """An (n, d) float matrix, d a multiple of 32, as qtype blocks (gguf-py's quantizer)."""
    gguf = _gguf()
    kind = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[qtype]
    if w.ndim != 2 or w.shape[1] % BLOCK:
        raise ValueError(f"quantized matrices need rows of a multiple of {BLOCK} weights, got shape {w.shape}")
    raw = gguf.quants.quantize(np.ascontiguousarray(w, np.float32), kind)
    return QuantizedMatrix(raw, (w.shape[0], w.shape[1]), qtype)


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
    layers = []
    for layer in model.layers:
        layer = _pad_rank(layer)
        blocks: dict[str, Any] = {name: quantize(np.asarray(getattr(layer, name), np.float32), qtype)
                                  for name in MATRICES}
        layers.append(dataclasses.replace(layer, **blocks))
    return dataclasses.replace(
        model, layers=tuple(layers),
        token_embd=quantize(np.asarray(model.token_embd, np.float32), qtype),
        output=quantize(np.asarray(model.output, np.float32), HEAD_TYPE[qtype]),
    )
