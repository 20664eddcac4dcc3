"""kernels/ops.cl built as one program per variant: (mode, layout, weight type, tokens).

pyopencl keeps its own on-disk cache of binaries; the in-memory cache here
also skips pyopencl's hashing and lookup, which costs more than a small kernel.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import pyopencl as cl

from reprosparse.reference.quant import Weights, weight_type

#: The layouts of kernels/ops.cl, by the width of their vectors (0: none).
LAYOUTS = {"grouped": 0, "vector8": 8, "vector4": 4}
#: Tokens per work-item the host may ask for (backend.tokens_per_item).
TOKEN_TILES = (1, 4, 8)
ROWS = 4  # rows per work-group of the grouped dot kernels
#: The weight types of kernels/ops.cl, by their RS_WTYPE; a matrix of any other type is refused.
WEIGHT_TYPES = {"float32": 0, "float16": 1, "q8_0": 2, "q4_0": 3, "q6_k": 4}
#: Every program must hold these; a build that "succeeds" without them is a driver fault.
KERNELS = frozenset({"lane_dot", "gated_lane_dot", "axpy_partials", "axpy_fold"})
#: Options that would allow flushing subnormals or fusing/approximating
#: arithmetic; no build passes them (fast mode neither: they may flush subnormals).
FORBIDDEN_OPTIONS = (
    "-cl-fast-relaxed-math", "-cl-mad-enable", "-cl-unsafe-math-optimizations",
    "-cl-denorms-are-zero", "-cl-finite-math-only", "-cl-no-signed-zeros",
)


class OpenCLError(RuntimeError):
    """An OpenCL build, allocation or run failed; the message names the device."""


@dataclass(frozen=True)
class Variant:
    """One build of kernels/ops.cl."""

    mode: str
    layout: str
    wtype: str  # a key of WEIGHT_TYPES
    tokens: int

    def options(self) -> tuple[str, ...]:
        return (
            f"-DRS_FAST={int(self.mode == 'fast')}", f"-DRS_VW={LAYOUTS[self.layout]}",
            f"-DRS_WTYPE={WEIGHT_TYPES[self.wtype]}", f"-DTOKENS={self.tokens}", f"-DROWS={ROWS}",
        )


@cache
def source(name: str = "ops.cl") -> str:
    """The text of kernels/`name`."""
    return resources.files(__package__).joinpath("kernels", name).read_text()


@cache
def source_hash(name: str = "ops.cl") -> str:
    return hashlib.sha256(source(name).encode()).hexdigest()


#: The kernels index with 32-bit ints.
INT_MAX = 2**31 - 1


def check_size(what: str, n: int) -> None:
    """ValueError if `what`'s n elements are more than the kernels' int indexes reach."""
    if n > INT_MAX:
        raise ValueError(f"the opencl backend indexes with 32-bit ints; {what} has {n} elements")


def one_type(*ws: Weights) -> bool:
    """Whether the matrices share a weight type: the fused FFN kernels take one."""
    return len({weight_type(w) for w in ws}) == 1


def compile_program(context: cl.Context, device: cl.Device, name: str, options: Sequence[str],
                    kernels: frozenset[str]) -> cl.Program:
    """kernels/`name` built with `options`; OpenCLError if the build fails or lacks one of `kernels`."""
    bad = [o for o in options if o in FORBIDDEN_OPTIONS]
    if bad:
        raise ValueError(f"build options {bad} may flush subnormals or change rounding")
    where = f"{name}{' with ' if options else ''}{' '.join(options)} for OpenCL device {device.name.strip()!r}"
    try:
        program = cl.Program(context, source(name)).build(options=list(options), devices=[device])
    except cl.Error as exc:
        raise OpenCLError(f"building {where} failed: {exc}") from exc
    missing = kernels - set(filter(None, program.kernel_names.split(";")))
    if missing:
        raise OpenCLError(f"building {where} reported success but the program lacks {sorted(missing)}")
    return program


def build(context: cl.Context, device: cl.Device, variant: Variant) -> cl.Program:
    """ops.cl built for `variant`; OpenCLError if the build fails or lacks a kernel."""
    return compile_program(context, device, "ops.cl", variant.options(), KERNELS)


class ProgramCache:
    """Built programs of one context, one per variant."""

    def __init__(self, context: cl.Context, device: cl.Device) -> None:
        self._context = context
        self._device = device
        self._programs: dict[Variant, cl.Program] = {}
        self._lock = threading.Lock()

    def get(self, variant: Variant) -> cl.Program:
        with self._lock:
            program = self._programs.get(variant)
            if program is None:
                program = self._programs[variant] = build(self._context, self._device, variant)
            return program
