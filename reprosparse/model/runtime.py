"""The ReLU-LLaMA decoder: every operator on the chosen backend.

Per step, one backend `decoder_layers` call: `decoder_layer` (docs/spec.md §12)
through every layer, the step's arguments checked once:
rmsnorm -> Q/K/V `matvec` -> rope -> attention over the sequences' KV caches
-> O `matvec` -> residual r -> `predict` mask on r (the pre-norm residual,
PowerInfer's `ffn_inp`) -> rmsnorm -> `sparse_ffn` (or `dense_ffn`) ->
residual; then the final rmsnorm and the LM head `matvec` for each
sequence's last token.  All of them are backend operations in the chosen
mode and thread count.  The cython backend runs a layer in one native call,
the opencl backend chains its kernels on the device (layer.py); a backend
without its own `_decoder_layer` composes its op hooks, and one
without native per-token ops runs the reference's (backends/_runtime_ops.py).

A step stacks the new tokens of every sequence into one activation matrix,
so the backend sees a real batch; every operator is per row in
deterministic mode, so each token's result is independent of the batch.
The layer's attention covers every sequence and head and stores the step's
keys and values first: the kernels write and read each
sequence's cache, a C-contiguous (capacity, n_head_kv, head_dim) float32
array per layer, where it lies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reprosparse.backends import Backend
from reprosparse.reference import _runtime_checks
from reprosparse.reference.decoder_layer import Observer

from .weights import Model

FFN_KINDS = _runtime_checks.FFN_KINDS


@dataclass
class KVCache:
    """One sequence's rotated keys and values, per layer (capacity, n_head_kv, head_dim)."""

    k: list[np.ndarray]
    v: list[np.ndarray]
    length: int = 0

    def reserve(self, length: int) -> None:
        if length <= self.k[0].shape[0]:
            return
        capacity = max(length, 2 * self.k[0].shape[0])
        for arrays in (self.k, self.v):
            for i, a in enumerate(arrays):
                grown = np.zeros((capacity, *a.shape[1:]), np.float32)
                grown[: self.length] = a[: self.length]
                arrays[i] = grown


@dataclass
class Runtime:
    model: Model
    backend: Backend
    mode: str = "deterministic"
    threads: int | None = None
    ffn: str = "sparse"
    observer: Observer | None = None
    #: seconds spent in the decoder layers and in the head (final norm + LM head), for decode_speed
    timings: dict[str, float] = field(default_factory=lambda: {"layers": 0.0, "head": 0.0})

    def __post_init__(self) -> None:
        if self.ffn not in FFN_KINDS:
            raise ValueError(f"ffn must be one of {FFN_KINDS}, got {self.ffn!r}")

    def new_cache(self) -> KVCache:
        hp = self.model.hyper
        shape = (16, hp.n_head_kv, hp.head_dim)
        return KVCache(
            [np.zeros(shape, np.float32) for _ in range(hp.n_layer)],
            [np.zeros(shape, np.float32) for _ in range(hp.n_layer)],
        )

    def step(self, caches: Sequence[KVCache], tokens: Sequence[Sequence[int]]) -> np.ndarray:
        """Feed tokens[i] to sequence i (a prompt or one token); logits of each one's last token.

        Returns (len(caches), vocab) float32.
        """
        hp = self.model.hyper
        counts = [len(t) for t in tokens]
        if len(caches) != len(tokens) or min(counts, default=0) < 1:
            raise ValueError("need one non-empty token list per sequence")
        ids = np.concatenate([np.asarray(t, np.int64) for t in tokens])
        if ids.min() < 0 or ids.max() >= hp.vocab:
            raise ValueError(f"token ids must lie in [0, {hp.vocab})")
        for cache, n in zip(caches, counts, strict=True):
            if cache.length + n > hp.context_length:
                raise ValueError(f"a sequence would exceed the context length {hp.context_length}")
            cache.reserve(cache.length + n)
        starts = np.cumsum([0, *counts])
        positions = np.concatenate([c.length + np.arange(n) for c, n in zip(caches, counts, strict=True)])
        seq = np.repeat(np.arange(len(caches)), counts)
        cache_k = [[c.k[li] for c in caches] for li in range(hp.n_layer)]  # the arrays, per layer
        cache_v = [[c.v[li] for c in caches] for li in range(hp.n_layer)]
        be = self.backend
        run: dict[str, Any] = {"mode": self.mode, "threads": self.threads}

        began = time.perf_counter()
        x = self.model.token_embd[ids].astype(np.float32)  # float16 converts exactly
        x = be.decoder_layers(
            x, self.model.layers, cache_k, cache_v, seq, positions, n_head=hp.n_head, n_head_kv=hp.n_head_kv,
            eps=hp.eps, rope_base=hp.rope_base, threshold=hp.sparse_threshold, ffn=self.ffn, observer=self.observer,
            **run)
        for cache, n in zip(caches, counts, strict=True):
            cache.length += n
        mid = time.perf_counter()
        last = x[starts[1:] - 1]
        logits = be.matvec(self.model.output, be.rmsnorm(last, self.model.output_norm, hp.eps, **run), **run)
        self.timings["layers"] += mid - began
        self.timings["head"] += time.perf_counter() - mid
        return logits
