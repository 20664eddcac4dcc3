"""`reprosparse reorder-model`: put each layer's hot FFN neurons first (see reprosparse.model.reorder)."""

from __future__ import annotations

import argparse

from . import UsageError
from ._model_args import add_model, check_known, token_ids
from ._types import model_file, output_file


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reorder-model", help="permute each layer's FFN neurons, hottest first, into a new file")
    add_model(p)
    p.add_argument("out", type=output_file, help="the permuted model file")
    order = p.add_mutually_exclusive_group(required=True)
    order.add_argument("--split", type=model_file, metavar="GPUIDX",
                       help="PowerInfer's split file (*.generated.gpuidx): its GPU neurons first")
    order.add_argument("--profile", type=token_ids, action="append", metavar="IDS",
                       help="a prompt as comma-separated token ids (repeatable): the neurons predicted active "
                            "for most of their tokens first")
    p.add_argument("--split-out", type=output_file, metavar="GPUIDX",
                   help="with --split: also write the permuted model's split file (its hot neurons, now first)")
    p.add_argument("--backend", default="auto", help="backend that runs the --profile prompts (deterministic "
                                                     "mode: every backend gives the same counts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    import numpy as np
    from rich.console import Console

    from ..model import load_model, save_model
    from ..model.reorder import activation_counts, order_from_counts, order_from_hot, read_split, reorder, write_split
    from ..model.runtime import Runtime
    from ._model_args import backend, check_room

    if args.split_out and not args.split:
        raise UsageError("--split-out needs --split (a profile names no hot set)")
    check_known(args.backend, "--backend")
    model = load_model(args.model)
    hp = model.hyper
    if args.split:
        hot = read_split(args.split, hp.n_layer, hp.n_ff)
        orders = [order_from_hot(h, hp.n_ff) for h in hot]
    else:
        for ids in args.profile:
            if not all(0 <= t < hp.vocab for t in ids):
                raise UsageError(f"--profile: token ids must lie in [0, {hp.vocab}) for this model")
            check_room(model, len(ids), "--profile")
        runtime = Runtime(model, backend(args.backend, "deterministic", "--backend"))
        counts = activation_counts(runtime, args.profile)
        orders = [order_from_counts(c) for c in counts]
    save_model(reorder(model, orders), args.out)
    console = Console(stderr=True)
    console.print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")
    if args.split_out:
        write_split(args.split_out, [np.arange(len(h)) for h in hot], hp.n_ff)
        console.print(f"wrote {args.split_out}")
    return 0
