"""The runtime's per-token operators as backend operations (docs/spec.md §12).

`Backend` inherits these public methods: rmsnorm, rope, attention (one
sequence, the spec's form), attention_batch (several sequences in one call),
softmax, argmax and add (the residual add).  Each checks its arguments with the
reference's own checks (reference/_runtime_checks.py) and hands C-contiguous
arrays of the spec's dtypes to a hook.

Every hook here is optional: its default is the reference, so the numpy
backend and any third-party backend that implements only the three primitive
hooks get the spec's bits without more work.  A backend overrides a hook to
compute natively (the cython backend overrides all of them); the conformance
suite holds it to the reference's bits.  The spec defines no fast variant of
these operators, so fast mode computes them like deterministic mode, and the
suite checks their bits in both modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reprosparse.reference import _runtime_checks
from reprosparse.reference.argmax import argmax
from reprosparse.reference.attention import attention_batch
from reprosparse.reference.rmsnorm import rmsnorm
from reprosparse.reference.rope import rope
from reprosparse.reference.softmax import softmax


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


def _quiet() -> np.errstate:
    """Inf and NaN are valid inputs; their propagation is the spec's business, not a warning's."""
    return np.errstate(all="ignore")


class RuntimeOps:
    """Mixed into `Backend`; `_resolve` is Backend's (mode and thread count of one call)."""

    if TYPE_CHECKING:

        def _resolve(self, mode: str | None, threads: int | None) -> tuple[str, int]: ...

    # ---- public ops ----------------------------------------------------

    def rmsnorm(
        self, x: Any, weight: Any, eps: Any, *, mode: str | None = None, threads: int | None = None
    ) -> np.ndarray:
        """x (t, d) float32, weight (d,) float32 or float16, eps a real number -> (t, d) float32."""
        x, weight, eps32 = _runtime_checks.rmsnorm_args(x, weight, eps)
        mode, threads = self._resolve(mode, threads)
        return self._rmsnorm(_c(x), _c(weight), eps32, mode, threads)

    def rope(
        self, x: Any, positions: Any, base: Any, *, mode: str | None = None, threads: int | None = None
    ) -> np.ndarray:
        """x (t, n_head, head_dim) float32 rotated for positions (t,) in [0, 2**24)."""
        x, positions, base = _runtime_checks.rope_args(x, positions, base)
        mode, threads = self._resolve(mode, threads)
        return self._rope(_c(x), positions, base, mode, threads)

    def attention(
        self, q: Any, k: Any, v: Any, positions: Any, *, mode: str | None = None, threads: int | None = None
    ) -> np.ndarray:
        """One sequence: q (t, n_head, hd) over its cache rows k, v (P, n_kv_head, hd); positions (t,) < P."""
        q, k, v, positions = _runtime_checks.attention_args(q, k, v, positions)
        mode, threads = self._resolve(mode, threads)
        seq = np.zeros(q.shape[0], np.int64)
        return self._attention_batch(_c(q), [_c(k)], [_c(v)], seq, positions, None, None, mode, threads)

    def attention_batch(
        self, q: Any, k: Sequence[Any], v: Sequence[Any], seq: Any, positions: Any,
        new_k: Any = None, new_v: Any = None, *, mode: str | None = None, threads: int | None = None,
    ) -> np.ndarray:
        """Several sequences in one call: row r of q is `attention` over the caches k[seq[r]], v[seq[r]].

        The rows of one sequence give exactly what `attention(q[rows], k[s], v[s], positions[rows])`
        gives (every row is computed on its own), so a batch changes no bit.  With new_k and new_v
        ((t, n_kv_head, head_dim)), row r's key and value are first written to cache row positions[r]
        of its sequence (the caches are modified in place; later rows win a tie), then every row attends:
        a decode step's cache update and attention in one call, without a loop over sequences.
        """
        q, ks, vs, seq, positions, new_k, new_v = _runtime_checks.attention_batch_args(
            q, k, v, seq, positions, new_k, new_v)
        mode, threads = self._resolve(mode, threads)
        if new_k is not None:  # checked C-contiguous: the hook writes into the caller's arrays
            return self._attention_batch(_c(q), ks, vs, seq, positions, _c(new_k), _c(new_v), mode, threads)
        return self._attention_batch(_c(q), [_c(a) for a in ks], [_c(a) for a in vs], seq, positions, None, None,
                                     mode, threads)

    def softmax(
        self, x: Any, lengths: Any = None, *, mode: str | None = None, threads: int | None = None
    ) -> np.ndarray:
        """x (t, n) float32; row r's softmax over its first lengths[r] entries, +0.0 after them."""
        x, lengths = _runtime_checks.softmax_args(x, lengths)
        mode, threads = self._resolve(mode, threads)
        return self._softmax(_c(x), lengths, mode, threads)

    def argmax(self, x: Any, *, mode: str | None = None, threads: int | None = None) -> np.ndarray:
        """x (t, n) float32 -> (t,) int64: the spec's greedy choice per row."""
        x = _runtime_checks.rows_of("x", x, "(t, n)")
        mode, threads = self._resolve(mode, threads)
        return self._argmax(_c(x), mode, threads)

    def add(self, a: Any, b: Any, *, mode: str | None = None, threads: int | None = None) -> np.ndarray:
        """a + b: the residual add, one float32 addition per element."""
        a, b = _runtime_checks.add_args(a, b)
        mode, threads = self._resolve(mode, threads)
        return self._add(_c(a), _c(b), mode, threads)

    # ---- optional hooks: checked, C-contiguous inputs; defaults are the reference ----

    def _rmsnorm(self, x: np.ndarray, weight: np.ndarray, eps: np.float32, mode: str, threads: int) -> np.ndarray:
        with _quiet():
            return rmsnorm(x, weight, float(eps))  # exact: eps is already a float32 value

    def _rope(self, x: np.ndarray, positions: np.ndarray, base: float, mode: str, threads: int) -> np.ndarray:
        with _quiet():
            return rope(x, positions, base)

    def _attention_batch(
        self, q: np.ndarray, k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray, positions: np.ndarray,
        new_k: np.ndarray | None, new_v: np.ndarray | None, mode: str, threads: int,
    ) -> np.ndarray:
        with _quiet():
            return attention_batch(q, k, v, seq, positions, new_k, new_v)

    def _softmax(self, x: np.ndarray, lengths: np.ndarray, mode: str, threads: int) -> np.ndarray:
        with _quiet():
            return softmax(x, lengths)

    def _argmax(self, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        with _quiet():
            return argmax(x)

    def _add(self, a: np.ndarray, b: np.ndarray, mode: str, threads: int) -> np.ndarray:
        with _quiet():
            return a + b
