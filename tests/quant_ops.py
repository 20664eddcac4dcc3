"""Every weight operator on quantized matrices, against the reference fed an oracle's float32 matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import reference


def available_backends() -> list[str]:
    return [n for n, s in rs.available_backends().items() if s.available]


def bits(a: np.ndarray) -> np.ndarray:
    """float32 bits with every NaN made one NaN (the spec's equality)."""
    b = np.ascontiguousarray(a, np.float32).view(np.uint32).copy()
    b[np.isnan(a)] = 0x7FC00000
    return b


def check_every_op(backend: rs.backends.Backend, q: Mapping[str, rs.QuantizedMatrix], f: Mapping[str, np.ndarray],
                   qtype: str, rng: np.random.Generator, t: int, threads: Sequence[int | None] = (None,)) -> None:
    """q and f: gate, up, down_t, fc1, fc2 as quantized matrices and as the oracle's float32 ones.  Each op's
    deterministic bits at each thread count must equal the reference's on f; a backend that does not take
    qtype must refuse it by name."""
    n, d = q["gate"].shape
    x = rng.standard_normal((t, d)).astype(np.float32)
    mask = rng.random((t, n)) < 0.1
    rows = np.flatnonzero(rng.random(n) < 0.2).astype(np.int32)
    h = rng.standard_normal((t, rows.size)).astype(np.float32)
    calls = {
        "matvec": ((q["gate"], x), (f["gate"], x)),
        "sparse_matvec": ((q["up"], x, rows), (f["up"], x, rows)),
        "sparse_axpy": ((q["down_t"], h, rows), (f["down_t"], h, rows)),
        "predict": ((x, q["fc1"], q["fc2"], 0.25), (x, f["fc1"], f["fc2"], 0.25)),
        "sparse_ffn": ((x, q["gate"], q["up"], q["down_t"], mask), (x, f["gate"], f["up"], f["down_t"], mask)),
        "dense_ffn": ((x, q["gate"], q["up"], q["down_t"]), (x, f["gate"], f["up"], f["down_t"])),
    }
    for op, (qargs, fargs) in calls.items():
        if qtype not in backend.weight_types:
            with pytest.raises(rs.backends.WeightsUnsupported, match=f"does not take {qtype} weights"):
                getattr(backend, op)(*qargs, mode="deterministic")
            continue
        want = getattr(reference, op)(*fargs)
        for n_threads in threads:
            got = getattr(backend, op)(*qargs, mode="deterministic", threads=n_threads)
            same = np.array_equal(got, want) if got.dtype == np.bool_ else np.array_equal(bits(got), bits(want))
            assert same, (op, n_threads)
