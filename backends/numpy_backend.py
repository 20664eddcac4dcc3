"""The numpy backend: the reference itself in deterministic mode, BLAS in fast mode."""

from __future__ import annotations

import numpy as np

from reprosparse.reference.lane_dot import lane_dot_rows
from reprosparse.reference.quant import WEIGHT_TYPES, QuantizedMatrix, Weights
from reprosparse.reference.sparse_axpy import sparse_axpy

from ._base import Backend


def _f32(w: Weights) -> np.ndarray:
    if isinstance(w, QuantizedMatrix):
        return w.dequantize()
    return w if w.dtype == np.float32 else w.astype(np.float32)


# Inf and NaN inputs are valid; their propagation is the spec's business, not a warning's.
def _quiet() -> np.errstate:
    return np.errstate(all="ignore")


class NumpyBackend(Backend):
    name = "numpy"
    priority = 10
    weight_types = WEIGHT_TYPES

    def info(self) -> dict[str, str]:
        return {"numpy": np.__version__, "fast mode": "BLAS (x @ W.T) on gathered rows"}

    def _matvec(self, W: Weights, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        if mode == "deterministic":
            return lane_dot_rows(W, None, x)
        with _quiet():
            return x @ _f32(W).T

    def _sparse_matvec(
        self, W: Weights, x: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        if mode == "deterministic":
            return lane_dot_rows(W, rows, x)
        with _quiet():
            return x @ _f32(W[rows]).T

    def _sparse_axpy(
        self, W: Weights, h: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        if mode == "deterministic":
            return sparse_axpy(W, h, rows)
        picked = _f32(W[rows])
        with _quiet():
            y = h @ picked
            # The spec skips terms whose h is zero; BLAS would turn 0 * Inf into NaN.
            # Only a NaN output can hide such a term, so only those tokens are redone.
            for ti in np.flatnonzero(np.isnan(y).any(axis=1)):
                live = np.flatnonzero(h[ti] != 0)
                y[ti] = h[ti, live] @ picked[live]
        return y
