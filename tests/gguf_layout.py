"""Where each field of a valid GGUF file sits, from gguf-py's reader: the map the mutation tests edit.

The loader under test has its own parser, so the byte positions here come from gguf-py's
GGUFReader instead (on an intact file it is correct): a field's parts are consecutive from
its offset.  Slot.role says what a slot holds:

metadata:  key_len, key, type, then a scalar `value`, or a string's str_len + str, or an
           array's item_type + count, then its elements (scalars: one `value` slot for all;
           strings: str_len + str each)
tensors:   name_len, name, n_dims, dims (one slot per dimension), ggml_type, offset
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np


@dataclass(frozen=True)
class Slot:
    owner: str  # the key or tensor name
    role: str
    at: int  # byte offset in the file
    size: int  # bytes
    fmt: str | None  # struct format of one number, None for raw bytes

    def read(self, data: bytes | bytearray) -> int | float:
        assert self.fmt is not None
        return struct.unpack_from(self.fmt, data, self.at)[0]

    def write(self, data: bytearray, value: int | float) -> None:
        assert self.fmt is not None
        struct.pack_into(self.fmt, data, self.at, value)


def _fmt(part: np.ndarray) -> str:
    return "<" + part.dtype.char


def _field_slots(field: gguf.ReaderField) -> list[Slot]:
    at = field.offset
    out: list[Slot] = []

    def add(role: str, part: np.ndarray, fmt: str | None) -> None:
        nonlocal at
        out.append(Slot(field.name, role, at, int(part.nbytes), fmt))
        at += int(part.nbytes)

    parts = list(field.parts)
    add("key_len", parts[0], "<Q")
    add("key", parts[1], None)
    add("type", parts[2], "<I")
    rest = parts[3:]
    if field.types[0] == gguf.GGUFValueType.ARRAY:
        add("item_type", rest[0], "<I")
        add("count", rest[1], "<Q")
        rest = rest[2:]
        if field.types[-1] != gguf.GGUFValueType.STRING:
            for part in rest:
                add("value", part, _fmt(part))
            return out
    if field.types[-1] == gguf.GGUFValueType.STRING:
        for length, text in zip(rest[::2], rest[1::2], strict=True):
            add("str_len", length, "<Q")
            add("str", text, None)
    else:
        add("value", rest[0], _fmt(rest[0]))
    return out


def _tensor_slots(field: gguf.ReaderField) -> list[Slot]:
    name, n_dims = field.parts[1], field.parts[2]
    at = field.offset
    out = [Slot(field.name, "name_len", at, 8, "<Q"), Slot(field.name, "name", at + 8, int(name.nbytes), None)]
    at += 8 + int(name.nbytes)
    out.append(Slot(field.name, "n_dims", at, 4, "<I"))
    at += 4
    for _ in range(int(n_dims[0])):
        out.append(Slot(field.name, "dims", at, 8, "<Q"))
        at += 8
    out += [Slot(field.name, "ggml_type", at, 4, "<I"), Slot(field.name, "offset", at + 4, 8, "<Q")]
    return out


def slots(path: Path) -> list[Slot]:
    """Every slot of the metadata and tensor infos of the GGUF-magic file at `path`, in file order."""
    reader = gguf.GGUFReader(path)
    out: list[Slot] = []
    for name, field in reader.fields.items():
        if not name.startswith("GGUF."):  # the reader's pseudo-fields for version and counts
            out += _field_slots(field)
    for tensor in reader.tensors:
        out += _tensor_slots(tensor.field)
    assert all(a.at + a.size == b.at for a, b in itertools.pairwise(out)), "slots must tile the header"
    return out


def find(all_slots: list[Slot], owner: str, role: str) -> Slot:
    return next(s for s in all_slots if s.owner == owner and s.role == role)
