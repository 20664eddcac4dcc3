"""The in-memory form of a ReLU-LLaMA model with a PowerInfer activation predictor.

Weight matrices are numpy (rows, cols) = (out_features, in_features), float32
or float16, C-contiguous, or quantized (reprosparse.QuantizedMatrix, Q8_0 or
Q4_0), exactly as the backend operators take them; the FFN
down projection is neuron-major (`down_t`, (n_ff, dim)), as `sparse_ffn` wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..reference._runtime_checks import LAYER_MATRICES
from ..reference.quant import Weights
from .vocabulary import Vocabulary

#: The shortest usable context: one prompt token plus one generated token fed back.
MIN_CONTEXT_LENGTH = 2


class HyperError(ValueError):
    """A hyperparameter is out of range; `field` names it, so the model loader can name its GGUF key."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Hyper:
    """Checked on construction, so neither make_model nor save_model can produce a file load_model refuses."""

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

    def __post_init__(self) -> None:
        for name in ("dim", "n_layer", "n_ff", "n_head", "n_head_kv", "vocab"):
            if getattr(self, name) < 1:
                raise HyperError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.context_length < MIN_CONTEXT_LENGTH:
            raise HyperError("context_length", f"must be at least {MIN_CONTEXT_LENGTH}, got {self.context_length}")
        if self.n_head % self.n_head_kv:
            raise HyperError("n_head_kv", f"must divide the head count {self.n_head}, got {self.n_head_kv}")
        if self.dim % self.n_head or (self.dim // self.n_head) % 2:
            raise HyperError("n_head", f"must split the embedding length {self.dim} into heads of even width, "
                                       f"got {self.n_head}")
        for name in ("eps", "rope_base"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise HyperError(name, f"must be a finite positive number, got {value!r}")
        if not math.isfinite(self.sparse_threshold):
            raise HyperError("sparse_threshold", f"must be finite, got {self.sparse_threshold!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head


#: the Layer fields that are weight matrices (the backend operators' W); the others are norm vectors
MATRICES = LAYER_MATRICES


@dataclass(frozen=True)
class Layer:
    attn_norm: np.ndarray  # (dim,)
    wq: Weights  # (n_head * head_dim, dim)
    wk: Weights  # (n_head_kv * head_dim, dim)
    wv: Weights  # (n_head_kv * head_dim, dim)
    wo: Weights  # (dim, n_head * head_dim)
    ffn_norm: np.ndarray  # (dim,)
    gate: Weights  # (n_ff, dim)
    up: Weights  # (n_ff, dim)
    down_t: Weights  # (n_ff, dim), neuron-major
    fc1: Weights  # (rank, dim), predictor hidden layer
    fc2: Weights  # (n_ff, rank), predictor output: one score per FFN neuron


@dataclass(frozen=True)
class Model:
    hyper: Hyper
    token_embd: Weights  # (vocab, dim)
    layers: tuple[Layer, ...]
    output_norm: np.ndarray  # (dim,)
    output: Weights  # (vocab, dim), the LM head
    vocabulary: Vocabulary | None  # when the file has one
