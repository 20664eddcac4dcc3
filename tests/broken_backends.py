"""Deliberately wrong backends: the conformance suite must catch every one of them."""

from __future__ import annotations

import numpy as np

from reprosparse.backends.numpy_backend import NumpyBackend
from reprosparse.reference.attention import attention_scale
from reprosparse.reference.lane_dot import fold, lane_dot_rows
from reprosparse.reference.sparse_axpy import sparse_axpy


def _rows(W, rows):
    return (W if rows is None else W[rows]).astype(np.float32)


def sequential_dot(W, rows, x):
    """One accumulator instead of sixteen lanes: a different, equally plausible order."""
    Wr = _rows(W, rows)
    out = np.zeros((x.shape[0], Wr.shape[0]), np.float32)
    with np.errstate(all="ignore"):
        for ti in range(x.shape[0]):
            for k in range(x.shape[1]):
                out[ti] = out[ti] + Wr[:, k] * x[ti, k]
    return out


def fma_dot(W, rows, x):
    """The spec's lanes, but each step fused: acc + w*x rounded once (via exact float64 products)."""
    Wr = _rows(W, rows).astype(np.float64)
    out = np.empty((x.shape[0], Wr.shape[0]), np.float32)
    with np.errstate(all="ignore"):
        for ti in range(x.shape[0]):
            acc = np.zeros((Wr.shape[0], 16), np.float32)
            for k in range(x.shape[1]):
                acc[:, k % 16] = (acc[:, k % 16] + Wr[:, k] * np.float64(x[ti, k])).astype(np.float32)
            out[ti] = fold(acc)
    return out


class Sequential(NumpyBackend):
    name = "broken-sequential"

    def _matvec(self, W, x, mode, threads):
        return sequential_dot(W, None, x) if mode == "deterministic" else super()._matvec(W, x, mode, threads)

    def _sparse_matvec(self, W, x, rows, mode, threads):
        if mode == "deterministic":
            return sequential_dot(W, rows, x)
        return super()._sparse_matvec(W, x, rows, mode, threads)


class Fused(NumpyBackend):
    name = "broken-fma"

    def _matvec(self, W, x, mode, threads):
        return fma_dot(W, None, x)

    def _sparse_matvec(self, W, x, rows, mode, threads):
        return fma_dot(W, rows, x)


class BlockOrder(NumpyBackend):
    """sparse_axpy adding blocks in descending order: only the order of partials differs."""

    name = "broken-block-order"

    def _sparse_axpy(self, W, h, rows, mode, threads):
        if mode != "deterministic":
            return super()._sparse_axpy(W, h, rows, mode, threads)
        y = np.zeros((h.shape[0], W.shape[1]), np.float32)
        blocks = rows // 256
        with np.errstate(all="ignore"):
            for b in np.unique(blocks)[::-1]:
                sel = blocks == b
                y = y + sparse_axpy(W, np.ascontiguousarray(h[:, sel]), np.ascontiguousarray(rows[sel]))
        return y


class OneUlp(NumpyBackend):
    """Right everywhere except one element of each result, one ulp up."""

    name = "broken-one-ulp"

    @staticmethod
    def _nudge(y):
        flat = y.reshape(-1)
        finite = np.flatnonzero(np.isfinite(flat))
        if finite.size:
            i = finite[finite.size // 2]
            flat[i] = np.nextafter(flat[i], np.float32(np.inf))
        return y

    def _matvec(self, W, x, mode, threads):
        return self._nudge(super()._matvec(W, x, mode, threads))

    def _sparse_matvec(self, W, x, rows, mode, threads):
        return self._nudge(super()._sparse_matvec(W, x, rows, mode, threads))

    def _sparse_axpy(self, W, h, rows, mode, threads):
        return self._nudge(super()._sparse_axpy(W, h, rows, mode, threads))


class FarOff(NumpyBackend):
    """Fast mode off by a relative 2^-10: far outside any float32 bound."""

    name = "broken-far-off"

    def _matvec(self, W, x, mode, threads):
        return super()._matvec(W, x, mode, threads) * np.float32(1 + 2.0**-10)

    def _sparse_matvec(self, W, x, rows, mode, threads):
        return super()._sparse_matvec(W, x, rows, mode, threads) * np.float32(1 + 2.0**-10)

    def _sparse_axpy(self, W, h, rows, mode, threads):
        return super()._sparse_axpy(W, h, rows, mode, threads) * np.float32(1 + 2.0**-10)

    def _predict(self, x, fc1, fc2, thr, mode, threads):
        """Flips, per token, the neuron whose logit is farthest from the threshold."""
        mask = super()._predict(x, fc1, fc2, thr, mode, threads)
        with np.errstate(all="ignore"):
            hidden = np.maximum(super()._matvec(fc1, x, mode, threads), 0)
            z = np.nan_to_num(super()._matvec(fc2, hidden, mode, threads))
        far = np.argmax(np.abs(z - thr), axis=1)
        mask[np.arange(mask.shape[0]), far] ^= True
        return mask


class NoZeroSkip(NumpyBackend):
    """Fast sparse_axpy as plain BLAS: 0 * Inf turns skipped terms into NaN."""

    name = "broken-no-zero-skip"

    def _sparse_axpy(self, W, h, rows, mode, threads):
        with np.errstate(all="ignore"):
            return h @ W[rows].astype(np.float32)


class ThreadDependent(NumpyBackend):
    """Right on one thread, a different order on three: the thread sweep must notice."""

    name = "broken-threads"
    has_threads = True

    def _matvec(self, W, x, mode, threads):
        if threads == 3:
            return sequential_dot(W, None, x)
        return super()._matvec(W, x, mode, threads)


class BatchDependent(NumpyBackend):
    """sparse_ffn that forgets each token's own mask and uses the batch's union."""

    name = "broken-batch"

    def _sparse_ffn(self, x, gate, up, down_t, mask, mode, threads):
        union = np.broadcast_to(mask.any(axis=0), mask.shape)
        return super()._sparse_ffn(x, gate, up, down_t, np.ascontiguousarray(union), mode, threads)


class FlushesSubnormals(NumpyBackend):
    """Results with subnormals flushed to zero, as FTZ hardware would give."""

    name = "broken-ftz"

    @staticmethod
    def _ftz(y):
        y[np.abs(y) < np.float32(2.0**-126)] = 0.0
        return y

    def _matvec(self, W, x, mode, threads):
        return self._ftz(super()._matvec(W, x, mode, threads))

    def _sparse_matvec(self, W, x, rows, mode, threads):
        return self._ftz(super()._sparse_matvec(W, x, rows, mode, threads))



def _softmax_np_exp(x, lengths):
    """The spec's softmax with numpy's float32 exp in place of exp32."""
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    with np.errstate(all="ignore"):
        m = np.array([np.nanmax(r[:n]) if not np.isnan(r[:n]).all() else r[0] for r, n in zip(x, lengths, strict=True)],
                     np.float32)
        e = np.where(valid, np.exp(x - m[:, None]), np.float32(0.0))
        s = lane_dot_rows(e, None, np.ones((1, x.shape[1]), np.float32))[0]
        return np.where(valid, e / s[:, None], np.float32(0.0))


class RuntimeNumpyExp(NumpyBackend):
    """softmax and attention with numpy's float32 exp instead of the spec's exp32: close, not the same bits."""

    name = "broken-runtime-exp"

    def _softmax(self, x, lengths, mode, threads):
        return _softmax_np_exp(x, lengths)

    def _attention_batch(self, q, k, v, seq, positions, new_k, new_v, mode, threads):
        for r in range(q.shape[0] if new_k is not None else 0):
            k[seq[r]][positions[r]] = new_k[r]
            v[seq[r]][positions[r]] = new_v[r]
        t, n_head, hd = q.shape
        out = np.zeros_like(q)
        with np.errstate(all="ignore"):
            for r in range(t):
                ks, vs, p = k[seq[r]], v[seq[r]], positions[r]
                group = n_head // ks.shape[1]
                for h in range(n_head):
                    kh = np.ascontiguousarray(ks[: p + 1, h // group])
                    scores = lane_dot_rows(kh, None, q[r, h][None, :]) * attention_scale(hd)
                    a = _softmax_np_exp(scores, np.array([p + 1]))[0]
                    for j in range(p + 1):
                        out[r, h] = out[r, h] + a[j] * vs[j, h // group]
        return out


class RuntimeSequentialNorm(NumpyBackend):
    """rmsnorm's sum of squares with one accumulator instead of the spec's sixteen lanes."""

    name = "broken-runtime-rmsnorm"

    def _rmsnorm(self, x, weight, eps, mode, threads):
        ss = np.zeros(x.shape[0], np.float32)
        with np.errstate(all="ignore"):
            for j in range(x.shape[1]):
                ss = ss + x[:, j] * x[:, j]
            inv = np.float32(1.0) / np.sqrt(ss / np.float32(x.shape[1]) + eps)
            return (x * inv[:, None]) * weight.astype(np.float32)[None, :]


def _interleaved_q4(W):
    """Q4_0 read with interleaved nibbles (element 2i low, 2i+1 high), the classic misreading of
    ggml's layout (low nibbles are elements 0..15, high ones 16..31); other weights as they are."""
    from reprosparse.reference.quant import QuantizedMatrix

    if not isinstance(W, QuantizedMatrix) or W.type != "q4_0":
        return W
    blocks = np.asarray(W.data).reshape(W.shape[0], -1, 18)
    scale = np.ascontiguousarray(blocks[:, :, :2]).view("<f2").astype(np.float32)
    packed = blocks[:, :, 2:]
    q = np.stack([packed & 15, packed >> 4], axis=3).reshape(*packed.shape[:2], 32).astype(np.float32) - 8
    with np.errstate(all="ignore"):
        return (q * scale).reshape(W.shape)


class InterleavedNibbles(NumpyBackend):
    name = "broken-q4-nibbles"

    def _matvec(self, W, x, mode, threads):
        return super()._matvec(_interleaved_q4(W), x, mode, threads)

    def _sparse_matvec(self, W, x, rows, mode, threads):
        return super()._sparse_matvec(_interleaved_q4(W), x, rows, mode, threads)

    def _sparse_axpy(self, W, h, rows, mode, threads):
        return super()._sparse_axpy(_interleaved_q4(W), h, rows, mode, threads)


class StoresAfterAttending(NumpyBackend):
    """attention_batch (and so decoder_layer) attends before storing the step's keys and values: each row
    reads what its cache held before, not its own key."""

    name = "broken-store-order"

    def _attention_batch(self, q, k, v, seq, positions, new_k, new_v, mode, threads):
        out = super()._attention_batch(q, k, v, seq, positions, None, None, mode, threads)
        for r in range(q.shape[0] if new_k is not None else 0):
            k[seq[r]][positions[r]] = new_k[r]
            v[seq[r]][positions[r]] = new_v[r]
        return out
