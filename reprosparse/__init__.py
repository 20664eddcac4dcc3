"""reprosparse: activation-sparse LLM operators that give the same bits everywhere.

The ops below dispatch to the current backend (REPROSPARSE_BACKEND, or
`use(backend=...)`) in the current mode (REPROSPARSE_MODE, default
"deterministic").  Their exact arithmetic is docs/spec.md, executed by
`reprosparse.reference`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._config import MODES, Settings, use
from ._config import current as current_settings
from ._registry import BackendError, BackendStatus, available_backends, get_backend
from .reference.quant import QuantizedMatrix

__version__ = "0.1.0"


def matvec(W: Any, x: Any) -> np.ndarray:
    """y[..., i] = lane_dot(W[i], x); W (n, d), x (d,) or (t, d)."""
    return get_backend().matvec(W, x)


def sparse_matvec(W: Any, x: Any, rows: Any) -> np.ndarray:
    """out[..., a] = lane_dot(W[rows[a]], x); rows strictly increasing int32."""
    return get_backend().sparse_matvec(W, x, rows)


def sparse_axpy(W: Any, h: Any, rows: Any) -> np.ndarray:
    """y = sum over a of h[..., a] * W[rows[a]], in the spec's 256-neuron block order."""
    return get_backend().sparse_axpy(W, h, rows)


def predict(x: Any, fc1: Any, fc2: Any, threshold: float = 0.0) -> np.ndarray:
    """Boolean mask of neurons predicted active: matvec(fc2, relu(matvec(fc1, x))) >= threshold."""
    return get_backend().predict(x, fc1, fc2, threshold)


def sparse_ffn(x: Any, gate: Any, up: Any, down_t: Any, mask: Any) -> np.ndarray:
    """ReLU-LLaMA FFN over the neurons each token's mask selects."""
    return get_backend().sparse_ffn(x, gate, up, down_t, mask)


def dense_ffn(x: Any, gate: Any, up: Any, down_t: Any) -> np.ndarray:
    """sparse_ffn with every neuron selected."""
    return get_backend().dense_ffn(x, gate, up, down_t)


__all__ = [
    "MODES", "BackendError", "BackendStatus", "QuantizedMatrix", "Settings", "available_backends", "current_settings",
    "dense_ffn", "get_backend", "matvec", "predict", "sparse_axpy", "sparse_ffn", "sparse_matvec", "use",
]
