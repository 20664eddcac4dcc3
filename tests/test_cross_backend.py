"""cython and opencl, deterministic: the reference's bytes for a LLaMA-7B-shaped sparse FFN."""

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


@pytest.fixture(scope="module")
def reference_bytes(llama_layer):
    x, gate, up, down_t, mask = llama_layer
    return {dtype: reference.sparse_ffn(x, *(w.astype(dtype) for w in (gate, up, down_t)), mask).tobytes()
            for dtype in ("float16", "float32")}


# numpy is left out: its deterministic mode runs the reference's own code, so it would be compared with itself.
@pytest.mark.parametrize("name", [n for n in BUILT_IN if n != "numpy"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_identical_bytes_across_backends(llama_layer, reference_bytes, dtype, name):
    status = rs.available_backends().get(name)
    if status is None or not status.available:
        pytest.skip(f"backend {name} unavailable: {status.reason if status else 'not registered'}")
    x, gate, up, down_t, mask = llama_layer
    gate, up, down_t = (w.astype(dtype) for w in (gate, up, down_t))
    got = rs.get_backend(name).sparse_ffn(x, gate, up, down_t, mask, mode="deterministic")
    assert got.tobytes() == reference_bytes[dtype], f"{name} differs from the reference"
