"""The self-test a kernel variant passes on a device before it runs for anyone (verify.py).

A small battery of spec cases, every op through every program a (mode,
layout, weight type) builds: token counts 1, 3 and 9 (the programs for 1, 4
and 8 tokens per work-item, with partial tails), widths 1, 16 and 33 (tail
only, whole 16-lane chunks only, both; columns likewise), rows on both sides
of the 256-neuron block edges, subnormal products, ±0, ±Inf and NaN in
weights, activations and h.  Quantized weights have widths of one and two
blocks (Q8_0, Q4_0: 32 and 64, both nibble halves of a block; Q6_K: 256 and
512, every sub-block and both halves of a block) and raw blocks of every
kind the conformance suite draws: subnormal, signed-zero, Inf and NaN
scales, every int8, nibble and 6-bit code, int8 sub-block scales.  Deterministic results must equal the reference
bit for bit, fast ones lie within reference.bounds.  The runtime ops' kernels
are one more job, verify.RUNTIME_JOB, with their own battery (runtime_selftest.py).

Run as ``python -m reprosparse.backends.opencl.selftest`` with a JSON request
on stdin (verify.run_children); it reports each job on stdout as it starts
and ends, so a crash names the job that caused it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np

from reprosparse import reference as ref
from reprosparse.conformance.compare import mismatch
from reprosparse.conformance.quant_cases import QUANT_KINDS, quantized
from reprosparse.reference import bounds
from reprosparse.reference.quant import TYPES as QUANT_TYPES
from reprosparse.reference.quant import Weights, block

from .verify import FAULT_ENV, MARK, RUNTIME_JOB, Plan, fault_for, parse_faults

N = 520
EDGE_ROWS = np.array([0, 1, 15, 255, 256, 257, 511, 512, 519], np.int32)
TOKEN_COUNTS = (1, 3, 9)
WIDTHS = (1, 16, 33)

Case = tuple[str, str, tuple[Weights, ...]]  # (op, description, arguments: weights, activations, rows, masks)


def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: type, specials: bool) -> np.ndarray:
    """Normal values over a wide exponent range, a few tiny ones whose products are subnormal,
    and with `specials` also ±0, ±Inf and NaN."""
    v = rng.standard_normal(shape) * np.exp2(rng.integers(-8, 8, shape))
    z = rng.random(shape)
    tiny = 2.0**-24 if dtype == np.float16 else 2.0**-70  # a float16 subnormal; 2^-70 squared is subnormal
    v = np.where(z < 0.1, np.round(v * 4) * tiny, v)
    if specials:
        for lo, special in ((0.1, np.nan), (0.12, np.inf), (0.14, -np.inf), (0.16, -0.0), (0.2, 0.0)):
            v = np.where((z >= lo) & (z < lo + 0.02), special, v)
    return v.astype(dtype)


def _weights(rng: np.random.Generator, d: int, wtype: str, specials: bool, kind: str) -> Weights:
    if wtype in QUANT_TYPES:
        return quantized(rng, (N, d), kind, wtype)
    return _values(rng, (N, d), np.dtype(wtype).type, specials)


def cases(wtype: str) -> Iterator[Case]:
    """The battery for weights of type `wtype`."""
    rng = np.random.default_rng(20261127)
    kinds = itertools.cycle(QUANT_KINDS)  # 12 quantized (t, d) pairs: each kind of block at least once
    # a quantized type's widths are one and two of its blocks
    widths = (block(wtype), 2 * block(wtype)) if wtype in QUANT_TYPES else WIDTHS
    for specials in (False, True):
        for t in TOKEN_COUNTS:
            for d in widths:
                kind = next(kinds)
                what = f"t={t} d={d}" + (" with ±0, ±Inf, NaN" if specials else "")
                if wtype in QUANT_TYPES:
                    what += f", {kind} blocks"
                W, gate, up = (_weights(rng, d, wtype, specials, kind) for _ in range(3))
                x = _values(rng, (t, d), np.float32, specials)
                h = _values(rng, (t, EDGE_ROWS.size), np.float32, specials)
                mask = rng.random((t, N)) < 0.2
                mask[:, EDGE_ROWS] = True
                mask[0, 256] = False  # a neuron another token of the batch selects
                yield "matvec", what, (W, x)
                yield "sparse_matvec", what, (W, x, EDGE_ROWS)
                yield "sparse_axpy", what, (W, h, EDGE_ROWS)
                yield "sparse_ffn", what, (x, gate, up, W, mask)


def _corrupt(got: np.ndarray) -> np.ndarray:
    """The injected wrong bit: bit 30 of the first finite element, far outside any fast-mode bound."""
    flat = got.reshape(-1).copy()
    finite = np.flatnonzero(np.isfinite(flat))
    if finite.size:
        flat[finite[:1]] = (flat[finite[:1]].view(np.uint32) ^ np.uint32(1 << 30)).view(np.float32)
    return flat.reshape(got.shape)


def check(run: Callable[..., np.ndarray], mode: str, wtype: str, fault: str | None) -> str | None:
    """Runs the battery through run(op, *args, mode=mode); the first failure, or None."""
    for op, what, args in cases(wtype):
        with np.errstate(all="ignore"):
            got = run(op, *args, mode=mode)
            if fault == "wrong-bit":
                got = _corrupt(got)
            if mode == "deterministic":
                problem = mismatch(got, getattr(ref, op)(*args))
            else:
                outside = ~getattr(bounds, op)(*args).contains(got)
                problem = f"{int(outside.sum())} element(s) outside the fast-mode bound" if outside.any() else None
        if problem is not None:
            return f"{op} ({what}, {wtype} weights): {problem}"
    return None


def main() -> int:
    import pyopencl as cl

    from .backend import OpenCLBackend

    request = json.load(sys.stdin)
    platforms = cl.get_platforms()
    where = (request["platform"], request["device"])
    device = platforms[where[0]].get_devices()[where[1]]
    if device.name.strip() != request["device_name"]:
        print(f"device {where} is {device.name.strip()!r}, not {request['device_name']!r}", file=sys.stderr)
        return 2
    faults = parse_faults(os.environ.get(FAULT_ENV))
    for mode, layout, wtype in request["jobs"]:
        job = (mode, layout, wtype)
        print(MARK + json.dumps({"job": job}), flush=True)
        fault = fault_for(job, faults)
        if fault == "crash":
            print("reprosparse: injected fault: the driver aborts", file=sys.stderr, flush=True)
            os.abort()
        try:  # a driver error (context, build, launch) is a failed self-test, not a crash of the child
            if job == RUNTIME_JOB:
                from . import runtime_selftest

                problem = runtime_selftest.check(OpenCLBackend(platforms, *where, Plan({}, runtime=None)), fault)
            else:
                backend = OpenCLBackend(platforms, *where, Plan({(mode, wtype): layout}))
                problem = check(lambda op, *args, mode, b=backend: getattr(b, op)(*args, mode=mode), mode, wtype,
                                fault)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        print(MARK + json.dumps({"job": job, "ok": problem is None, "reason": problem or ""}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
