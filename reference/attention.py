"""Causal multi-head attention over a KV cache   (docs/spec.md §12, "attention").

Grouped-query attention is supported: query head h reads KV head
h // (n_head // n_kv_head).  A query row at position p sees cache rows 0..p:
  s[j] = lane_dot(q, k[j]) * scale,  scale = float32(1) / sqrt(float32(head_dim))
  a    = softmax(s[0..p])
  o[i] = +0.0, then o[i] = o[i] + a[j] * v[j, i] for j = 0..p ascending
Every row is computed by this same per-row sequence of operations, so prefill,
one token at a time and a batch of other sequences all give the same bits.
attention_batch is the same over several sequences' caches, after storing the
step's keys and values in them: the decoder step's form.
"""

from __future__ import annotations

import numpy as np

from . import _runtime_checks
from .lane_dot import lane_dot_rows
from .softmax import softmax


def attention_scale(head_dim: int) -> np.float32:
    return np.float32(1.0) / np.sqrt(np.float32(head_dim))


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """q (t, n_head, hd); k, v (P, n_kv_head, hd) cache rows 0..P-1; positions (t,) < P.

    Returns (t, n_head, hd) float32.
    """
    q, k, v, pos = _runtime_checks.attention_args(q, k, v, positions)
    t, n_head, hd = q.shape
    n_kv = k.shape[1]
    scale = attention_scale(hd)
    group = n_head // n_kv
    out = np.empty((t, n_head, hd), np.float32)
    for h in range(n_head):
        kh = np.ascontiguousarray(k[:, h // group, :], np.float32)
        vh = v[:, h // group, :].astype(np.float32)
        scores = lane_dot_rows(kh, None, np.ascontiguousarray(q[:, h, :], np.float32)) * scale
        a = softmax(scores, pos + 1)
        o = np.zeros((t, hd), np.float32)
        for j in range(int(pos.max()) + 1 if t else 0):
            # Rows whose position is below j skip the term, rather than add 0 * v[j].
            o = np.where((j <= pos)[:, None], o + a[:, j : j + 1] * vh[j][None, :], o)
        out[:, h, :] = o
    return out


def attention_batch(
    q: np.ndarray, k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray, positions: np.ndarray,
    new_k: np.ndarray | None = None, new_v: np.ndarray | None = None,
) -> np.ndarray:
    """Row r is `attention` of q[r] over sequence seq[r]'s caches k[seq[r]], v[seq[r]].

    With new_k and new_v, row r's key and value are first copied to cache row positions[r] of its
    sequence, in row order (a later row wins a tie); the caches are modified in place.
    """
    q, k, v, seq, positions, new_k, new_v = _runtime_checks.attention_batch_args(q, k, v, seq, positions,
                                                                                new_k, new_v)
    if new_k is not None and new_v is not None:
        for r in range(q.shape[0]):
            k[seq[r]][positions[r]] = new_k[r]
            v[seq[r]][positions[r]] = new_v[r]
    out = np.empty_like(q)
    for s in np.unique(seq):
        rows = seq == s
        out[rows] = attention(q[rows], k[s], v[s], positions[rows])
    return out
