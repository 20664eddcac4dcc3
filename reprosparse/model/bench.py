"""Decode speed of the runtime: tokens/s per backend, mode and FFN kind, extrapolated to more layers.

A decode step costs (layers) x (one layer) + (head: final norm and LM head).
The runtime times both parts separately, so a model file with few layers
(e.g. a 2-layer LLaMA-7B-shaped model) predicts the speed of the full depth:
seconds per token at L layers = head + L * layers_seconds / model_layers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from reprosparse import get_backend

from .runtime import Runtime
from .weights import Model

PROMPT = (1, 2, 3, 4)  # prefilled, untimed, before the timed steps


@dataclass(frozen=True)
class DecodeSpeed:
    backend: str
    mode: str
    ffn: str
    threads: int | None
    tokens: int
    tokens_per_s: float  # measured, at the model's own depth
    layer_s: float  # seconds per token per decoder layer
    head_s: float  # seconds per token for the final norm and LM head
    tokens_per_s_at: dict[int, float]  # extrapolated: depth -> tokens/s


def decode_speed(
    model: Model,
    backend: str = "numpy",
    modes: Sequence[str] = ("deterministic", "fast"),
    ffns: Sequence[str] = ("dense", "sparse"),
    threads: int | None = None,
    tokens: int = 4,
    prompt: Sequence[int] = PROMPT,
    depths: Sequence[int] = (32,),
) -> list[DecodeSpeed]:
    """Time `tokens` decode steps (after an untimed prefill) for each mode x FFN kind."""
    out = []
    be = get_backend(backend)
    for mode in modes:
        for ffn in ffns:
            runtime = Runtime(model, be, mode=mode, threads=threads, ffn=ffn)
            caches = [runtime.new_cache()]
            logits = runtime.step(caches, [list(prompt)])
            runtime.timings.update(layers=0.0, head=0.0)
            began = time.perf_counter()
            for _ in range(tokens):
                nxt = int(be.argmax(logits, mode=mode, threads=threads)[0])
                logits = runtime.step(caches, [[nxt]])
            wall = time.perf_counter() - began
            layer_s = runtime.timings["layers"] / tokens / model.hyper.n_layer
            head_s = runtime.timings["head"] / tokens
            out.append(DecodeSpeed(
                backend=be.name, mode=mode, ffn=ffn, threads=threads, tokens=tokens,
                tokens_per_s=tokens / wall, layer_s=layer_s, head_s=head_s,
                tokens_per_s_at={d: 1.0 / (head_s + d * layer_s) for d in depths},
            ))
    return out
