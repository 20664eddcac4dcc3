"""Decoding loops: greedy (temperature 0) or counter-based sampling, for a batch of prompts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from reprosparse.reference.sample import sample

from .runtime import Runtime


@dataclass(frozen=True)
class Generated:
    tokens: list[int]  # the new tokens, not the prompt
    logits: np.ndarray  # (len(tokens), vocab): the logits each new token was chosen from


class ContextLengthError(ValueError):
    """Decoding stopped because a sequence reached the model's context length.

    `generated` holds what each sequence had made by then, so a caller can still show it.
    """

    def __init__(self, message: str, generated: list[Generated]) -> None:
        super().__init__(message)
        self.generated = generated


def generate(
    runtime: Runtime,
    prompts: Sequence[Sequence[int]],
    n_new: int,
    temperature: float = 0.0,
    seed: int = 0,
    on_token: Callable[[int], None] | None = None,
    eos: int | None = None,
) -> list[Generated]:
    """Prefill all prompts together, then decode up to n_new tokens for each, all in one batch per step.

    temperature 0 is greedy (the backend's argmax, spec §12); above 0 each token is drawn by the
    reference `sample` keyed by (seed, position of the token whose logits are used).
    A sequence stops after it makes `eos` (kept as its last token; None: never), as PowerInfer's main does;
    the others go on, so each sequence's tokens are the same alone or in a batch.
    on_token(step) is called after each decode step (for progress bars).  When a sequence would pass
    the model's context length, ContextLengthError stops decoding and carries the tokens made so far.
    """
    if n_new < 1:
        raise ValueError(f"n_new must be >= 1, got {n_new}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    caches = [runtime.new_cache() for _ in prompts]
    live = list(range(len(prompts)))  # the sequences still decoding; logits[k] is live[k]'s
    logits = runtime.step(caches, prompts)
    out: list[list[int]] = [[] for _ in prompts]
    trace: list[list[np.ndarray]] = [[] for _ in prompts]
    for step in range(n_new):
        if temperature == 0:
            chosen = [int(c) for c in runtime.backend.argmax(logits, mode=runtime.mode, threads=runtime.threads)]
        else:
            pairs = zip(logits, live, strict=True)
            chosen = [sample(row, temperature, seed, caches[i].length - 1) for row, i in pairs]
        for k, (i, tok) in enumerate(zip(live, chosen, strict=True)):
            out[i].append(tok)
            trace[i].append(logits[k])
        if on_token is not None:
            on_token(step)
        going = [k for k, tok in enumerate(chosen) if tok != eos]
        live, chosen = [live[k] for k in going], [chosen[k] for k in going]
        if step + 1 < n_new and live:
            context = runtime.model.hyper.context_length
            if any(caches[i].length + 1 > context for i in live):
                raise ContextLengthError(f"stopped at the context length {context} after {step + 1} of {n_new} "
                                         "new tokens", _results(out, trace))
            logits = runtime.step([caches[i] for i in live], [[tok] for tok in chosen])
        else:
            break
    return _results(out, trace)


def _results(out: list[list[int]], trace: list[list[np.ndarray]]) -> list[Generated]:
    return [Generated(tokens, np.stack(rows)) for tokens, rows in zip(out, trace, strict=True)]
