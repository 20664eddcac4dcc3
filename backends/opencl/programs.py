"""The .cl sources of this package, built once per (device, source, options).

pyopencl keeps its own on-disk cache of binaries; this in-memory cache also
skips pyopencl's hashing and lookup, which costs more than a small kernel.
"""

from __future__ import annotations

import hashlib
import threading
from functools import cache
from importlib import resources

import pyopencl as cl

#: Options that would allow flushing subnormals or fusing/approximating
#: arithmetic; deterministic builds never pass them (and fast ones neither,
#: since they may flush subnormals).
FORBIDDEN_OPTIONS = (
    "-cl-fast-relaxed-math", "-cl-mad-enable", "-cl-unsafe-math-optimizations",
    "-cl-denorms-are-zero", "-cl-finite-math-only", "-cl-no-signed-zeros",
)


class OpenCLError(RuntimeError):
    """An OpenCL build or run failed; the message names the kernel and the device."""


@cache
def source(name: str) -> str:
    """The text of kernels/<name>.cl."""
    return resources.files(__package__).joinpath("kernels", f"{name}.cl").read_text()


def build_options(*, half: bool, tokens: int, rows: int) -> tuple[str, ...]:
    options = [f"-DTOKENS={tokens}", f"-DROWS={rows}"]
    if half:
        options.append("-DWEIGHT_HALF")
    return tuple(options)


class ProgramCache:
    """Built programs of one context, keyed on device, source hash and options."""

    def __init__(self, context: cl.Context, device: cl.Device) -> None:
        self._context = context
        self._device = device
        self._programs: dict[tuple[int, str, tuple[str, ...]], cl.Program] = {}
        self._lock = threading.Lock()

    def get(self, name: str, options: tuple[str, ...]) -> cl.Program:
        bad = [o for o in options if o in FORBIDDEN_OPTIONS]
        if bad:
            raise ValueError(f"build options {bad} may flush subnormals or change rounding")
        text = source(name)
        key = (self._device.int_ptr, hashlib.sha256(text.encode()).hexdigest(), options)
        with self._lock:
            program = self._programs.get(key)
            if program is None:
                try:
                    program = cl.Program(self._context, text).build(
                        options=list(options), devices=[self._device]
                    )
                except cl.Error as exc:
                    raise OpenCLError(
                        f"building {name}.cl with {' '.join(options)} for OpenCL device "
                        f"{self._device.name!r} failed: {exc}"
                    ) from exc
                self._programs[key] = program
            return program
