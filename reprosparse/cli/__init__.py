"""The `reprosparse` command: one module per subcommand, each with `register(subparsers)`.

main() is the only place that turns exceptions into messages: every error a user can cause ends in one
line on stderr and exit status 2 (the command line cannot run as given: a bad option value, path or
environment variable, checked before any work) or 1 (the run failed: a corrupt model file, an unavailable
backend, an I/O error).  Anything else is a bug and says so; --debug shows the traceback of any error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, NoReturn

# Each module defines register(subparsers), which adds its parser and sets func(args) -> int.
# Modules are imported only to build the parser; heavy imports stay inside func.
SUBCOMMANDS = ("info", "conformance", "bench", "make_model", "reorder_model", "generate", "audit", "tokenize")


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


class CommandFailed(Exception):
    """The run stopped short of what was asked (exit 1), e.g. generate at the context length."""


class UsageError(Exception):
    """The command line cannot run as given (exit 2); `prog`: the parser that found it (None: the subcommand)."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """Every subcommand's --help shows the defaults; a parse error is one line, not usage + error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _ShowDefaults)
        super().__init__(*args, **kwargs)
        # Accepted before or after the subcommand; SUPPRESS keeps a subcommand from resetting it to False.
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show the traceback of an error instead of one line")

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reprosparse",
        description="Activation-sparse LLM operators that give the same bits everywhere.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _first_line(exc: object) -> str:
    lines = str(exc).strip().splitlines()
    # Multi-line messages (a backend error lists every backend) end their first line with ":".
    return lines[0].rstrip(" :") if lines else type(exc).__name__


def _describe(exc: BaseException) -> tuple[int, str]:
    """Exit status and the one line for an error a user can cause; anything else is a bug."""
    from .._registry import BackendError
    from ..backends import WeightsUnsupported

    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(exc, UsageError):
        return 2, _first_line(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return 1, f"{exc.filename}: {exc.strerror or _first_line(exc)}"
    if isinstance(exc, MemoryError):
        return 1, f"out of memory ({_first_line(exc)})"
    if isinstance(exc, (ValueError, OSError, BackendError, CommandFailed, WeightsUnsupported)):
        return 1, _first_line(exc)
    return 1, f"internal error, a bug: {type(exc).__name__}: {_first_line(exc)} (--debug shows the traceback)"


def _check_settings() -> None:
    """The REPROSPARSE_* variables, checked before any work: every op reads them when not told otherwise."""
    from .. import _config

    try:
        _config.current()
    except ValueError as exc:
        raise UsageError(_first_line(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "reports_settings", False):
            _check_settings()
        return int(args.func(args))
    except BrokenPipeError:
        _quiet_stdout()  # a reader such as `head` left: stop without an error of our own
        return 1
    except (Exception, KeyboardInterrupt) as exc:
        if args is not None and getattr(args, "debug", False):
            raise
        code, line = _describe(exc)
        if isinstance(exc, UsageError) and exc.prog:
            prog = exc.prog
        else:
            prog = "reprosparse" if args is None else f"reprosparse {args.command}"
        print(f"{prog}: error: {line}", file=sys.stderr)
        return code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (e.g. captured by a test)
        pass
