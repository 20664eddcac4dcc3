"""decoder_layer on the device: spec §12's composition with the intermediates left on the device.

The base class composes a layer from the backend's hooks, and each hook is a
round trip: upload its input, run, wait, read its output back.  A layer made
that way waits on the device fourteen times, and each wait costs a driver's
command latency (about 45 µs on PoCL's CPU device; more across a GPU's
bus) whatever the kernel's size.  Here the same kernels, self-tested as
they are, run on each other's output buffers, and the host waits only where
the spec needs a host step:

1. after K and V: the step's rotated keys and values are stored in the host
   caches (the interface's arrays) before attention reads them;
2. after the predictor's first product: relu on the host, as the hooks do;
3. after its second: the mask, whose active neurons the host lists for the
   sparse FFN's launch;
4. at the end: the layer's output and h.

A dense FFN skips 2 and 3.  The bits are the hooks': every kernel gets the
inputs its hook would have uploaded, and the queue runs in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyopencl as cl

from reprosparse.reference._runtime_checks import LAYER_NORMS
from reprosparse.reference.ffn import ffn_rows
from reprosparse.reference.predict import predicted
from reprosparse.reference.relu import relu

from .programs import check_size, one_type
from .runtime import store

if TYPE_CHECKING:
    from .backend import OpenCLBackend

OP = "decoder_layer"  # names the op in a failed read's OpenCLError


def decoder_layer(
    be: OpenCLBackend, x: np.ndarray, w: dict[str, Any], k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray,
    positions: np.ndarray, n_head: int, n_kv: int, eps: np.float32, base: float, thr: np.float32 | None, mode: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backend._decoder_layer's result for t >= 1 rows; thr None means a dense FFN."""
    t, dim = x.shape
    hd = dim // n_head
    check_size("x", x.size)

    # Every matrix's program for t tokens (a refused (mode, weight type) was raised by _take_layer, before any work).
    variants = {f: be._variant(mode, w[f], t) for f in w if f not in LAYER_NORMS}

    def product(name: str, inp: cl.Buffer) -> cl.Buffer:  # matvec with the layer's matrix `name`
        W = w[name]
        return be._dot_on_device(variants[name], W, inp, t, np.arange(W.shape[0], dtype=np.int32))

    x_dev = be._upload(x)
    positions32 = be._upload(positions.astype(np.int32))
    a = be._rmsnorm_on_device(x_dev, t, dim, w["attn_norm"], eps)
    q = be._rope_on_device(product("wq", a), t, n_head, hd, positions32, base)
    new_k = be._read(np.empty((t, n_kv, hd), np.float32),
                     be._rope_on_device(product("wk", a), t, n_kv, hd, positions32, base), OP, blocking=False)
    new_v = be._read(np.empty((t, n_kv, hd), np.float32), product("wv", a), OP)
    store(k, v, seq, positions, new_k, new_v)
    att, caches = be._attention_on_device(q, t, n_head, hd, k, v, seq, positions, positions32)
    r = be._add_on_device(x_dev, product("wo", att), t * dim)
    h = be._rmsnorm_on_device(r, t, dim, w["ffn_norm"], eps)
    gate, up, down_t = w["gate"], w["up"], w["down_t"]
    if thr is None:
        mask = np.ones((t, gate.shape[0]), bool)
    else:
        hidden = relu(be._read(np.empty((t, w["fc1"].shape[0]), np.float32), product("fc1", r), OP))
        z = be._read(np.empty((t, w["fc2"].shape[0]), np.float32), product("fc2", be._upload(hidden)), OP)
        mask = predicted(z, thr)
    rows = ffn_rows(mask)
    if rows.size == 0:  # no term: y is +0.0
        y = be._upload(np.zeros((t, dim), np.float32))
    elif one_type(gate, up, down_t):
        y = be._ffn_on_device(variants["gate"], h, t, dim, gate, up, down_t, mask, rows)
    else:  # the fused kernels take one weight type: the hook's composition, on h read back
        y = be._upload(be._sparse_ffn(be._read(np.empty((t, dim), np.float32), h, OP), gate, up, down_t, mask, mode, 1))
    out = be._add_on_device(r, y, t * dim)
    h_host = be._read(np.empty((t, dim), np.float32), h, OP, blocking=False)
    out_host = be._read(np.empty((t, dim), np.float32), out, OP)
    del caches  # attention read them in place (CPU devices) until the blocking reads
    return out_host, h_host, None if thr is None else mask
