"""The `reprosparse` command: one module per subcommand, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

# Each module defines register(subparsers), which adds its parser and sets func(args) -> int.
# Modules are imported only to build the parser; heavy imports stay inside func.
SUBCOMMANDS = ("info", "conformance", "make_model", "generate", "audit", "bench_decode")


def cli_console() -> Any:
    """A rich console that stays wide enough for tables when output is piped (CI logs)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160, soft_wrap=True)
    return console


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reprosparse",
        description="Activation-sparse LLM operators that give the same bits everywhere.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
