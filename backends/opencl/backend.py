"""The OpenCL backend: the spec's operation order on any OpenCL 1.2 device.

All kernels come from one source, kernels/ops.cl, built per (mode, layout,
weight type, tokens per work-item).  Deterministic programs give the
reference's bits: 16 lanes per row for the dot products, and for
sparse_axpy one partial per 256-neuron block and column, folded in
ascending block order by a second kernel.  Fast programs fuse each product
into its sum (fma) and fold sparse_axpy over balanced chunks.

Which layout runs a (mode, weight type) is the `Plan` made by self-testing
the device (verify.py; the float types at `load`, a quantized type when its
first weights arrive): a backend never runs a combination that
did not pass, and refuses, with the reason, one for which nothing passed.

Q8_0, Q4_0 and Q6_K weights (QuantizedMatrix) travel as their raw block bytes and
are dequantized in registers by the kernels (exactly: spec §13); a row of
blocks is the unit every gather and upload moves.

Weights: a CPU device reads them where they are (CL_MEM_USE_HOST_PTR, no
copy).  Elsewhere a read-only array stays on the device between calls
(weights.py; up to half the device memory), and any other array is uploaded
on every call, only the rows the op reads, gathered on the host (a
10%-active sparse op moves a tenth of the matrix); on a discrete GPU that
transfer costs far more than the kernels.

The runtime's per-token ops (rmsnorm, rope, attention, softmax, argmax, add)
are kernels/runtime.cl, run by runtime.py when they passed their own
self-test, else the reference on the host.  With them, decoder_layer chains
every kernel of a layer on device buffers (layer.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pyopencl as cl

from reprosparse.reference._runtime_checks import LAYER_NORMS
from reprosparse.reference.ffn import ffn_rows
from reprosparse.reference.quant import QuantizedMatrix, Weights, weight_type
from reprosparse.reference.sparse_axpy import BLOCK

from .._base import Backend
from . import devices, layer
from .programs import LAYOUTS, ROWS, WEIGHT_TYPES, OpenCLError, ProgramCache, Variant, check_size, one_type
from .runtime import RuntimeKernels
from .verify import Plan

LANES = 16  # the spec's lane count; the grouped kernels' work-group width
COLUMNS = 64  # columns per work-group of the grouped axpy kernel
COLS = 16  # columns per work-item of the vector axpy kernel
FAST_CHUNK = 64  # rows per partial of fast-mode sparse_axpy
#: sparse_axpy's partials (groups x tokens x d floats) are made this many bytes at a time at most,
#: by tiling the tokens: a 2048-token prefill of a LLaMA-7B FFN would otherwise need gigabytes.
SCRATCH_BYTES = 64 << 20
_F32 = np.dtype(np.float32)


class ModeUnsupported(RuntimeError):
    """The device cannot run this mode with these weights; the message says why."""


class DeterministicUnsupported(ModeUnsupported):
    """The device cannot give the spec's bits (it flushes subnormals, or failed its self-test)."""


def single_fp_config(device: cl.Device) -> int:
    """The device's CL_DEVICE_SINGLE_FP_CONFIG bits (a function so tests can fake a device)."""
    return int(device.single_fp_config)


def deterministic_problem(fp_config: int) -> str | None:
    """Why a device with these float32 capabilities cannot run deterministic mode, or None."""
    needs = {
        cl.device_fp_config.DENORM: "keeps float32 subnormals (CL_FP_DENORM)",
        cl.device_fp_config.ROUND_TO_NEAREST: "rounds to nearest even (CL_FP_ROUND_TO_NEAREST)",
        cl.device_fp_config.INF_NAN: "supports Inf and NaN (CL_FP_INF_NAN)",
    }
    missing = [what for flag, what in needs.items() if not fp_config & flag]
    if not missing:
        return None
    return "the device does not report that it " + " or ".join(missing)


def _bytes(w: Weights) -> np.ndarray:
    """What the kernels read of a weight matrix: a float array, or a quantized one's (n, row bytes)
    block bytes, so that its rows are the matrix's rows."""
    return w.data if isinstance(w, QuantizedMatrix) else w


def tokens_per_item(t: int) -> int:
    """Tokens one work-item handles: each weight read then serves that many tokens."""
    return 1 if t == 1 else 4 if t <= 4 else 8


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


class OpenCLBackend(RuntimeKernels, Backend):  # RuntimeKernels: the runtime ops' hooks (runtime.py)
    name = "opencl"
    priority = 20
    #: ops.cl's weight types; any other (a new GGML type) is refused by name before any work
    weight_types = tuple(WEIGHT_TYPES)

    def __init__(
        self, platforms: list[cl.Platform], platform_index: int, device_index: int, plan: Plan, *,
        weight_cache_bytes: int | None = None, zero_copy: bool | None = None, scratch_bytes: int = SCRATCH_BYTES,
        self_test: Callable[[str], Plan] | None = None,
    ) -> None:
        """plan: the layout that runs each (mode, weight type), or why none may.
        self_test: the plan for one more weight type, run the first time weights of a type the
        plan has no verdict on arrive (load's: verify.make_plan for that type); without it such
        a type is refused as not self-tested.
        weight_cache_bytes: device memory for read-only weights; by default 0 on CPU devices,
        else half the device's memory.  zero_copy: kernels read weights in host memory;
        by default on CPU devices.  scratch_bytes: the most sparse_axpy's partials take at once."""
        from .weights import WeightCache

        self._platforms = platforms
        self._device = platforms[platform_index].get_devices()[device_index]
        self._where = (platform_index, device_index)
        self.plan = plan
        self._self_test = self_test
        self._self_test_lock = threading.Lock()
        is_cpu = bool(self._device.type & cl.device_type.CPU)
        self._context = cl.Context([self._device])
        self._queue = cl.CommandQueue(self._context, self._device)
        self._programs = ProgramCache(self._context, self._device)
        self._kernels = threading.local()  # a Kernel's arguments are state: one set per thread
        if weight_cache_bytes is None:
            weight_cache_bytes = 0 if is_cpu else int(self._device.global_mem_size) // 2
        self.weights = WeightCache(self._context, weight_cache_bytes)
        self.zero_copy = is_cpu if zero_copy is None else zero_copy
        self.scratch_bytes = scratch_bytes
        self._max_alloc = int(self._device.max_mem_alloc_size)

    # ---- facts ------------------------------------------------------------

    @property
    def device_name(self) -> str:
        return f"{self._device.name.strip()} ({self._device.platform.name.strip()})"

    def refuses(self, mode: str) -> str | None:
        return self.plan.refuses(mode)

    def refuses_weights(self, w: Weights) -> str | None:
        """Also a weight type whose own self-test failed on this device (not a whole mode's); every
        op asks this before any work, so a type's first weights run its self-test here."""
        why = super().refuses_weights(w)
        if why is not None:
            return why
        wtype = weight_type(w)
        if self._self_test is not None and not self.plan.tested(wtype):
            with self._self_test_lock:  # one self-test per type, whichever thread asks first
                if not self.plan.tested(wtype):
                    self.plan = self.plan.merged(self._self_test(wtype))
        if (failed := self.plan.refuses_type(wtype)) is not None:
            return f"OpenCL device {self.device_name} refuses {wtype} weights: {failed}"
        return None

    def info(self) -> dict[str, str]:
        listed = []
        for p, plat in enumerate(self._platforms):
            for i, dev in enumerate(plat.get_devices()):
                mark = " (in use)" if (p, i) == self._where else ""
                listed.append(f"{p}:{i} {dev.name.strip()} ({plat.name.strip()}){mark}")
        return {
            "device": self.device_name,
            "driver": f"{self._device.driver_version.strip()} ({self._device.version.strip()})",
            "devices": ", ".join(listed),
            **{f"{mode} mode": self.plan.describe(mode) for mode in ("deterministic", "fast")},
            "self-test": self.plan.provenance,
            "choose with": f"{devices.ENV}=platform:device (index or name)",
            "weights": self._weights_policy(),
            "runtime ops": self.runtime_policy(),
        }

    def _weights_policy(self) -> str:
        policy = []
        if self.weights.budget:
            policy.append(f"read-only arrays kept on the device (up to {self.weights.budget >> 20} MiB)")
        policy.append("read in host memory" if self.zero_copy else "uploaded per call (active rows only)")
        return ", others ".join(policy)

    # ---- device plumbing ------------------------------------------------

    def _variant(self, mode: str, weights: Weights, t: int) -> Variant:
        """The program that runs `mode` on these weights for t tokens, or ModeUnsupported."""
        wtype = weight_type(weights)
        layout = self.plan.layout(mode, wtype)
        if layout is None:
            error = DeterministicUnsupported if mode == "deterministic" else ModeUnsupported
            raise error(
                f"OpenCL device {self.device_name} cannot run {mode} mode with {wtype} weights: "
                f"{self.plan.why(mode, wtype)}; use another mode, device or backend"
            )
        return Variant(mode, layout, wtype, tokens_per_item(t))

    def _buffer(self, what: str, nbytes: int, flags: int, hostbuf: np.ndarray | None = None) -> cl.Buffer:
        """A device buffer, or OpenCLError naming the device and the size when it cannot be had."""
        if nbytes > self._max_alloc:
            raise OpenCLError(
                f"{what} needs {nbytes} bytes, more than one allocation may take on OpenCL device "
                f"{self.device_name} ({self._max_alloc} bytes)"
            )
        try:
            return cl.Buffer(self._context, flags, nbytes if hostbuf is None else 0, hostbuf=hostbuf)
        except cl.Error as exc:
            raise OpenCLError(f"allocating {nbytes} bytes for {what} on OpenCL device {self.device_name} "
                              f"failed: {exc}") from exc

    def _upload(self, a: np.ndarray) -> cl.Buffer:
        return self._buffer("an input", a.nbytes, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, a)

    def _scratch(self, what: str, nbytes: int) -> cl.Buffer:
        return self._buffer(what, nbytes, cl.mem_flags.READ_WRITE)

    def _rows_on_device(self, Ws: list[np.ndarray], rows: np.ndarray) -> tuple[list[cl.Buffer], cl.Buffer]:
        """The rows `rows` of each matrix (float, or a quantized one's block bytes: _bytes) on the
        device, and the one index buffer the kernels read all of them by (the fused sparse_ffn
        reads gate, up and down_t through one)."""
        resident = [self.weights.get(W) for W in Ws]
        gather = not self.zero_copy and all(r is None for r in resident) and rows.shape[0] < Ws[0].shape[0]
        if gather:  # only the active rows travel; the kernels then index 0..m-1
            return [self._upload(W[rows]) for W in Ws], self._upload(np.arange(rows.shape[0], dtype=np.int32))
        # Whole matrices, indexed by rows: resident ones, others read in place (valid while this
        # call runs: the caller cannot write W meanwhile) or uploaded whole beside a resident one.
        in_place = cl.mem_flags.READ_ONLY | cl.mem_flags.USE_HOST_PTR
        whole = [
            r if r is not None
            else self._buffer("a weight matrix", W.nbytes, in_place, W) if self.zero_copy
            else self._upload(W)
            for W, r in zip(Ws, resident, strict=True)
        ]
        return whole, self._upload(rows)

    @staticmethod
    def _dot_sizes(layout: str, m: int, t: int, tokens: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """Global and local sizes of the lane_dot kernels for m rows and t tokens."""
        if LAYOUTS[layout] == 0:
            return (LANES, _round_up(m, ROWS), -(-t // tokens)), (LANES, ROWS, 1)
        return (m, -(-t // tokens)), None

    def _launch(
        self, variant: Variant, kernel: str, global_size: tuple[int, ...],
        local_size: tuple[int, ...] | None, *args: cl.Buffer | np.int32,
    ) -> cl.Event:
        """Enqueues one kernel; its event lets a profiling queue time the device alone."""
        program = self._programs.get(variant)
        # Reusing Kernel objects skips pyopencl's per-Kernel setup (a disk-cache lookup), which
        # costs more than a small launch; programs are never evicted, so their ids stay valid.
        kernels: dict[tuple[int, str], cl.Kernel] = self._kernels.__dict__.setdefault("by_name", {})
        try:
            knl = kernels.get((id(program), kernel))
            if knl is None:
                knl = kernels[id(program), kernel] = cl.Kernel(program, kernel)
            return knl(self._queue, global_size, local_size, *args)
        except cl.Error as exc:
            raise OpenCLError(f"OpenCL kernel {kernel} ({variant.layout} layout) on {self.device_name} "
                              f"failed: {exc}") from exc

    def _read(self, host: np.ndarray, buffer: cl.Buffer, op: str, blocking: bool = True) -> np.ndarray:
        """buffer into host; without blocking, host holds it after the next blocking read (the queue runs in order)."""
        try:
            cl.enqueue_copy(self._queue, host, buffer, is_blocking=blocking)
        except cl.Error as exc:
            raise OpenCLError(f"OpenCL {op} on {self.device_name} failed: {exc}") from exc
        return host

    # ---- ops --------------------------------------------------------------

    def _matvec(self, W: Weights, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        return self._sparse_matvec(W, x, np.arange(W.shape[0], dtype=np.int32), mode, threads)

    def _dot_on_device(self, variant: Variant, W: Weights, x: cl.Buffer, t: int, rows: np.ndarray) -> cl.Buffer:
        """Enqueues the (t, m) products of W's rows `rows` (m >= 1) with x (t, d), t, d >= 1."""
        m = rows.shape[0]
        check_size("the output", t * m)
        (w_buf,), r_buf = self._rows_on_device([_bytes(W)], rows)
        out = self._scratch("the output", t * m * _F32.itemsize)
        self._launch(
            variant, "lane_dot", *self._dot_sizes(variant.layout, m, t, variant.tokens),
            w_buf, np.int32(W.shape[1]), r_buf, np.int32(m), x, np.int32(t), out,
        )
        return out

    def _sparse_matvec(
        self, W: Weights, x: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        t, d = x.shape
        m = rows.shape[0]
        variant = self._variant(mode, W, t)
        if t == 0 or m == 0 or d == 0:  # nothing to launch; an empty dot product is +0.0
            return np.zeros((t, m), np.float32)
        check_size("x", x.size)
        out = self._dot_on_device(variant, W, self._upload(x), t, rows)
        return self._read(np.empty((t, m), np.float32), out, "sparse_matvec")

    def _sparse_axpy(
        self, W: Weights, h: np.ndarray, rows: np.ndarray, mode: str, threads: int
    ) -> np.ndarray:
        t, m = h.shape
        d = W.shape[1]
        variant = self._variant(mode, W, t)
        if t == 0 or d == 0 or m == 0:  # no terms: y stays +0.0
            return np.zeros((t, d), np.float32)
        (w_buf,), r_buf = self._rows_on_device([_bytes(W)], rows)
        y = self._axpy_on_device(variant, w_buf, r_buf, rows, self._upload(h), t, m, d)
        return self._read(np.empty((t, d), np.float32), y, "sparse_axpy")

    def _axpy_on_device(
        self, variant: Variant, w_buf: cl.Buffer, r_buf: cl.Buffer,
        rows: np.ndarray, h_buf: cl.Buffer, t: int, m: int, d: int,
    ) -> cl.Buffer:
        """Enqueues y (t, d) from weights and h already on the device; rows are the spec's indices.

        The partials of a tile of tokens are made and folded before the next tile's: each
        token's bits are its own, so tiling changes nothing but the scratch size."""
        check_size("h", t * m)
        check_size("the output", t * d)
        if variant.mode == "deterministic":  # the spec's 256-neuron blocks
            starts = np.searchsorted(rows, np.unique(rows // BLOCK) * BLOCK)
        else:  # balanced chunks: any grouping is within the fast-mode bound
            starts = np.arange(0, m, FAST_CHUNK)
        starts = np.append(starts, m).astype(np.int32)
        groups = starts.shape[0] - 1
        per_token = groups * d * _F32.itemsize
        tile = max(1, min(t, min(self.scratch_bytes, self._max_alloc) // per_token))
        partial = self._scratch("sparse_axpy's partials", tile * per_token)
        y = self._scratch("the output", t * d * _F32.itemsize)
        s_buf = self._upload(starts)
        if LAYOUTS[variant.layout] == 0:
            columns, local = _round_up(d, COLUMNS), (COLUMNS, 1, 1)
        else:
            columns, local = -(-d // COLS), None
        for first in range(0, t, tile):
            count = min(tile, t - first)
            self._launch(
                variant, "axpy_partials", (columns, groups, -(-count // variant.tokens)), local,
                w_buf, np.int32(d), r_buf, s_buf, h_buf, np.int32(m), np.int32(first), np.int32(count), partial,
            )
            self._launch(
                variant, "axpy_fold", (_round_up(count * d, COLUMNS),), (COLUMNS,),
                partial, np.int32(groups), np.int32(count * d), y, np.int32(first * d),
            )
        return y

    def _ffn_on_device(
        self, variant: Variant, x: cl.Buffer, t: int, d: int, gate: Weights, up: Weights, down_t: Weights,
        mask: np.ndarray, rows: np.ndarray,
    ) -> cl.Buffer:
        """Enqueues the FFN of x (t, d) with weights of one type and at least one term (rows: ffn_rows(mask));
        g, u and h stay on the device: one kernel for relu(g) * u, then the two axpy kernels."""
        m = rows.shape[0]
        check_size("h", t * m)
        (g_buf, u_buf, d_buf), r_buf = self._rows_on_device([_bytes(gate), _bytes(up), _bytes(down_t)], rows)
        own = np.ascontiguousarray(mask[:, rows]).view(np.uint8)
        h_buf = self._scratch("h", t * m * _F32.itemsize)
        self._launch(
            variant, "gated_lane_dot", *self._dot_sizes(variant.layout, m, t, variant.tokens),
            g_buf, u_buf, np.int32(d), r_buf, np.int32(m), x, np.int32(t), self._upload(own), h_buf,
        )
        return self._axpy_on_device(variant, d_buf, r_buf, rows, h_buf, t, m, down_t.shape[1])

    def _sparse_ffn(
        self, x: np.ndarray, gate: Weights, up: Weights, down_t: Weights,
        mask: np.ndarray, mode: str, threads: int,
    ) -> np.ndarray:
        if not one_type(gate, up, down_t):  # the fused kernels take one weight type
            return super()._sparse_ffn(x, gate, up, down_t, mask, mode, threads)
        t, d = x.shape
        y = np.zeros((t, down_t.shape[1]), np.float32)
        variant = self._variant(mode, gate, t)
        rows = ffn_rows(mask)
        if t == 0 or rows.size == 0 or y.size == 0 or d == 0:  # d == 0: every h is +0.0, every term skipped
            return y
        check_size("x", x.size)
        out = self._ffn_on_device(variant, self._upload(x), t, d, gate, up, down_t, mask, rows)
        return self._read(y, out, "sparse_ffn")

    def _take_layer(self, w: dict[str, Any], mode: str) -> None:
        super()._take_layer(w, mode)
        for f, W in w.items():  # ModeUnsupported for a (mode, weight type) without a program, before any work
            if f not in LAYER_NORMS:
                self._variant(mode, W, 1)

    def _decoder_layer(
        self, x: np.ndarray, w: dict[str, Any], k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray,
        positions: np.ndarray, n_head: int, n_kv: int, eps: np.float32, base: float, thr: np.float32 | None,
        mode: str, threads: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if not self._runtime_native() or x.shape[0] == 0:  # the runtime ops run on the host: compose
            return super()._decoder_layer(x, w, k, v, seq, positions, n_head, n_kv, eps, base, thr, mode, threads)
        return layer.decoder_layer(self, x, w, k, v, seq, positions, n_head, n_kv, eps, base, thr, mode)


class OpenCLGpuBackend(OpenCLBackend):
    """The same backend on a GPU, which REPROSPARSE_BACKEND=auto prefers to CPU backends."""

    priority = 40
