"""`reprosparse audit`: prove that greedy generation gives the same output everywhere."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import CommandFailed, UsageError
from ._model_args import (
    add_model,
    add_no_mmap,
    add_prompt,
    check_room,
    load,
    named_backends,
    partition,
    prompt_ids,
    refused_pairs,
    weights_refusal,
)
from ._types import modes, names, output_file, partition_specs, png_file, positive_int, thread_counts

if TYPE_CHECKING:
    from ..model.audit import Run
    from ..partition import Partition


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="generate one prompt across backends x threads x modes x batches x repeats; "
             "fail if deterministic mode ever differs",
    )
    add_model(p)
    add_no_mmap(p)
    add_prompt(p, n_default=16)
    p.add_argument("--backends", type=names,
                   help="comma-separated (default: every available backend that gives every mode)")
    p.add_argument("--partitions", type=partition_specs, default=(), metavar="SPEC[;SPEC...]",
                   help="also run partitions of the model over several backends, e.g. "
                        "'opencl:0.3,cython;cython:1@1,cython:1@2' (see generate --partition)")
    p.add_argument("--ranks", type=thread_counts, default=(), metavar="K,...",
                   help="also run the prompt alone under mpiexec -n K for each K, on the first of --backends "
                        "with one thread per rank (needs the mpi extra)")
    p.add_argument("--threads", type=thread_counts, default=(1, 2), help="comma-separated thread counts")
    p.add_argument("--modes", type=modes, default=("deterministic", "fast"), help="comma-separated modes")
    p.add_argument("--repeats", type=positive_int, default=2, help="runs of each configuration")
    # Output paths are checked while parsing: a run must not be lost to a path it cannot write.
    p.add_argument("--json", type=output_file, help="write the report here")
    p.add_argument("--plot", type=png_file, help="write a PNG of the logit differences here (needs matplotlib)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from .. import available_backends, mpi
    from ..model.audit import COMPOSITIONS, others_for, rank_runs, report_json, run_audit, summarize
    from . import cli_console

    console = cli_console()
    modes = list(args.modes)
    if args.backends:
        backends = named_backends(args.backends, args.modes, "--backends")
    else:
        refused = {name for name, mode in refused_pairs() if mode in modes}
        backends = [s.name for s in available_backends().values() if s.available and s.name not in refused]
        if not backends:
            raise CommandFailed(f"no available backend gives every mode of --modes {','.join(modes)}")
    if args.ranks:
        try:
            mpi.mpiexec()
        except ValueError as exc:
            raise UsageError(f"--ranks: {exc}") from None
    partitions = [partition(spec, args.modes, "--partitions") for spec in args.partitions]
    model = load(args.model, args.no_mmap)
    for split in partitions:
        if (why := weights_refusal(split, model)) is not None:
            raise CommandFailed(f"--partitions {split.spec!r}: {why}")
    refusing = {name: why for name in backends if (why := weights_refusal(name, model)) is not None}
    if refusing and args.backends:
        raise CommandFailed(f"--backends: {next(iter(refusing.values()))}")
    for name, why in refusing.items():  # left out, as a backend that refuses a mode is
        console.print(f"left out {name}: {why}")
    backends = [name for name in backends if name not in refusing]
    if not backends:
        raise CommandFailed("no available backend takes this model's weight types")
    targets: list[str | Partition] = [*backends, *partitions]
    prompt = prompt_ids(args, model, default=[1, 2, 3, 4, 5])
    longest = max(len(p) for p in [prompt, *others_for(prompt, model.hyper.vocab)])  # the batched runs
    # The last new token is never fed back: a sequence holds its prompt and n - 1 new tokens.
    check_room(model, longest + args.n - 1, f"-n {args.n} (after the batched runs' {longest}-token prompt)")
    total = len(modes) * (len(targets) * len(args.threads) * len(COMPOSITIONS) * args.repeats + len(args.ranks))
    err = Console(stderr=True)
    # A progress bar is for a terminal: in a log, rich would leave a blank line where it stood.
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("audit", total=total)
        runs, summaries = run_audit(model, prompt, args.n, targets, list(args.threads), modes, args.repeats,
                                    on_run=lambda _: progress.advance(task))
        if args.ranks:
            runs += rank_runs(args.model, prompt, args.n, backends[0], args.ranks, modes,
                              on_run=lambda _: progress.advance(task))
            summaries = {m: summarize(m, [r for r in runs if r.mode == m]) for m in modes}

    labels = ", ".join([*(t if isinstance(t, str) else t.label for t in targets),
                        *(f"mpi({backends[0]} x {k})" for k in args.ranks)])
    table = Table(title=f"audit: {args.n} greedy tokens, backends {labels}")
    for col in ("mode", "runs", "distinct outputs", "distinct logits (bits)", "first divergence",
                "max |logit diff|", "verdict"):
        table.add_column(col)
    failed = False
    for s in summaries.values():
        if s.mode == "deterministic":
            failed = not s.deterministic_ok
            verdict = "[green]identical[/green]" if s.deterministic_ok else "[red]NOT REPRODUCIBLE[/red]"
        else:
            verdict = "same tokens" if s.distinct_outputs == 1 else "tokens differ"
        table.add_row(s.mode, str(s.runs), str(s.distinct_outputs), str(s.distinct_logits),
                      "-" if s.first_divergence is None else str(s.first_divergence),
                      f"{s.max_logit_diff:.3g}", verdict)
    console.print(table)
    console.print("output (first run): " + ",".join(str(t) for t in runs[0].tokens))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"prompt": prompt, "n": args.n, **report_json(runs, summaries)}, f, indent=1)
    if args.plot:
        _plot(args.plot, runs)
    return 1 if failed else 0


def _plot(path: str, runs: Sequence[Run]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4))
    for mode in sorted({r.mode for r in runs}):
        mine = [r for r in runs if r.mode == mode]
        base = mine[0].logits.astype(np.float64)
        # Over all steps: after a divergence the runs condition on different tokens.
        diffs = [float(np.nanmax(np.abs(r.logits - base))) for r in mine]
        labels = [f"{r.backend}/{r.threads}t/{r.composition}/#{r.repeat}" for r in mine]
        ax.plot(labels, diffs, "o", label=mode)
    ax.set_ylabel("max |logit - first run|")
    ax.tick_params(axis="x", rotation=90, labelsize=6)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
