"""`reprosparse bench-decode`: decode tokens/s of a model file, extrapolated to a full-depth model."""

from __future__ import annotations

import argparse

from ._model_args import int_list


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench-decode", help="decode tokens/s: deterministic vs fast, dense vs sparse FFN")
    p.add_argument("model", help="model file (e.g. from make-model --layers 2 --dim 4096 --ff 11008 ...)")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--modes", default="deterministic,fast")
    p.add_argument("--ffn", default="dense,sparse")
    p.add_argument("--tokens", type=int, default=4, help="timed decode steps per configuration")
    p.add_argument("--depths", type=int_list, default=[32], help="layer counts to extrapolate to")
    p.add_argument("--json", help="write the measurements here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from rich.table import Table

    from ..model import load_model
    from ..model.bench import decode_speed
    from . import cli_console

    model = load_model(args.model)
    hp = model.hyper
    rows = decode_speed(model, args.backend, args.modes.split(","), args.ffn.split(","), args.threads,
                        args.tokens, depths=args.depths)
    table = Table(title=f"decode speed: dim {hp.dim}, ff {hp.n_ff}, {hp.n_layer} layers, vocab {hp.vocab}, "
                        f"{model.layers[0].gate.dtype}")
    extrapolated = [f"tokens/s @{d} layers" for d in args.depths]
    for col in ("backend", "mode", "ffn", "tokens/s", "s/layer", "s head", *extrapolated):
        table.add_column(col)
    for r in rows:
        measured = (f"{r.tokens_per_s:.3g}", f"{r.layer_s:.3g}", f"{r.head_s:.3g}")
        at_depth = [f"{r.tokens_per_s_at[d]:.3g}" for d in args.depths]
        table.add_row(r.backend, r.mode, r.ffn, *measured, *at_depth)
    cli_console().print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0
