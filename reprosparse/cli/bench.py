"""`reprosparse bench`: time the sparse FFN ops at LLaMA-7B shapes with cold weights."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ..reference.quant import WEIGHT_TYPES, weight_type
from . import UsageError
from ._model_args import add_no_mmap, check_room, load, named_backends, refused_pairs
from ._types import model_file, modes, names, output_file, png_file, positive_int, thread_counts


def weight_types(text: str) -> tuple[str, ...]:
    """--dtype: comma-separated weight types, each one an op takes."""
    got = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in got if t not in WEIGHT_TYPES]
    if not got or bad:
        raise argparse.ArgumentTypeError(f"weight types are {', '.join(WEIGHT_TYPES)}; got {text!r}")
    return got

DEFAULT_TOKENS, DEFAULT_DEPTH, DEFAULT_PREFILL = 4, 32, 128


def _threads(r: Any) -> str:
    """The threads column: a count, BLAS's own threading, or a device that schedules itself."""
    if r.threads is not None:
        return str(r.threads)
    if r.backend == "openblas" or (r.backend == "numpy" and r.mode == "fast"):
        return "BLAS"
    return "1" if r.backend == "numpy" else "device"  # the reference is single-threaded numpy


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark sparse_matvec, sparse_axpy and sparse_ffn at d=4096, n=11008 (cold weights)",
    )
    p.add_argument(
        "--backend", type=names,
        help="backends to time (default: every available one, numpy in fast mode only)",
    )
    p.add_argument("--mode", type=modes, default=("deterministic", "fast"), help="modes to time")
    p.add_argument(
        "--threads", type=thread_counts,
        help="thread counts for threaded backends (default: 1 and all cores; with --decode: the backend's default)",
    )
    p.add_argument("--dtype", type=weight_types,
                   help=f"comma-separated weight types to time, of {', '.join(WEIGHT_TYPES)} "
                        "(default: float32,float16)")
    p.add_argument("--quick", action="store_true", help="batch 1, 10%% and 100%% active, 3 repeats")
    p.add_argument("--repeats", type=positive_int, help="timed calls per case, median reported (default 7)")
    # Output paths are checked while parsing: a run must not be lost to a path it cannot write.
    p.add_argument("--json", metavar="PATH", type=output_file,
                   help="write every result and the machine facts as JSON")
    p.add_argument("--plot", metavar="PNG", type=png_file,
                   help="plot time against fraction active (needs matplotlib)")
    p.add_argument(
        "--decode", metavar="MODEL", type=model_file,
        help="instead of the operator cases, time greedy decoding with this model file (e.g. from "
             "`make-model --layers 2 --dim 4096 --ff 11008 --heads 32 --vocab 32000`): tokens/s per backend, "
             "mode and dense vs sparse FFN, extrapolated to --depth layers",
    )
    p.add_argument("--tokens", type=positive_int,
                   help=f"with --decode: timed decode steps per configuration (default {DEFAULT_TOKENS})")
    p.add_argument("--depth", type=positive_int,
                   help=f"with --decode: layer count to extrapolate to (default {DEFAULT_DEPTH})")
    add_no_mmap(p, "with --decode: ")
    p.add_argument("--prefill", type=positive_int,
                   help=f"with --decode: prompt tokens of the timed prefill step (default {DEFAULT_PREFILL})")
    p.set_defaults(func=run)


def _check_combination(args: argparse.Namespace) -> None:
    """Options of the other kind of run would be ignored silently: refuse them."""
    if args.decode:
        given = [o for o, v in (("--quick", args.quick), ("--repeats", args.repeats), ("--plot", args.plot),
                                ("--dtype", args.dtype)) if v]
        if given:
            raise UsageError(f"{given[0]} times the operator cases, not --decode (use --tokens)")
    else:
        given = [o for o, v in (("--tokens", args.tokens), ("--depth", args.depth), ("--prefill", args.prefill),
                                ("--no-mmap", args.no_mmap or None)) if v is not None]
        if given:
            raise UsageError(f"{given[0]} applies only with --decode MODEL")


def run(args: argparse.Namespace) -> int:
    from rich.progress import Progress
    from rich.table import Table

    from .. import _platform, _registry, bench
    from . import cli_console

    _check_combination(args)
    console = cli_console()
    if args.backend:
        names = tuple(named_backends(args.backend, args.mode, "--backend"))
        refused: tuple[tuple[str, str], ...] = ()
    else:
        names = tuple(s.name for s in _registry.available_backends().values() if s.available)
        refused = tuple(sorted(refused_pairs()))  # a backend that refuses a mode here is not timed in it
    if args.decode:
        return _decode(args, console, names, refused)
    threads = args.threads or tuple(sorted({1, _platform.cpu_count()}))
    # numpy's deterministic mode is the executable spec: timed only when asked for by name
    skip = refused if args.backend else (("numpy", "deterministic"), *refused)
    plan = bench.Plan(backends=names, modes=args.mode, threads=threads, dtypes=args.dtype or bench.DTYPES, skip=skip)
    if args.quick:
        plan = dataclasses.replace(plan, fractions=(0.10, 1.0), batches=(1,), repeats=3)
    if args.repeats:
        plan = dataclasses.replace(plan, repeats=args.repeats)
    total = sum(1 for _ in bench.cases(plan))
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("bench", total=total)

        def step(case: bench.Case) -> None:
            progress.update(task, advance=1, description=(
                f"{case.op} {case.dtype} b{case.batch} {case.fraction:.0%} {case.backend} {case.mode} "
                f"t{case.threads or '-'}"
            ))

        report = bench.run(plan, step)

    facts = Table(title="machine", show_header=False)
    for key, value in report.machine.items():
        facts.add_row(key, value)
    for key, gbps in report.stream_gbps.items():
        facts.add_row(f"streaming read, {key}", f"{gbps:.1f} GB/s")
    console.print(facts)

    table = Table(title=f"results (d={bench.D}, n={bench.N}; median of {plan.repeats}, cold weights)")
    numeric = ("batch", "active", "threads", "ms", "GB/s", "of stream", "of rows read")
    for col in ("op", "dtype", "backend", "mode", *numeric):
        table.add_column(col, justify="right" if col in numeric else "left")
    for r in report.results:
        table.add_row(r.op, r.dtype, r.backend, r.mode, str(r.batch), f"{r.fraction:.0%}",
                      _threads(r), f"{r.median_s * 1e3:.3f}",
                      f"{r.gbps:.1f}", f"{r.of_stream:.0%}",
                      "-" if r.of_rows_read is None else f"{r.of_rows_read:.0%}")
    console.print(table)

    goals = Table(title="targets (batch 1, 10% active, all cores)")
    for col in ("target", "measured", "goal", "met"):
        goals.add_column(col)
    for t in bench.targets(report):
        met = "-" if t.met is None else ("[green]yes[/green]" if t.met else "[red]no[/red]")
        goals.add_row(t.what, t.value, t.goal, met)
    console.print(goals)

    if args.json:
        data = report.to_json()
        data["targets"] = [vars(t) for t in bench.targets(report)]
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
        console.print(f"wrote {args.json}")
    if args.plot:
        bench.plot(report, args.plot)
        console.print(f"wrote {args.plot}")
    return 0


def _decode(
    args: argparse.Namespace, console: Any, backends: tuple[str, ...], skip: tuple[tuple[str, str], ...]
) -> int:
    from rich.table import Table

    from .. import _registry
    from ..bench import StreamRead
    from ..model.bench import PROMPT, decode_speed

    tokens = args.tokens or DEFAULT_TOKENS
    depth = args.depth or DEFAULT_DEPTH
    prefill = args.prefill or DEFAULT_PREFILL
    model = load(args.decode, args.no_mmap)
    hp = model.hyper
    if max(PROMPT) >= hp.vocab:
        raise UsageError(f"--decode: the timing prompt {PROMPT} needs a vocabulary of {max(PROMPT) + 1} or more; "
                         f"{args.decode} has {hp.vocab}")
    check_room(model, len(PROMPT) + tokens, f"--tokens {tokens} (after the {len(PROMPT)}-token prompt)")
    check_room(model, prefill, f"--prefill {prefill}")
    reads: dict[int, StreamRead] = {}

    def stream_once(threads: int) -> float:
        """One streaming read at this thread count (its buffer made once)."""
        if threads not in reads:
            reads[threads] = StreamRead(threads)
        return reads[threads].once()

    rows = []
    for name in backends:
        modes = [m for m in args.mode if (name, m) not in skip]
        # None: the backend's default (REPROSPARSE_THREADS, else all cores); a backend without threads runs once
        backend = _registry.get_backend(name)
        threads = args.threads if args.threads and backend.has_threads else (None,)
        for n_threads in threads:
            with console.status(f"decoding with {name}"):
                # one streaming read per round of steps, at the configurations' thread count
                rows += decode_speed(model, name, modes, ("dense", "sparse"), n_threads, tokens, depths=[depth],
                                     prefill=prefill, stream=stream_once)
    table = Table(title=f"decode: dim {hp.dim}, ff {hp.n_ff}, {hp.n_layer} layers, vocab {hp.vocab}, "
                        f"{weight_type(model.layers[0].gate)}; median of {tokens} tokens after a {len(PROMPT)}-token "
                        f"prompt, modes and FFN kinds side by side; prefill of {prefill} tokens; stream: median "
                        "of one read per round")
    for col in ("backend", "mode", "ffn", "threads", "tokens/s", "mean tokens/s", "MB/token", "GB/s", "stream GB/s",
                "of stream", "s/layer", "s head", f"tokens/s @{depth} layers", "prefill tokens/s"):
        table.add_column(col)
    for r in rows:
        stream = r.stream_gbps or float("nan")
        table.add_row(r.backend, r.mode, r.ffn, "default" if r.threads is None else str(r.threads),
                      f"{r.tokens_per_s:.3g}", f"{r.mean_tokens_per_s:.3g}", f"{r.bytes_per_token / 1e6:.0f}",
                      f"{r.gbps:.1f}", f"{stream:.1f}", f"{r.gbps / stream:.0%}", f"{r.layer_s:.3g}", f"{r.head_s:.3g}",
                      f"{r.tokens_per_s_at[depth]:.3g}", f"{r.prefill_tokens_per_s:.3g}")
    console.print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": [dataclasses.asdict(r) for r in rows]}, f, indent=1)
        console.print(f"wrote {args.json}")
    return 0
