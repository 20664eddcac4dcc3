"""The determinism audit: one greedy generation, repeated across everything that may change its bits.

For each mode, the same prompt is generated greedily on every backend x thread
count x batch composition ("alone", or in the middle of a batch with other
prompts of different lengths) x repeat.  Per mode the report gives the number
of distinct token outputs, the number of distinct logits (bitwise, NaNs equal),
the first position where any run's tokens differ from the first run, and the
largest logit difference from the first run over the steps where both had the
same prefix.  Deterministic mode passes when both distinct counts are 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from reprosparse import get_backend
from reprosparse.backends import Backend
from reprosparse.partition import Partition

from .generate import generate
from .runtime import Runtime
from .weights import Model

COMPOSITIONS = ("alone", "batched")


@dataclass(frozen=True)
class Run:
    backend: str
    threads: int
    mode: str
    composition: str
    repeat: int
    tokens: list[int]
    logits: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class ModeSummary:
    mode: str
    runs: int
    distinct_outputs: int
    distinct_logits: int
    first_divergence: int | None  # token index, None when all outputs agree
    max_logit_diff: float

    @property
    def deterministic_ok(self) -> bool:
        return self.distinct_outputs == 1 and self.distinct_logits == 1


def _logit_key(logits: np.ndarray) -> bytes:
    canon = np.where(np.isnan(logits), np.float32(np.nan), logits)  # one NaN payload
    return canon.astype(np.float32).tobytes()


def summarize(mode: str, runs: Sequence[Run]) -> ModeSummary:
    base = runs[0]
    divergence: int | None = None
    max_diff = 0.0
    for run in runs:
        differs = [i for i, (a, b) in enumerate(zip(run.tokens, base.tokens, strict=True)) if a != b]
        same_prefix = differs[0] + 1 if differs else len(run.tokens)  # logits up to the first differing token
        if differs:
            divergence = differs[0] if divergence is None else min(divergence, differs[0])
        with np.errstate(invalid="ignore"):
            diff = np.abs(run.logits[:same_prefix].astype(np.float64) - base.logits[:same_prefix])
        max_diff = max(max_diff, float(np.nanmax(diff)) if diff.size else 0.0)
    return ModeSummary(
        mode=mode,
        runs=len(runs),
        distinct_outputs=len({tuple(r.tokens) for r in runs}),
        distinct_logits=len({_logit_key(r.logits) for r in runs}),
        first_divergence=divergence,
        max_logit_diff=max_diff,
    )


def others_for(prompt: Sequence[int], vocab: int) -> list[list[int]]:
    """Two companion prompts, one shorter and one longer than `prompt`, from a fixed recipe."""
    start = (sum(prompt) + 7) % vocab
    short = [(start + 3 * i) % vocab for i in range(max(1, len(prompt) // 2))]
    long = [(start + 5 * i + 1) % vocab for i in range(2 * len(prompt) + 3)]
    return [short, long]


def run_audit(
    model: Model,
    prompt: Sequence[int],
    n_new: int,
    backends: Sequence[str | Partition],
    threads: Sequence[int],
    modes: Sequence[str],
    repeats: int,
    on_run: Callable[[Run], None] | None = None,
) -> tuple[list[Run], dict[str, ModeSummary]]:
    runs: list[Run] = []
    companions = others_for(prompt, model.hyper.vocab)
    for mode in modes:
        for what in backends:
            backend: Backend = get_backend(what) if isinstance(what, str) else what
            name = what if isinstance(what, str) else what.label
            # A backend without threads computes the same way whatever it is told: run it once.
            thread_counts = list(threads) if backend.has_threads else [1]
            for n_threads in thread_counts:
                runtime = Runtime(model, backend, mode=mode, threads=n_threads)
                for composition in COMPOSITIONS:
                    batch = [list(prompt)]
                    if composition == "batched":
                        batch = [companions[0], list(prompt), companions[1]]
                    target = batch.index(list(prompt))
                    for rep in range(repeats):
                        got = generate(runtime, batch, n_new)[target]
                        run = Run(name, n_threads, mode, composition, rep, got.tokens, got.logits)
                        runs.append(run)
                        if on_run is not None:
                            on_run(run)
    summaries = {m: summarize(m, [r for r in runs if r.mode == m]) for m in modes}
    return runs, summaries


def rank_runs(
    model_path: str,
    prompt: Sequence[int],
    n_new: int,
    backend: str,
    ranks: Sequence[int],
    modes: Sequence[str],
    on_run: Callable[[Run], None] | None = None,
) -> list[Run]:
    """`mpiexec -n K reprosparse generate` for each rank count K and mode (the prompt alone, one thread
    per rank), read back as runs; a run that fails raises RuntimeError with its last words."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from reprosparse import mpi

    launcher = mpi.mpiexec()
    runs = []
    with tempfile.TemporaryDirectory(prefix="reprosparse-audit-") as tmp:
        for mode in modes:
            for k in ranks:
                out, logits = Path(tmp) / f"{mode}-{k}.json", Path(tmp) / f"{mode}-{k}.npy"
                done = subprocess.run(
                    [launcher, "-n", str(k), sys.executable, "-m", "reprosparse.cli", "generate", model_path,
                     "--tokens", ",".join(map(str, prompt)), "-n", str(n_new), "--backend", backend, "--mode", mode,
                     "--threads", "1", "--json", str(out), "--logits", str(logits)],
                    capture_output=True, text=True, check=False,
                )
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                    raise RuntimeError(f"mpiexec -n {k} ({mode}) failed: {last}")
                run = Run(f"mpi({backend} x {k})", 1, mode, "alone", 0, json.loads(out.read_text())["tokens"],
                          np.load(logits))
                runs.append(run)
                if on_run is not None:
                    on_run(run)
    return runs


def report_json(runs: Sequence[Run], summaries: dict[str, ModeSummary]) -> dict[str, object]:
    return {
        "summaries": {m: {**asdict(s), "deterministic_ok": s.deterministic_ok} for m, s in summaries.items()},
        "runs": [
            {"backend": r.backend, "threads": r.threads, "mode": r.mode, "composition": r.composition,
             "repeat": r.repeat, "tokens": r.tokens}
            for r in runs
        ],
    }
