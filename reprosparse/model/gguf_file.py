"""Reading and writing PowerInfer model files: GGUF with the magic "PWRI" or "GGUF".

PowerInfer writes its sparse models as GGUF files whose first four bytes are
"PWRI" instead of "GGUF"; the rest of the format is GGUF.  The file is mapped
read-only once: gguf_header.py parses its header from that map, checking every
length before it reads, and the weights are views of the same map: nothing can
write them, so a backend may keep its copy on a device between calls
(reprosparse.backends.opencl.weights.is_frozen), and their pages stay shared
with the page cache.  Writing uses gguf-py's GGUFWriter.

Every key the loader reads is checked for its GGUF type and its range, and
every tensor for its type, shape and extent (docs/runtime.md lists them); any
failure is a ModelFormatError (a ValueError) that names the file and the key
or tensor.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from ..reference.quant import QuantizedMatrix, Weights
from .vocabulary import DEFAULT_BOS, DEFAULT_EOS, DEFAULT_UNK, TokenType, Vocabulary
from .weights import Hyper, HyperError, Layer, Model

if TYPE_CHECKING:
    from .gguf_header import Field, Header

MAGICS = (b"GGUF", b"PWRI")
SPARSE_THRESHOLD_KEY = "powerinfer.sparse_threshold"
TOKENS_KEY = "tokenizer.ggml.tokens"
SCORES_KEY = "tokenizer.ggml.scores"
TYPES_KEY = "tokenizer.ggml.token_type"


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


def _typed(header: Header, key: str, kinds: tuple[str, ...], expected: str) -> Field | None:
    field = header.fields.get(key)
    if field is not None and (field.item is not None or field.type.name not in kinds):
        raise ModelFormatError(f"{key!r} must be {expected}, but its GGUF type is {field.describe()}")
    return field


# Counts may come in any integer type: gguf-py writes UINT32, other writers UINT64 or INT32.
INTEGERS = ("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "UINT64", "INT64")
REALS = ("FLOAT32", "FLOAT64")


def _integer(header: Header, key: str, default: int | None = None) -> int:
    field = _typed(header, key, INTEGERS, "an integer")
    if field is not None:
        return int(field.value)
    if default is None:
        raise ModelFormatError(f"the model has no {key!r} key")
    return default


def _real(header: Header, key: str, default: float) -> float:
    field = _typed(header, key, REALS, "FLOAT32 or FLOAT64")
    return default if field is None else float(field.value)


def _text(header: Header, key: str, default: str) -> str:
    from .gguf_header import decode

    field = _typed(header, key, ("STRING",), "a STRING")
    return default if field is None else decode(field.value, repr(key))


def _tokens(header: Header) -> tuple[str, ...] | None:
    from .gguf_header import decode

    field = header.fields.get(TOKENS_KEY)
    if field is None:
        return None
    if field.item is None or field.item.name != "STRING":
        raise ModelFormatError(f"{TOKENS_KEY!r} must be an ARRAY of STRING, but its GGUF type is {field.describe()}")
    return tuple(decode(raw, f"{TOKENS_KEY}[{i}]") for i, raw in enumerate(field.value))


def _array(header: Header, key: str, item: str, n: int) -> np.ndarray | None:
    """An optional ARRAY of `item` with one element per token: llama.cpp reads these as raw float/int32."""
    field = header.fields.get(key)
    if field is None:
        return None
    if field.item is None or field.item.name != item:
        raise ModelFormatError(f"{key!r} must be an ARRAY of {item}, but its GGUF type is {field.describe()}")
    if len(field.value) != n:
        raise ModelFormatError(f"{key!r} has {len(field.value)} entries for {n} tokens in {TOKENS_KEY!r}")
    return np.asarray(field.value)


def read_vocabulary(header: Header) -> Vocabulary | None:
    """The SentencePiece vocabulary, with llama.cpp's defaults: scores 0, type NORMAL, ids 1, 2, 0."""
    tokens = _tokens(header)
    if tokens is None:
        return None
    n = len(tokens)
    scores = _array(header, SCORES_KEY, "FLOAT32", n)
    raw_types = _array(header, TYPES_KEY, "INT32", n)
    types = (TokenType.NORMAL,) * n
    if raw_types is not None:
        known = {int(t) for t in TokenType}
        bad = next((i for i, t in enumerate(raw_types.tolist()) if t not in known), None)
        if bad is not None:
            raise ModelFormatError(f"{TYPES_KEY}[{bad}] is {raw_types[bad]}; token types are 1 (NORMAL) to 6 (BYTE)")
        types = tuple(TokenType(t) for t in raw_types.tolist())
    ids = {}
    for name, default in (("bos", DEFAULT_BOS), ("eos", DEFAULT_EOS), ("unk", DEFAULT_UNK)):
        key = f"tokenizer.ggml.{'unknown' if name == 'unk' else name}_token_id"
        ids[name] = _integer(header, key, default)
        if not 0 <= ids[name] < n:
            raise ModelFormatError(f"{key!r} is {ids[name]}, not a token id of the {n} in {TOKENS_KEY!r}")
    return Vocabulary(
        pieces=tokens, scores=(0.0,) * n if scores is None else tuple(scores.tolist()), types=types,
        model=_text(header, "tokenizer.ggml.model", "llama"), **ids,
    )


def read_hyper(header: Header, vocab: int) -> Hyper:
    """The hyperparameters; Hyper checks their ranges and the error is renamed to the key."""
    arch = _text(header, "general.architecture", "llama")
    names = {
        "dim": "embedding_length", "n_layer": "block_count", "n_ff": "feed_forward_length",
        "n_head": "attention.head_count", "n_head_kv": "attention.head_count_kv",
        "eps": "attention.layer_norm_rms_epsilon", "rope_base": "rope.freq_base", "context_length": "context_length",
    }
    keys = {field: f"{arch}.{name}" for field, name in names.items()}
    keys["sparse_threshold"] = SPARSE_THRESHOLD_KEY
    keys["vocab"] = "token_embd.weight ne[1]"
    n_head = _integer(header, keys["n_head"])
    try:
        return Hyper(
            dim=_integer(header, keys["dim"]),
            n_layer=_integer(header, keys["n_layer"]),
            n_ff=_integer(header, keys["n_ff"]),
            n_head=n_head,
            n_head_kv=_integer(header, keys["n_head_kv"], n_head),
            vocab=vocab,
            eps=_real(header, keys["eps"], 1e-5),
            rope_base=_real(header, keys["rope_base"], 10000.0),
            context_length=_integer(header, keys["context_length"], 2048),
            sparse_threshold=_real(header, keys["sparse_threshold"], 0.0),
        )
    except HyperError as exc:
        raise ModelFormatError(f"{keys[exc.field]!r} {exc.problem}") from None


def _tensor_getter(header: Header, pages: np.ndarray) -> Callable[[str, tuple[int, ...]], Any]:
    """get(name, shape): the tensor as a read-only view of `pages`, the file's bytes (_open);
    a Q8_0, Q4_0 or Q6_K matrix as a QuantizedMatrix over the same view (no copy)."""
    gguf = _gguf()
    T = gguf.GGMLQuantizationType
    allowed = {T.F32: np.float32, T.F16: np.float16}
    quantized = {T.Q8_0: "q8_0", T.Q4_0: "q4_0", T.Q6_K: "q6_k"}

    def get(name: str, shape: tuple[int, ...]) -> Any:
        t = header.tensors.get(name)
        if t is None:
            raise ModelFormatError(f"the model has no tensor {name!r}")
        if t.kind not in allowed and (t.kind not in quantized or len(shape) != 2):
            kinds = "F32 and F16" if len(shape) == 1 else "F32, F16, Q8_0, Q4_0 and Q6_K"
            raise ModelFormatError(f"tensor {name!r} has type {t.kind.name}; only {kinds} are supported there")
        got = tuple(reversed(t.ne))  # ne[0] is the fastest axis: numpy's last
        if got != shape:
            raise ModelFormatError(
                f"tensor {name!r} has numpy shape {got} (GGUF ne {list(t.ne)}); "
                f"expected {shape} (ne {list(reversed(shape))})"
            )
        raw = pages[t.start:t.start + t.nbytes]
        if t.kind in quantized:  # gguf_header checked that ne[0] is a whole number of blocks
            return QuantizedMatrix(raw, (shape[0], shape[1]), quantized[t.kind])
        return raw.view(allowed[t.kind]).reshape(shape)

    return get


def _ne(header: Header, name: str, n_dims: int, layout: str) -> tuple[int, ...]:
    t = header.tensors.get(name)
    if t is None:
        raise ModelFormatError(f"the model has no tensor {name!r}")
    if len(t.ne) != n_dims:
        raise ModelFormatError(f"tensor {name!r} must have ne {layout}, has ne {list(t.ne)}")
    return t.ne


def _refuse_dense(header: Header) -> None:
    """A dense llama.cpp conversion (ffn_down, no predictors) says so, instead of 'no tensor ffn_down_t'."""
    sparse = ("blk.0.ffn_down_t.weight", "blk.0.fc1.weight", "blk.0.fc2.weight")
    if "blk.0.ffn_down.weight" in header.tensors and not any(name in header.tensors for name in sparse):
        raise ModelFormatError(
            "this is a dense LLaMA model (llama.cpp's layout: blk.N.ffn_down, no predictor): reprosparse runs "
            "PowerInfer's sparse models, whose files hold blk.N.ffn_down_t and the predictor blk.N.fc1/fc2, "
            "as PowerInfer's converter writes them from a ReLU model and its trained predictors"
        )


def load_model(path: str | os.PathLike[str], *, mmap: bool = True) -> Model:
    """Load a ReLU-LLaMA model with PowerInfer predictors from a GGUF or PWRI file.

    The weights are read-only views of the file, mapped (mmap=True: nothing is read until used) or
    read into memory that numpy owns (mmap=False).  numpy asks Linux for transparent huge pages for
    large arrays, and with 2 MB pages a decode step's gathered rows miss the TLB far less: decode
    steps ran 1-2% faster here, alternating with mapped ones in one process, below the noise across
    processes (docs/performance.md), for a load that reads the whole file and holds it twice until the
    page cache lets go of it.
    """
    path = Path(path)
    try:
        return _load(path, mmap)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from exc


def load_vocabulary(path: str | os.PathLike[str]) -> Vocabulary | None:
    """The vocabulary of a model file, or of a vocabulary-only GGUF such as llama.cpp's ggml-vocab-*.gguf."""
    path = Path(path)
    try:
        return read_vocabulary(_open(path)[0])
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from exc


def _open(path: Path, mmap: bool = True) -> tuple[Header, np.ndarray]:
    """The file's header and its bytes, read-only: mapped, or read into memory numpy owns."""
    _gguf()
    from . import gguf_header

    size = path.stat().st_size
    if size < 4:  # numpy cannot map an empty file
        raise ModelFormatError(f"not a GGUF or PowerInfer (PWRI) file: it has {size} bytes")
    if mmap:
        pages: np.ndarray = np.memmap(path, mode="r")
    else:
        pages = np.fromfile(path, np.uint8)
        pages.flags.writeable = False  # as the mapped file is; a device backend may then keep copies
    return gguf_header.parse(pages.data), pages


def _load(path: Path, mmap: bool) -> Model:
    header, pages = _open(path, mmap)
    _refuse_dense(header)
    vocab = _ne(header, "token_embd.weight", 2, "[dim, vocab]")[1]
    hp = read_hyper(header, vocab)
    get = _tensor_getter(header, pages)
    dim, ff, kv = hp.dim, hp.n_ff, hp.n_head_kv * hp.head_dim
    layers = []
    for i in range(hp.n_layer):  # stops at the first missing tensor, however large block_count is
        def w(name: str, shape: tuple[int, ...], i: int = i) -> Any:
            return get(f"blk.{i}.{name}.weight", shape)

        rank = _ne(header, f"blk.{i}.fc1.weight", 2, "[dim, rank]")[1]
        layers.append(Layer(
            attn_norm=w("attn_norm", (dim,)), wq=w("attn_q", (dim, dim)), wk=w("attn_k", (kv, dim)),
            wv=w("attn_v", (kv, dim)), wo=w("attn_output", (dim, dim)), ffn_norm=w("ffn_norm", (dim,)),
            gate=w("ffn_gate", (ff, dim)), up=w("ffn_up", (ff, dim)), down_t=w("ffn_down_t", (ff, dim)),
            fc1=w("fc1", (rank, dim)), fc2=w("fc2", (ff, rank)),
        ))
    vocabulary = read_vocabulary(header)
    if vocabulary is not None and len(vocabulary) != vocab:
        raise ModelFormatError(f"{TOKENS_KEY!r} has {len(vocabulary)} entries for a vocabulary of {vocab}")
    return Model(
        hyper=hp,
        token_embd=get("token_embd.weight", (vocab, dim)),
        layers=tuple(layers),
        output_norm=get("output_norm.weight", (dim,)),
        output=get("output.weight", (vocab, dim)),
        vocabulary=vocabulary,
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
    vocabulary = model.vocabulary
    if vocabulary is not None:
        writer.add_tokenizer_model(vocabulary.model)
        writer.add_token_list(list(vocabulary.pieces))
        writer.add_token_scores([float(s) for s in vocabulary.scores])  # FLOAT32
        writer.add_token_types([int(t) for t in vocabulary.types])  # INT32
        writer.add_bos_token_id(vocabulary.bos)
        writer.add_eos_token_id(vocabulary.eos)
        writer.add_unk_token_id(vocabulary.unk)

    def add(name: str, w: Weights) -> None:
        if isinstance(w, QuantizedMatrix):  # the raw blocks; gguf-py derives ne from their byte shape
            raw_type = gguf.GGMLQuantizationType[w.type.upper()]  # Q8_0, Q4_0, Q6_K
            writer.add_tensor(name, np.ascontiguousarray(w.data), raw_dtype=raw_type)
        else:
            writer.add_tensor(name, np.ascontiguousarray(w))

    add("token_embd.weight", model.token_embd)
    for i, layer in enumerate(model.layers):
        for name, arr in (
            ("attn_norm", layer.attn_norm), ("attn_q", layer.wq), ("attn_k", layer.wk), ("attn_v", layer.wv),
            ("attn_output", layer.wo), ("ffn_norm", layer.ffn_norm), ("ffn_gate", layer.gate),
            ("ffn_up", layer.up), ("ffn_down_t", layer.down_t), ("fc1", layer.fc1), ("fc2", layer.fc2),
        ):
            add(f"blk.{i}.{name}.weight", arr)
    add("output_norm.weight", model.output_norm)
    add("output.weight", model.output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if magic == "PWRI":
        with open(path, "r+b") as f:
            f.write(b"PWRI")
