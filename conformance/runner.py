"""Run conformance cases against any backend and say what passed.

Deterministic mode: the result must have the reference's bits, again on a
repeated call, for every thread count of THREAD_SWEEP (threaded backends),
for each token computed alone instead of in its batch, and (sparse_ffn) with a
mask that covers every nonzero neuron it must equal dense_ffn.  Fast mode:
every element must lie inside the spec's error bound (reference.bounds).
Threaded backends are also bound-checked in fast mode at every thread count of
THREAD_SWEEP, where a lost update would show.  The runtime's per-token ops
(runtime_cases.py) have no fast variant: in both modes they get the
deterministic checks.  decoder_layer (layer_cases.py) is compared whole,
its caches included, in deterministic mode; fast mode has no bound for a
whole layer, so its cases give no result there (not a pass).  Every failing
result carries a command that reproduces it.

The numpy backend's deterministic mode runs the reference's own kernels, so
comparing it with the reference (or with itself again) proves nothing: that
comparison is reported as "is the reference" and counted as no pass.  Its
batch ("alone") and sparse=dense checks still run: they are properties of the
reference, not self-comparisons.  The reference itself is checked against an
independent scalar transcription of the spec by the test suite
(tests/test_reference_vs_spec.py, tests/test_golden.py).
"""

from __future__ import annotations

import os
import shlex
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from reprosparse import reference
from reprosparse.backends import Backend
from reprosparse.backends.numpy_backend import NumpyBackend
from reprosparse.reference import bounds
from reprosparse.reference.relu import relu

from . import layer_cases, runtime_cases
from .cases import Case
from .compare import mismatch

THREAD_SWEEP = (1, 2, 3, 4, 7, 8)
# arguments whose first axis is the token (the runtime ops' q, positions, ... included)
BATCHED = ("x", "h", "mask", "q", "positions", "lengths", "seq", "a", "b", "new_k", "new_v")
WEIGHTS = ("W", "fc1", "fc2", "gate", "up", "down_t")  # arguments that are weight matrices


@dataclass
class Result:
    backend: str
    mode: str
    case: Case
    check: str
    passed: bool
    detail: str = ""
    #: largest |error| / bound over the bounded elements (fast mode)
    worst: float | None = None
    #: elements the bound leaves unconstrained (fast mode)
    free: int = 0
    #: False for the "is the reference" marker: a check that would compare the reference with itself
    independent: bool = True

    @property
    def reproduction(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("REPROSPARSE_"))
        cmd = (
            f"reprosparse conformance --backend {self.backend} --mode {self.mode} "
            f"--case {shlex.quote(self.case.id)}"
        )
        return f"{env} {cmd}".strip()


@dataclass
class Expected:
    """What one case must produce, computed once and shared by every backend and mode."""

    case: Case
    inputs: dict[str, Any]
    reference: np.ndarray
    _bound: Any = None

    @classmethod
    def of(cls, case: Case) -> Expected:
        inputs = case.inputs()
        if case.op in runtime_cases.OPS:
            return cls(case, inputs, runtime_cases.expected(case.op, _fresh(inputs)))
        if case.op == layer_cases.OP:
            return cls(case, inputs, layer_cases.expected(_fresh(inputs)))
        return cls(case, inputs, getattr(reference, case.op)(**inputs))

    def allowed(self, got: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(allowed?, fraction of bound used, unconstrained?) per element of a fast result."""
        if self.case.op == "predict":
            return bounds.predict_allows(**self.inputs, got=got), None, None
        if self._bound is None:
            self._bound = getattr(bounds, self.case.op)(**self.inputs)
        b = self._bound
        shape = self.reference.shape
        return (
            b.contains(got.reshape(b.centre.shape)).reshape(shape),
            b.used(got.reshape(b.centre.shape)),
            b.kind == bounds.FREE,
        )


IS_THE_REFERENCE = "is the reference"
#: the check of a case whose weight type the backend refuses (Backend.weight_types): no result to compare
REFUSES_WEIGHTS = "refuses the weights"


def is_the_reference(backend: Backend, mode: str, op: str = "") -> bool:
    """Whether `backend` in `mode` computes `op` with the reference's own code.

    The exact type, not a flag a backend could set: a subclass may override any hook.
    The numpy backend runs the runtime ops' reference hooks in both modes.
    """
    return (mode == "deterministic" or op in runtime_cases.OPS) and type(backend) is NumpyBackend


def checked_in(op: str, mode: str) -> bool:
    """Whether `op`'s cases have checks in `mode`: not decoder_layer in fast mode, which has no bound for a
    whole layer (its operators' bounds are checked on their own cases)."""
    return not (mode == "fast" and op == layer_cases.OP)


def _fresh(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs with copies of the KV caches an op writes: every call starts from the case's caches, so
    a backend that attends before it stores cannot read the rows an earlier call stored."""
    if isinstance(inputs.get("k"), list):
        return {**inputs, "k": [a.copy() for a in inputs["k"]], "v": [a.copy() for a in inputs["v"]]}
    return inputs


def _call(backend: Backend, op: str, inputs: dict[str, Any], mode: str, threads: int | None = None) -> Any:
    inputs = _fresh(inputs)
    got = getattr(backend, op)(**inputs, mode=mode, threads=threads)
    return layer_cases.packed(got, inputs) if op == layer_cases.OP else got


def _guard(make: Callable[[], Result], fail: Callable[[str], Result]) -> Result:
    """A backend that raises fails its check; it does not stop the suite."""
    try:
        return make()
    except Exception as exc:
        return fail(f"raised {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}")


def check_case(backend: Backend, mode: str, exp: Expected) -> Iterator[Result]:
    case, inputs = exp.case, exp.inputs
    refused = [why for k, v in inputs.items() if k in WEIGHTS and (why := backend.refuses_weights(v)) is not None]
    if refused:
        yield Result(backend.name, mode, case, REFUSES_WEIGHTS, True, refused[0], independent=False)
        return

    def result(check: str, detail: str | None, **extra: Any) -> Result:
        return Result(backend.name, mode, case, check, detail is None, detail or "", **extra)

    def bitwise(check: str, compute: Callable[[], Any], want: np.ndarray) -> Result:
        return _guard(lambda: result(check, mismatch(compute(), want)), lambda why: result(check, why))

    if not checked_in(case.op, mode):
        return
    # The runtime ops have no fast variant (spec §12): fast mode must give their deterministic bits.
    if mode == "fast" and case.op not in runtime_cases.OPS:
        # Thread counts matter in fast mode too: a race shows up as an element outside the bound.
        for n in (None, *THREAD_SWEEP) if backend.has_threads else (None,):
            check = "bound" if n is None else f"bound threads={n}"
            yield _guard(partial(_fast, backend, exp, partial(result, check), n), partial(result, check))
        return

    if is_the_reference(backend, mode, case.op):
        yield Result(backend.name, mode, case, IS_THE_REFERENCE, True, independent=False)
    else:
        yield bitwise("reference", partial(_call, backend, case.op, inputs, mode), exp.reference)
        yield bitwise("repeat", partial(_call, backend, case.op, inputs, mode), exp.reference)
    if backend.has_threads:
        for n in THREAD_SWEEP:
            yield bitwise(f"threads={n}", partial(_call, backend, case.op, inputs, mode, n), exp.reference)
    x = next((inputs[k] for k in ("x", "h", "q", "a") if k in inputs), None)
    # A row alone is not a property of a step that stores keys: a row reads what the batch's other rows stored.
    stores = case.op == layer_cases.OP or inputs.get("new_k") is not None
    if x is not None and x.ndim >= 2 and x.shape[0] >= 2 and not stores:
        for ti in sorted({0, x.shape[0] // 2, x.shape[0] - 1}):
            alone = {k: (v[ti : ti + 1] if k in BATCHED else v) for k, v in inputs.items()}
            yield bitwise(f"alone[{ti}]", partial(_call, backend, case.op, alone, mode), exp.reference[ti : ti + 1])
    if case.op == "sparse_ffn":
        yield _guard(lambda: _sparse_equals_dense(backend, exp, result), lambda why: result("sparse=dense", why))


def _fast(backend: Backend, exp: Expected, result: Callable[..., Result], threads: int | None) -> Result:
    got = _call(backend, exp.case.op, exp.inputs, "fast", threads)
    if not isinstance(got, np.ndarray) or got.dtype != exp.reference.dtype or got.shape != exp.reference.shape:
        return result(mismatch(got, exp.reference))
    ok, used, free = exp.allowed(got)
    worst = float(np.max(used, initial=0.0)) if used is not None else None
    nfree = int(free.sum()) if free is not None else 0
    if ok.all():
        return result(None, worst=worst, free=nfree)
    at = tuple(np.argwhere(~ok)[0])
    detail = f"{int((~ok).sum())} of {ok.size} elements outside the bound; first at {list(at)}: got {got[at]!r}"
    if exp.case.op != "predict":
        b = exp._bound
        flat = np.ravel_multi_index(at, got.shape)
        kind = bounds.KIND_NAMES[b.kind.flat[flat]]
        detail += f", centre {b.centre.flat[flat]!r}, radius {b.radius.flat[flat]!r}, kind {kind}"
    return result(detail, worst=worst, free=nfree)


def _sparse_equals_dense(backend: Backend, exp: Expected, result: Callable[..., Result]) -> Result:
    """A mask that covers every neuron with nonzero h gives dense_ffn's bits."""
    x, gate, up, down_t = (exp.inputs[k] for k in ("x", "gate", "up", "down_t"))
    with np.errstate(all="ignore"):
        h = relu(reference.matvec(gate, x)) * reference.matvec(up, x)
    cover = (h != 0) | exp.inputs["mask"]  # plus the case's own extra neurons
    dense = backend.dense_ffn(x, gate, up, down_t, mode="deterministic")
    sparse = backend.sparse_ffn(x, gate, up, down_t, cover, mode="deterministic")
    return result("sparse=dense", mismatch(sparse, dense))


def run(
    backends: Iterable[Backend],
    modes: Iterable[str],
    cases: Iterable[Case],
    progress: Callable[[Case], None] | None = None,
) -> list[Result]:
    """Every check of every case for every backend and mode, case by case."""
    backends, modes = list(backends), list(modes)
    results: list[Result] = []
    for case in cases:
        exp = Expected.of(case)
        for backend in backends:
            for mode in modes:
                results.extend(check_case(backend, mode, exp))
        if progress:
            progress(case)
    return results
