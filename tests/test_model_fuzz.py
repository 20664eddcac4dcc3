"""Seeded mutants of a small PWRI model file: each one loads with the right bytes, or is refused.

The mutants edit the metadata and tensor infos where gguf-py's reader places them on the
intact file (gguf_layout.py): value types, integer and float values (0, 1, -1 as unsigned,
2**32-1, 2**64-1, NaN ...), string lengths and bytes, array counts, tensor dimensions, types
and offsets; then seeded random byte flips and truncations.  For each one, load_model must
either raise ModelFormatError, or return a model whose every tensor is the bytes that gguf-py
finds at that tensor's declared offset (gguf-py is safe on any file our parser accepted: it walks
the same lengths) and whose hyperparameters are the file's values.  Any other exception fails.

A hang cannot happen by construction (the parser checks each length against the bytes left
before reading); the mutants that made gguf-py loop for ever run first in a child process with
a timeout, so a regression fails here instead of hanging the suite.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from gguf_layout import Slot, slots  # noqa: E402

from reprosparse import QuantizedMatrix  # noqa: E402
from reprosparse.model import Model, ModelFormatError, load_model, make_model, save_model  # noqa: E402

SEED = 9
U32 = (0, 1, 2, 3, 4, 5, 7, 2**31, 2**32 - 1)
U64 = (0, 1, 2, 2**32 - 1, 2**63, 2**64 - 1)
I32 = (0, 1, 4, 5, 6, 7, -1, 2**31 - 1, -(2**31))  # token types: 1..6 are llama.cpp's
F32 = (float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 1e-45, 3e38)
VALUE_TYPES = (*range(14), 2**32 - 1)  # 13 is past GGUF's last type
GGML_TYPES = (0, 1, 2, 4, 8, 30, 42, 2**32 - 1)  # F32, F16, Q4_0, a retired type, Q8_0, BF16, unknown, unknown
LAYER_TENSORS = {
    "attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
    "ffn_norm": "ffn_norm", "gate": "ffn_gate", "up": "ffn_up", "down_t": "ffn_down_t", "fc1": "fc1", "fc2": "fc2",
}
HYPER_KEYS = {
    "dim": "llama.embedding_length", "n_layer": "llama.block_count", "n_ff": "llama.feed_forward_length",
    "n_head": "llama.attention.head_count", "n_head_kv": "llama.attention.head_count_kv",
    "context_length": "llama.context_length", "eps": "llama.attention.layer_norm_rms_epsilon",
    "rope_base": "llama.rope.freq_base", "sparse_threshold": "powerinfer.sparse_threshold",
}


@dataclass(frozen=True)
class Mutant:
    label: str
    data: bytes


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[Slot]]:
    path = tmp_path_factory.mktemp("fuzz") / "m.gguf"
    save_model(make_model(layers=1, dim=32, ff=256, vocab=260, heads=4, seed=0), path, "GGUF")
    return b"PWRI" + path.read_bytes()[4:], slots(path)


def _set(data: bytes, slot: Slot, value: Any) -> bytes:
    out = bytearray(data)
    if slot.fmt is None:
        out[slot.at:slot.at + len(value)] = value
    else:
        slot.write(out, value)
    return bytes(out)


def _values(slot: Slot, current: Any) -> tuple[Any, ...]:
    """The values a slot is set to: edge cases of its kind, and its own value nudged; never its own value."""
    if slot.fmt is None:  # string bytes: a stray byte at the start and at the end
        return (b"\xff", b"\x00", b"\x80")
    if slot.fmt == "<f":
        return F32
    if slot.role in ("type", "item_type"):
        chosen: tuple[int, ...] = VALUE_TYPES
    elif slot.role == "ggml_type":
        chosen = GGML_TYPES
    elif slot.role == "n_dims":
        chosen = (0, 1, 2, 3, 4, 5, 2**32 - 1)
    else:  # a count, length, dimension or offset: edges, and nudged modulo 2**bits (offset - 32 wraps)
        nudged = (-32, -1, 1, 32, current) if slot.role == "offset" else (-1, 1, current)
        chosen = (*(U32 if slot.fmt == "<I" else U64), *(current + d for d in nudged))
    if slot.fmt == "<i":  # a token type
        return tuple(sorted(set(I32) - {current}))
    modulus = 2**32 if slot.fmt == "<I" else 2**64
    return tuple(sorted({v % modulus for v in chosen} - {current}))


def structured(data: bytes, all_slots: list[Slot]) -> Iterator[Mutant]:
    # The 260 tokens are alike: mutate the first, a byte token and the last one (each a str_len, str pair),
    # and their scores and types (one slot per element).
    tokens = [s for s in all_slots if s.owner == "tokenizer.ggml.tokens" and s.role in ("str", "str_len")]
    skip = {id(s) for i, s in enumerate(tokens) if i // 2 not in (0, 13, 259)}
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        elements = [s for s in all_slots if s.owner == key and s.role == "value"]
        skip |= {id(s) for i, s in enumerate(elements) if i not in (0, 13, 259)}
    for slot in all_slots:
        if id(slot) in skip:
            continue
        current = None if slot.fmt is None else slot.read(data)
        for value in _values(slot, current):
            yield Mutant(f"{slot.owner} {slot.role}@{slot.at} = {value!r}", _set(data, slot, value))
            if slot.fmt is None and slot.size > 1:
                end = Slot(slot.owner, slot.role, slot.at + slot.size - 1, 1, None)
                yield Mutant(f"{slot.owner} {slot.role}@{end.at} = {value!r}", _set(data, end, value))


def random(data: bytes, header_end: int) -> Iterator[Mutant]:
    rng = np.random.default_rng(SEED)
    for i in range(240):
        out = bytearray(data)
        span = header_end if i < 160 else len(data)  # mostly the header, where a flip changes the structure
        for at in rng.integers(0, span, int(rng.integers(1, 5))):
            out[at] ^= 1 << int(rng.integers(0, 8))
        yield Mutant(f"flip #{i}", bytes(out))
    for i, end in enumerate(rng.integers(0, len(data), 40)):
        yield Mutant(f"truncated to {end} (#{i})", data[:end])
    yield Mutant("16 bytes of garbage appended", data + bytes(rng.integers(0, 256, 16, np.uint8)))


def _named_tensors(model: Model) -> Iterator[tuple[str, np.ndarray]]:
    yield "token_embd.weight", model.token_embd
    yield "output_norm.weight", model.output_norm
    yield "output.weight", model.output
    for i, layer in enumerate(model.layers):
        for field, name in LAYER_TENSORS.items():
            yield f"blk.{i}.{name}.weight", getattr(layer, field)


def _check_loaded(model: Model, data: bytes, path: Path) -> None:
    """Every tensor is the bytes at its declared offset, read-only; the keys and tokens are the file's.

    The declared extent is recomputed in Python ints from gguf-py's raw fields (gguf-py's own
    data_offset and n_bytes are numpy uint64 sums, which wrap).
    """
    path.write_bytes(b"GGUF" + data[4:])
    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    for name, tensor in _named_tensors(model):
        array = tensor.data if isinstance(tensor, QuantizedMatrix) else tensor  # a quantized one: its blocks
        _, _, _, ne, raw_type, offset = by_name[name].field.parts
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(raw_type[0]))]
        start = reader.data_offset + int(offset[0])
        nbytes = math.prod(int(n) for n in ne) // block * type_size
        assert start + nbytes <= len(data), name
        assert array.tobytes() == data[start:start + nbytes], name
        assert not array.flags.writeable, name
    for field, key in HYPER_KEYS.items():
        if key in reader.fields:
            assert getattr(model.hyper, field) == reader.fields[key].contents(), key
    assert model.hyper.vocab == int(by_name["token_embd.weight"].shape[1])
    if "tokenizer.ggml.tokens" in reader.fields:  # contents() decodes strictly, as the GGUF spec asks
        assert model.vocabulary is not None
        assert model.vocabulary.pieces == tuple(reader.fields["tokenizer.ggml.tokens"].contents())
        n = len(model.vocabulary)
        for key, got, default in (("tokenizer.ggml.scores", model.vocabulary.scores, 0.0),
                                  ("tokenizer.ggml.token_type", model.vocabulary.types, 1)):  # llama.cpp's defaults
            expected = reader.fields[key].contents() if key in reader.fields else [default] * n
            assert np.array_equal(np.array(got, np.float64), np.array(expected, np.float64), equal_nan=True), key


def _outcome(path: Path, data: bytes, check: Path) -> str:
    path.write_bytes(data)
    try:
        model = load_model(path)
    except ModelFormatError:
        return "refused"
    _check_loaded(model, data, check)
    return "loaded"


CHILD = """
import sys
from pathlib import Path
from reprosparse.model import ModelFormatError, load_model
for path in sys.argv[1:]:
    try:
        load_model(path)
        print("loaded")
    except ModelFormatError:
        print("refused")
"""


def test_gguf_py_hangs_are_refused_in_a_child_with_a_timeout(original: tuple[bytes, list[Slot]],
                                                             tmp_path: Path) -> None:
    """Each STRING or ARRAY value retyped (gguf-py: an endless loop), and each length or count at 2**64-1."""
    data, all_slots = original
    cases = [(s, v) for s in all_slots for v in (8, 9) if s.role == "type"]
    cases += [(s, 2**64 - 1) for s in all_slots if s.role in ("key_len", "count", "name_len")][:8]
    paths = []
    for i, (slot, value) in enumerate(cases):
        if slot.read(data) != value:
            paths.append(tmp_path / f"{i}.gguf")
            paths[-1].write_bytes(_set(data, slot, value))
    done = subprocess.run([sys.executable, "-P", "-c", CHILD, *map(str, paths)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["refused"] * len(paths)


def test_mutants_load_with_the_declared_bytes_or_are_refused(original: tuple[bytes, list[Slot]],
                                                             tmp_path: Path) -> None:
    data, all_slots = original
    header_end = all_slots[-1].at + all_slots[-1].size
    mutants = [*structured(data, all_slots), *random(data, header_end)]
    assert len(mutants) >= 300
    counts = {"loaded": 0, "refused": 0}
    for i, mutant in enumerate(mutants):
        try:
            counts[_outcome(tmp_path / f"{i}.gguf", mutant.data, tmp_path / "check.gguf")] += 1
        except Exception as exc:  # another exception type, or a failed check: name the mutant
            raise AssertionError(f"mutant {mutant.label!r}: {type(exc).__name__}: {exc}") from exc
        (tmp_path / f"{i}.gguf").unlink()
    # Both outcomes are exercised: data flips and harmless values load, structural damage is refused.
    assert counts["loaded"] >= 50 and counts["refused"] >= 300, counts
