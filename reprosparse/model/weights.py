"""The in-memory form of a ReLU-LLaMA model with a PowerInfer activation predictor.

Weight matrices are numpy (rows, cols) = (out_features, in_features), float32
or float16, C-contiguous, exactly as the backend operators take them; the FFN
down projection is neuron-major (`down_t`, (n_ff, dim)), as `sparse_ffn` wants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hyper:
    dim: int
    n_layer: int
    n_ff: int
    n_head: int
    n_head_kv: int
    vocab: int
    eps: float
    rope_base: float
    context_length: int
    sparse_threshold: float

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head


@dataclass(frozen=True)
class Layer:
    attn_norm: np.ndarray  # (dim,)
    wq: np.ndarray  # (n_head * head_dim, dim)
    wk: np.ndarray  # (n_head_kv * head_dim, dim)
    wv: np.ndarray  # (n_head_kv * head_dim, dim)
    wo: np.ndarray  # (dim, n_head * head_dim)
    ffn_norm: np.ndarray  # (dim,)
    gate: np.ndarray  # (n_ff, dim)
    up: np.ndarray  # (n_ff, dim)
    down_t: np.ndarray  # (n_ff, dim), neuron-major
    fc1: np.ndarray  # (rank, dim), predictor hidden layer
    fc2: np.ndarray  # (n_ff, rank), predictor output: one score per FFN neuron


@dataclass(frozen=True)
class Model:
    hyper: Hyper
    token_embd: np.ndarray  # (vocab, dim)
    layers: tuple[Layer, ...]
    output_norm: np.ndarray  # (dim,)
    output: np.ndarray  # (vocab, dim), the LM head
    tokens: tuple[str, ...] | None  # token strings, when the file has a vocabulary
