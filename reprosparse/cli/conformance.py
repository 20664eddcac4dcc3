"""`reprosparse conformance`: run the conformance suite against backends and report."""

from __future__ import annotations

import argparse
import os

from . import CommandFailed, UsageError
from ._model_args import check_known
from ._types import output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conformance",
        help="check backends against the spec: bitwise (deterministic) and within the error bound (fast)",
    )
    p.add_argument("--backend", default="all", help="backend name, or 'all' available backends (default)")
    p.add_argument("--mode", choices=("deterministic", "fast", "both"), default="both")
    p.add_argument("--quick", action="store_true", help="skip the LLaMA-sized cases")
    p.add_argument("--case", action="append", metavar="ID", help="run only this case id (repeatable)")
    p.add_argument("--list", action="store_true", help="list the case ids and exit")
    p.add_argument("--json", metavar="PATH", type=output_file, help="also write the results as JSON")
    p.set_defaults(func=run)


def _header() -> dict[str, object]:
    from .. import _platform

    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("REPROSPARSE_")}
    return {**_platform.describe(), "environment": env or "(no REPROSPARSE_* variables set)"}


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from .. import _registry, conformance
    from . import _first_line, cli_console

    console = cli_console()
    if args.list:
        for case in conformance.all_cases(quick=args.quick):
            console.print(case.id, highlight=False)
        return 0
    try:
        cases = [conformance.find(c) for c in args.case] if args.case else conformance.all_cases(quick=args.quick)
    except KeyError as exc:
        raise UsageError(f"--case: {exc.args[0]}") from None

    statuses = _registry.available_backends()
    if args.backend == "all":
        names = [s.name for s in statuses.values() if s.available]
        for s in statuses.values():
            if not s.available:
                console.print(f"[yellow]skipping backend {s.name}: unavailable ({s.reason})[/yellow]")
    else:
        check_known(args.backend, "--backend")
        names = [args.backend]
    try:
        backends = [_registry.get_backend(n) for n in names]
    except _registry.BackendError as exc:
        raise CommandFailed(f"--backend: {_first_line(exc)}") from None
    modes = ["deterministic", "fast"] if args.mode == "both" else [args.mode]

    for key, value in _header().items():
        console.print(f"[dim]{key}:[/dim] {value}", highlight=False)
    console.print(f"backends: {', '.join(names)}; modes: {', '.join(modes)}; {len(cases)} cases")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("conformance", total=len(cases))

        def advance(case: conformance.Case) -> None:
            progress.update(task, advance=1, description=case.id)

        results = conformance.run(backends, modes, cases, progress=advance)

    table = Table(title="conformance")
    for col in ("backend", "mode", "op", "family", "cases", "passed", "worst error / bound", "unconstrained"):
        table.add_column(col, justify="right" if col in ("cases", "passed", "worst error / bound") else "left")
    for row in conformance.summarise(results):
        ok = row.passed == len(row.cases)
        worst = "-" if row.worst is None else f"{row.worst:.3f}"
        table.add_row(
            row.backend, row.mode, row.op, row.family, str(len(row.cases)),
            f"[green]{row.passed_text}[/green]" if ok else f"[red]{row.passed_text}[/red]",
            worst, str(row.free) if row.free else "",
        )
    console.print(table)

    failed = conformance.failures(results)
    for r in failed:
        line = f"[red]FAIL[/red] {r.backend} {r.mode} {r.case.id} [{r.check}]: {r.detail}"
        console.print(line, highlight=False, soft_wrap=True)
        console.print(f"     reproduce: {r.reproduction}", highlight=False, soft_wrap=True)
    if args.json:
        from ..conformance.report import to_json

        to_json(results, args.json, _header())
    line = f"{conformance.independent_passes(results)} passed, {len(failed)} failed"
    if same := conformance.not_independent(results):
        line += f"; {same} not counted: numpy's deterministic mode is the reference (checked against the scalar spec)"
    if refused := sum(r.check == conformance.REFUSES_WEIGHTS for r in results):
        line += f"; {refused} not run: a backend refuses the case's weight type (Backend.weight_types)"
    console.print(line, highlight=False)
    return 1 if failed else 0

