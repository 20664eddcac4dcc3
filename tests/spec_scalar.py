"""A literal, scalar transcription of docs/spec.md, independent of reference/.

Written from the spec's words with one np.float32 operation per step and plain
Python loops, so that it shares no code and no vectorisation trick with the
reference it is used to check.  Slow by design; for small cases only.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

F = np.float32
ZERO = F(0.0)


def plain(w):
    """A weight matrix as floats: a quantized one (spec §13) dequantized byte by byte."""
    if isinstance(w, np.ndarray):
        return w
    n, d = w.shape
    size, block_bytes = {"q8_0": (32, 34), "q4_0": (32, 18), "q6_k": (256, 210)}[w.type]
    raw = w.data.tobytes()
    out = np.empty((n, d), F)
    for i in range(n):
        for b in range(d // size):
            at = (i * (d // size) + b) * block_bytes
            if w.type == "q6_k":
                _q6_k_block(raw[at:at + 210], out[i, b * 256:(b + 1) * 256])
                continue
            scale = F(np.frombuffer(raw[at:at + 2], "<f2")[0])  # little-endian float16, exact
            for j in range(32):
                if w.type == "q8_0":
                    q = raw[at + 2 + j] - (256 if raw[at + 2 + j] >= 128 else 0)
                else:  # low nibbles are elements 0..15, high nibbles 16..31
                    byte = raw[at + 2 + j % 16]
                    q = (byte & 15 if j < 16 else byte >> 4) - 8
                out[i, b * 32 + j] = F(F(q) * scale)
    return out


def _q6_k_block(block, out):
    """One Q6_K block: j = 128h + 32c + li; ql, qh, sc[16] int8, then d (spec §13)."""
    d = F(np.frombuffer(block[208:210], "<f2")[0])
    for j in range(256):
        h, c, li = j // 128, j // 32 % 4, j % 32
        low = block[64 * h + 32 * (c % 2) + li]
        low = low & 15 if c < 2 else low >> 4
        high = block[128 + 32 * h + li] >> (2 * c) & 3
        q = low + 16 * high - 32
        s = block[192 + j // 16]
        s = s - 256 if s >= 128 else s
        with np.errstate(all="ignore"):
            out[j] = F(F(d * F(s)) * F(q))


def lane_dot(w, x):
    acc = [ZERO] * 16
    for k in range(len(x)):
        acc[k % 16] = F(acc[k % 16] + F(F(w[k]) * x[k]))
    for s in (8, 4, 2, 1):
        for q in range(s):
            acc[q] = F(acc[q] + acc[q + s])
    return acc[0]


def _tokens(x):
    return [x] if x.ndim == 1 else list(x)


def _shape_like(x, per_token):
    out = np.array(per_token, dtype=per_token[0].dtype if per_token else np.float32)
    return out[0] if x.ndim == 1 else out


def matvec(W, x):
    W = plain(W)
    out = [np.array([lane_dot(W[i], xt) for i in range(W.shape[0])], F) for xt in _tokens(x)]
    return _shape_like(x, out) if out else np.zeros((0, W.shape[0]), F)


def sparse_matvec(W, x, rows):
    W = plain(W)
    out = [np.array([lane_dot(W[r], xt) for r in rows], F) for xt in _tokens(x)]
    return _shape_like(x, out) if out else np.zeros((0, len(rows)), F)


def sparse_axpy(W, h, rows):
    W = plain(W)
    d = W.shape[1]
    out = []
    for ht in _tokens(h):
        y = [ZERO] * d
        blocks = sorted({int(r) // 256 for r in rows})
        for b in blocks:
            p = [ZERO] * d
            for a, r in enumerate(rows):
                if int(r) // 256 != b or ht[a] == 0:
                    continue
                for j in range(d):
                    p[j] = F(p[j] + F(ht[a] * F(W[r, j])))
            for j in range(d):
                y[j] = F(y[j] + p[j])
        out.append(np.array(y, F))
    return _shape_like(h, out) if out else np.zeros((0, d), F)


def relu(v):
    return v if (v > 0 or np.isnan(v)) else ZERO


def round_f32(value):
    """value rounded once to float32, nearest even, from its exact value (spec §8).

    Literally: of the float32 values around it (2**128 standing for +Inf, as IEEE
    overflow does), the nearest; on a tie, the one with an even last bit.
    """
    if isinstance(value, (float, np.floating)):
        return F(value)
    x = Fraction(value)
    try:
        guess = F(float(x))
    except OverflowError:
        guess = F(np.inf) if x > 0 else F(-np.inf)
    around = {F(np.nextafter(guess, F(-np.inf))), guess, F(np.nextafter(guess, F(np.inf)))}

    def exact(c):
        return Fraction(2**128 if c > 0 else -(2**128)) if np.isinf(c) else Fraction(float(c))

    best = min(abs(exact(c) - x) for c in around)
    ties = [c for c in around if abs(exact(c) - x) == best]
    c = ties[0] if len(ties) == 1 else next(c for c in ties if not int(np.array(c).view(np.uint32)) & 1)
    return F(-0.0) if c == 0 and x < 0 else c


def predict(x, fc1, fc2, threshold=0.0):
    thr = round_f32(threshold)
    fc1, fc2 = plain(fc1), plain(fc2)
    out = []
    for xt in _tokens(x):
        hidden = np.array([relu(lane_dot(fc1[k], xt)) for k in range(fc1.shape[0])], F)
        z = [lane_dot(fc2[i], hidden) for i in range(fc2.shape[0])]
        out.append(np.array([bool(zi >= thr or np.isnan(zi)) for zi in z]))
    return _shape_like(x, out) if out else np.zeros((0, fc2.shape[0]), bool)


def sparse_ffn(x, gate, up, down_t, mask):
    gate, up, down_t = plain(gate), plain(up), plain(down_t)
    masks = [mask] if mask.ndim == 1 else list(mask)
    rows = [i for i in range(gate.shape[0]) if any(m[i] for m in masks)]
    out = []
    for xt, m in zip(_tokens(x), masks, strict=True):
        h = []
        for r in rows:
            hr = F(relu(lane_dot(gate[r], xt)) * lane_dot(up[r], xt))
            h.append(hr if m[r] else ZERO)
        out.append(sparse_axpy(down_t, np.array(h, F), rows))
    return _shape_like(x, out) if out else np.zeros((0, down_t.shape[1]), F)


def dense_ffn(x, gate, up, down_t):
    return sparse_ffn(x, gate, up, down_t, np.ones((*x.shape[:-1], gate.shape[0]), bool))
