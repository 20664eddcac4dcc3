"""Types of the compiled extension built from backends/cython (see setup.py)."""

import numpy as np

from reprosparse.reference.quant import Weights

OPENMP_ENABLED: bool
COMPILER: str
ISAS: tuple[str, ...]
COMPILED: tuple[str, ...]
SUPPORTED: tuple[str, ...]
BEST: str
MAX_THREADS: int

def max_threads() -> int: ...
def team_size(threads: int) -> int: ...
def lane_dot_rows(
    W: Weights, rows: np.ndarray | None, x: np.ndarray, fast: bool, threads: int, isa: str
) -> np.ndarray: ...
def sparse_axpy(
    W: Weights, h: np.ndarray, rows: np.ndarray, fast: bool, threads: int, isa: str
) -> np.ndarray: ...
def sparse_ffn(
    x: np.ndarray, gate: Weights, up: Weights, down_t: Weights, mask: np.ndarray,
    fast: bool, threads: int, isa: str,
) -> np.ndarray: ...
def read_sum(a: np.ndarray, threads: int, isa: str) -> float: ...
def evict(W: Weights, rows: np.ndarray | None = None) -> bool: ...
