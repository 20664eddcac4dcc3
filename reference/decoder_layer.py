"""One ReLU-LLaMA decoder layer   (docs/spec.md §12, "decoder_layer").

The layer is the composition of operators defined elsewhere in the spec, in
this order, and nothing else:

  a   = rmsnorm(x, attn_norm, eps)
  q   = rope(matvec(wq, a), positions);  k = rope(matvec(wk, a), positions);  v = matvec(wv, a)
  att = attention_batch(q, caches, seq, positions, new_k=k, new_v=v)   (store, then attend)
  r   = x + matvec(wo, att)
  h   = rmsnorm(r, ffn_norm, eps)
  y   = sparse_ffn(h, gate, up, down_t, predict(r, fc1, fc2, threshold))   or dense_ffn(h, ...)
  out = r + y

It returns (out, h, the mask or None): h and the mask are what the runtime's
observer sees.  A backend may compute the layer in one call; it must give
these bits, the caches' stored rows included.

`decoder_layers` is a stack of them, as a decode step runs it: the same
layers in order, with every argument checked once, before the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _runtime_checks
from .attention import attention_batch
from .ffn import dense_ffn, sparse_ffn
from .matvec import matvec
from .predict import predict
from .rmsnorm import rmsnorm
from .rope import rope

#: observer(layer index, the layer's FFN input h, its predicted mask or None for a dense FFN)
Observer = Callable[[int, np.ndarray, np.ndarray | None], None]


def decoder_layer(
    x: np.ndarray, layer: Any, k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray, positions: np.ndarray,
    n_head: int, n_head_kv: int, eps: float, rope_base: float, threshold: float = 0.0, ffn: str = "sparse",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """x (t, dim) float32, row r of sequence seq[r] at positions[r]; layer has a model Layer's fields.

    k[s], v[s] are sequence s's (P, n_head_kv, head_dim) caches, written in place.
    """
    x, w, k, v, seq, positions, n_head, n_kv, eps32, base, thr = _runtime_checks.decoder_layer_args(
        x, layer, k, v, seq, positions, n_head, n_head_kv, eps, rope_base, threshold, ffn)
    return _layer(x, w, k, v, seq, positions, n_head, n_kv, eps32, base, thr)


def decoder_layers(
    x: np.ndarray, layers: Sequence[Any], k: Sequence[list[np.ndarray]], v: Sequence[list[np.ndarray]],
    seq: np.ndarray, positions: np.ndarray, n_head: int, n_head_kv: int, eps: float, rope_base: float,
    threshold: float = 0.0, ffn: str = "sparse", observer: Observer | None = None,
) -> np.ndarray:
    """decoder_layer through layers[0], layers[1], ... in order, layer i with caches k[i], v[i]; the last
    layer's output.  Every argument is checked before the first layer runs; observer(i, h, mask), if
    given, sees each layer's FFN input and mask as the layer ends."""
    x, ws, ks, vs, seq, positions, n_head, n_kv, eps32, base, thr = _runtime_checks.decoder_layers_args(
        x, layers, k, v, seq, positions, n_head, n_head_kv, eps, rope_base, threshold, ffn)
    for i, w in enumerate(ws):
        x, h, mask = _layer(x, w, ks[i], vs[i], seq, positions, n_head, n_kv, eps32, base, thr)
        if observer is not None:
            observer(i, h, mask)
    return x


def _layer(
    x: np.ndarray, w: dict[str, Any], k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray,
    positions: np.ndarray, n_head: int, n_kv: int, eps32: np.float32, base: float, thr: np.float32 | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The layer on checked arguments."""
    t, dim = x.shape
    hd = dim // n_head
    eps_, thr_ = float(eps32), None if thr is None else float(thr)  # exact: float32 values
    with np.errstate(all="ignore"):  # Inf and NaN propagate as each operator specifies
        a = rmsnorm(x, w["attn_norm"], eps_)
        q = rope(matvec(w["wq"], a).reshape(t, n_head, hd), positions, base)
        kr = rope(matvec(w["wk"], a).reshape(t, n_kv, hd), positions, base)
        vn = matvec(w["wv"], a).reshape(t, n_kv, hd)
        att = attention_batch(q, k, v, seq, positions, kr, vn)
        r = x + matvec(w["wo"], att.reshape(t, dim))
        h = rmsnorm(r, w["ffn_norm"], eps_)
        if thr_ is None:
            return r + dense_ffn(h, w["gate"], w["up"], w["down_t"]), h, None
        mask = predict(r, w["fc1"], w["fc2"], thr_)
        return r + sparse_ffn(h, w["gate"], w["up"], w["down_t"], mask), h, mask
