"""numpy, cython and opencl, deterministic: the same bytes for a LLaMA-7B-shaped sparse FFN."""

from __future__ import annotations

import os

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import reference

BUILT_IN = ("numpy", "cython", "opencl")


@pytest.fixture(scope="module")
def llama_layer():
    rng = np.random.default_rng(7)
    d, n = 4096, 11008
    gate, up, down_t = (rng.standard_normal((n, d), dtype=np.float32).astype(np.float16) for _ in range(3))
    x = rng.standard_normal((2, d), dtype=np.float32)
    mask = rng.random((2, n)) < 0.10
    return x, gate, up, down_t, mask


def test_required_backends_are_available():
    """tox requires all three (REPROSPARSE_REQUIRE_BACKENDS); a silently missing one would hollow out the test below."""
    required = [n for n in os.environ.get("REPROSPARSE_REQUIRE_BACKENDS", "").split(",") if n]
    if not required:
        pytest.skip("REPROSPARSE_REQUIRE_BACKENDS is not set")
    status = rs.available_backends()
    missing = {n: status[n].reason if n in status else "not registered" for n in required
               if n not in status or not status[n].available}
    assert not missing


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_identical_bytes_across_backends(llama_layer, dtype):
    x, gate, up, down_t, mask = llama_layer
    gate, up, down_t = (w.astype(dtype) for w in (gate, up, down_t))
    want = reference.sparse_ffn(x, gate, up, down_t, mask).tobytes()
    names = [n for n, s in rs.available_backends().items() if n in BUILT_IN and s.available]
    for name in names:
        got = rs.get_backend(name).sparse_ffn(x, gate, up, down_t, mask, mode="deterministic")
        assert got.tobytes() == want, f"{name} differs from the reference"
