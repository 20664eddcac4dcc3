"""`reprosparse info`: backends, availability, threads, CPU features, subnormal handling."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show backends, their availability, threads and CPU facts")
    # info shows a bad REPROSPARSE_* variable in its table (then fails) instead of refusing to start
    p.set_defaults(func=run, reports_settings=True)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .. import _config, _platform, _registry
    from . import UsageError, _first_line, cli_console

    console = cli_console()
    facts = Table(title="this process", show_header=False)
    for key, value in _platform.describe().items():
        facts.add_row(key, value)
    problem: UsageError | None = None
    try:
        settings = _config.current()
        threads = settings.threads or "default"
        facts.add_row("settings", f"backend={settings.backend} mode={settings.mode} threads={threads}")
    except ValueError as exc:
        problem = UsageError(_first_line(exc))
        facts.add_row("settings", f"[red]invalid: {problem}[/red]")
    console.print(facts)

    table = Table(title="backends")
    for col in ("backend", "status", "priority", "threads", "details"):
        table.add_column(col)
    statuses = _registry.available_backends()
    for s in statuses.values():
        if not s.available:
            table.add_row(s.name, "[red]unavailable[/red]", "", "", s.reason or "")
            continue
        b = _registry.get_backend(s.name)
        threads = f"default {b.default_threads()}" if b.has_threads else "single"
        details = "\n".join(f"{k}: {v}" for k, v in b.info().items())
        status = "[green]available[/green]"
        if s.refused:
            status += "".join(f"\n[red]refuses {mode} mode[/red]" for mode in s.refused)
        table.add_row(s.name, status, str(s.priority), threads, details)
    console.print(table)
    if problem is not None:
        raise problem  # auto's choice depends on REPROSPARSE_MODE
    try:
        console.print(f"auto selects: [bold]{_registry.get_backend('auto').name}[/bold]")
    except _registry.BackendError as exc:
        console.print(f"auto selects nothing: {exc}")
    return 0
