"""Device copies of weight matrices that cannot change under us.

Uploading weights on every call is what a discrete GPU spends most of its
time on.  A copy may only be reused if the host array is the same object with
the same contents, and numpy cannot tell us when an array was written to, so
only arrays that are read-only all the way down (a read-only memmap of a GGUF
file, or an array whose owner has ``flags.writeable = False``) are cached.
An array that is writable again when looked up loses its entry; the one
case this cannot see is a caller that makes an array writable, writes it and
makes it read-only again between two calls, which breaks numpy's own
promise of a read-only array.

Entries are keyed on id(array), checked against a weak reference (ids are
reused once an array dies) and the array's address, shape and dtype, and
evicted least recently used beyond a byte budget or when the array dies.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyopencl as cl


def is_frozen(a: np.ndarray) -> bool:
    """True if neither `a` nor anything it views into can be written through numpy."""
    base: object = a
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    if base is None:
        return True
    try:
        return memoryview(base).readonly  # type: ignore[arg-type]
    except TypeError:  # not a buffer: we cannot tell who else may write it
        return False


def _signature(a: np.ndarray) -> tuple[int, tuple[int, ...], str]:
    return a.__array_interface__["data"][0], a.shape, a.dtype.str


@dataclass
class _Entry:
    ref: weakref.ref[np.ndarray]
    signature: tuple[int, tuple[int, ...], str]
    buffer: cl.Buffer
    nbytes: int


class WeightCache:
    """Device buffers of frozen weight arrays, at most `budget` bytes in all."""

    def __init__(self, context: cl.Context, budget: int) -> None:
        self._context = context
        self.budget = budget
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()  # a weakref callback may run inside get()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, a: np.ndarray) -> cl.Buffer | None:
        """The device copy of `a` (made now if needed), or None if `a` may not be cached."""
        key = id(a)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (entry.ref() is not a or entry.signature != _signature(a)):
                self._drop(key)
                entry = None
            if not is_frozen(a) or a.nbytes > self.budget:
                if entry is not None:
                    self._drop(key)
                return None
            if entry is None:
                buffer = cl.Buffer(self._context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=a)
                entry = _Entry(weakref.ref(a, self._forget(key)), _signature(a), buffer, a.nbytes)
                self._entries[key] = entry
                self._bytes += entry.nbytes
                while self._bytes > self.budget:
                    self._drop(next(iter(self._entries)))
            self._entries.move_to_end(key)
            return entry.buffer

    def _drop(self, key: int) -> None:
        self._bytes -= self._entries.pop(key).nbytes

    def _forget(self, key: int) -> Callable[[weakref.ref[np.ndarray]], None]:
        """The weakref callback: drop the entry of a dead array (if it is still that array's)."""
        def callback(ref: weakref.ref[np.ndarray]) -> None:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry.ref is ref:
                    self._drop(key)
        return callback
