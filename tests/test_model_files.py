"""Loading PowerInfer model files: both magics, f16/f32, the GGUF -> numpy mapping, and errors."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from gguf_layout import Slot, slots  # noqa: E402

from reprosparse.model import Hyper, Model, ModelFormatError, load_model, make_model, save_model  # noqa: E402
from reprosparse.model.weights import HyperError  # noqa: E402

SHAPE: dict[str, Any] = {"layers": 2, "dim": 32, "ff": 256, "vocab": 300, "heads": 4}


@pytest.fixture(scope="module")
def model() -> Model:
    return make_model(**SHAPE, seed=11, kv_heads=2)


def _same(a: Model, b: Model) -> None:
    assert a.hyper == b.hyper and a.vocabulary == b.vocabulary
    pairs = [(a.token_embd, b.token_embd), (a.output, b.output), (a.output_norm, b.output_norm)]
    for la, lb in zip(a.layers, b.layers, strict=True):
        pairs += [(getattr(la, f), getattr(lb, f)) for f in la.__dataclass_fields__]
    for x, y in pairs:
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("magic", ["PWRI", "GGUF"])
def test_round_trip_both_magics(model: Model, tmp_path: Path, magic: str) -> None:
    path = tmp_path / "m.gguf"
    save_model(model, path, magic)
    assert path.read_bytes()[:4] == magic.encode()
    loaded = load_model(path)
    _same(model, loaded)
    assert path.read_bytes()[:4] == magic.encode()  # reading patches the magic in memory only


@pytest.mark.parametrize("magic", ["PWRI", "GGUF"])
def test_no_mmap_reads_the_same_weights_into_read_only_memory_numpy_owns(
    model: Model, tmp_path: Path, magic: str
) -> None:
    path = tmp_path / "m.gguf"
    save_model(model, path, magic)
    loaded = load_model(path, mmap=False)
    _same(model, loaded)
    layer = loaded.layers[0]
    for w in (loaded.token_embd, loaded.output, layer.attn_norm, layer.gate, layer.fc2):
        owner = w
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        assert not isinstance(owner, np.memmap) and owner.base is None  # no file mapping underneath
        assert not w.flags.writeable and not owner.flags.writeable  # read-only, as the mapped file is


def test_float32_model(tmp_path: Path) -> None:
    m = make_model(**SHAPE, seed=2, dtype="f32")
    save_model(m, tmp_path / "f32.gguf")
    loaded = load_model(tmp_path / "f32.gguf")
    assert loaded.layers[0].gate.dtype == np.float32
    _same(m, loaded)


def test_gguf_dimension_order(model: Model, tmp_path: Path) -> None:
    """ne[0] is the fastest axis: numpy (n_ff, dim) is stored with ne = [dim, n_ff]."""
    path = tmp_path / "m.gguf"
    save_model(model, path, "GGUF")
    reader = gguf.GGUFReader(path)
    info = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    hp = model.hyper
    assert info["blk.0.ffn_gate.weight"] == [hp.dim, hp.n_ff]
    assert info["blk.0.ffn_down_t.weight"] == [hp.dim, hp.n_ff]
    assert info["blk.0.attn_k.weight"] == [hp.dim, hp.n_head_kv * hp.head_dim]
    assert info["token_embd.weight"] == [hp.dim, hp.vocab]
    rank = model.layers[0].fc1.shape[0]
    assert info["blk.1.fc2.weight"] == [rank, hp.n_ff]
    # Row 5 of gate is contiguous in the file: element (5, j) sits at flat index 5*dim + j.
    raw = next(t for t in reader.tensors if t.name == "blk.0.ffn_gate.weight").data.reshape(-1)
    assert raw[5 * hp.dim : 6 * hp.dim].tobytes() == model.layers[0].gate[5].tobytes()


def test_sparse_threshold_key(tmp_path: Path) -> None:
    m = make_model(**SHAPE, seed=2)
    m = Model(m.hyper.__class__(**{**m.hyper.__dict__, "sparse_threshold": -0.25}), m.token_embd, m.layers,
              m.output_norm, m.output, m.vocabulary)
    save_model(m, tmp_path / "t.gguf")
    assert load_model(tmp_path / "t.gguf").hyper.sparse_threshold == -0.25


def _rewrite(
    model: Model, path: Path, change: dict[str, tuple[np.ndarray | None, object]] | None = None,
    keys: dict[str, tuple[object, Any]] | None = None, alignment: int | None = None,
) -> None:
    """Write `model` with tensors replaced (array) or dropped (None), optionally as another GGML type.

    The hyperparameters are UINT32 keys; `keys` adds keys or replaces them with other values or types.
    """
    w = gguf.GGUFWriter(str(path), "llama")
    hp = model.hyper
    u32 = gguf.GGUFValueType.UINT32
    counts = {"embedding_length": hp.dim, "block_count": hp.n_layer, "feed_forward_length": hp.n_ff,
              "attention.head_count": hp.n_head, "attention.head_count_kv": hp.n_head_kv}
    for key, (value, vtype) in ({f"llama.{k}": (v, u32) for k, v in counts.items()} | (keys or {})).items():
        w.add_key_value(key, value, vtype)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    save_model(model, path.with_suffix(".src"), "GGUF")
    for t in gguf.GGUFReader(path.with_suffix(".src")).tensors:
        arr, raw_type = (change or {}).get(t.name, (np.asarray(t.data), None))
        if arr is None:
            continue
        w.add_tensor(t.name, arr, raw_dtype=raw_type) if raw_type is not None else w.add_tensor(t.name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _vocabulary_keys(model: Model) -> dict[str, tuple[object, Any]]:
    """The vocabulary as save_model writes it, as _rewrite's keys."""
    v = model.vocabulary
    assert v is not None
    return {TOKENS: (list(v.pieces), VT.ARRAY), "tokenizer.ggml.scores": (list(v.scores), VT.ARRAY),
            "tokenizer.ggml.token_type": ([int(t) for t in v.types], VT.ARRAY),
            "tokenizer.ggml.model": (v.model, VT.STRING), "tokenizer.ggml.bos_token_id": (v.bos, VT.UINT32),
            "tokenizer.ggml.eos_token_id": (v.eos, VT.UINT32), "tokenizer.ggml.unknown_token_id": (v.unk, VT.UINT32)}


def test_missing_tensor(model: Model, tmp_path: Path) -> None:
    _rewrite(model, tmp_path / "m.gguf", {"blk.1.fc2.weight": (None, None)})
    with pytest.raises(ModelFormatError, match=r"no tensor 'blk\.1\.fc2\.weight'"):
        load_model(tmp_path / "m.gguf")


def test_dense_llama_cpp_model_is_named_as_such(model: Model, tmp_path: Path) -> None:
    """llama.cpp's dense layout (ffn_down as [n_ff, dim], no fc1/fc2) is refused as what it is."""
    src, path = tmp_path / "m.src", tmp_path / "dense.gguf"
    save_model(model, src, "GGUF")
    w = gguf.GGUFWriter(str(path), "llama")
    hp = model.hyper
    for key, value in {"embedding_length": hp.dim, "block_count": hp.n_layer, "feed_forward_length": hp.n_ff,
                       "attention.head_count": hp.n_head, "attention.head_count_kv": hp.n_head_kv}.items():
        w.add_key_value(f"llama.{key}", value, gguf.GGUFValueType.UINT32)
    for t in gguf.GGUFReader(src).tensors:
        name, arr = t.name, np.asarray(t.data)
        if name.endswith((".fc1.weight", ".fc2.weight")):
            continue
        if name.endswith(".ffn_down_t.weight"):
            name, arr = name.replace("ffn_down_t", "ffn_down"), np.ascontiguousarray(arr.T)
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFormatError, match=r"dense\.gguf: this is a dense LLaMA model .*ffn_down_t.*fc1/fc2"):
        load_model(path)


def test_wrong_shape(model: Model, tmp_path: Path) -> None:
    bad = np.zeros((model.hyper.n_ff, model.hyper.dim + 1), np.float16)
    _rewrite(model, tmp_path / "m.gguf", {"blk.0.ffn_up.weight": (bad, None)})
    with pytest.raises(ModelFormatError, match=r"blk\.0\.ffn_up\.weight.*shape"):
        load_model(tmp_path / "m.gguf")


@pytest.mark.parametrize(("tensor", "kind", "error"), [
    ("blk.0.ffn_gate.weight", "Q5_0",
     r"'blk\.0\.ffn_gate\.weight' has type Q5_0; only F32, F16, Q8_0, Q4_0 and Q6_K"),
    ("blk.0.ffn_norm.weight", "Q8_0", r"'blk\.0\.ffn_norm\.weight' has type Q8_0; only F32 and F16 are supported"),
])
def test_unsupported_type(model: Model, tmp_path: Path, tensor: str, kind: str, error: str) -> None:
    """A type the loader cannot read (or a quantized norm vector) names the tensor and the type."""
    qtype = gguf.GGMLQuantizationType[kind]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows, width = (model.hyper.n_ff, model.hyper.dim) if "gate" in tensor else (1, model.hyper.dim)
    raw = np.zeros((rows, width // block * size), np.uint8)  # the byte shape of that type
    if rows == 1:
        raw = raw[0]
    _rewrite(model, tmp_path / "m.gguf", {tensor: (raw, qtype)})
    with pytest.raises(ModelFormatError, match=error):
        load_model(tmp_path / "m.gguf")


@pytest.mark.parametrize("mmap", [True, False])
def test_truncated_file(model: Model, tmp_path: Path, mmap: bool) -> None:
    path = tmp_path / "m.gguf"
    save_model(model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFormatError, match=r"output\.weight.*truncated"):
        load_model(path, mmap=mmap)
    path.write_bytes(data[:100])  # inside the metadata
    with pytest.raises(ModelFormatError, match="truncated or corrupt"):
        load_model(path, mmap=mmap)


def test_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFormatError, match="not a GGUF"):
        load_model(tmp_path / "x.bin")
    assert issubclass(ModelFormatError, ValueError)


# --- corrupt metadata and tensor infos (issue 9); byte positions from gguf-py on the intact file ---

SMALL: dict[str, Any] = {"layers": 1, "dim": 32, "ff": 256, "vocab": 260, "heads": 4}
NAN, INF = float("nan"), float("inf")
VT = gguf.GGUFValueType


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[Slot]]:
    path = tmp_path_factory.mktemp("small") / "m.gguf"
    save_model(make_model(**SMALL, seed=0), path, "GGUF")
    return path.read_bytes(), slots(path)


def _mutant(small: tuple[bytes, list[Slot]], path: Path, owner: str, role: str, value: Any, index: int = 0) -> Path:
    """The small model with one slot set to `value` (a number, or for a string slot, bytes for its start)."""
    data, all_slots = small
    out = bytearray(data)
    slot = [s for s in all_slots if s.owner == owner and s.role == role][index]
    if slot.fmt is None:
        out[slot.at:slot.at + len(value)] = value
    else:
        slot.write(out, value)
    path.write_bytes(out)
    return path


ARCH, TOKENS, CTX = "general.architecture", "tokenizer.ggml.tokens", "llama.context_length"
HEADS, KV_HEADS = "llama.attention.head_count", "llama.attention.head_count_kv"
EPS, ROPE, THRESHOLD = "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base", "powerinfer.sparse_threshold"
CORRUPT = [  # owner, role, value, slot index, the error (a regex)
    # gguf-py loops here for ever, reading the string's bytes as an array count, its memory growing
    (ARCH, "type", VT.ARRAY, 0, r"elements of 'general\.architecture' would need \d+ bytes.*truncated or corrupt"),
    (ARCH, "str_len", 2**63, 0, r"'general\.architecture' would need 9223372036854775808 bytes"),
    (ARCH, "str", b"\xff", 0, r"'general\.architecture' is not UTF-8"),
    (TOKENS, "str", b"\xff", 5, r"tokenizer\.ggml\.tokens\[5\] is not UTF-8"),
    (TOKENS, "count", 2**64 - 1, 0, r"'tokenizer\.ggml\.tokens' declares 18446744073709551615 strings"),
    (TOKENS, "count", 2**20, 0, r"string lengths of 'tokenizer\.ggml\.tokens'.*truncated or corrupt"),
    (TOKENS, "item_type", VT.ARRAY, 0, r"'tokenizer\.ggml\.tokens' is an array of arrays"),
    (TOKENS, "item_type", 13, 0, r"the elements of 'tokenizer\.ggml\.tokens' has the unknown GGUF value type 13"),
    ("tokenizer.ggml.model", "key", b"general.architecture", 0, r"key 'general\.architecture' appears twice"),
    (HEADS, "value", 0, 0, r"'llama\.attention\.head_count' must be at least 1, got 0"),
    (HEADS, "value", 32, 0, r"'llama\.attention\.head_count' must split the embedding length 32 into heads of even"),
    (KV_HEADS, "value", 0, 0, r"'llama\.attention\.head_count_kv' must be at least 1, got 0"),
    (KV_HEADS, "value", 3, 0, r"'llama\.attention\.head_count_kv' must divide the head count 4, got 3"),
    ("llama.block_count", "value", 0, 0, r"'llama\.block_count' must be at least 1, got 0"),
    ("llama.block_count", "value", 2**32 - 1, 0, r"no tensor 'blk\.1\.fc1\.weight'"),
    ("llama.embedding_length", "value", 0, 0, r"'llama\.embedding_length' must be at least 1, got 0"),
    ("llama.embedding_length", "value", 64, 0, r"'blk\.0\.attn_norm\.weight' has numpy shape \(32,\)"),
    ("llama.feed_forward_length", "value", 0, 0, r"'llama\.feed_forward_length' must be at least 1, got 0"),
    (CTX, "value", 0, 0, r"'llama\.context_length' must be at least 2, got 0"),
    (CTX, "value", 1, 0, r"'llama\.context_length' must be at least 2, got 1"),
    *[(EPS, "value", v, 0, r"'llama\.attention\.layer_norm_rms_epsilon' must be a finite positive")
      for v in (0.0, -1.0, NAN, INF)],
    *[(ROPE, "value", v, 0, r"'llama\.rope\.freq_base' must be a finite positive")
      for v in (NAN, 0.0, -1.0, INF, -INF)],
    *[(THRESHOLD, "value", v, 0, r"'powerinfer\.sparse_threshold' must be finite") for v in (NAN, INF, -INF)],
    # gguf-py adds offsets as uint64: 2**64 - 32 wraps to 32 bytes before the data, and the file "loads"
    ("token_embd.weight", "offset", 2**64 - 32, 0, r"'token_embd\.weight' ends at byte \d+ but the file has \d+"),
    ("token_embd.weight", "offset", 2**64 - 1, 0, r"'token_embd\.weight' has offset \d+, not a multiple of the"),
    ("output.weight", "offset", 16, 0, r"'output\.weight' has offset 16, not a multiple of the alignment 32"),
    ("token_embd.weight", "name", b"\xff", 0, r"the name of tensor #0 is not UTF-8"),
    ("blk.0.attn_k.weight", "name", b"blk.0.attn_q.weight", 0, r"tensor 'blk\.0\.attn_q\.weight' appears twice"),
    ("output.weight", "n_dims", 0, 0, r"'output\.weight' has 0 dimensions"),
    ("output.weight", "n_dims", 5, 0, r"'output\.weight' has 5 dimensions"),
    ("output.weight", "dims", 0, 1, r"'output\.weight' has an empty dimension"),
    ("output.weight", "dims", 2**64 - 1, 1, r"'output\.weight' ends at byte \d+ but the file has \d+ bytes"),
    ("output.weight", "ggml_type", 2**32 - 1, 0, r"'output\.weight' has the unknown GGML type 4294967295"),
    ("output.weight", "ggml_type", gguf.GGMLQuantizationType.Q5_0, 0, r"'output\.weight' has type Q5_0"),
    ("blk.0.fc1.weight", "dims", 16, 1, r"'blk\.0\.fc2\.weight' has numpy shape \(256, 17\)"),
]


@pytest.mark.parametrize(("owner", "role", "value", "index", "error"), CORRUPT,
                         ids=[f"{c[0]}-{c[1]}-{c[2]!r}" for c in CORRUPT])
def test_corrupt_header_is_refused_naming_the_key_or_tensor(
    small: tuple[bytes, list[Slot]], tmp_path: Path, owner: str, role: str, value: Any, index: int, error: str,
) -> None:
    path = _mutant(small, tmp_path / "m.gguf", owner, role, value, index)
    with pytest.raises(ModelFormatError, match=error):
        load_model(path)


@pytest.mark.parametrize(("value", "context_length"), [(2, 2), (2**32 - 1, 2**32 - 1)])
def test_context_length_bounds(small: tuple[bytes, list[Slot]], tmp_path: Path, value: int,
                               context_length: int) -> None:
    """2 (one prompt token, one generated token fed back) is the shortest; the length only limits."""
    assert load_model(_mutant(small, tmp_path / "m.gguf", CTX, "value", value)).hyper.context_length == context_length


@pytest.mark.parametrize(("at", "value", "error"), [
    (4, 1, "GGUF version 1 is not supported"), (4, 4, "GGUF version 4 is not supported"),
    # tensor count: a 15th tensor info is read from the zero padding before the data
    (8, 2**64 - 1, r"tensor '' has 0 dimensions"),
    (16, 2**64 - 1, r"metadata key #18 would need \d+ bytes.*truncated or corrupt"),  # key count
])
def test_corrupt_counts_and_version(small: tuple[bytes, list[Slot]], tmp_path: Path, at: int, value: int,
                                    error: str) -> None:
    data = bytearray(small[0])
    struct.pack_into("<I" if at == 4 else "<Q", data, at, value)
    (tmp_path / "m.gguf").write_bytes(data)
    with pytest.raises(ModelFormatError, match=error):
        load_model(tmp_path / "m.gguf")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.gguf").write_bytes(b"")
    with pytest.raises(ModelFormatError, match="has 0 bytes"):
        load_model(tmp_path / "e.gguf")


@pytest.mark.parametrize("keys", [
    {"llama.block_count": (2, VT.UINT64), "llama.embedding_length": (32, VT.INT64)},
    {"llama.block_count": (2, VT.INT32), "llama.feed_forward_length": (256, VT.UINT16)},
    {"llama.attention.head_count": (4, VT.UINT8), "llama.attention.head_count_kv": (2, VT.INT8)},
    {"llama.rope.freq_base": (10000.0, VT.FLOAT64), CTX: (512, VT.INT16)},
], ids=["u64-i64", "i32-u16", "u8-i8", "f64-i16"])
def test_integer_and_float_types_that_writers_use(model: Model, tmp_path: Path,
                                                  keys: dict[str, tuple[object, Any]]) -> None:
    _rewrite(model, tmp_path / "m.gguf", keys={EPS: (model.hyper.eps, VT.FLOAT32), **keys})
    hp = load_model(tmp_path / "m.gguf").hyper
    assert (hp.dim, hp.n_layer, hp.n_ff, hp.n_head, hp.n_head_kv) == (32, 2, 256, 4, 2)
    assert hp.rope_base == 10000.0 and hp.eps == model.hyper.eps
    assert hp.context_length == (512 if CTX in keys else 2048)


@pytest.mark.parametrize(("keys", "error"), [
    ({HEADS: (4.0, VT.FLOAT32)}, r"'llama\.attention\.head_count' must be an integer, but its GGUF type is FLOAT32"),
    ({"llama.block_count": (True, VT.BOOL)}, r"'llama\.block_count' must be an integer, but its GGUF type is BOOL"),
    ({CTX: ([512], VT.ARRAY)}, r"'llama\.context_length' must be an integer, but its GGUF type is ARRAY of INT32"),
    ({ROPE: (10000, VT.UINT32)}, r"'llama\.rope\.freq_base' must be FLOAT32 or FLOAT64, but its GGUF type is UINT32"),
    ({THRESHOLD: ("0", VT.STRING)}, r"'powerinfer\.sparse_threshold' must be FLOAT32 or FLOAT64, but its GGUF"),
    ({ARCH: (7, VT.UINT32)}, r"'general\.architecture' must be a STRING, but its GGUF type is UINT32"),
    ({TOKENS: ([1, 2], VT.ARRAY)}, r"'tokenizer\.ggml\.tokens' must be an ARRAY of STRING, but its GGUF type is ARRAY"),
    ({"general.alignment": (64, VT.UINT64)}, r"'general\.alignment' must be UINT32, but its GGUF type is UINT64"),
    ({"general.alignment": (48, VT.UINT32)}, r"'general\.alignment' must be a power of two, at least 8, got 48"),
    ({"general.alignment": (4, VT.UINT32)}, r"'general\.alignment' must be a power of two, at least 8, got 4"),
])
def test_wrong_value_types_are_refused(model: Model, tmp_path: Path, keys: dict[str, tuple[object, Any]],
                                       error: str) -> None:
    _rewrite(model, tmp_path / "m.gguf", keys=keys)
    with pytest.raises(ModelFormatError, match=error):
        load_model(tmp_path / "m.gguf")


SCORES, TYPES, BOS = "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id"


@pytest.mark.parametrize(("key", "value", "error"), [
    (SCORES, [0] * 300, r"'tokenizer\.ggml\.scores' must be an ARRAY of FLOAT32, but its GGUF type is ARRAY of INT32"),
    (SCORES, [0.0] * 299, r"'tokenizer\.ggml\.scores' has 299 entries for 300 tokens"),
    (TYPES, [1.0] * 300, r"'tokenizer\.ggml\.token_type' must be an ARRAY of INT32, but its GGUF type is ARRAY of F"),
    (TYPES, [1] * 5 + [7] + [1] * 294, r"tokenizer\.ggml\.token_type\[5\] is 7; token types are 1 \(NORMAL\) to 6"),
    (TYPES, [0] * 300, r"tokenizer\.ggml\.token_type\[0\] is 0"),
    (BOS, 300, r"'tokenizer\.ggml\.bos_token_id' is 300, not a token id of the 300"),
    ("tokenizer.ggml.eos_token_id", -1, r"'tokenizer\.ggml\.eos_token_id' is -1"),
])
def test_bad_vocabulary_keys_are_refused(model: Model, tmp_path: Path, key: str, value: object, error: str) -> None:
    keys = _vocabulary_keys(model)
    keys[key] = (value, VT.INT32 if key == "tokenizer.ggml.eos_token_id" else keys[key][1])
    _rewrite(model, tmp_path / "m.gguf", keys=keys)
    with pytest.raises(ModelFormatError, match=error):
        load_model(tmp_path / "m.gguf")


def test_vocabulary_defaults_are_llama_cpps(model: Model, tmp_path: Path) -> None:
    """Without scores, types and ids, llama.cpp's llm_load_vocab takes 0.0, NORMAL and bos 1, eos 2, unk 0."""
    assert model.vocabulary is not None
    _rewrite(model, tmp_path / "m.gguf", keys={TOKENS: (list(model.vocabulary.pieces), VT.ARRAY)})
    got = load_model(tmp_path / "m.gguf").vocabulary
    assert got is not None and got.pieces == model.vocabulary.pieces and got.model == "llama"
    assert set(got.scores) == {0.0} and set(got.types) == {1} and (got.bos, got.eos, got.unk) == (1, 2, 0)


def test_custom_alignment(model: Model, tmp_path: Path) -> None:
    """general.alignment moves the data section and the tensor offsets; the weights must not move."""
    hp = model.hyper
    keys = {EPS: (hp.eps, VT.FLOAT32), ROPE: (hp.rope_base, VT.FLOAT32), CTX: (hp.context_length, VT.UINT32),
            THRESHOLD: (hp.sparse_threshold, VT.FLOAT32), **_vocabulary_keys(model)}
    _rewrite(model, tmp_path / "m.gguf", keys=keys, alignment=256)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    assert reader.alignment == 256 and all(t.data_offset % 256 == 0 for t in reader.tensors)
    _same(model, load_model(tmp_path / "m.gguf"))


def test_header_matches_gguf_py(model: Model, tmp_path: Path) -> None:
    """On an intact file the bounded parser reads what gguf-py reads: every key and every tensor's bytes."""
    from reprosparse.model import gguf_header

    save_model(model, tmp_path / "m.gguf", "GGUF")
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    header = gguf_header.parse(memoryview((tmp_path / "m.gguf").read_bytes()))
    ours = {k: f.value for k, f in header.fields.items()}
    theirs = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, tuple):
            value = [v.decode() for v in value]
        elif isinstance(value, np.ndarray):  # an array of numbers: a view of the file
            value = value.tolist()
        assert value == theirs[key], key
    assert header.data_start == reader.data_offset
    assert [t.name for t in reader.tensors] == list(header.tensors)
    for t in reader.tensors:
        mine = header.tensors[t.name]
        assert (mine.start, mine.nbytes, mine.ne, mine.kind) == (t.data_offset, t.n_bytes, tuple(t.shape),
                                                                 t.tensor_type)


@pytest.mark.parametrize(("change", "error"), [
    ({"layers": 0}, "n_layer must be at least 1"), ({"heads": 0}, "n_head must be at least 1"),
    ({"dim": 30}, "n_head must split the embedding length 30"), ({"kv_heads": 3}, "n_head_kv must divide"),
    ({"context_length": 1}, "context_length must be at least 2"), ({"vocab": 258}, "vocab must be at least 259"),
])
def test_make_model_refuses_what_load_model_would(change: dict[str, int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        make_model(**{**SMALL, "seed": 0, **change})


@pytest.mark.parametrize(("field", "value"), [
    ("dim", 0), ("n_ff", 0), ("vocab", 0), ("n_head_kv", 0), ("eps", 0.0), ("eps", NAN), ("rope_base", -1.0),
    ("rope_base", INF), ("sparse_threshold", NAN), ("context_length", 1),
])
def test_hyper_refuses_out_of_range_fields(model: Model, field: str, value: float) -> None:
    with pytest.raises(HyperError, match=rf"^{field} ") as info:
        Hyper(**{**model.hyper.__dict__, field: value})
    assert info.value.field == field and isinstance(info.value, ValueError)
