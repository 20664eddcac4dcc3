"""Argument checks shared by the reference and every backend.

The spec (docs/spec.md, "Inputs") makes bad input an error raised before any
work is done.  Backends call these same functions before native code sees a
pointer, so every implementation rejects the same inputs with the same words.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._bits import real_to_f32
from .quant import BLOCK_BYTES, QuantizedMatrix, Weights, block, row_bytes

WEIGHT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
F32 = np.dtype(np.float32)
I32 = np.dtype(np.int32)


def array(name: str, value: Any) -> np.ndarray:
    """`value` as an ndarray (np.memmap allowed), or TypeError naming `name`."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")
    # A subclass's semantics (a MaskedArray's mask, np.matrix's 2-D products) would be
    # honoured by numpy code and ignored by native kernels, so backends would disagree.
    # np.memmap only says where the memory lives: model weights are memmap views.
    if type(value) is not np.ndarray and not isinstance(value, np.memmap):
        cls = type(value)
        raise TypeError(
            f"{name} must be a numpy.ndarray or numpy.memmap, not the subclass {cls.__module__}.{cls.__qualname__}; "
            f"convert it explicitly (np.asarray({name}) keeps the data and drops the subclass)"
        )
    return value


def _contiguous(name: str, a: np.ndarray) -> None:
    if not a.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous; pass np.ascontiguousarray({name})"
        )


def weights(name: str, w: Any) -> Weights:
    """A 2-D C-contiguous float32 or float16 weight matrix, or a QuantizedMatrix."""
    if isinstance(w, QuantizedMatrix):
        return quantized(name, w)
    w = array(name, w)
    if w.dtype not in WEIGHT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float16, got {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, columns), got shape {w.shape}")
    _contiguous(name, w)
    return w


def quantized(name: str, w: QuantizedMatrix) -> QuantizedMatrix:
    """A QuantizedMatrix whose bytes match its type and shape, checked again here because
    native kernels read `w.data` by that shape (the object's fields are not trusted)."""
    if type(w) is not QuantizedMatrix:
        raise TypeError(f"{name} must be a QuantizedMatrix, not the subclass {type(w).__qualname__}")
    if w.type not in BLOCK_BYTES:
        raise ValueError(f"{name} has unknown quantization type {w.type!r}")
    n, d = w.shape
    data = array(f"{name}.data", w.data)
    if data.dtype != np.uint8:
        raise TypeError(f"{name}.data must have dtype uint8, got {data.dtype}")
    if d % block(w.type):
        raise ValueError(f"{name} ({w.type}) must have a multiple of {block(w.type)} columns, got shape {w.shape}")
    if data.shape != (n, row_bytes(w.type, d)):
        raise ValueError(f"{name}.data must have shape {(n, row_bytes(w.type, d))} for a {w.type} matrix of "
                         f"shape {w.shape}, got {data.shape}")
    _contiguous(f"{name}.data", data)
    return w


def activations(name: str, x: Any, width: int, width_name: str) -> np.ndarray:
    """A float32 (width,) or (t, width) C-contiguous array."""
    x = array(name, x)
    if x.dtype != F32:
        raise TypeError(f"{name} must have dtype float32, got {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D ({width_name},) or 2-D (t, {width_name}), got shape {x.shape}")
    if x.shape[-1] != width:
        raise ValueError(
            f"{name} must have {width} columns to match {width_name}, got shape {x.shape}"
        )
    _contiguous(name, x)
    return x


def rows(name: str, r: Any, n: int, weights_name: str, values: bool = True) -> np.ndarray:
    """Strictly increasing int32 row indices into a matrix of n rows.  values=False checks the type and
    layout only, for a caller whose native code checks the values before it reads memory
    (Backend.native_row_checks)."""
    r = array(name, r)
    if r.dtype != I32:
        raise TypeError(
            f"{name} must have dtype int32, got {r.dtype} (use {name}.astype(np.int32))"
        )
    if r.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {r.shape}")
    _contiguous(name, r)
    if r.size and values:
        if r[0] < 0 or r[-1] >= n:
            bad = r[(r < 0) | (r >= n)][0]
            raise ValueError(
                f"{name} must index rows of {weights_name} in [0, {n}); found {int(bad)}"
            )
        steps = np.diff(r)
        if steps.size and steps.min() <= 0:
            at = int(np.flatnonzero(steps <= 0)[0])
            raise ValueError(
                f"{name} must be strictly increasing; {name}[{at}]={int(r[at])} "
                f"is followed by {int(r[at + 1])}"
            )
    return r


def mask(name: str, m: Any, x: np.ndarray, n: int) -> np.ndarray:
    """A boolean (n,) mask for 1-D x or (t, n) mask for 2-D x."""
    m = array(name, m)
    if m.dtype != np.bool_:
        raise TypeError(f"{name} must have dtype bool, got {m.dtype}")
    want = (n,) if x.ndim == 1 else (x.shape[0], n)
    if m.shape != want:
        raise ValueError(f"{name} must have shape {want} to match x and the weights, got {m.shape}")
    _contiguous(name, m)
    return m


def same_shape(name: str, w: Weights, other_name: str, other: Weights) -> None:
    if w.shape != other.shape:
        raise ValueError(f"{name} must have the shape of {other_name} {other.shape}, got {w.shape}")


def rows_match(name: str, w: Weights, n: int, what: str) -> None:
    if w.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows ({what}), got shape {w.shape}")


def threshold(value: Any) -> np.float32:
    """A real, non-NaN threshold, rounded once to float32 from its exact value (spec: predict)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"threshold must be a real number, got {type(value).__name__}")
    thr = real_to_f32(value)
    if np.isnan(thr):
        raise ValueError("threshold must not be NaN")
    return thr


def dense(w: Weights) -> np.ndarray:
    """A checked weight matrix as an array: a quantized one as its exact float32 matrix (spec §13)."""
    return w.dequantize() if isinstance(w, QuantizedMatrix) else w


def as_2d(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 2 else x.reshape(1, -1)


def like_input(out2d: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Drop the token axis again when the caller passed a single token."""
    return out2d if x.ndim == 2 else out2d.reshape(-1)


# Argument checks per op, shared so that the reference and all backends agree.

def matvec_args(w: Any, x: Any) -> tuple[Weights, np.ndarray]:
    w = weights("W", w)
    return w, activations("x", x, w.shape[1], "W.shape[1]")


def sparse_matvec_args(w: Any, x: Any, r: Any, row_values: bool = True) -> tuple[Weights, np.ndarray, np.ndarray]:
    w, x = matvec_args(w, x)
    return w, x, rows("rows", r, w.shape[0], "W", row_values)


def sparse_axpy_args(w: Any, h: Any, r: Any, row_values: bool = True) -> tuple[Weights, np.ndarray, np.ndarray]:
    w = weights("W", w)
    r = rows("rows", r, w.shape[0], "W", row_values)
    return w, activations("h", h, r.shape[0], "len(rows)"), r


def predict_args(x: Any, fc1: Any, fc2: Any, thr: Any) -> tuple[np.ndarray, Weights, Weights, np.float32]:
    fc1 = weights("fc1", fc1)
    fc2 = weights("fc2", fc2)
    x = activations("x", x, fc1.shape[1], "fc1.shape[1]")
    if fc2.shape[1] != fc1.shape[0]:
        raise ValueError(
            f"fc2 must have {fc1.shape[0]} columns to match fc1.shape[0], got shape {fc2.shape}"
        )
    return x, fc1, fc2, threshold(thr)


def ffn_args(
    x: Any, gate: Any, up: Any, down_t: Any
) -> tuple[np.ndarray, Weights, Weights, Weights]:
    gate = weights("gate", gate)
    up = weights("up", up)
    down_t = weights("down_t", down_t)
    same_shape("up", up, "gate", gate)
    rows_match("down_t", down_t, gate.shape[0], "one per FFN neuron, like gate")
    x = activations("x", x, gate.shape[1], "gate.shape[1]")
    return x, gate, up, down_t
