"""`reprosparse generate`: decode from a model file, greedily or by counter-based sampling."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._model_args import add_model, add_no_mmap, add_prompt, backend, load, partition, prompt_ids
from ._types import output_file, partition_spec, seed, temperature, thread_count

if TYPE_CHECKING:
    from ..backends import Backend
    from ..model import Generated, Model


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("generate", help="generate tokens from a GGUF/PWRI model; with --prompt, text until EOS")
    add_model(p)
    add_no_mmap(p)
    add_prompt(p, n_default=16, n_help="tokens to generate: at most, with --prompt (it stops after EOS); "
               "exactly, with --tokens")
    # Omitted, these come from REPROSPARSE_BACKEND / _MODE / _THREADS, like every reprosparse op.
    where = p.add_mutually_exclusive_group()
    where.add_argument("--backend", help="backend name or auto (default: REPROSPARSE_BACKEND, else auto)")
    where.add_argument("--partition", type=partition_spec, metavar="NAME[:SHARE][@THREADS],...",
                       help="split every weight operator over several backends, e.g. opencl:0.3,cython "
                            "(the same bits as one backend in deterministic mode; docs/runtime.md)")
    p.add_argument("--mode", choices=("deterministic", "fast"),
                   help="default: REPROSPARSE_MODE, else deterministic")
    p.add_argument("--threads", type=thread_count,
                   help="default: REPROSPARSE_THREADS, else the backend's default")
    p.add_argument("--ffn", choices=("sparse", "dense"), default="sparse")
    p.add_argument("--temperature", type=temperature, default=0.0, help="0 is greedy")
    p.add_argument("--seed", type=seed, default=0, help="sampling key (with --temperature > 0)")
    p.add_argument("--json", type=output_file, help="write the tokens and the SHA-256 of the logits' bits here")
    p.add_argument("--logits", type=output_file, metavar="NPY",
                   help="write the logits each new token was chosen from here (numpy .npy, float32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    import time

    from rich.console import Console
    from rich.progress import Progress

    from .. import _config, mpi
    from ..model import ContextLengthError, Runtime, generate
    from . import CommandFailed, UsageError

    settings = _config.current()
    mode = args.mode or settings.mode
    threads = args.threads or settings.threads
    chosen: Backend
    primary = True  # the process that prints: rank 0 under mpiexec
    if args.partition:
        if mpi.launched():
            raise UsageError("--partition: under mpiexec the ranks are the partition; leave it out")
        split = partition(args.partition, (mode,), "--partition")
        chosen, label = split, split.label
    else:
        chosen = backend(args.backend or settings.backend, mode, "--backend" if args.backend else "REPROSPARSE_BACKEND")
        label = chosen.name
        if mpi.launched():  # one executor per rank; rank 0 alone prints
            ranks = mpi.MpiPartition(chosen, threads=threads)
            chosen, label, primary = ranks, ranks.label, ranks.rank == 0
            if not primary:
                sys.stdout = open(os.devnull, "w")  # for the life of the process
    err = Console(stderr=True)
    model = load(args.model, args.no_mmap)
    prompt = prompt_ids(args, model, default=[1])
    # Text in, text out, as PowerInfer's main: stop at EOS.  Ids in (--tokens): exactly -n ids, for comparisons.
    eos = model.vocabulary.eos if args.prompt is not None and model.vocabulary is not None else None
    runtime = Runtime(model, chosen, mode=mode, threads=threads, ffn=args.ffn)
    began = time.perf_counter()
    stopped: ContextLengthError | None = None
    # A progress bar is for a terminal: in a log, rich would leave a blank line where it stood.
    with Progress(console=err, transient=True, disable=not (err.is_terminal and primary)) as progress:
        task = progress.add_task(f"{label} {mode}", total=args.n)
        try:
            out = generate(runtime, [prompt], args.n, args.temperature, args.seed,
                           on_token=lambda _: progress.advance(task), eos=eos)[0]
        except ContextLengthError as exc:  # show what was made, then fail
            stopped, out = exc, exc.generated[0]
    seconds = time.perf_counter() - began
    if primary:
        _show(prompt, out, model)
        if args.json:
            _write_json(args.json, out)
        if args.logits:
            import numpy as np

            with open(args.logits, "wb") as f:  # np.save would add .npy to a name without it
                np.save(f, out.logits)
        err.print(f"{len(out.tokens)} tokens in {seconds:.2f} s ({len(out.tokens) / seconds:.1f} tokens/s, "
                  f"backend {label}, {mode}, prefill included)")
    if stopped is not None:
        raise CommandFailed(f"-n {args.n}: {stopped}")
    return 0


def _write_json(path: str, out: Generated) -> None:
    """Tokens and the SHA-256 of the logits' float32 bytes (NaNs made one payload, as the spec compares them)."""
    import hashlib
    import json

    import numpy as np

    logits = np.where(np.isnan(out.logits), np.float32(np.nan), out.logits).astype(np.float32)
    with open(path, "w") as f:
        json.dump({"tokens": out.tokens, "logits_sha256": hashlib.sha256(logits.tobytes()).hexdigest()}, f)


def _show(prompt: list[int], out: Generated, model: Model) -> None:
    """The new ids, then their text: what decoding the prompt and them adds to the prompt's own text, so
    the first new word keeps its space (SentencePiece drops a text's leading space)."""
    import sys

    from ..model.tokenizer import tokenizer_for

    print(",".join(str(t) for t in out.tokens))
    sys.stdout.flush()
    if model.vocabulary is None:
        return
    try:
        tokenizer = tokenizer_for(model.vocabulary)
    except ValueError as exc:  # the ids are the output; say why there is no text
        print(f"no text: {exc}", file=sys.stderr)
        return
    before, whole = tokenizer.decode(prompt), tokenizer.decode(prompt + out.tokens)
    # Not always a prefix: prompt bytes of an incomplete UTF-8 character decode to U+FFFD alone.
    pairs = zip(before, whole, strict=False)
    same = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(before), len(whole)))
    print(whole[same:])
    sys.stdout.flush()
