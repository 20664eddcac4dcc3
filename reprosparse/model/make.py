"""Seeded random ReLU-LLaMA models whose FFNs are really sparse and whose predictors are imperfect.

Construction (so that sparsity and predictor quality are realistic, not accidental):
- Residual channel 0 is a constant "bias" unit: every token embedding has
  BIAS_VALUE there and no layer writes to it (row 0 of attn_output and column 0
  of ffn_down_t are zero), so after RMSNorm the FFN input x0 is positive.
- The gate is low rank plus full-rank noise, gate = U V + GATE_NOISE * N, with
  column 0 holding a per-neuron negative bias beta_j.  beta_j is calibrated,
  layer by layer on random prompts, so that neuron j fires (relu(g) > 0) for
  about ACTIVE_FRACTION of tokens.
- The predictor sees only the low-rank part: fc1 = [V; -V; e0] (so that
  relu(fc1 x) holds Vx's positive and negative parts and x0), and
  fc2 = [U~, -U~, beta] with U~ = U plus PREDICTOR_NOISE.  It misses the
  full-rank gate noise, which is what makes its recall about 0.9.
- The predictor reads the residual r before ffn_norm, as PowerInfer's does,
  while the FFN reads x = rmsnorm(r) = (r * inv) * w.  So fc1's columns are
  scaled by w: fc1 r is then fc1 x / inv up to rounding, relu is positively
  homogeneous and inv > 0, so the logits are the normed ones scaled by a
  positive factor and the decisions at threshold 0 are the same.

The file must be the same bytes for a seed on every machine (a determinism
tool's own test models may not depend on the CPU), so every floating-point
operation here is a correctly rounded elementwise numpy op, a sort, or one of
the spec's operators in deterministic mode, on the selected backend (every
backend gives the reference's bits there; cython is what makes a LLaMA-sized
model take seconds, not minutes); there is no BLAS (`@`, np.dot, np.linalg)
and no float reduction whose order numpy may choose.  The
random draws depend only on numpy's Generator streams (the numpy version).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from reprosparse import get_backend

from ..reference.quant import block
from .runtime import Runtime
from .vocabulary import MIN_VOCAB, Vocabulary, make_vocabulary
from .weights import Hyper, Layer, Model

BIAS_VALUE = 2.0
ACTIVE_FRACTION = 0.10
GATE_NOISE = 0.08
PREDICTOR_NOISE = 0.1
CALIBRATION_PROMPTS = (8, 16)  # prompts x tokens


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return (rng.standard_normal(shape, np.float32) * np.float32(scale)).astype(np.float32)


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (float32) with the spec's lane_dot for each element, not BLAS: the same bits on every CPU."""
    return get_backend().matvec(a, np.ascontiguousarray(b.T), mode="deterministic").T


def make_model(
    *, layers: int, dim: int, ff: int, vocab: int, heads: int, seed: int, dtype: str = "f16",
    kv_heads: int | None = None, rank: int | None = None, context_length: int = 512,
    vocabulary: Vocabulary | None = None,
) -> Model:
    """Build the model; calibration runs the real runtime on the reference (numpy, deterministic).

    `vocabulary` (e.g. tokenizer.read_sentencepiece's) must have `vocab` tokens; None: make_vocabulary(vocab).
    dtype q8_0 or q4_0: the float32 model, calibrated, then quantized as PowerInfer's quantize
    would (reprosparse.model.quantize; a q4_0 model's output.weight is Q6_K when dim is a multiple
    of 256, as in PowerInfer's Q4_0 files).
    """
    if dtype in ("q8_0", "q4_0"):  # a model file's types; Q6_K is only ever the head's (quantize.HEAD_TYPE)
        from .quantize import quantize_model

        if dim % block(dtype):  # before minutes of calibration
            raise ValueError(f"a {dtype} model needs dim to be a multiple of {block(dtype)}, got {dim}")
        floats = make_model(layers=layers, dim=dim, ff=ff, vocab=vocab, heads=heads, seed=seed, dtype="f32",
                            kv_heads=kv_heads, rank=rank, context_length=context_length, vocabulary=vocabulary)
        return quantize_model(floats, dtype)
    if dtype not in ("f16", "f32"):
        raise ValueError(f"dtype must be f16, f32, q8_0 or q4_0, got {dtype!r}")
    kv_heads = heads if kv_heads is None else kv_heads
    # Hyper checks counts, head split and context length (HyperError, a ValueError), as load_model does.
    hyper = Hyper(dim=dim, n_layer=layers, n_ff=ff, n_head=heads, n_head_kv=kv_heads, vocab=vocab,
                  eps=float(np.float32(1e-5)),
                  rope_base=10000.0, context_length=context_length, sparse_threshold=0.0)
    if vocabulary is None:
        if vocab < MIN_VOCAB:
            raise ValueError(f"vocab must be at least {MIN_VOCAB} (<unk>, <s>, </s> and 256 byte tokens), got {vocab}")
        vocabulary = make_vocabulary(vocab)
    if len(vocabulary) != vocab:
        raise ValueError(f"vocabulary has {len(vocabulary)} tokens, but vocab is {vocab}")
    if vocab < 4:
        raise ValueError(f"vocab must be at least 4 (calibration prompts draw tokens 3 .. vocab-1), got {vocab}")
    wdt = np.float16 if dtype == "f16" else np.float32
    rank = rank if rank is not None else max(4, min(dim // 4, 256))
    rng = np.random.default_rng(seed)
    hd = dim // heads

    embd = _normal(rng, (vocab, dim), 1.0)
    embd[:, 0] = BIAS_VALUE
    built: list[Layer] = []
    lowrank: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(layers):
        u = _normal(rng, (ff, rank), 1.0 / np.sqrt(rank))
        v = _normal(rng, (rank, dim), 1.0 / np.sqrt(dim))
        v[:, 0] = 0.0
        noise = _normal(rng, (ff, dim), GATE_NOISE / np.sqrt(dim))
        noise[:, 0] = 0.0
        wo = _normal(rng, (dim, dim), 0.5 / np.sqrt(dim))
        wo[0] = 0.0
        down_t = _normal(rng, (ff, dim), 0.5 / np.sqrt(ACTIVE_FRACTION * ff))
        down_t[:, 0] = 0.0
        norm_w = (1.0 + _normal(rng, (dim,), 0.1)).astype(np.float32)
        norm_w[0] = 1.0
        built.append(Layer(
            attn_norm=(1.0 + _normal(rng, (dim,), 0.1)).astype(np.float32),
            wq=_normal(rng, (dim, dim), 1.0 / np.sqrt(dim)).astype(wdt),
            wk=_normal(rng, (kv_heads * hd, dim), 1.0 / np.sqrt(dim)).astype(wdt),
            wv=_normal(rng, (kv_heads * hd, dim), 1.0 / np.sqrt(dim)).astype(wdt),
            wo=wo.astype(wdt),
            ffn_norm=norm_w,
            gate=(_product(u, v) + noise).astype(wdt),
            up=_normal(rng, (ff, dim), 1.0 / np.sqrt(dim)).astype(wdt),
            down_t=down_t.astype(wdt),
            # Until calibrated, fc2 = 0 scores every neuron 0 >= threshold: a dense FFN.
            fc1=np.zeros((2 * rank + 1, dim), wdt),
            fc2=np.zeros((ff, 2 * rank + 1), wdt),
        ))
        lowrank.append((u, v))
    model = Model(hyper, embd.astype(wdt), tuple(built), (1.0 + _normal(rng, (dim,), 0.1)).astype(np.float32),
                  _normal(rng, (vocab, dim), 1.0 / np.sqrt(dim)).astype(wdt), vocabulary)
    return _calibrate(model, lowrank, rng)


def _calibrate(model: Model, lowrank: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> Model:
    """Set each layer's gate bias and predictor from that layer's real FFN inputs."""
    hp = model.hyper
    prompts = [list(rng.integers(3, hp.vocab, CALIBRATION_PROMPTS[1])) for _ in range(CALIBRATION_PROMPTS[0])]
    tokens = CALIBRATION_PROMPTS[0] * CALIBRATION_PROMPTS[1]
    # Neuron j must fire for `fires` of the calibration tokens: beta_j sits between two order statistics.
    fires = math.ceil(ACTIVE_FRACTION * tokens)
    layers = list(model.layers)
    captured: dict[int, np.ndarray] = {}  # layer -> FFN input of the latest run

    def keep(layer: int, x: np.ndarray, mask: np.ndarray | None) -> None:
        captured[layer] = x

    for li in range(hp.n_layer):
        # Layers above li cannot change layer li's input, so the run stops at li.
        upto = Model(dataclasses.replace(hp, n_layer=li + 1), model.token_embd, tuple(layers[: li + 1]),
                     model.output_norm, model.output, model.vocabulary)
        runtime = Runtime(upto, get_backend(), mode="deterministic", observer=keep)
        runtime.step([runtime.new_cache() for _ in prompts], prompts)
        x = captured[li]
        u, v = lowrank[li]
        layer = layers[li]
        assert isinstance(layer.gate, np.ndarray)  # float models only: quantized ones are quantized after this
        gate = layer.gate.copy()
        gate[:, 0] = 0.0
        # Neuron j fires when (gate_j . x) + beta_j * x0 > 0; x0 > 0 (the bias unit).
        ratio = np.sort(get_backend().matvec(gate, x, mode="deterministic") / x[:, :1], axis=0)
        below, above = ratio[tokens - fires - 1], ratio[tokens - fires]
        beta = -((below + above) * np.float32(0.5))
        new_gate = layer.gate.copy()
        new_gate[:, 0] = beta
        rank = u.shape[1]
        e0 = np.zeros((1, hp.dim), np.float32)
        e0[0, 0] = 1.0
        u_noisy = u + _normal(rng, u.shape, PREDICTOR_NOISE / np.sqrt(rank))
        fc1 = np.concatenate([v, -v, e0]) * layer.ffn_norm[None, :]  # the predictor reads the residual
        fc2 = np.concatenate([u_noisy, -u_noisy, beta[:, None]], axis=1)
        wdt = layer.gate.dtype
        layers[li] = Layer(**{**layer.__dict__, "gate": new_gate.astype(wdt), "fc1": fc1.astype(wdt),
                              "fc2": fc2.astype(wdt)})
    return Model(hp, model.token_embd, tuple(layers), model.output_norm, model.output, model.vocabulary)
