"""The self-test kernels/runtime.cl passes on a device before its runtime ops run natively.

The battery is the conformance suite's runtime cases (conformance/runtime_cases.py)
but its "split" family, whose sizes only matter to thread partitions: every op,
widths with and without a 16-lane tail, t = 0, 1 and 64, grouped-query heads,
several sequences of different lengths, the store of new keys and values, rope
near 2**24 and several bases, float16 norm weights, and every value kind
(subnormal, ±0, ±Inf, NaN, near overflow).  Every result, and the caches after a
store, must equal the reference's bits.

It runs as one job of verify's crash-isolated child (selftest.py hands it over),
named RUNTIME_JOB so that REPROSPARSE_OPENCL_FAULT's filter word "runtime"
selects it; its verdict is cached beside the layouts'.  A failure does not make
the backend unavailable: its runtime ops then run the reference on the host
(same bits, slower), and `info()` says so.  The weight-heavy ops are where the
device's speed matters; refusing them for a light op's sake would lose more than
it protects.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from importlib import metadata, resources
from typing import Any

import numpy as np

from reprosparse.conformance import runtime_cases
from reprosparse.conformance.cases import Case
from reprosparse.conformance.compare import mismatch

from . import runtime
from .programs import source_hash
from .verify import FAULT_ENV, RUNTIME_JOB, _cached, _store, device_identity, run_children


def cases() -> Iterator[Case]:
    return (c for c in runtime_cases.all_cases() if c.family != "split")


def _corrupt(got: np.ndarray) -> np.ndarray:
    """The injected wrong bit: bit 30 of the first element (an index's bit 0 for argmax)."""
    flat = got.reshape(-1).copy()
    if flat.size:
        if flat.dtype == np.float32:
            flat[:1] = (flat[:1].view(np.uint32) ^ np.uint32(1 << 30)).view(np.float32)
        else:
            flat[:1] ^= 1
    return flat.reshape(got.shape)


def _caches_differ(got: dict[str, Any], want: dict[str, Any]) -> str | None:
    """After a store: the caches must hold what the reference's store left."""
    for name in ("k", "v"):
        for s, (g, w) in enumerate(zip(got[name], want[name], strict=True)):
            problem = mismatch(g, w)
            if problem:
                return f"cache {name}[{s}] after the store: {problem}"
    return None


def check(backend: Any, fault: str | None) -> str | None:
    """Runs the battery through the backend's runtime ops; the first failure, or None."""
    for case in cases():
        inputs, reference_inputs = case.inputs(), case.inputs()
        want = runtime_cases.expected(case.op, reference_inputs)
        with np.errstate(all="ignore"):
            got = getattr(backend, case.op)(**inputs)
        if fault == "wrong-bit":
            got = _corrupt(got)
        problem = mismatch(got, want)
        if problem is None and "new_k" in inputs:
            problem = _caches_differ(inputs, reference_inputs)
        if problem is not None:
            return f"{case.id}: {problem}"
    return None


@functools.cache
def _battery_hash() -> str:
    """What the verdict depends on besides the kernels: the host side, this battery, its cases and the child."""
    digest = hashlib.sha256()
    files = [(__package__, "runtime.py"), (__package__, "runtime_selftest.py"), (__package__, "selftest.py"),
             ("reprosparse.conformance", "runtime_cases.py"), ("reprosparse.conformance", "cases.py")]
    for package, name in files:
        digest.update(resources.files(package).joinpath(name).read_bytes())
    return digest.hexdigest()


def verdict(device: Any, where: tuple[int, int], problem: str | None) -> str | None:
    """None when the runtime kernels may run on this device, else why not.

    problem: why the device cannot give the spec's bits at all (deterministic_problem), or None."""
    why = problem or runtime.unsupported(device)
    if why:
        return why
    faults = os.environ.get(FAULT_ENV, "")
    key = {
        **device_identity(device), "reprosparse": metadata.version("reprosparse"), "source": source_hash("runtime.cl"),
        "selftest": _battery_hash(), "job": list(RUNTIME_JOB), "options": list(runtime.OPTIONS), "faults": faults,
    }
    got = _cached(key)
    if got is None:
        got = run_children(where, device.name.strip(), [RUNTIME_JOB])[RUNTIME_JOB]
        if got.cache:
            _store(key, got)
    return None if got.ok else f"self-test failed: {got.reason}"
