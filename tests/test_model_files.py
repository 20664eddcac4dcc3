"""Loading PowerInfer model files: both magics, f16/f32, the GGUF -> numpy mapping, and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from reprosparse.model import Model, ModelFormatError, load_model, make_model, save_model  # noqa: E402

SHAPE: dict[str, Any] = {"layers": 2, "dim": 32, "ff": 256, "vocab": 128, "heads": 4}


@pytest.fixture(scope="module")
def model() -> Model:
    return make_model(**SHAPE, seed=11, kv_heads=2)


def _same(a: Model, b: Model) -> None:
    assert a.hyper == b.hyper and a.tokens == b.tokens
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
              m.output_norm, m.output, m.tokens)
    save_model(m, tmp_path / "t.gguf")
    assert load_model(tmp_path / "t.gguf").hyper.sparse_threshold == -0.25


def _rewrite(model: Model, path: Path, change: dict[str, tuple[np.ndarray | None, object]]) -> None:
    """Write `model` with tensors replaced (array) or dropped (None), optionally as another GGML type."""
    w = gguf.GGUFWriter(str(path), "llama")
    hp = model.hyper
    w.add_embedding_length(hp.dim)
    w.add_block_count(hp.n_layer)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)
    save_model(model, path.with_suffix(".src"), "GGUF")
    for t in gguf.GGUFReader(path.with_suffix(".src")).tensors:
        arr, raw_type = change.get(t.name, (np.asarray(t.data), None))
        if arr is None:
            continue
        w.add_tensor(t.name, arr, raw_dtype=raw_type) if raw_type is not None else w.add_tensor(t.name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_missing_tensor(model: Model, tmp_path: Path) -> None:
    _rewrite(model, tmp_path / "m.gguf", {"blk.1.fc2.weight": (None, None)})
    with pytest.raises(ModelFormatError, match=r"no tensor 'blk\.1\.fc2\.weight'"):
        load_model(tmp_path / "m.gguf")


def test_wrong_shape(model: Model, tmp_path: Path) -> None:
    bad = np.zeros((model.hyper.n_ff, model.hyper.dim + 1), np.float16)
    _rewrite(model, tmp_path / "m.gguf", {"blk.0.ffn_up.weight": (bad, None)})
    with pytest.raises(ModelFormatError, match=r"blk\.0\.ffn_up\.weight.*shape"):
        load_model(tmp_path / "m.gguf")


def test_unsupported_type(model: Model, tmp_path: Path) -> None:
    hp = model.hyper
    q4 = gguf.GGMLQuantizationType.Q4_0
    block, size = gguf.GGML_QUANT_SIZES[q4]
    raw = np.zeros((hp.n_ff, hp.dim // block * size), np.uint8)  # byte shape of a Q4_0 (n_ff, dim)
    _rewrite(model, tmp_path / "m.gguf", {"blk.0.ffn_gate.weight": (raw, q4)})
    with pytest.raises(ModelFormatError, match=r"blk\.0\.ffn_gate\.weight.*Q4_0"):
        load_model(tmp_path / "m.gguf")


def test_truncated_file(model: Model, tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    save_model(model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFormatError, match=r"output\.weight.*truncated"):
        load_model(path)
    path.write_bytes(data[:100])  # inside the metadata
    with pytest.raises(ModelFormatError, match="truncated or corrupt"):
        load_model(path)


def test_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFormatError, match="not a GGUF"):
        load_model(tmp_path / "x.bin")
    assert issubclass(ModelFormatError, ValueError)
