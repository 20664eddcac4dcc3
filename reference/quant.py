"""Quantized weight matrices: GGML's Q8_0, Q4_0 and Q6_K blocks   (docs/spec.md, "Quantized weights").

A `QuantizedMatrix` holds the raw block bytes of an (n, d) matrix, one row of
d / block(type) blocks per matrix row (32 weights a block for Q8_0 and Q4_0,
256 for Q6_K), exactly as a GGUF file stores them.  Every
element dequantizes exactly to float32 (the spec shows why), and every op on
a quantized matrix is defined as the same op on that exact float32 matrix, so
the reference needs nothing more than row access: `W[rows]` gives the float32
rows, which the reference's kernels read as they read float16 rows.

The dequantization is elementwise numpy only (an int8 or nibble converted to
float32, times the float16 scale converted to float32; Q6_K's int8 sub-block
scale is a third exact factor): exact products, no reduction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: weights per block of each type
BLOCK_WEIGHTS = {"q8_0": 32, "q4_0": 32, "q6_k": 256}
#: bytes per block of each type: Q8_0/Q4_0 a little-endian float16 scale d, then the quants;
#: Q6_K ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] int8, then d
BLOCK_BYTES = {"q8_0": 2 + 32, "q4_0": 2 + 16, "q6_k": 128 + 64 + 16 + 2}
TYPES = tuple(BLOCK_BYTES)
#: byte offset of the float16 scale d in a block: first for Q8_0/Q4_0, last for Q6_K
SCALE_AT = {"q8_0": 0, "q4_0": 0, "q6_k": 208}


def block(qtype: str) -> int:
    """Weights per block of qtype: a row's length and a column range's ends are multiples of it."""
    return BLOCK_WEIGHTS[qtype]


def row_bytes(qtype: str, d: int) -> int:
    """Bytes of one row of d weights (d a multiple of block(qtype))."""
    return d // BLOCK_WEIGHTS[qtype] * BLOCK_BYTES[qtype]


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
        if n < 0 or d < 0 or d % block(qtype):
            raise ValueError(f"shape must be (n, d) with d a multiple of {block(qtype)} for {qtype}, "
                             f"got {tuple(shape)}")
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
        """"q8_0", "q4_0" or "q6_k"."""
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
    if qtype == "q6_k":
        return _dequantize_q6_k(blocks).reshape(m, -1)
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


def _dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    """Q6_K blocks (m, nb, 210) -> (m, nb, 256) float32: element e of a block is
    (d * scales[e // 16]) * q_e, each factor converted exactly, every product exact (spec §13).

    Element e = 128*h + 32*c + l (half h, quarter c, l < 32) takes its low 4 bits from
    ql[64*h + 32*(c % 2) + l] (low nibble for c < 2, high for c >= 2) and its high 2 bits
    from bits 2c, 2c+1 of qh[32*h + l]; q = those 6 bits - 32."""
    m, nb = blocks.shape[:2]
    ql = blocks[:, :, :128].reshape(m, nb, 2, 2, 32)  # [half, c % 2, l]
    qh = blocks[:, :, 128:192].reshape(m, nb, 2, 1, 32)  # [half, -, l]
    low = np.stack([ql & 0x0F, ql >> 4], axis=3).reshape(m, nb, 2, 4, 32)  # quarter c = 2*(c // 2) + c % 2
    high = (qh >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)) & 3
    q = (low | high << 4).astype(np.int8) - np.int8(32)  # -32..31
    sc = blocks[:, :, 192:208].view(np.int8).astype(np.float32)  # one per 16 weights
    d = np.ascontiguousarray(blocks[:, :, 208:]).view("<f2").astype(np.float32)  # the last two bytes
    with np.errstate(all="ignore"):  # Inf or NaN d is data (0 * Inf = NaN)
        out = (d * sc).reshape(m, nb, 16, 1) * q.reshape(m, nb, 16, 16).astype(np.float32)  # exact: the spec
    return out.reshape(m, nb, 256)


def pack_q6_k(q: np.ndarray, scales: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Q6_K blocks (m, nb, 210) uint8 from their fields, the layout of _dequantize_q6_k written the
    other way: q (m, nb, 256) the 6-bit codes 0..63 (value q - 32), scales (m, nb, 16) int8, d (m, nb)
    float16.  For the quantizer and the conformance cases, which draw the fields."""
    m, nb = q.shape[:2]
    q6 = np.asarray(q, np.uint8).reshape(m, nb, 2, 4, 32)  # [half, quarter, l]
    low, high = q6 & 0x0F, q6 >> 4
    ql = low[:, :, :, :2] | low[:, :, :, 2:] << 4  # quarters 0, 1 low nibbles; 2, 3 high
    qh = high[:, :, :, 0] | high[:, :, :, 1] << 2 | high[:, :, :, 2] << 4 | high[:, :, :, 3] << 6
    raw = np.empty((m, nb, 210), np.uint8)
    raw[:, :, :128] = ql.reshape(m, nb, 128)
    raw[:, :, 128:192] = qh.reshape(m, nb, 64)
    raw[:, :, 192:208] = np.asarray(scales, np.int8).view(np.uint8)
    raw[:, :, 208:] = np.asarray(d, "<f2").reshape(m, nb, 1).view(np.uint8)
    return raw


#: what every op accepts as a weight matrix
Weights = np.ndarray | QuantizedMatrix

#: every weight type an op accepts (docs/spec.md §1 and §13)
WEIGHT_TYPES = ("float32", "float16", *TYPES)


# dtype.name runs Python code in numpy; a decode step asks once per weight matrix and layer
_FLOAT_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16"}


def weight_type(w: Weights) -> str:
    """"float32", "float16", "q8_0", "q4_0" or "q6_k" of a checked weight matrix."""
    return w.type if isinstance(w, QuantizedMatrix) else _FLOAT_NAMES.get(w.dtype) or w.dtype.name


def take_rows(w: Weights, rows: Any) -> Weights:
    """Rows of a weight matrix in its own type (a slice of rows stays a view): a QuantizedMatrix's
    blocks, not the float32 values its indexing gives."""
    if isinstance(w, QuantizedMatrix):
        picked = np.ascontiguousarray(w.data[rows])
        return QuantizedMatrix(picked, (picked.shape[0], w.shape[1]), w.type)
    return w[rows]


def take_columns(w: Weights, first: int, end: int) -> Weights:
    """Columns first..end-1 of a weight matrix, as a C-contiguous copy in its own type; a
    QuantizedMatrix's range must start and end on whole blocks of its type."""
    if isinstance(w, QuantizedMatrix):
        size = block(w.type)
        if first % size or (end % size and end != w.shape[1]):
            raise ValueError(f"columns {first}..{end} of a {w.type} matrix must start and end on "
                             f"{size}-column blocks")
        per = BLOCK_BYTES[w.type]
        picked = np.ascontiguousarray(w.data[:, first // size * per:-(-end // size) * per])
        return QuantizedMatrix(picked, (w.shape[0], end - first), w.type)
    return np.ascontiguousarray(w[:, first:end])
