"""Quantized weight matrices: GGML's Q8_0 and Q4_0 blocks   (docs/spec.md, "Quantized weights").

A `QuantizedMatrix` holds the raw block bytes of an (n, d) matrix, one row of
d / 32 blocks per matrix row, exactly as a GGUF file stores them.  Every
element dequantizes exactly to float32 (the spec shows why), and every op on
a quantized matrix is defined as the same op on that exact float32 matrix, so
the reference needs nothing more than row access: `W[rows]` gives the float32
rows, which the reference's kernels read as they read float16 rows.

The dequantization is elementwise numpy only (an int8 or nibble converted to
float32, times the float16 scale converted to float32): one exact product per
element, no reduction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: weights per block
BLOCK = 32
#: bytes per block of each type: a little-endian float16 scale d, then the quants
BLOCK_BYTES = {"q8_0": 2 + 32, "q4_0": 2 + 16}
TYPES = tuple(BLOCK_BYTES)


def row_bytes(qtype: str, d: int) -> int:
    """Bytes of one row of d weights (d a multiple of BLOCK)."""
    return d // BLOCK * BLOCK_BYTES[qtype]


class QuantizedMatrix:
    """An (n, d) weight matrix stored as GGML blocks; read-only.

    `data` is a C-contiguous uint8 array (n, row_bytes(type, d)), made a
    read-only view here (a numpy.memmap of a model file stays a view: nothing
    is copied).  `W[i]`, `W[a:b]` and `W[rows]` index rows like an ndarray and
    return the exact float32 rows; `dequantize()` returns the whole matrix.
    """

    __slots__ = ("__weakref__", "_data", "_shape", "_type")  # weakref: caches keyed on a live matrix

    def __init__(self, data: Any, shape: tuple[int, int], qtype: str) -> None:
        if qtype not in BLOCK_BYTES:
            raise ValueError(f"qtype must be one of {', '.join(TYPES)}, got {qtype!r}")
        if not isinstance(data, np.ndarray):
            raise TypeError(f"data must be a numpy.ndarray of uint8, got {type(data).__name__}")
        if data.dtype != np.uint8:
            raise TypeError(f"data must have dtype uint8, got {data.dtype}")
        n, d = (int(s) for s in shape)
        if n < 0 or d < 0 or d % BLOCK:
            raise ValueError(f"shape must be (n, d) with d a multiple of {BLOCK}, got {tuple(shape)}")
        want = n * row_bytes(qtype, d)
        if data.size != want:
            raise ValueError(f"data must hold {want} bytes for a {qtype} matrix of shape {(n, d)}, got {data.size}")
        if not data.flags.c_contiguous:
            raise ValueError("data must be C-contiguous")
        view = data.reshape(n, row_bytes(qtype, d)).view()
        view.flags.writeable = False
        self._data, self._shape, self._type = view, (n, d), qtype

    @property
    def data(self) -> np.ndarray:
        """The block bytes, (n, row_bytes), read-only."""
        return self._data

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def type(self) -> str:
        """"q8_0" or "q4_0"."""
        return self._type

    ndim = 2

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def dequantize(self) -> np.ndarray:
        """The exact float32 (n, d) matrix."""
        return dequantize_rows(self._data, self._type)

    def __getitem__(self, rows: Any) -> np.ndarray:
        """Float32 rows, indexed as numpy indexes the first axis of an (n, d) array."""
        if isinstance(rows, tuple):
            raise IndexError("a QuantizedMatrix is indexed by rows only")
        picked = self._data[rows]
        out = dequantize_rows(picked.reshape(-1, self._data.shape[1]), self._type)
        return out.reshape(*picked.shape[:-1], self._shape[1])

    def __len__(self) -> int:
        return self._shape[0]

    def __repr__(self) -> str:
        return f"QuantizedMatrix({self._type}, shape={self._shape})"


def dequantize_rows(data: np.ndarray, qtype: str) -> np.ndarray:
    """Rows of block bytes (m, row_bytes) -> their exact float32 values (m, d)."""
    m = data.shape[0]
    blocks = data.reshape(m, -1, BLOCK_BYTES[qtype])
    # d: the first two bytes, little-endian float16, converted exactly
    scale = np.ascontiguousarray(blocks[:, :, :2]).view("<f2").astype(np.float32)
    if qtype == "q8_0":
        q = blocks[:, :, 2:].view(np.int8)
    else:  # q4_0: byte j holds element j (low nibble) and element j + 16 (high nibble), value nibble - 8
        packed = blocks[:, :, 2:]
        q = np.concatenate([packed & 0x0F, packed >> 4], axis=2).astype(np.int8) - np.int8(8)
    with np.errstate(all="ignore"):  # an Inf or NaN scale is data, not an accident (0 * Inf = NaN)
        out = q.astype(np.float32) * scale  # exact: see the spec
    return out.reshape(m, -1)


#: what every op accepts as a weight matrix
Weights = np.ndarray | QuantizedMatrix

#: every weight type an op accepts (docs/spec.md §1 and §13)
WEIGHT_TYPES = ("float32", "float16", *TYPES)


def weight_type(w: Weights) -> str:
    """"float32", "float16", "q8_0" or "q4_0" of a checked weight matrix."""
    return w.type if isinstance(w, QuantizedMatrix) else w.dtype.name


def take_rows(w: Weights, rows: Any) -> Weights:
    """Rows of a weight matrix in its own type (a slice of rows stays a view): a QuantizedMatrix's
    blocks, not the float32 values its indexing gives."""
    if isinstance(w, QuantizedMatrix):
        picked = np.ascontiguousarray(w.data[rows])
        return QuantizedMatrix(picked, (picked.shape[0], w.shape[1]), w.type)
    return w[rows]


def take_columns(w: Weights, first: int, end: int) -> Weights:
    """Columns first..end-1 of a weight matrix, as a C-contiguous copy in its own type; a
    QuantizedMatrix's range must start and end on whole blocks."""
    if isinstance(w, QuantizedMatrix):
        if first % BLOCK or (end % BLOCK and end != w.shape[1]):
            raise ValueError(f"columns {first}..{end} of a {w.type} matrix must start and end on {BLOCK}-column blocks")
        per = BLOCK_BYTES[w.type]
        picked = np.ascontiguousarray(w.data[:, first // BLOCK * per:-(-end // BLOCK) * per])
        return QuantizedMatrix(picked, (w.shape[0], end - first), w.type)
    return np.ascontiguousarray(w[:, first:end])
