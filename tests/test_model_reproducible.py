"""`make_model` writes the same bytes for a seed whatever BLAS kernel, numpy SIMD loops, cython ISA
or backend is in use.

Each variant runs in a fresh process, because OpenBLAS reads OPENBLAS_CORETYPE
once, when numpy loads it.  The child reports the kernel OpenBLAS actually
chose (threadpoolctl), so the test can tell that the variable took effect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from numpy._core import _multiarray_umath as np_core
except ImportError:  # numpy < 2
    from numpy.core import _multiarray_umath as np_core

pytest.importorskip("gguf")
pytest.importorskip("threadpoolctl")

# The CLI's default model shape: float32 BLAS on these shapes gave three different files under
# OPENBLAS_CORETYPE unset, Haswell and Sandybridge before make_model stopped using BLAS.
CHILD = """
import hashlib, json, sys
import numpy, threadpoolctl
from reprosparse.model import make_model, save_model
try:
    from numpy._core import _multiarray_umath as core
except ImportError:
    from numpy.core import _multiarray_umath as core

save_model(make_model(layers=2, dim=64, ff=512, vocab=512, heads=4, seed=0), sys.argv[1])
blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"sha256": hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(),
                  "blas": blas[0]["internal_api"] if blas else None,
                  "kernel": blas[0].get("architecture") if blas else None,
                  "numpy_simd": [t for t in core.__cpu_dispatch__ if core.__cpu_features__[t]]}))
"""

# Only numpy's run-time dispatch targets may be disabled (the baseline is compiled in).
NUMPY_DISPATCH = " ".join(np_core.__cpu_dispatch__)
VARIABLES = ("OPENBLAS_CORETYPE", "REPROSPARSE_CYTHON_ISA", "REPROSPARSE_BACKEND", "NPY_DISABLE_CPU_FEATURES")
VARIANTS: list[dict[str, str]] = [
    {},
    {"OPENBLAS_CORETYPE": "Haswell", "REPROSPARSE_CYTHON_ISA": "scalar", "REPROSPARSE_BACKEND": "numpy"},
    {"OPENBLAS_CORETYPE": "Sandybridge", "REPROSPARSE_CYTHON_ISA": "sse2", "REPROSPARSE_BACKEND": "cython"},
    {"OPENBLAS_CORETYPE": "Prescott", "REPROSPARSE_CYTHON_ISA": "avx2", "REPROSPARSE_BACKEND": "auto"},
    {"REPROSPARSE_BACKEND": "opencl"},
    # numpy's SIMD loops for the elementwise ops of the reference, down to its baseline ones
    {"NPY_DISABLE_CPU_FEATURES": NUMPY_DISPATCH},
]


def _make_in_child(path: Path, variant: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | variant
    done = subprocess.run([sys.executable, "-P", "-c", CHILD, str(path)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _runnable(variant: dict[str, str]) -> bool:
    """A variant naming a backend runs where that backend is available (tox requires all of them)."""
    from reprosparse import available_backends

    name = variant.get("REPROSPARSE_BACKEND", "auto")
    return name == "auto" or available_backends()[name].available


def test_model_bytes_do_not_depend_on_blas_kernel_isa_or_backend(tmp_path: Path) -> None:
    variants = [v for v in VARIANTS if _runnable(v)]
    seen = [_make_in_child(tmp_path / f"m{i}.gguf", variant) for i, variant in enumerate(variants)]
    hashes = [got["sha256"] for got in seen]
    assert len(set(hashes)) == 1, list(zip(variants, hashes, strict=True))
    if seen[0]["blas"] == "openblas":
        # The variable must really have switched the kernel, or the test proves nothing about BLAS.  OpenBLAS
        # may name a kernel differently from the core type that selected it (Prescott runs "Katmai").
        kernels = {v["OPENBLAS_CORETYPE"]: got["kernel"] for v, got in zip(variants, seen, strict=True)
                   if "OPENBLAS_CORETYPE" in v}
        assert len(set(kernels.values())) == len(kernels), kernels
    # NPY_DISABLE_CPU_FEATURES must have turned off the dispatched SIMD loops this CPU would use (seen[0])
    assert not seen[-1]["numpy_simd"], (seen[0]["numpy_simd"], seen[-1]["numpy_simd"])
