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

import numpy as np

from reprosparse import _platform

from ._base import Backend, BackendConfigError, BackendUnavailable

ISA_ENV = "REPROSPARSE_CYTHON_ISA"


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
        # All cores we may run on, unless OMP_NUM_THREADS or threadpoolctl lowered OpenMP's limit.
        return max(1, min(_platform.cpu_count(), self._k.max_threads()))

    def info(self) -> dict[str, str]:
        k = self._k
        openmp = "no: built without it, one thread"
        if k.OPENMP_ENABLED:
            openmp = f"yes (up to {k.max_threads()} threads)"
        return {
            "OpenMP": openmp,
            "ISA": f"{self.isa} (compiled: {' '.join(k.COMPILED)}; this CPU: {' '.join(k.SUPPORTED)})",
            "compiler": k.COMPILER,
        }

    def _matvec(self, W: np.ndarray, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        return self._k.lane_dot_rows(W, None, x, mode == "fast", threads, self.isa)

    def _sparse_matvec(
        self, W: np.ndarray, x: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        return self._k.lane_dot_rows(W, rows, x, mode == "fast", threads, self.isa)

    def _sparse_axpy(
        self, W: np.ndarray, h: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        return self._k.sparse_axpy(W, h, rows, mode == "fast", threads, self.isa)

    def _sparse_ffn(
        self, x: np.ndarray, gate: np.ndarray, up: np.ndarray, down_t: np.ndarray,
        mask: np.ndarray, mode: str, threads: int,
    ) -> np.ndarray:
        # One native call: no Python between the gate/up products, h and the axpy.
        return self._k.sparse_ffn(x, gate, up, down_t, mask, mode == "fast", threads, self.isa)


def load() -> CythonBackend:
    return CythonBackend()
