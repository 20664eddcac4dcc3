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
CLI sets it against a streaming read at the same thread count.

A shared host's bandwidth moves from one second to the next, so the configurations (modes x
FFN kinds) are timed side by side: each round makes one decode step of every
configuration, in an order that rotates, and one streaming read; a row's
stream figure is the median of those reads.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from reprosparse import get_backend
from reprosparse.backends import Backend

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
    stream_gbps: float | None  # median of the streaming reads between the rounds of steps (None: not measured)
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
    """Time `tokens` decode steps (after an untimed prefill) of each mode x FFN kind, side by side,
    and with prefill > 0 one prefill step of that many prompt tokens each.  stream(threads), if
    given, times one streaming read in GB/s; it runs once per round of steps."""
    be = get_backend(backend)
    fixed = _fixed_bytes(model)
    configs = [_Decoding(model, be, mode, ffn, threads, prompt) for mode in modes for ffn in ffns]
    reads = []
    for r in range(tokens):
        if stream:
            reads.append(stream(threads or be.default_threads()))
        for i in range(len(configs)):
            configs[(r + i) % len(configs)].step()
    stream_gbps = statistics.median(reads) if reads else None
    out = []
    for c in configs:
        step_s = statistics.median(c.steps)
        layer_s = c.runtime.timings["layers"] / tokens / model.hyper.n_layer
        head_s = c.runtime.timings["head"] / tokens
        per_token = fixed + c.ffn_bytes.total / tokens
        rate = None
        if prefill:
            c.runtime.observer = None
            ids = [int(i) for i in 1 + np.arange(prefill) % (model.hyper.vocab - 1)]
            began = time.perf_counter()
            c.runtime.step([c.runtime.new_cache()], [ids])
            rate = prefill / (time.perf_counter() - began)
        out.append(DecodeSpeed(
            backend=be.name, mode=c.runtime.mode, ffn=c.runtime.ffn, threads=threads, tokens=tokens,
            tokens_per_s=1.0 / step_s, mean_tokens_per_s=tokens / sum(c.steps), layer_s=layer_s, head_s=head_s,
            tokens_per_s_at={d: 1.0 / (head_s + d * layer_s) for d in depths},
            bytes_per_token=per_token, gbps=per_token / step_s / 1e9, stream_gbps=stream_gbps,
            prefill_tokens=prefill, prefill_tokens_per_s=rate,
        ))
    return out


class _Decoding:
    """One configuration's greedy decode after an untimed prompt, one timed step at a time."""

    def __init__(self, model: Model, be: Backend, mode: str, ffn: str, threads: int | None,
                 prompt: Sequence[int]) -> None:
        self.ffn_bytes = _FfnBytes(model)
        self.runtime = Runtime(model, be, mode=mode, threads=threads, ffn=ffn, observer=self.ffn_bytes)
        self.caches = [self.runtime.new_cache()]
        self.logits = self.runtime.step(self.caches, [list(prompt)])
        self.runtime.timings.update(layers=0.0, head=0.0)
        self.ffn_bytes.total = 0
        self.steps: list[float] = []

    def step(self) -> None:
        rt = self.runtime
        nxt = int(rt.backend.argmax(self.logits, mode=rt.mode, threads=rt.threads)[0])
        began = time.perf_counter()
        self.logits = rt.step(self.caches, [[nxt]])
        self.steps.append(time.perf_counter() - began)


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
