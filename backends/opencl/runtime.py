"""The runtime's per-token operators on the OpenCL device: the host side of kernels/runtime.cl.

`RuntimeKernels` is mixed into OpenCLBackend ahead of Backend and overrides
the runtime hooks of backends/_runtime_ops.py (rmsnorm, rope, attention,
softmax, argmax, add), which receive arguments the shared base has already
checked.  The kernels run only when the device passed runtime_selftest.py's
battery (Plan.runtime is None); otherwise every hook is the inherited
reference, which gives the same bits on the host, slowly.

§12 has one arithmetic for both modes, so one program serves both.  The few
table values a call needs (rope's theta_i, attention's scale) come from the
reference on the host.  The KV caches stay host arrays, as the interface
promises: attention_batch stores the new rows in them (row order, as the
reference does), then uploads each sequence's rows 0 .. its last position for
the call.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

import numpy as np
import pyopencl as cl

from reprosparse.reference.attention import attention_scale
from reprosparse.reference.rope import rope_theta

from .programs import OpenCLError, check_size, compile_program

#: Every runtime program must hold these; a build that "succeeds" without them is a driver fault.
KERNELS = frozenset({"rmsnorm_f32", "rmsnorm_f16", "rope", "attention", "softmax", "argmax", "add"})
#: Build options: none.  Listed so that the verdict cache keys on them and they are checked like ops.cl's.
OPTIONS: tuple[str, ...] = ()


def unsupported(device: cl.Device) -> str | None:
    """Why kernels/runtime.cl cannot run exactly on this device, or None."""
    if "cl_khr_fp64" not in device.extensions.split():
        return ("the device has no binary64 (cl_khr_fp64), which sincos32 and the correctly rounded "
                "float32 division and square root need")
    return None


def build(context: cl.Context, device: cl.Device) -> cl.Program:
    """kernels/runtime.cl built for `device`; OpenCLError if the build fails or lacks a kernel."""
    return compile_program(context, device, "runtime.cl", OPTIONS, KERNELS)


@functools.lru_cache(maxsize=64)
def _theta(head_dim: int, base: float) -> np.ndarray:
    """rope's theta_i, the reference's exact table: a model asks for the same one every call, and
    computing it (exp32 in numpy) costs about as much as the kernel."""
    theta = rope_theta(head_dim, base)
    theta.flags.writeable = False
    return theta


def store(k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray, positions: np.ndarray, new_k: np.ndarray,
          new_v: np.ndarray) -> None:
    """The spec's store of a step's keys and values in the host caches: row order, later rows win a tie."""
    for r in range(seq.shape[0]):
        k[seq[r]][positions[r]] = new_k[r]
        v[seq[r]][positions[r]] = new_v[r]


class RuntimeKernels:
    """The runtime hooks, on the device when its self-test passed, else the reference's."""

    if TYPE_CHECKING:
        from .verify import Plan

        plan: Plan

        @property
        def device_name(self) -> str: ...
        _context: cl.Context
        _device: cl.Device
        _queue: cl.CommandQueue
        _kernels: threading.local

        zero_copy: bool
        scratch_bytes: int
        _max_alloc: int

        def _buffer(self, what: str, nbytes: int, flags: int, hostbuf: np.ndarray | None = None) -> cl.Buffer: ...
        def _upload(self, a: np.ndarray) -> cl.Buffer: ...
        def _scratch(self, what: str, nbytes: int) -> cl.Buffer: ...
        def _read(self, host: np.ndarray, buffer: cl.Buffer, op: str) -> np.ndarray: ...

    _runtime_lock = threading.Lock()  # guards the first build of each backend's runtime program
    _runtime_program: cl.Program | None = None

    def _runtime_native(self) -> bool:
        return self.plan.runtime is None

    def runtime_policy(self) -> str:
        """One line for `reprosparse info`: where the runtime ops run, and why."""
        if self._runtime_native():
            caches = ("read in host memory (several sequences' rows packed into one copy)" if self.zero_copy
                      else "uploaded on every call (the rows the call reads)")
            return f"native kernels (runtime.cl), self-tested on this device; attention's KV caches {caches}"
        return f"the reference on the host (same bits, slower): {self.plan.runtime}"

    def _runtime_run(self, kernel: str, global_size: tuple[int, ...], *args: cl.Buffer | np.generic) -> None:
        """Enqueues one kernel of the runtime program (built on first use, once per backend)."""
        with self._runtime_lock:
            program = self._runtime_program
            if program is None:
                program = self._runtime_program = build(self._context, self._device)
        kernels: dict[tuple[int, str], cl.Kernel] = self._kernels.__dict__.setdefault("by_name", {})
        try:
            knl = kernels.get((id(program), kernel))
            if knl is None:
                knl = kernels[id(program), kernel] = cl.Kernel(program, kernel)
            knl(self._queue, global_size, None, *args)
        except cl.Error as exc:
            raise OpenCLError(f"OpenCL kernel {kernel} (runtime.cl) on {self.device_name} failed: {exc}") from exc

    def _host_input(self, a: np.ndarray) -> cl.Buffer:
        """A large input: read where it lies on a CPU device (valid while this call runs, which
        blocks until the kernel is done), else uploaded."""
        if self.zero_copy:
            return self._buffer("the KV caches' rows", a.nbytes, cl.mem_flags.READ_ONLY | cl.mem_flags.USE_HOST_PTR, a)
        return self._upload(a)

    # Each op in two parts: `_<op>_on_device` enqueues its kernel on device buffers and returns the
    # output's buffer (the device layer, layer.py, chains them); the hook uploads, enqueues and reads.

    def _rmsnorm_on_device(self, x: cl.Buffer, t: int, d: int, weight: np.ndarray, eps: np.float32) -> cl.Buffer:
        y = self._scratch("the output", t * d * 4)
        kernel = "rmsnorm_f16" if weight.dtype == np.float16 else "rmsnorm_f32"
        self._runtime_run(kernel, (t,), x, np.int32(d), self._upload(weight), np.float32(eps), y)
        return y

    def _rmsnorm(self, x: np.ndarray, weight: np.ndarray, eps: np.float32, mode: str, threads: int) -> np.ndarray:
        if not self._runtime_native():
            return super()._rmsnorm(x, weight, eps, mode, threads)  # type: ignore[misc]
        t, d = x.shape
        if x.size == 0:
            return np.empty((t, d), np.float32)
        check_size("x", x.size)
        y = self._rmsnorm_on_device(self._upload(x), t, d, weight, eps)
        return self._read(np.empty((t, d), np.float32), y, "rmsnorm")

    def _rope_on_device(self, x: cl.Buffer, t: int, n_head: int, head_dim: int, positions: cl.Buffer,
                        base: float) -> cl.Buffer:
        """positions: the rows' positions as int32."""
        y = self._scratch("the output", t * n_head * head_dim * 4)
        self._runtime_run("rope", (t, head_dim // 2), x, np.int32(n_head), np.int32(head_dim), positions,
                          self._upload(_theta(head_dim, base)), y)
        return y

    def _rope(self, x: np.ndarray, positions: np.ndarray, base: float, mode: str, threads: int) -> np.ndarray:
        if not self._runtime_native():
            return super()._rope(x, positions, base, mode, threads)  # type: ignore[misc]
        t, n_head, head_dim = x.shape
        if x.size == 0:
            return np.empty_like(x)
        check_size("x", x.size)
        y = self._rope_on_device(self._upload(x), t, n_head, head_dim, self._upload(positions.astype(np.int32)),
                                 base)
        return self._read(np.empty_like(x), y, "rope")

    def _attention_on_device(
        self, q: cl.Buffer, t: int, n_head: int, head_dim: int, k: list[np.ndarray], v: list[np.ndarray],
        seq: np.ndarray, positions: np.ndarray, positions32: cl.Buffer,
    ) -> tuple[cl.Buffer, tuple[cl.Buffer, ...]]:
        """Attention of t >= 1 rows over the caches as they are now; (its output, and the buffers that
        may read host memory in place: the caller keeps them until the queue is done with them)."""
        n_kv = k[0].shape[1]
        # Each sequence's rows 0 .. its last position, one sequence after another: all any row reads.
        used = np.unique(seq)
        rows = [int(positions[seq == s].max()) + 1 for s in used]
        sizes = np.array([n * n_kv * head_dim for n in rows], np.int64)
        offset = dict(zip(used.tolist(), np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist(), strict=True))
        packed_k, packed_v = (
            c[used[0]][:rows[0]].reshape(-1) if len(used) == 1  # a view: one sequence needs no packing
            else np.concatenate([c[s][:n].reshape(-1) for s, n in zip(used, rows, strict=True)])
            for c in (k, v)
        )
        start = np.array([offset[s] for s in seq.tolist()], np.int64)
        longest = max(rows)
        check_size("the caches' rows", int(sizes.sum()))
        out = self._scratch("the output", t * n_head * head_dim * 4)
        # The scores of a tile of rows at a time, within the backend's scratch budget (a long prompt's
        # prefill would otherwise need t * n_head * t floats); each row's bits are its own.
        per_row = n_head * longest * 4
        tile = max(1, min(t, min(self.scratch_bytes, self._max_alloc) // per_row))
        scores = self._scratch("attention's scores", tile * per_row)
        caches = (self._host_input(packed_k), self._host_input(packed_v))
        args = (q, np.int32(n_head), np.int32(head_dim), np.int32(n_kv), *caches, self._upload(start), positions32,
                attention_scale(head_dim), scores, np.int32(longest))
        for first_row in range(0, t, tile):
            self._runtime_run("attention", (min(tile, t - first_row), n_head), *args, np.int32(first_row), out)
        return out, caches

    def _attention_batch(
        self, q: np.ndarray, k: list[np.ndarray], v: list[np.ndarray], seq: np.ndarray, positions: np.ndarray,
        new_k: np.ndarray | None, new_v: np.ndarray | None, mode: str, threads: int,
    ) -> np.ndarray:
        if not self._runtime_native():
            return super()._attention_batch(  # type: ignore[misc]
                q, k, v, seq, positions, new_k, new_v, mode, threads)
        if new_k is not None and new_v is not None:
            store(k, v, seq, positions, new_k, new_v)
        t, n_head, head_dim = q.shape
        if q.size == 0:
            return np.empty_like(q)
        check_size("q", q.size)
        out, _in_place = self._attention_on_device(self._upload(q), t, n_head, head_dim, k, v, seq, positions,
                                                   self._upload(positions.astype(np.int32)))
        return self._read(np.empty_like(q), out, "attention")  # blocks: the caches' buffers may go after it

    def _softmax(self, x: np.ndarray, lengths: np.ndarray, mode: str, threads: int) -> np.ndarray:
        if not self._runtime_native():
            return super()._softmax(x, lengths, mode, threads)  # type: ignore[misc]
        t, n = x.shape
        if t == 0:
            return np.empty((0, n), np.float32)
        check_size("x", x.size)
        y = np.empty((t, n), np.float32)
        y_buf = self._scratch("the output", y.nbytes)
        self._runtime_run("softmax", (t,), self._upload(x), np.int32(n), self._upload(lengths.astype(np.int32)),
                          y_buf)
        return self._read(y, y_buf, "softmax")

    def _argmax(self, x: np.ndarray, mode: str, threads: int) -> np.ndarray:
        if not self._runtime_native():
            return super()._argmax(x, mode, threads)  # type: ignore[misc]
        t, n = x.shape
        if t == 0:
            return np.empty(0, np.int64)
        check_size("x", x.size)
        out = np.empty(t, np.int64)
        o_buf = self._scratch("the output", out.nbytes)
        self._runtime_run("argmax", (t,), self._upload(x), np.int32(n), o_buf)
        return self._read(out, o_buf, "argmax")

    def _add_on_device(self, a: cl.Buffer, b: cl.Buffer, n: int) -> cl.Buffer:
        y = self._scratch("the output", n * 4)
        self._runtime_run("add", (n,), a, b, y)
        return y

    def _add(self, a: np.ndarray, b: np.ndarray, mode: str, threads: int) -> np.ndarray:
        if not self._runtime_native():
            return super()._add(a, b, mode, threads)  # type: ignore[misc]
        if a.size == 0:
            return np.empty_like(a)
        check_size("a", a.size)
        return self._read(np.empty_like(a), self._add_on_device(self._upload(a), self._upload(b), a.size), "add")
