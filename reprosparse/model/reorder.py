"""Hot neurons first: permute each layer's FFN neurons so that the most often active come first.

A permuted model computes the same function: neuron i's gate and up rows, its down_t row and its
predictor row (fc2) move together, so its h value and its predicted-active bit are bitwise those of
the neuron it was (each is one row's lane_dot).  Only sparse_axpy's sum visits the active neurons in
the new order, so the permuted model's bits are defined by its own neuron order, as any model's are.

Why permute: a partition (reprosparse.partition) gives each executor a range of rows in whole
256-neuron blocks, in order, so after this permutation the first executor (e.g. a GPU) holds the
hot neurons, as PowerInfer's GPU does, and every executor's share of the work follows its share of
the rows.

The order comes from PowerInfer's split file (`*.generated.gpuidx`: per layer an I32 `gpu_idx`, 1
for the neurons PowerInfer puts on the GPU, and `gpu_bucket`, those neurons' indices in ascending
order; hot neurons first, each group in ascending order) or from activation counts over prompts
(most often predicted active first, ties in index order).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..reference.quant import take_rows
from .gguf_file import ModelFormatError, _gguf
from .runtime import Runtime
from .weights import Model

if TYPE_CHECKING:
    from .gguf_header import Header

SPLIT_ARCH = "generic.gpu_index"
VRAM_KEY = "split.vram_capacity"


def _i32(header: Header, pages: np.memmap, name: str) -> np.ndarray:
    t = header.tensors.get(name)
    if t is None:
        raise ModelFormatError(f"the split file has no tensor {name!r}")
    if t.kind != _gguf().GGMLQuantizationType.I32 or len(t.ne) != 1:
        raise ModelFormatError(f"tensor {name!r} must be a 1-D I32 tensor, has type {t.kind.name} and ne {list(t.ne)}")
    return np.asarray(pages[t.start:t.start + t.nbytes].view("<i4"))


def read_split(path: str | os.PathLike[str], n_layer: int, n_ff: int) -> list[np.ndarray]:
    """Each layer's hot neurons (its gpu_bucket), checked against its gpu_idx and the model's shape."""
    from . import gguf_header

    path = Path(path)
    try:
        if path.stat().st_size < 4:
            raise ModelFormatError("not a GGUF or PowerInfer (PWRI) file")
        pages = np.memmap(path, mode="r")
        header = gguf_header.parse(pages.data)
        layers = sum(name.endswith(".gpu_idx") for name in header.tensors)
        if layers != n_layer or len(header.tensors) != 2 * n_layer:
            raise ModelFormatError(f"it splits {layers} layer(s) in {len(header.tensors)} tensors; the model has "
                                   f"{n_layer} layer(s), so {2 * n_layer} tensors (gpu_idx and gpu_bucket per layer)")
        hot = []
        for i in range(n_layer):
            idx, bucket = _i32(header, pages, f"blk.{i}.gpu_idx"), _i32(header, pages, f"blk.{i}.gpu_bucket")
            if idx.shape[0] != n_ff or not np.isin(idx, (0, 1)).all():
                raise ModelFormatError(f"blk.{i}.gpu_idx must hold {n_ff} values of 0 or 1 (one per FFN neuron)")
            if not np.array_equal(bucket, np.flatnonzero(idx)):
                raise ModelFormatError(f"blk.{i}.gpu_bucket must list the neurons whose gpu_idx is 1, ascending")
            hot.append(bucket.astype(np.int64))
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from exc
    return hot


def write_split(path: str | os.PathLike[str], hot: Sequence[np.ndarray], n_ff: int, vram_capacity: int = 0) -> None:
    """A split file in PowerInfer's layout (PWRI magic, arch generic.gpu_index) naming each layer's hot neurons."""
    gguf = _gguf()
    writer = gguf.GGUFWriter(str(path), SPLIT_ARCH)
    for i, neurons in enumerate(hot):
        idx = np.zeros(n_ff, np.int32)
        idx[neurons] = 1
        writer.add_tensor(f"blk.{i}.gpu_idx", idx, raw_dtype=gguf.GGMLQuantizationType.I32)
        writer.add_tensor(f"blk.{i}.gpu_bucket", np.sort(np.asarray(neurons, np.int32)),
                          raw_dtype=gguf.GGMLQuantizationType.I32)
    writer.add_block_count(len(hot))
    writer.add_uint64(VRAM_KEY, vram_capacity)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open(path, "r+b") as f:
        f.write(b"PWRI")


def order_from_hot(hot: np.ndarray, n_ff: int) -> np.ndarray:
    """The hot neurons in ascending order, then the others in ascending order."""
    cold = np.ones(n_ff, bool)
    cold[hot] = False
    return np.concatenate([np.sort(hot), np.flatnonzero(cold)]).astype(np.int64)


def order_from_counts(counts: np.ndarray) -> np.ndarray:
    """Most often active first; equal counts keep their index order."""
    return np.argsort(-np.asarray(counts, np.int64), kind="stable")


def activation_counts(runtime: Runtime, prompts: Sequence[Sequence[int]]) -> np.ndarray:
    """(n_layer, n_ff): how many prompt tokens each neuron was predicted active for (one prefill per prompt)."""
    hp = runtime.model.hyper
    counts = np.zeros((hp.n_layer, hp.n_ff), np.int64)

    def observe(layer: int, h: np.ndarray, mask: np.ndarray | None) -> None:
        if mask is not None:
            counts[layer] += mask.sum(axis=0, dtype=np.int64)

    before, runtime.observer = runtime.observer, observe
    try:
        for prompt in prompts:
            runtime.step([runtime.new_cache()], [list(prompt)])
    finally:
        runtime.observer = before
    return counts


def reorder(model: Model, orders: Sequence[np.ndarray]) -> Model:
    """The model with layer i's FFN neurons in orders[i] (each a permutation of range(n_ff))."""
    n_ff = model.hyper.n_ff
    if len(orders) != model.hyper.n_layer:
        raise ValueError(f"orders must hold one permutation per layer ({model.hyper.n_layer}), got {len(orders)}")
    layers = []
    for i, (layer, order) in enumerate(zip(model.layers, orders, strict=True)):
        order = np.asarray(order)
        if order.shape != (n_ff,) or not np.array_equal(np.sort(order), np.arange(n_ff)):
            raise ValueError(f"orders[{i}] must be a permutation of range({n_ff})")
        layers.append(dataclasses.replace(  # each matrix keeps its type (quantized rows move as blocks)
            layer, gate=take_rows(layer.gate, order), up=take_rows(layer.up, order),
            down_t=take_rows(layer.down_t, order), fc2=take_rows(layer.fc2, order)))
    return dataclasses.replace(model, layers=tuple(layers))
