"""reorder-model: hot neurons first, from PowerInfer's split file or from activation counts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gguf")

import gguf

import reprosparse
from reprosparse.cli import main
from reprosparse.model import ModelFormatError, Runtime, load_model, make_model, save_model
from reprosparse.model.reorder import (
    activation_counts,
    order_from_counts,
    order_from_hot,
    read_split,
    reorder,
    write_split,
)
from reprosparse.reference import matvec, predict

LAYERS, FF = 2, 512


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reorder") / "tiny.gguf"
    save_model(make_model(layers=LAYERS, dim=64, ff=FF, vocab=512, heads=4, seed=5), path)
    return path


def hot_sets(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(FF, 100 + 30 * i, replace=False)) for i in range(LAYERS)]


def test_a_split_file_round_trips_and_its_reordered_model_is_a_fixed_point(model_path: Path, tmp_path: Path) -> None:
    split = tmp_path / "in.gpuidx"
    write_split(split, hot_sets(0), FF, vram_capacity=7)
    assert [h.tolist() for h in read_split(split, LAYERS, FF)] == [h.tolist() for h in hot_sets(0)]
    assert split.read_bytes()[:4] == b"PWRI"
    out, out_split, again = tmp_path / "r.gguf", tmp_path / "r.gpuidx", tmp_path / "rr.gguf"
    assert main(["reorder-model", str(model_path), str(out), "--split", str(split), "--split-out", str(out_split)]) == 0
    assert [h.tolist() for h in read_split(out_split, LAYERS, FF)] == [list(range(len(h))) for h in hot_sets(0)]
    # The permuted model's own split names its first neurons: reordering by it changes nothing.
    assert main(["reorder-model", str(out), str(again), "--split", str(out_split)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_each_neuron_keeps_its_bits_in_its_new_place(model_path: Path) -> None:
    """A neuron's gate, up and predictor values are one row's lane_dot each: moving rows moves them exactly."""
    model = load_model(model_path)
    orders = [order_from_hot(h, FF) for h in hot_sets(1)]
    moved = reorder(model, orders)
    x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    for layer, new, order in zip(model.layers, moved.layers, orders, strict=True):
        for name in ("gate", "up"):
            assert matvec(getattr(new, name), x).tobytes() == matvec(getattr(layer, name), x)[:, order].tobytes()
        want = predict(x, layer.fc1, layer.fc2, model.hyper.sparse_threshold)[:, order]
        assert np.array_equal(predict(x, new.fc1, new.fc2, model.hyper.sparse_threshold), want)
        assert new.down_t.tobytes() == layer.down_t[order].tobytes()
        for name in ("wq", "wk", "wv", "wo", "fc1", "attn_norm", "ffn_norm"):
            assert getattr(new, name) is getattr(layer, name)


def test_the_hot_neurons_come_first_each_group_in_index_order() -> None:
    assert order_from_hot(np.array([4, 1]), 6).tolist() == [1, 4, 0, 2, 3, 5]
    assert order_from_counts(np.array([3, 9, 3, 0, 9])).tolist() == [1, 4, 0, 2, 3]


def test_profile_counts_are_the_predicted_masks(model_path: Path) -> None:
    model = load_model(model_path)
    prompts = [[1, 2, 3, 4], [9, 8]]
    counts = activation_counts(Runtime(model, reprosparse.get_backend("numpy")), prompts)
    masks: list[np.ndarray] = []
    rt = Runtime(model, reprosparse.get_backend("numpy"), observer=lambda li, h, m: masks.append(m))
    for p in prompts:
        rt.step([rt.new_cache()], [p])
    want = [sum(m.sum(axis=0) for m in masks[li::LAYERS]) for li in range(LAYERS)]
    assert np.array_equal(counts, np.stack(want))
    assert counts.sum() > 0 and rt.observer is not None


AVAILABLE = {s.name for s in reprosparse.available_backends().values() if s.available}


@pytest.mark.parametrize("backend", sorted({"numpy", "cython"} & AVAILABLE))
def test_profiling_writes_the_same_file_on_every_backend(model_path: Path, tmp_path: Path, backend: str) -> None:
    out = tmp_path / f"{backend}.gguf"
    args = ["reorder-model", str(model_path), str(out), "--profile", "1,2,3,4,5", "--profile", "7,7,9"]
    assert main([*args, "--backend", backend]) == 0
    assert main([*args[:2], str(tmp_path / "numpy-again.gguf"), *args[3:], "--backend", "numpy"]) == 0
    assert out.read_bytes() == (tmp_path / "numpy-again.gguf").read_bytes()


def _bad_split(path: Path, edit: str) -> None:
    hot = hot_sets(3)
    writer = gguf.GGUFWriter(str(path), "generic.gpu_index")
    for i, neurons in enumerate(hot[: 1 if edit == "one-layer" else LAYERS]):
        idx = np.zeros(FF, np.int32)
        idx[neurons] = 1
        bucket = neurons.astype(np.int32)
        if edit == "not-0-or-1" and i == 1:
            idx[0] = 2
        if edit == "bucket-mismatch" and i == 1:
            bucket = bucket[::-1].copy()
        if edit == "float-type" and i == 0:
            writer.add_tensor(f"blk.{i}.gpu_idx", idx.astype(np.float32))
        else:
            writer.add_tensor(f"blk.{i}.gpu_idx", idx, raw_dtype=gguf.GGMLQuantizationType.I32)
        writer.add_tensor(f"blk.{i}.gpu_bucket", bucket, raw_dtype=gguf.GGMLQuantizationType.I32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if edit == "truncated":
        path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("one-layer", "splits 1 layer(s)"),
        ("not-0-or-1", "blk.1.gpu_idx must hold 512 values of 0 or 1"),
        ("bucket-mismatch", "blk.1.gpu_bucket must list the neurons whose gpu_idx is 1"),
        ("float-type", "'blk.0.gpu_idx' must be a 1-D I32 tensor"),
        ("truncated", ""),
    ],
)
def test_bad_split_files_are_refused_naming_what_is_wrong(model_path: Path, tmp_path: Path, capsys: Any,
                                                         edit: str, message: str) -> None:
    split = tmp_path / "bad.gpuidx"
    _bad_split(split, edit)
    with pytest.raises(ModelFormatError, match=f"^{re.escape(str(split))}: .*{re.escape(message)}"):
        read_split(split, LAYERS, FF)
    assert main(["reorder-model", str(model_path), str(tmp_path / "out.gguf"), "--split", str(split)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "out.gguf").exists()


def test_bad_orders_and_options_are_refused(model_path: Path, tmp_path: Path, capsys: Any) -> None:
    model = load_model(model_path)
    with pytest.raises(ValueError, match="one permutation per layer"):
        reorder(model, [np.arange(FF)])
    with pytest.raises(ValueError, match=r"orders\[1\] must be a permutation"):
        reorder(model, [np.arange(FF), np.zeros(FF, np.int64)])
    out = str(tmp_path / "o.gguf")
    assert main(["reorder-model", str(model_path), out, "--profile", "1,2", "--split-out", out + ".gpuidx"]) == 2
    assert main(["reorder-model", str(model_path), out, "--profile", "1,999"]) == 2
    assert main(["reorder-model", str(model_path), out]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_quantized_model_keeps_its_types(tmp_path: Path) -> None:
    from reprosparse.reference.quant import QuantizedMatrix

    path, out = tmp_path / "q.gguf", tmp_path / "q-r.gguf"
    save_model(make_model(layers=LAYERS, dim=64, ff=FF, vocab=300, heads=4, seed=5, dtype="q4_0"), path)
    split = tmp_path / "q.gpuidx"
    write_split(split, hot_sets(4), FF)
    assert main(["reorder-model", str(path), str(out), "--split", str(split)]) == 0
    before, after = load_model(path), load_model(out)
    for old, new, hot in zip(before.layers, after.layers, hot_sets(4), strict=True):
        order = order_from_hot(hot, FF)
        for name in ("gate", "up", "down_t", "fc2"):
            assert isinstance(getattr(new, name), QuantizedMatrix)
            assert getattr(new, name).data.tobytes() == getattr(old, name).data[order].tobytes()
