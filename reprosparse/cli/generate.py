"""`reprosparse generate`: decode from a model file, greedily or by counter-based sampling."""

from __future__ import annotations

import argparse

from ._model_args import add_prompt, prompt_ids


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("generate", help="generate tokens from a GGUF/PWRI model")
    p.add_argument("model", help="model file")
    add_prompt(p, n_default=16)
    p.add_argument("--backend", default="auto")
    p.add_argument("--mode", choices=("deterministic", "fast"), default="deterministic")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ffn", choices=("sparse", "dense"), default="sparse")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    p.add_argument("--seed", type=int, default=0, help="sampling key (with --temperature > 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from rich.console import Console
    from rich.progress import Progress

    from .. import get_backend
    from ..model import Runtime, generate, load_model
    from ..model.tokenizer import decode

    err = Console(stderr=True)
    model = load_model(args.model)
    prompt = prompt_ids(args, model.tokens, default=[1])
    runtime = Runtime(model, get_backend(args.backend), mode=args.mode, threads=args.threads, ffn=args.ffn)
    began = time.perf_counter()
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"{runtime.backend.name} {args.mode}", total=args.n)
        out = generate(runtime, [prompt], args.n, args.temperature, args.seed,
                       on_token=lambda _: progress.advance(task))[0]
    seconds = time.perf_counter() - began
    print(",".join(str(t) for t in out.tokens))
    if model.tokens is not None:
        print(decode(out.tokens, model.tokens))
    err.print(f"{len(out.tokens)} tokens in {seconds:.2f} s ({len(out.tokens) / seconds:.1f} tokens/s, "
              f"backend {runtime.backend.name}, {args.mode}, prefill included)")
    sys.stdout.flush()
    return 0
