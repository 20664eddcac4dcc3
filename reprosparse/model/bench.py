"""Decode speed of the runtime: tokens/s per backend, mode and FFN kind, extrapolated to more layers.

A decode step costs (layers) x (one layer) + (head: final norm and LM head).
The runtime times both parts separately, so a model file with few layers
(e.g. a 2-layer LLaMA-7B-shaped model) predicts the speed of the full depth:
seconds per token at L layers = head + L * layers_seconds / model_layers.

Tokens/s is one over the median decode step.  The weight bytes a token reads
are counted from what the step really touched: every byte of the attention
projections, the predictor and the LM head, and of the FFN the rows of
gate, up and down_t that the predicted mask selected (all of them when
dense).  bytes / median step is the weight bandwidth the decode reached; the
CLI sets it against a streaming read measured right before each configuration's
timed steps, at its thread count (a shared host's bandwidth moves by the minute).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

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
    tokens_per_s: float  # measured, at the model's own depth: one over the median step
    mean_tokens_per_s: float  # timed steps over their total time (what llama.cpp's "eval time" reports)
    layer_s: float  # seconds per token per decoder layer
    head_s: float  # seconds per token for the final norm and LM head
    tokens_per_s_at: dict[int, float]  # extrapolated: depth -> tokens/s
    bytes_per_token: float  # weight bytes read per decoded token (mean over the timed steps)
    gbps: float  # bytes_per_token / median step
    stream_gbps: float | None  # the streaming read just before the timed steps (None: not measured)
    prefill_tokens: int  # prompt length of the timed prefill (0: none)
    prefill_tokens_per_s: float | None  # prompt tokens / seconds of one prefill step


def decode_speed(
    model: Model,
    backend: str = "numpy",
    modes: Sequence[str] = ("deterministic", "fast"),
    ffns: Sequence[str] = ("dense", "sparse"),
    threads: int | None = None,
    tokens: int = 4,
    prompt: Sequence[int] = PROMPT,
    depths: Sequence[int] = (32,),
    prefill: int = 0,
    stream: Callable[[int], float] | None = None,
) -> list[DecodeSpeed]:
    """Time `tokens` decode steps (after an untimed prefill) for each mode x FFN kind, and with
    prefill > 0 one prefill step of that many prompt tokens.  stream(threads), if given, measures
    the streaming read in GB/s right before each configuration's timed steps."""
    out = []
    be = get_backend(backend)
    fixed = _fixed_bytes(model)
    for mode in modes:
        for ffn in ffns:
            ffn_bytes = _FfnBytes(model)
            runtime = Runtime(model, be, mode=mode, threads=threads, ffn=ffn, observer=ffn_bytes)
            caches = [runtime.new_cache()]
            logits = runtime.step(caches, [list(prompt)])
            runtime.timings.update(layers=0.0, head=0.0)
            ffn_bytes.total = 0
            stream_gbps = stream(threads or be.default_threads()) if stream else None
            steps = []
            for _ in range(tokens):
                nxt = int(be.argmax(logits, mode=mode, threads=threads)[0])
                began = time.perf_counter()
                logits = runtime.step(caches, [[nxt]])
                steps.append(time.perf_counter() - began)
            step_s = statistics.median(steps)
            layer_s = runtime.timings["layers"] / tokens / model.hyper.n_layer
            head_s = runtime.timings["head"] / tokens
            per_token = fixed + ffn_bytes.total / tokens
            rate = None
            if prefill:
                runtime.observer = None
                ids = [int(i) for i in 1 + np.arange(prefill) % (model.hyper.vocab - 1)]
                began = time.perf_counter()
                runtime.step([runtime.new_cache()], [ids])
                rate = prefill / (time.perf_counter() - began)
            out.append(DecodeSpeed(
                backend=be.name, mode=mode, ffn=ffn, threads=threads, tokens=tokens,
                tokens_per_s=1.0 / step_s, mean_tokens_per_s=tokens / sum(steps), layer_s=layer_s, head_s=head_s,
                tokens_per_s_at={d: 1.0 / (head_s + d * layer_s) for d in depths},
                bytes_per_token=per_token, gbps=per_token / step_s / 1e9, stream_gbps=stream_gbps,
                prefill_tokens=prefill, prefill_tokens_per_s=rate,
            ))
    return out


def _fixed_bytes(model: Model) -> int:
    """Weight bytes every decode step reads whatever the mask: attention, predictor, norms, LM head."""
    total = model.output.nbytes + model.output_norm.nbytes
    for layer in model.layers:
        total += sum(w.nbytes for w in (layer.wq, layer.wk, layer.wv, layer.wo, layer.fc1, layer.fc2,
                                        layer.attn_norm, layer.ffn_norm))
    return total


class _FfnBytes:
    """A runtime observer: adds up the FFN weight bytes each step reads (the rows its masks select)."""

    def __init__(self, model: Model) -> None:
        self.n_ff = model.hyper.n_ff
        self.row_bytes = [sum(w.nbytes // w.shape[0] for w in (lay.gate, lay.up, lay.down_t))
                          for lay in model.layers]
        self.total = 0

    def __call__(self, layer: int, h: np.ndarray, mask: np.ndarray | None) -> None:
        rows = self.n_ff if mask is None else int(mask.any(axis=0).sum())
        self.total += rows * self.row_bytes[layer]
