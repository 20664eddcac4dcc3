"""Reading and writing PowerInfer model files: GGUF with the magic "PWRI" or "GGUF".

PowerInfer writes its sparse models as GGUF files whose first four bytes are
"PWRI" instead of "GGUF"; the rest of the format is GGUF.  gguf-py's reader
insists on the GGUF magic, so the reader's own mapping is copy-on-write and
the magic is patched in memory before the reader parses it (the file is not
modified).  The weights themselves are views of a second, read-only mapping:
nothing can write them, so a backend may keep its copy on a device between
calls (reprosparse.backends.opencl.weights.is_frozen), and their pages stay
shared with the page cache.

Dimension order: a GGUF tensor's ne[0] is its fastest (contiguous) axis, so a
tensor with ne = [a, b] is the numpy array of shape (b, a).  A PyTorch-style
linear weight (out_features, in_features) therefore has ne = [in, out]; e.g.
`ffn_gate` ne = [dim, n_ff] -> numpy (n_ff, dim), and PowerInfer's transposed
down projection `ffn_down_t` ne = [dim, n_ff] -> numpy (n_ff, dim), neuron-major.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .weights import Hyper, Layer, Model

MAGICS = (b"GGUF", b"PWRI")
SPARSE_THRESHOLD_KEY = "powerinfer.sparse_threshold"


class ModelFormatError(ValueError):
    """The file is not a usable ReLU-LLaMA model; the message names the tensor or key."""


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise ModelFormatError(
            "reading model files needs the gguf package: pip install 'reprosparse[model]'"
        ) from exc
    return gguf


def _reader_class() -> type:
    gguf = _gguf()
    from gguf import GGUFReader

    class PowerInferReader(GGUFReader):
        """GGUFReader that also accepts the PWRI magic and names truncated tensors."""

        @property
        def data(self) -> np.memmap:
            return self._data

        @data.setter
        def data(self, mapped: np.memmap) -> None:
            if bytes(mapped[:4]) == b"PWRI":
                mapped[:4] = np.frombuffer(b"GGUF", np.uint8)  # copy-on-write: the file keeps PWRI
            self._data = mapped

        def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
            for field in fields:
                _, name, _, dims, raw_type, offset = field.parts
                kind = gguf.GGMLQuantizationType(int(raw_type[0]))
                block, size = gguf.GGML_QUANT_SIZES[kind]
                end = int(start_offs + offset[0]) + int(np.prod(dims)) * size // block
                if end > len(self._data):
                    raise ModelFormatError(
                        f"tensor {bytes(name).decode()!r} ends at byte {end} but the file has "
                        f"{len(self._data)} bytes: the file is truncated"
                    )
            super()._build_tensors(start_offs, fields)

    return PowerInferReader


def open_reader(path: str | os.PathLike[str]) -> Any:
    """A gguf.GGUFReader over a GGUF or PWRI file, with format errors as ModelFormatError."""
    path = Path(path)
    with path.open("rb") as f:
        magic = f.read(4)
    if magic not in MAGICS:
        raise ModelFormatError(f"{path} is not a GGUF or PowerInfer (PWRI) file: magic {magic!r}")
    try:
        return _reader_class()(path, "c")
    except ModelFormatError:
        raise
    except Exception as exc:  # gguf raises whatever numpy raises on a short or corrupt header
        raise ModelFormatError(f"{path}: the GGUF header is truncated or corrupt ({exc})") from exc


def _field(reader: Any, key: str) -> Any:
    return reader.fields.get(key)


def _scalar(reader: Any, key: str, default: float | None = None) -> float:
    field = _field(reader, key)
    if field is None:
        if default is None:
            raise ModelFormatError(f"the model has no {key!r} key")
        return default
    return float(field.parts[field.data[0]][0])


def _string(reader: Any, key: str, default: str) -> str:
    field = _field(reader, key)
    return default if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")


def _tokens(reader: Any) -> tuple[str, ...] | None:
    field = _field(reader, "tokenizer.ggml.tokens")
    if field is None:
        return None
    return tuple(bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data)


def read_hyper(reader: Any, vocab: int) -> Hyper:
    arch = _string(reader, "general.architecture", "llama")

    def key(name: str, default: float | None = None) -> float:
        return _scalar(reader, f"{arch}.{name}", default)

    n_head = int(key("attention.head_count"))
    return Hyper(
        dim=int(key("embedding_length")),
        n_layer=int(key("block_count")),
        n_ff=int(key("feed_forward_length")),
        n_head=n_head,
        n_head_kv=int(key("attention.head_count_kv", n_head)),
        vocab=vocab,
        eps=key("attention.layer_norm_rms_epsilon", 1e-5),
        rope_base=key("rope.freq_base", 10000.0),
        context_length=int(key("context_length", 2048)),
        sparse_threshold=_scalar(reader, SPARSE_THRESHOLD_KEY, 0.0),
    )


def _tensor_getter(reader: Any, pages: np.memmap) -> Callable[[str, tuple[int, ...]], np.ndarray]:
    """get(name, shape): the tensor as a read-only view of `pages`, the file mapped read-only."""
    gguf = _gguf()
    by_name = {t.name: t for t in reader.tensors}
    allowed = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        t = by_name.get(name)
        if t is None:
            raise ModelFormatError(f"the model has no tensor {name!r}")
        kind = gguf.GGMLQuantizationType(t.tensor_type)
        if kind not in allowed:
            raise ModelFormatError(f"tensor {name!r} has type {kind.name}; only F32 and F16 are supported")
        got = tuple(reversed([int(n) for n in t.shape]))  # ne[0] is the fastest axis: numpy's last
        if got != shape:
            ne = list(reversed(shape))
            raise ModelFormatError(
                f"tensor {name!r} has numpy shape {got} (GGUF ne {[int(n) for n in t.shape]}); "
                f"expected {shape} (ne {ne})"
            )
        start = int(t.data_offset)
        return pages[start:start + int(t.n_bytes)].view(allowed[kind]).reshape(shape)

    return get


def load_model(path: str | os.PathLike[str]) -> Model:
    """Load a ReLU-LLaMA model with PowerInfer predictors from a GGUF or PWRI file."""
    reader = open_reader(path)
    get = _tensor_getter(reader, np.memmap(path, mode="r"))
    embd_info = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd_info is None:
        raise ModelFormatError("the model has no tensor 'token_embd.weight'")
    vocab = int(embd_info.shape[1]) if len(embd_info.shape) == 2 else 0
    hp = read_hyper(reader, vocab)
    if hp.dim % hp.n_head or hp.n_head % hp.n_head_kv or hp.head_dim % 2:
        raise ModelFormatError(
            f"embedding_length {hp.dim}, head_count {hp.n_head}, head_count_kv {hp.n_head_kv} do not "
            "give whole, even heads"
        )
    dim, ff, kv = hp.dim, hp.n_ff, hp.n_head_kv * hp.head_dim
    layers = []
    for i in range(hp.n_layer):
        def w(name: str, shape: tuple[int, ...], i: int = i) -> np.ndarray:
            return get(f"blk.{i}.{name}.weight", shape)

        fc1_info = next((t for t in reader.tensors if t.name == f"blk.{i}.fc1.weight"), None)
        rank = int(fc1_info.shape[-1]) if fc1_info is not None else 0
        layers.append(Layer(
            attn_norm=w("attn_norm", (dim,)), wq=w("attn_q", (dim, dim)), wk=w("attn_k", (kv, dim)),
            wv=w("attn_v", (kv, dim)), wo=w("attn_output", (dim, dim)), ffn_norm=w("ffn_norm", (dim,)),
            gate=w("ffn_gate", (ff, dim)), up=w("ffn_up", (ff, dim)), down_t=w("ffn_down_t", (ff, dim)),
            fc1=w("fc1", (rank, dim)), fc2=w("fc2", (ff, rank)),
        ))
    tokens = _tokens(reader)
    if tokens is not None and len(tokens) != vocab:
        raise ModelFormatError(f"tokenizer.ggml.tokens has {len(tokens)} entries for a vocabulary of {vocab}")
    return Model(
        hyper=hp,
        token_embd=get("token_embd.weight", (vocab, dim)),
        layers=tuple(layers),
        output_norm=get("output_norm.weight", (dim,)),
        output=get("output.weight", (vocab, dim)),
        tokens=tokens,
    )


def save_model(model: Model, path: str | os.PathLike[str], magic: str = "PWRI") -> None:
    """Write `model` as GGUF; magic "PWRI" marks it as a PowerInfer sparse model."""
    if magic.encode() not in MAGICS:
        raise ValueError(f"magic must be PWRI or GGUF, got {magic!r}")
    gguf = _gguf()
    hp = model.hyper
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(hp.context_length)
    writer.add_embedding_length(hp.dim)
    writer.add_block_count(hp.n_layer)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_layer_norm_rms_eps(hp.eps)
    writer.add_rope_freq_base(hp.rope_base)
    writer.add_float32(SPARSE_THRESHOLD_KEY, hp.sparse_threshold)
    if model.tokens is not None:
        writer.add_tokenizer_model("llama")
        writer.add_token_list(list(model.tokens))
    writer.add_tensor("token_embd.weight", model.token_embd)
    for i, layer in enumerate(model.layers):
        for name, arr in (
            ("attn_norm", layer.attn_norm), ("attn_q", layer.wq), ("attn_k", layer.wk), ("attn_v", layer.wv),
            ("attn_output", layer.wo), ("ffn_norm", layer.ffn_norm), ("ffn_gate", layer.gate),
            ("ffn_up", layer.up), ("ffn_down_t", layer.down_t), ("fc1", layer.fc1), ("fc2", layer.fc2),
        ):
            writer.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(arr))
    writer.add_tensor("output_norm.weight", model.output_norm)
    writer.add_tensor("output.weight", model.output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if magic == "PWRI":
        with open(path, "r+b") as f:
            f.write(b"PWRI")
