"""The cython backend: C kernels with OpenMP threads and run-time ISA choice.

The kernels live in backends/cython/csrc and are built by setup.py into
`reprosparse.backends._cython_kernels`.  Deterministic mode follows the spec's
order exactly on every ISA and thread count; fast mode uses FMA.

REPROSPARSE_CYTHON_ISA=scalar|sse2|avx2|avx512, in any case (or
`CythonBackend(isa=...)`), pins the kernel variant; by default the widest one
the CPU runs is used.  An unknown name is a BackendConfigError wherever the
backend would load; a known one this CPU or build lacks makes it unavailable.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from reprosparse import _platform
from reprosparse.reference.quant import WEIGHT_TYPES, Weights

from ._base import Backend, BackendConfigError, BackendUnavailable

ISA_ENV = "REPROSPARSE_CYTHON_ISA"

# GNU OpenMP's worker threads do not survive fork(): a child forked after its
# parent ran a parallel region waits forever for them in its next one.  So a
# child forked (multiprocessing's default on Linux) after this process started
# threads runs every call on one thread, which the kernels run without entering
# OpenMP at all (csrc/dispatch.c, run_pieces).  Threads never change the bits.
# A process that never ran threads here (e.g. a forkserver) forks children that
# keep them.
_threads_started = False
_forked_after_threads = False


def _after_fork_in_child() -> None:
    global _forked_after_threads
    _forked_after_threads = _threads_started


os.register_at_fork(after_in_child=_after_fork_in_child)


def _kernels() -> ModuleType:
    try:
        from . import _cython_kernels
    except ImportError as exc:
        raise BackendUnavailable(
            f"the compiled extension is missing ({exc}); reinstall reprosparse from source with a C compiler"
        ) from None
    return _cython_kernels


class CythonBackend(Backend):
    name = "cython"
    priority = 30
    has_threads = True
    weight_types = WEIGHT_TYPES  # Q8_0/Q4_0/Q6_K dequantized in registers (csrc/rs_quant_impl.h)
    native_row_checks = True  # rs_dot_jobs and rs_axpy refuse bad rows before reading (csrc/dispatch.c)

    def __init__(self, isa: str | None = None) -> None:
        self._k = _kernels()
        source, wanted = "isa", isa
        if wanted is None:
            source, wanted = ISA_ENV, os.environ.get(ISA_ENV, "").strip() or self._k.BEST
        if wanted.lower() not in self._k.ISAS:
            # A typo is a configuration error, not "unavailable": auto must not quietly pick another backend.
            raise BackendConfigError(
                f"{source} must be one of {', '.join(self._k.ISAS)} (any case); got {wanted!r}"
            )
        wanted = wanted.lower()
        if wanted not in self._k.SUPPORTED:
            raise BackendUnavailable(
                f"{source}={wanted!r} is not usable here (CPU and build support: {', '.join(self._k.SUPPORTED)})"
            )
        #: the kernel variant this instance runs
        self.isa: str = wanted

    def default_threads(self) -> int:
        if _forked_after_threads:
            return 1
        # All cores we may run on, unless OMP_NUM_THREADS or threadpoolctl lowered OpenMP's limit.
        return max(1, min(_platform.cpu_count(), self._k.max_threads()))

    def _team(self, threads: int) -> int:
        """The thread count a call runs on in this process (`threads` is checked: 1 to _config.MAX_THREADS)."""
        global _threads_started
        if threads == 1:
            return 1
        if _forked_after_threads:
            return 1
        _threads_started = True  # before the call: a fork from another thread during it is covered too
        return threads

    def info(self) -> dict[str, str]:
        k = self._k
        openmp = "no: built without it, one thread"
        if k.OPENMP_ENABLED:
            openmp = f"yes (up to {k.max_threads()} threads)"
        if _forked_after_threads:
            openmp += "; one thread in this process, forked after its parent ran threads"
        return {
            "OpenMP": openmp,
            "ISA": f"{self.isa} (compiled: {' '.join(k.COMPILED)}; this CPU: {' '.join(k.SUPPORTED)})",
            "compiler": k.COMPILER,
        }

    def _matvec(self, W: Weights, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        return self._k.lane_dot_rows(W, None, x, mode == "fast", self._team(threads), self.isa)

    def _sparse_matvec(
        self, W: Weights, x: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        return self._k.lane_dot_rows(W, rows, x, mode == "fast", self._team(threads), self.isa)

    def _sparse_axpy(
        self, W: Weights, h: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        return self._k.sparse_axpy(W, h, rows, mode == "fast", self._team(threads), self.isa)

    def _predict(
        self, x: np.ndarray, fc1: Weights, fc2: Weights, thr: np.float32, mode: str, threads: int
    ) -> np.ndarray:
        # One native call: no numpy relu or threshold between the two products.
        return self._k.predict(x, fc1, fc2, float(thr), mode == "fast", self._team(threads), self.isa)

    def _sparse_ffn(
        self, x: np.ndarray, gate: Weights, up: Weights, down_t: Weights,
        mask: np.ndarray, mode: str, threads: int,
    ) -> np.ndarray:
        # One native call: no Python between the gate/up products, h and the axpy.
        return self._k.sparse_ffn(x, gate, up, down_t, mask, mode == "fast", self._team(threads), self.isa)

    # ---- the runtime's per-token operators (csrc/rs_runtime.c): one mode, the spec's order ----

    def _rmsnorm(self, x: np.ndarray, weight: np.ndarray, eps: np.float32, mode: str, threads: int) -> np.ndarray:
        return self._k.rmsnorm(x, weight, float(eps), self._team(threads))

    def _rope(self, x: np.ndarray, positions: np.ndarray, base: float, mode: str, threads: int) -> np.ndarray:
        return self._k.rope(x, positions, base, self._team(threads))

    def _attention_batch(
        self, q: np.ndarray, k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray, positions: np.ndarray,
        new_k: np.ndarray | None, new_v: np.ndarray | None, mode: str, threads: int,
    ) -> np.ndarray:
        return self._k.attention(q, k, v, seq, positions, new_k, new_v, self._team(threads))

    def _decoder_layer(
        self, x: np.ndarray, w: dict[str, Any], k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray,
        positions: np.ndarray, n_head: int, n_kv: int, eps: np.float32, base: float, thr: np.float32 | None,
        mode: str, threads: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        # One native call (csrc/rs_layer.c): the same C functions as the op-by-op hooks, without Python between.
        return self._k.decoder_layer(x, w, k, v, seq, positions, n_head, n_kv, float(eps), base,
                                     None if thr is None else float(thr), mode == "fast", self._team(threads),
                                     self.isa)

    def _softmax(self, x: np.ndarray, lengths: np.ndarray, mode: str, threads: int) -> np.ndarray:
        return self._k.softmax(x, lengths, self._team(threads))

    def _argmax(self, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        return self._k.argmax(x, self._team(threads))

    def _add(self, a: np.ndarray, b: np.ndarray, mode: str, threads: int) -> np.ndarray:
        return self._k.add(a, b, self._team(threads))


def load() -> CythonBackend:
    return CythonBackend()
