"""The Backend base class: one validated entry point per op, kernels behind hooks.

A backend (built in or third party) subclasses `Backend` and implements the
three primitive hooks `_matvec`, `_sparse_matvec` and `_sparse_axpy`.  The
public methods check every argument with the reference's own checks before a
hook sees it, so a hook may hand the arrays straight to native code: they are
C-contiguous, of the spec's dtypes and shapes, and rows are sorted and in
range.  A weight is a float32/float16 array or, for a backend whose
`weight_types` include them, a `QuantizedMatrix` (spec §13); the public
methods refuse the types a backend does not list before any work.
`predict`, `sparse_ffn` and `dense_ffn` are composed from the
primitives exactly as the spec composes them; a backend may override their
hooks to fuse work, and the conformance suite holds it to the same bits.
The runtime's per-token operators (rmsnorm, rope, attention, softmax, argmax,
add) come from `RuntimeOps` (_runtime_ops.py), with optional hooks that
default to the reference.  `decoder_layer` is one whole decoder layer; its
optional hook `_decoder_layer` defaults to the composition of the backend's
own hooks, and a backend overrides it to run the layer in one native call.
`decoder_layers` runs a stack of them through the same hook, its arguments
checked once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from reprosparse import _config
from reprosparse.reference import _checks, _runtime_checks
from reprosparse.reference.decoder_layer import Observer
from reprosparse.reference.ffn import ffn_rows, gated_h
from reprosparse.reference.predict import predicted
from reprosparse.reference.quant import Weights, weight_type
from reprosparse.reference.relu import relu

from ._runtime_ops import RuntimeOps


class BackendUnavailable(RuntimeError):
    """Raised by a backend's loader when it cannot run here; the message says why."""


class BackendConfigError(ValueError):
    """Raised by a backend's loader when a setting meant for it (an environment
    variable) is invalid; the message names the setting and its valid values.
    Unlike BackendUnavailable this is never a reason for "auto" to skip the
    backend: every request that loads it raises this error."""


class WeightsUnsupported(TypeError):
    """An op was given weights of a type this backend does not take (Backend.weight_types)."""


@contextlib.contextmanager
def _rows_named(rows: np.ndarray, n: int) -> Iterator[None]:
    """Around a hook given rows whose values only its native code checks (Backend.native_row_checks): a
    refusal of bad rows becomes the reference's message, which names the first bad row."""
    try:
        yield
    except ValueError:
        _checks.rows("rows", rows, n, "W")
        raise


class Backend(RuntimeOps):
    #: registry name, also used in reports and reproductions
    name: ClassVar[str] = ""
    #: higher is preferred by REPROSPARSE_BACKEND=auto
    priority: ClassVar[int] = 0
    #: True when results may be computed on several threads (conformance sweeps them)
    has_threads: ClassVar[bool] = False
    #: the weight types its kernels take, of reference.quant.WEIGHT_TYPES; ops refuse others.  Float
    #: only unless a backend says more: one written before quantized weights existed refuses them
    #: instead of handing a QuantizedMatrix to code that expects an array.
    weight_types: ClassVar[tuple[str, ...]] = ("float32", "float16")
    #: True where the sparse_matvec and sparse_axpy hooks' native code checks rows' values (in range,
    #: strictly increasing) before it reads any memory, raising ValueError, as the cython kernels do.  The
    #: public ops then check only their type and layout in Python, and on the hook's ValueError run the
    #: full check to name the first bad row.  Cold, the values' check in numpy took 15-20% of a 10%
    #: float16 sparse_axpy (docs/performance.md); a backend that may index with unchecked rows keeps False.
    native_row_checks: ClassVar[bool] = False

    # ---- configuration -------------------------------------------------

    def default_threads(self) -> int:
        return 1

    def info(self) -> dict[str, str]:
        """Facts for `reprosparse info` (build, devices, features)."""
        return {}

    def refuses(self, mode: str) -> str | None:
        """Why this backend cannot give `mode`'s guarantee here (e.g. it failed a self-test),
        or None.  REPROSPARSE_BACKEND=auto skips a backend that refuses the current mode."""
        return None

    def refuses_weights(self, w: Weights) -> str | None:
        """Why this backend does not take the checked weight matrix `w`, or None."""
        wt = weight_type(w)
        if wt in self.weight_types:
            return None
        return f"the {self.name} backend does not take {wt} weights (it takes {', '.join(self.weight_types)})"

    def _take(self, **weights: Weights) -> None:
        """WeightsUnsupported (a TypeError) naming the first weight argument this backend does not
        take: never a wrong answer."""
        for name, w in weights.items():
            why = self.refuses_weights(w)
            if why is not None:
                raise WeightsUnsupported(f"{name}: {why}")

    def _resolve(self, mode: str | None, threads: int | None) -> tuple[str, int]:
        mode = _config.check_mode(mode if mode is not None else _config.current().mode)
        if threads is None:
            threads = _config.current().threads
        if threads is None:
            threads = self.default_threads()
        return mode, _config.check_threads(threads)

    # ---- public ops ----------------------------------------------------

    def matvec(self, W: Any, x: Any, *, mode: str | None = None, threads: int | None = None) -> np.ndarray:
        W, x = _checks.matvec_args(W, x)
        self._take(W=W)
        mode, threads = self._resolve(mode, threads)
        return _checks.like_input(self._matvec(W, _checks.as_2d(x), mode, threads), x)

    def sparse_matvec(
        self, W: Any, x: Any, rows: Any, *, mode: str | None = None, threads: int | None = None
    ) -> np.ndarray:
        W, x, rows = _checks.sparse_matvec_args(W, x, rows, row_values=not self.native_row_checks)
        self._take(W=W)
        mode, threads = self._resolve(mode, threads)
        with _rows_named(rows, W.shape[0]):
            y = self._sparse_matvec(W, _checks.as_2d(x), rows, mode, threads)
        return _checks.like_input(y, x)

    def sparse_axpy(
        self, W: Any, h: Any, rows: Any, *, mode: str | None = None, threads: int | None = None
    ) -> np.ndarray:
        W, h, rows = _checks.sparse_axpy_args(W, h, rows, row_values=not self.native_row_checks)
        self._take(W=W)
        mode, threads = self._resolve(mode, threads)
        with _rows_named(rows, W.shape[0]):
            y = self._sparse_axpy(W, _checks.as_2d(h), rows, mode, threads)
        return _checks.like_input(y, h)

    def predict(
        self, x: Any, fc1: Any, fc2: Any, threshold: float = 0.0, *,
        mode: str | None = None, threads: int | None = None,
    ) -> np.ndarray:
        x, fc1, fc2, thr = _checks.predict_args(x, fc1, fc2, threshold)
        self._take(fc1=fc1, fc2=fc2)
        mode, threads = self._resolve(mode, threads)
        return _checks.like_input(self._predict(_checks.as_2d(x), fc1, fc2, thr, mode, threads), x)

    def sparse_ffn(
        self, x: Any, gate: Any, up: Any, down_t: Any, mask: Any, *,
        mode: str | None = None, threads: int | None = None,
    ) -> np.ndarray:
        x, gate, up, down_t = _checks.ffn_args(x, gate, up, down_t)
        mask = _checks.mask("mask", mask, x, gate.shape[0])
        self._take(gate=gate, up=up, down_t=down_t)
        mode, threads = self._resolve(mode, threads)
        y = self._sparse_ffn(_checks.as_2d(x), gate, up, down_t, _checks.as_2d(mask), mode, threads)
        return _checks.like_input(y, x)

    def dense_ffn(
        self, x: Any, gate: Any, up: Any, down_t: Any, *,
        mode: str | None = None, threads: int | None = None,
    ) -> np.ndarray:
        x, gate, up, down_t = _checks.ffn_args(x, gate, up, down_t)
        self._take(gate=gate, up=up, down_t=down_t)
        mode, threads = self._resolve(mode, threads)
        x2 = _checks.as_2d(x)
        y = self._dense_ffn(x2, gate, up, down_t, mode, threads)
        return _checks.like_input(y, x)

    def decoder_layer(
        self, x: Any, layer: Any, k: Sequence[Any], v: Sequence[Any], seq: Any, positions: Any, *,
        n_head: int, n_head_kv: int, eps: float, rope_base: float, threshold: float = 0.0, ffn: str = "sparse",
        mode: str | None = None, threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One ReLU-LLaMA decoder layer (spec §12, `reference.decoder_layer`): x (t, dim) float32 ->
        (the layer's output, the FFN input h, the predicted mask or None for ffn="dense").

        `layer` has a model Layer's fields (attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down_t, fc1, fc2);
        k[s] and v[s] are sequence s's (P, n_head_kv, head_dim) caches, C-contiguous and writeable: row r's
        rotated key and value are stored at positions[r] of sequence seq[r] before any row attends.
        """
        x, w, ks, vs, seq, positions, n_head, n_kv, eps32, base, thr = _runtime_checks.decoder_layer_args(
            x, layer, k, v, seq, positions, n_head, n_head_kv, eps, rope_base, threshold, ffn)
        mode, threads = self._resolve(mode, threads)
        self._take_layer(w, mode)
        return self._decoder_layer(np.ascontiguousarray(x), w, ks, vs, seq, positions, n_head, n_kv, eps32, base, thr,
                                   mode, threads)

    def decoder_layers(
        self, x: Any, layers: Sequence[Any], k: Sequence[Sequence[Any]], v: Sequence[Sequence[Any]], seq: Any,
        positions: Any, *, n_head: int, n_head_kv: int, eps: float, rope_base: float, threshold: float = 0.0,
        ffn: str = "sparse", observer: Observer | None = None, mode: str | None = None, threads: int | None = None,
    ) -> np.ndarray:
        """decoder_layer through every layer of a stack in order (`reference.decoder_layers`), layer i with
        caches k[i], v[i]: the last layer's output.  Every argument of every layer is checked once, before
        the first layer runs (a decode step's arguments are checked once, not once per layer);
        observer(i, h, mask), if given, sees each layer's FFN input and mask as the layer ends."""
        x, ws, ks, vs, seq, positions, n_head, n_kv, eps32, base, thr = _runtime_checks.decoder_layers_args(
            x, layers, k, v, seq, positions, n_head, n_head_kv, eps, rope_base, threshold, ffn)
        mode, threads = self._resolve(mode, threads)
        for w in ws:
            self._take_layer(w, mode)
        x = np.ascontiguousarray(x)
        for i, w in enumerate(ws):
            x, h, mask = self._decoder_layer(x, w, ks[i], vs[i], seq, positions, n_head, n_kv, eps32, base, thr,
                                             mode, threads)
            if observer is not None:
                observer(i, h, mask)
        return x

    def _take_layer(self, w: dict[str, Any], mode: str) -> None:
        """A checked layer's matrices refused unless this backend takes their types (in `mode`: a backend
        that can refuse a mode for some weight type says so here, before any layer of a stack runs); its
        norm vectors made C-contiguous (in place in w) for the hooks."""
        self._take(**{f: w[f] for f in w if f not in _runtime_checks.LAYER_NORMS})
        for f in _runtime_checks.LAYER_NORMS:
            w[f] = np.ascontiguousarray(w[f])

    # ---- hooks: validated 2-D inputs in, 2-D outputs out ----------------

    def _matvec(self, W: Weights, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        raise NotImplementedError

    def _sparse_matvec(
        self, W: Weights, x: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        raise NotImplementedError

    def _sparse_axpy(
        self, W: Weights, h: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        raise NotImplementedError

    def _predict(
        self, x: np.ndarray, fc1: Weights, fc2: Weights, thr: np.float32, mode: str, threads: int
    ) -> np.ndarray:
        return predicted(self._matvec(fc2, relu(self._matvec(fc1, x, mode, threads)), mode, threads), thr)

    def _sparse_ffn(
        self, x: np.ndarray, gate: Weights, up: Weights, down_t: Weights,
        mask: np.ndarray, mode: str, threads: int,
    ) -> np.ndarray:
        rows = ffn_rows(mask)
        g = self._sparse_matvec(gate, x, rows, mode, threads)
        u = self._sparse_matvec(up, x, rows, mode, threads)
        return self._sparse_axpy(down_t, gated_h(g, u, mask[:, rows]), rows, mode, threads)

    def _dense_ffn(
        self, x: np.ndarray, gate: Weights, up: Weights, down_t: Weights, mode: str, threads: int
    ) -> np.ndarray:
        return self._sparse_ffn(x, gate, up, down_t, np.ones((x.shape[0], gate.shape[0]), bool), mode, threads)

    def _decoder_layer(
        self, x: np.ndarray, w: dict[str, Any], k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray,
        positions: np.ndarray, n_head: int, n_kv: int, eps: np.float32, base: float, thr: np.float32 | None,
        mode: str, threads: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The spec's composition over this backend's hooks; thr None means a dense FFN."""
        t, dim = x.shape
        hd = dim // n_head
        a = self._rmsnorm(x, w["attn_norm"], eps, mode, threads)
        q = self._rope(self._matvec(w["wq"], a, mode, threads).reshape(t, n_head, hd), positions, base, mode, threads)
        kr = self._rope(self._matvec(w["wk"], a, mode, threads).reshape(t, n_kv, hd), positions, base, mode, threads)
        vn = self._matvec(w["wv"], a, mode, threads).reshape(t, n_kv, hd)
        att = self._attention_batch(q, k, v, seq, positions, kr, vn, mode, threads)
        r = self._add(x, self._matvec(w["wo"], att.reshape(t, dim), mode, threads), mode, threads)
        h = self._rmsnorm(r, w["ffn_norm"], eps, mode, threads)
        mask = None if thr is None else self._predict(r, w["fc1"], w["fc2"], thr, mode, threads)
        if mask is None:
            y = self._dense_ffn(h, w["gate"], w["up"], w["down_t"], mode, threads)
        else:
            y = self._sparse_ffn(h, w["gate"], w["up"], w["down_t"], mask, mode, threads)
        return self._add(r, y, mode, threads), h, mask

    def __repr__(self) -> str:
        return f"<reprosparse backend {self.name!r}>"
