"""Partitioned execution: one model's operators over several executors, with one device's bits.

Every output element of the spec's weight operators is computed whole, in the spec's order, from one
row or one column of a weight matrix:

* ``matvec`` / ``sparse_matvec``: out[t, a] is lane_dot(W[rows[a]], x[t]), one row;
* ``sparse_axpy``: y[t, j] is the spec's block fold over the active rows of column j alone.

So an executor given a range of rows (of matvec's and sparse_matvec's W, and hence of gate, up, the
predictor and every attention and head matrix) or a range of columns (of sparse_axpy's down_t)
computes its output elements exactly as a single device would, and the partition only places them
side by side.  No partial sum ever crosses an executor, so the result is bitwise the single-device
result for every split, share and thread count, and executors may run at the same time.  What moves
between executors are disjoint pieces (the compact h and slices of outputs), never sums to reduce.

Rows are assigned in whole 256-row units (the spec's sparse_axpy block, so an executor holds whole
neuron blocks of gate and up), columns in units of 32 (a GGML Q8_0/Q4_0 block; a quantized
matrix's columns always on whole blocks of its type, 256 for Q6_K).  An executor holds views of its
rows (nothing copied; a GPU uploads only them) and one copy of its down_t columns, in the matrix's
own type.  The runtime's per-token ops (rmsnorm, rope, attention, ...) read no weights and run whole
on the first executor.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from reprosparse.backends import Backend
from reprosparse.reference.quant import Weights, block, take_columns, take_rows
from reprosparse.reference.sparse_axpy import BLOCK

COLUMN_UNIT = 32
#: compute(backend, threads): one executor's slice of an operator's output
Compute = Callable[[Backend, int], np.ndarray]
#: (executor index, first, end, compute): the slice out[:, first:end] and how to compute it
Part = tuple[int, int, int, Compute]


@dataclass(frozen=True)
class Executor:
    """One part of a partition: a backend, its share of the rows and columns, and its thread count
    (None: the thread count each call asks for)."""

    backend: Backend
    share: float
    threads: int | None = None
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.backend.name

    def threads_for(self, threads: int) -> int:
        """Its own thread count, else the one the call asks for."""
        return threads if self.threads is None else self.threads


def parse_spec(spec: str) -> list[tuple[str, float, int | None]]:
    """(backend name, share, threads) of each executor of "NAME[:SHARE][@THREADS],...".

    Shares are relative weights (any non-negative numbers, not all 0); executors without one share
    what the others leave of 1 equally (or get 1 each when the given shares already reach 1)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"partition must be 'NAME[:SHARE][@THREADS],...', got {spec!r}")
    parsed: list[tuple[str, float | None, int | None]] = []
    for part in (p.strip() for p in spec.split(",")):
        name, _, threads_text = part.partition("@")
        name, _, share_text = name.partition(":")
        name = name.strip()
        try:
            share = float(share_text) if share_text.strip() else None
            threads = int(threads_text) if threads_text.strip() else None
        except ValueError:
            share, threads = -1.0, None
        if not name or (share is not None and not (math.isfinite(share) and share >= 0)) or (
            threads is not None and threads < 1
        ):
            raise ValueError(
                f"partition {spec!r}: {part!r} is not NAME[:SHARE][@THREADS] with a finite share >= 0 "
                "and threads >= 1"
            )
        parsed.append((name, share, threads))
    given = sum(s for _, s, _ in parsed if s is not None)
    missing = sum(s is None for _, s, _ in parsed)
    fill = (1.0 - given) / missing if missing and given < 1.0 else 1.0
    shares = [(name, fill if share is None else share, threads) for name, share, threads in parsed]
    if not any(share > 0 for _, share, _ in shares):
        raise ValueError(f"partition {spec!r}: the shares must not all be 0")
    return shares


def parse(spec: str, resolve: Callable[[str], Backend] | None = None) -> Partition:
    """The partition "NAME[:SHARE][@THREADS],..." describes (parse_spec), e.g. "opencl:0.3,cython"
    or "cython:1@1,cython:1@2"; resolve turns a backend name into a backend (default:
    reprosparse.get_backend)."""
    if resolve is None:
        from reprosparse import get_backend

        resolve = get_backend
    return Partition(
        [Executor(resolve(name), share, threads, label=name if threads is None else f"{name}@{threads}")
         for name, share, threads in parse_spec(spec)],
        spec=spec,
    )


def _edges(n: int, unit: int, weights: Sequence[float]) -> list[int]:
    """Boundaries splitting n items, in whole units, in proportion to weights (the last unit may be short)."""
    units = -(-n // unit)
    total = sum(weights)
    edges, running = [0], 0.0
    for w in weights[:-1]:
        running += w
        edges.append(min(n, round(units * running / total) * unit))
    edges.append(n)
    return edges


class Partition(Backend):
    """A backend that splits each weight operator over executors (see the module docstring)."""

    name = "partition"
    has_threads = True

    def __init__(self, executors: Sequence[Executor], *, row_unit: int = BLOCK, column_unit: int = COLUMN_UNIT,
                 spec: str | None = None) -> None:
        executors = list(executors)
        if not executors or not all(isinstance(e, Executor) for e in executors):
            raise TypeError("executors must be a non-empty sequence of Executor")
        for e in executors:
            if not isinstance(e.backend, Backend):
                raise TypeError(f"executor backend must be a reprosparse Backend, got {e.backend!r}")
            if not (isinstance(e.share, int | float) and math.isfinite(e.share) and e.share >= 0):
                raise ValueError(f"executor {e.name!r}: share must be a finite number >= 0, got {e.share!r}")
        if sum(e.share for e in executors) <= 0:
            raise ValueError("executors' shares must not all be 0")
        for what, unit in (("row_unit", row_unit), ("column_unit", column_unit)):
            if not (isinstance(unit, int) and unit >= 1):
                raise ValueError(f"{what} must be an integer >= 1, got {unit!r}")
        self.executors = tuple(executors)
        self.row_unit = row_unit
        self.column_unit = column_unit
        self.spec = spec or ",".join(f"{e.name}:{e.share:g}" for e in executors)
        self._columns: dict[tuple[int, int, int], Weights] = {}
        self._lock = threading.Lock()
        self._pool: tuple[int, ThreadPoolExecutor] | None = None

    # ---- facts ------------------------------------------------------------

    def default_threads(self) -> int:
        return max(e.backend.default_threads() for e in self.executors)

    def refuses(self, mode: str) -> str | None:
        why = [f"{e.name}: {r}" for e in self.executors if (r := e.backend.refuses(mode))]
        return "; ".join(why) or None

    def refuses_weights(self, w: Weights) -> str | None:
        """A partition takes the weight types every executor takes."""
        why = [f"{e.name}: {r}" for e in self.executors if (r := e.backend.refuses_weights(w))]
        return "; ".join(why) or None

    def info(self) -> dict[str, str]:
        total = sum(e.share for e in self.executors)
        return {"executors": ", ".join(
            f"{e.name} ({e.share / total:.0%}{'' if e.threads is None else f', {e.threads} threads'})"
            for e in self.executors
        )}

    @property
    def label(self) -> str:
        """How reports name this partition."""
        return f"partition({self.spec})"

    def __repr__(self) -> str:
        return f"<reprosparse partition {self.spec!r}>"

    # ---- splitting --------------------------------------------------------

    def _parts(self, n: int, unit: int) -> list[tuple[int, int, int]]:
        """(executor index, first, end) of every executor with a non-empty range of n rows or columns."""
        edges = _edges(n, unit, [e.share for e in self.executors])
        return [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(edges)) if b > a]

    def _columns_of(self, W: Weights, first: int, end: int) -> Weights:
        """W[:, first:end] as a read-only C-contiguous copy in W's type, made once while W lives."""
        key = (id(W), first, end)
        with self._lock:
            got = self._columns.get(key)
        if got is None:
            got = take_columns(W, first, end)
            if isinstance(got, np.ndarray):
                got.setflags(write=False)
            with self._lock:
                if key not in self._columns:
                    self._columns[key] = got
                    weakref.finalize(W, self._columns.pop, key, None)
                got = self._columns[key]
        return got

    def _execute(self, out: np.ndarray, parts: list[Part], threads: int) -> np.ndarray:
        """Fills out[:, first:end] with compute(executor, threads) for every part, the parts at the same
        time when there are several (each writes its own slice)."""
        def job(i: int, first: int, end: int, compute: Compute) -> Callable[[], None]:
            e = self.executors[i]

            def run() -> None:
                out[:, first:end] = compute(e.backend, e.threads_for(threads))
            return run

        jobs = [job(*part) for part in parts]
        if len(jobs) <= 1:
            for run in jobs:
                run()
            return out
        with self._lock:  # a pool does not survive fork: a child makes its own
            if self._pool is None or self._pool[0] != os.getpid():
                self._pool = (os.getpid(), ThreadPoolExecutor(len(self.executors), "reprosparse-partition"))
            pool = self._pool[1]
        for future in [pool.submit(run) for run in jobs]:
            future.result()
        return out

    # ---- hooks: parts computed lazily, so that a subclass may compute only its own -----

    def _matvec(self, W: Weights, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        def part(i: int, a: int, b: int) -> Part:
            return i, a, b, lambda be, n: be.matvec(take_rows(W, slice(a, b)), x, mode=mode, threads=n)

        parts = [part(*p) for p in self._parts(W.shape[0], self.row_unit)]
        return self._execute(np.empty((x.shape[0], W.shape[0]), np.float32), parts, threads)

    def _sparse_matvec(
        self, W: Weights, x: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        def part(i: int, a: int, b: int) -> Part:
            first, end = (int(k) for k in np.searchsorted(rows, [a, b]))  # rows are strictly increasing
            own, mine = rows[first:end] - np.int32(a), take_rows(W, slice(a, b))  # a view of W's rows
            return i, first, end, lambda be, n: be.sparse_matvec(mine, x, own, mode=mode, threads=n)

        parts = [q for q in (part(*p) for p in self._parts(W.shape[0], self.row_unit)) if q[2] > q[1]]
        return self._execute(np.empty((x.shape[0], rows.shape[0]), np.float32), parts, threads)

    def _sparse_axpy(
        self, W: Weights, h: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        def part(i: int, a: int, b: int) -> Part:
            return i, a, b, lambda be, n: be.sparse_axpy(self._columns_of(W, a, b), h, rows, mode=mode, threads=n)

        # A quantized matrix's columns are split on whole blocks of its type (Q6_K: 256 columns).
        unit = self.column_unit if isinstance(W, np.ndarray) else math.lcm(self.column_unit, block(W.type))
        parts = [part(*p) for p in self._parts(W.shape[1], unit)]
        return self._execute(np.empty((h.shape[0], W.shape[1]), np.float32), parts, threads)

    # ---- the runtime's per-token ops read no weights: the first executor runs them whole ----
    # Every backend gives their bits in both modes (docs/spec.md §12), so which executor runs them
    # changes nothing; under MPI each rank runs them on the same activations.

    def _first(self, threads: int) -> tuple[Any, int]:
        e = self.executors[0]
        return e.backend, e.threads_for(threads)

    def _rmsnorm(self, x: np.ndarray, weight: np.ndarray, eps: np.float32, mode: str, threads: int) -> np.ndarray:
        backend, n = self._first(threads)
        return backend._rmsnorm(x, weight, eps, mode, n)

    def _rope(self, x: np.ndarray, positions: np.ndarray, base: float, mode: str, threads: int) -> np.ndarray:
        backend, n = self._first(threads)
        return backend._rope(x, positions, base, mode, n)

    def _attention_batch(
        self, q: np.ndarray, k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray, positions: np.ndarray,
        new_k: np.ndarray | None, new_v: np.ndarray | None, mode: str, threads: int,
    ) -> np.ndarray:
        backend, n = self._first(threads)
        return backend._attention_batch(q, k, v, seq, positions, new_k, new_v, mode, n)

    def _softmax(self, x: np.ndarray, lengths: np.ndarray, mode: str, threads: int) -> np.ndarray:
        backend, n = self._first(threads)
        return backend._softmax(x, lengths, mode, n)

    def _argmax(self, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        backend, n = self._first(threads)
        return backend._argmax(x, mode, n)

    def _add(self, a: np.ndarray, b: np.ndarray, mode: str, threads: int) -> np.ndarray:
        backend, n = self._first(threads)
        return backend._add(a, b, mode, n)
