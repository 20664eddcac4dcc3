"""argparse types: each checks one option's value while parsing, so a bad value is a usage error (exit 2)
before any work starts, and the message names the option (argparse prefixes "argument --NAME:")."""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import stat
import tempfile

from .. import _config

SEED_LIMIT = 2**64  # sampling keys numpy's Philox with the seed; one bound for every --seed


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def thread_count(text: str) -> int:
    """A thread count the settings accept (_config.check_threads), refused while parsing."""
    value = positive_int(text)
    if value > _config.MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {_config.MAX_THREADS}, got {value}")
    return value


def thread_counts(text: str) -> tuple[int, ...]:
    return tuple(thread_count(v) for v in names(text))


def seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**64), got {value}")
    return value


def temperature(text: str) -> float:
    """0 (greedy) or a finite temperature; sampling's rule is total for every one (spec §12 sample: a
    temperature so small that 1/T overflows float32 gives the greedy choice)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def names(text: str) -> tuple[str, ...]:
    """A non-empty comma-separated list (empty items are ignored)."""
    got = tuple(v.strip() for v in text.split(",") if v.strip())
    if not got:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return got


def partition_spec(text: str) -> str:
    """A partition "NAME[:SHARE][@THREADS],..." of registered backend names (built once the mode is known)."""
    from ..partition import parse_spec

    try:
        for name, _, _ in parse_spec(text):
            _config.check_backend_name(name, "a partition's executor")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def partition_specs(text: str) -> tuple[str, ...]:
    """Partitions separated by ';'."""
    got = tuple(partition_spec(spec) for spec in text.split(";") if spec.strip())
    if not got:
        raise argparse.ArgumentTypeError(f"expected partitions separated by ';', got {text!r}")
    return got


def modes(text: str) -> tuple[str, ...]:
    got = names(text)
    for mode in got:
        if mode not in _config.MODES:
            raise argparse.ArgumentTypeError(f"modes are {', '.join(_config.MODES)}; got {mode!r}")
    return got


def _readable(text: str, what: str) -> str:
    """An existing, readable regular file: a directory or FIFO would fail late or block forever."""
    try:
        st = os.stat(text)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot open {text!r}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular file")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not readable")
    return text


def model_file(text: str) -> str:
    return _readable(text, "a model file")


def input_file(text: str) -> str:
    return _readable(text, "a file")


def output_file(text: str) -> str:
    """A path the command can write at the end of its run, checked now so that no run is lost to it."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory")
    if os.path.exists(text):
        if stat.S_ISFIFO(os.stat(text).st_mode) or stat.S_ISSOCK(os.stat(text).st_mode):
            raise argparse.ArgumentTypeError(f"{text!r} is not a regular file")  # writing it could block
        if not os.access(text, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text!r} is not writable")
        return text
    parent = os.path.dirname(text) or "."
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: directory {parent!r} does not exist")
    try:  # os.access does not see read-only file systems or ACLs the way creating a file does
        with tempfile.NamedTemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write in {parent!r}: {exc.strerror}") from None
    return text


def png_file(text: str) -> str:
    """An output_file, and matplotlib must be installed to draw it."""
    if importlib.util.find_spec("matplotlib") is None:
        raise argparse.ArgumentTypeError("needs matplotlib, which is not installed (pip install matplotlib)")
    return output_file(text)
