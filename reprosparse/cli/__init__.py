"""The `reprosparse` command: one module per subcommand, each with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

# Each module defines register(subparsers), which adds its parser and sets func(args) -> int.
# Modules are imported only to build the parser; heavy imports stay inside func.
SUBCOMMANDS = ("info", "conformance", "bench", "make_model", "generate", "audit")


def cli_console() -> Any:
    """A rich console that stays wide enough for tables when output is piped (CI logs)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160, soft_wrap=True)
    return console


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or False (their help says what omitting means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Every subcommand's --help shows the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _ShowDefaults)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reprosparse",
        description="Activation-sparse LLM operators that give the same bits everywhere.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
