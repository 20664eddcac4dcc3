"""A bounded parser for a GGUF file's header: its metadata key/values and tensor infos.

gguf-py's GGUFReader trusts every length and count in the file: a corrupt
string length or array count makes it slice past the end of its mapping
(numpy hands back short slices instead of failing) and loop up to 2**64
times, allocating as it goes, and it adds tensor offsets as numpy uint64,
which wraps.  This parser checks each length against the bytes left before
it reads, keeps all arithmetic in Python ints and refuses arrays of arrays
(llama.cpp does too), so it either parses a file in one pass over at most
the file's own bytes or raises ModelFormatError naming the key or tensor.

Layout (GGUF v2/v3, little-endian; ggml's docs/gguf.md): magic, u32 version,
u64 tensor_count, u64 kv_count; kv_count x (string key, u32 value type,
value); tensor_count x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml
type, u64 offset); padding to `general.alignment`; the data section, where
each tensor starts at data_start + offset.  A string is a u64 byte count and
that many UTF-8 bytes; an array is a u32 element type, a u64 count and the
elements.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .gguf_file import MAGICS, ModelFormatError

VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
ALIGNMENT_KEY = "general.alignment"
MAX_DIMS = 4  # GGML_MAX_DIMS
#: Each string of an array costs a Python step, so a corrupt count over a zero-filled region could take
#: minutes; the largest real vocabularies and merge lists have a few hundred thousand entries.
MAX_ARRAY_STRINGS = 1 << 22

_SCALARS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.FLOAT64: "<d", GGUFValueType.BOOL: "<?",
}


@dataclass(frozen=True)
class Field:
    """A metadata value: a Python scalar, the raw bytes of a string, or an array's elements.

    Arrays: `item` is the element type; the value is a read-only numpy view of the file for
    scalar elements, a tuple of raw bytes for strings.  Strings are decoded by whoever reads them,
    so the error can name the key.
    """

    type: GGUFValueType
    value: Any
    item: GGUFValueType | None = None

    def describe(self) -> str:
        return self.type.name if self.item is None else f"ARRAY of {self.item.name}"


@dataclass(frozen=True)
class Tensor:
    name: str
    ne: tuple[int, ...]  # GGUF order: ne[0] is the fastest axis
    kind: GGMLQuantizationType
    start: int  # absolute byte offset in the file
    nbytes: int


@dataclass(frozen=True)
class Header:
    fields: dict[str, Field]
    tensors: dict[str, Tensor]
    data_start: int


def decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{what} is not UTF-8 (byte {exc.start} of {raw[:40]!r})") from None


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n > len(self.buf) - self.pos:
            raise ModelFormatError(
                f"{what} would need {n} bytes from byte {self.pos}, but the file has {len(self.buf)}: "
                "the GGUF header is truncated or corrupt"
            )

    def take(self, n: int, what: str) -> int:
        """Claim the next n bytes for `what`; where they start."""
        self.need(n, what)
        self.pos += n
        return self.pos - n

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> bytes:
        n = self.unpack("<Q", f"the length of {what}")
        start = self.take(n, what)
        return bytes(self.buf[start:start + n])

    def value_type(self, what: str) -> GGUFValueType:
        raw = self.unpack("<I", f"the value type of {what}")
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise ModelFormatError(f"{what} has the unknown GGUF value type {raw}") from None


def _value(cur: _Cursor, key: str) -> Field:
    kind = cur.value_type(repr(key))
    if kind == GGUFValueType.STRING:
        return Field(kind, cur.string(repr(key)))
    if kind != GGUFValueType.ARRAY:
        return Field(kind, cur.unpack(_SCALARS[kind], repr(key)))
    item = cur.value_type(f"the elements of {key!r}")
    count = cur.unpack("<Q", f"the element count of {key!r}")
    if item == GGUFValueType.ARRAY:
        raise ModelFormatError(f"{key!r} is an array of arrays, which GGUF readers do not support")
    if item == GGUFValueType.STRING:
        if count > MAX_ARRAY_STRINGS:
            raise ModelFormatError(f"{key!r} declares {count} strings; this reader takes at most {MAX_ARRAY_STRINGS}")
        cur.need(8 * count, f"the {count} string lengths of {key!r}")  # before a loop of `count` steps
        return Field(kind, tuple(cur.string(f"{key}[{i}]") for i in range(count)), item)
    dtype = np.dtype(_SCALARS[item])
    start = cur.take(count * dtype.itemsize, f"the {count} elements of {key!r}")
    return Field(kind, np.frombuffer(cur.buf, dtype, count, start), item)


def _alignment(fields: dict[str, Field]) -> int:
    field = fields.get(ALIGNMENT_KEY)
    if field is None:
        return DEFAULT_ALIGNMENT
    if field.type != GGUFValueType.UINT32:
        raise ModelFormatError(f"{ALIGNMENT_KEY!r} must be UINT32, but its GGUF type is {field.describe()}")
    # The GGUF spec asks for a multiple of 8, gguf-py and llama.cpp for a power of two.
    if field.value < 8 or field.value & (field.value - 1):
        raise ModelFormatError(f"{ALIGNMENT_KEY!r} must be a power of two, at least 8, got {field.value}")
    return int(field.value)


def _tensor_info(cur: _Cursor, index: int) -> tuple[str, tuple[int, ...], int, int]:
    name = decode(cur.string(f"the name of tensor #{index}"), f"the name of tensor #{index}")
    n_dims = cur.unpack("<I", f"the dimension count of tensor {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise ModelFormatError(f"tensor {name!r} has {n_dims} dimensions; GGUF allows 1 to {MAX_DIMS}")
    ne = struct.unpack_from(f"<{n_dims}Q", cur.buf, cur.take(8 * n_dims, f"the dimensions of tensor {name!r}"))
    raw_type = cur.unpack("<I", f"the type of tensor {name!r}")
    offset = cur.unpack("<Q", f"the offset of tensor {name!r}")
    return name, ne, raw_type, offset


def _place(name: str, ne: tuple[int, ...], raw_type: int, offset: int, data_start: int, alignment: int,
           size: int) -> Tensor:
    """The tensor's extent, checked in Python ints (no wrap-around) against the data section."""
    try:
        kind = GGMLQuantizationType(raw_type)
    except ValueError:
        raise ModelFormatError(f"tensor {name!r} has the unknown GGML type {raw_type}") from None
    block, type_size = GGML_QUANT_SIZES[kind]
    if min(ne) < 1:
        raise ModelFormatError(f"tensor {name!r} has an empty dimension: ne {list(ne)}")
    if ne[0] % block:
        raise ModelFormatError(f"tensor {name!r} ne[0] = {ne[0]} is not a multiple of {kind.name}'s block of {block}")
    if offset % alignment:
        raise ModelFormatError(f"tensor {name!r} has offset {offset}, not a multiple of the alignment {alignment}")
    start = data_start + offset
    nbytes = math.prod(ne) // block * type_size
    if start + nbytes > size:
        raise ModelFormatError(
            f"tensor {name!r} ends at byte {start + nbytes} but the file has {size} bytes: the file is truncated"
        )
    return Tensor(name, ne, kind, start, nbytes)


def parse(buf: memoryview) -> Header:
    """The header of the GGUF or PWRI file in `buf` (a byte view, e.g. of a read-only map)."""
    cur = _Cursor(buf)
    magic = bytes(buf[cur.take(4, "the magic"):4])
    if magic not in MAGICS:
        raise ModelFormatError(f"not a GGUF or PowerInfer (PWRI) file: magic {magic!r}")
    version = cur.unpack("<I", "the GGUF version")
    if version not in VERSIONS:
        raise ModelFormatError(f"GGUF version {version} is not supported (versions {VERSIONS}, little-endian)")
    n_tensors = cur.unpack("<Q", "the tensor count")
    n_fields = cur.unpack("<Q", "the metadata key count")
    fields: dict[str, Field] = {}
    for i in range(n_fields):  # ends at the file's end at the latest: every pair takes bytes
        key = decode(cur.string(f"metadata key #{i}"), f"metadata key #{i}")
        if key in fields:
            raise ModelFormatError(f"metadata key {key!r} appears twice")
        fields[key] = _value(cur, key)
    alignment = _alignment(fields)
    infos = []
    names: set[str] = set()
    for i in range(n_tensors):
        info = _tensor_info(cur, i)
        if info[0] in names:
            raise ModelFormatError(f"tensor {info[0]!r} appears twice")
        names.add(info[0])
        infos.append(info)
    data_start = -(-cur.pos // alignment) * alignment
    tensors = {info[0]: _place(*info, data_start, alignment, len(buf)) for info in infos}
    return Header(fields, tensors, data_start)
