"""`make_model` writes the same bytes for a seed whatever BLAS kernel, cython ISA or backend is in use.

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

pytest.importorskip("gguf")
pytest.importorskip("threadpoolctl")

# The CLI's default model shape: float32 BLAS on these shapes gave three different files under
# OPENBLAS_CORETYPE unset, Haswell and Sandybridge before make_model stopped using BLAS.
CHILD = """
import hashlib, json, sys
import threadpoolctl
from reprosparse.model import make_model, save_model

save_model(make_model(layers=2, dim=64, ff=512, vocab=256, heads=4, seed=0), sys.argv[1])
blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"sha256": hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(),
                  "blas": blas[0]["internal_api"] if blas else None,
                  "kernel": blas[0].get("architecture") if blas else None}))
"""

# (OPENBLAS_CORETYPE, REPROSPARSE_CYTHON_ISA, REPROSPARSE_BACKEND); None leaves the variable unset.
VARIANTS = [
    (None, None, None),
    ("Haswell", "scalar", "numpy"),
    ("Sandybridge", "sse2", "cython"),
    ("Prescott", "avx2", "auto"),
]


def _make_in_child(path: Path, coretype: str | None, isa: str | None, backend: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "REPROSPARSE_CYTHON_ISA", "REPROSPARSE_BACKEND")}
    for key, value in (("OPENBLAS_CORETYPE", coretype), ("REPROSPARSE_CYTHON_ISA", isa),
                       ("REPROSPARSE_BACKEND", backend)):
        if value is not None:
            env[key] = value
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_model_bytes_do_not_depend_on_blas_kernel_isa_or_backend(tmp_path: Path) -> None:
    seen = {variant: _make_in_child(tmp_path / f"m{i}.gguf", *variant) for i, variant in enumerate(VARIANTS)}
    hashes = {variant: got["sha256"] for variant, got in seen.items()}
    assert len(set(hashes.values())) == 1, hashes
    if seen[VARIANTS[0]]["blas"] == "openblas":
        # The variable must really have switched the kernel, or the test proves nothing about BLAS.  OpenBLAS
        # may name a kernel differently from the core type that selected it (Prescott runs "Katmai").
        kernels = {coretype: got["kernel"] for (coretype, _, _), got in seen.items() if coretype is not None}
        assert len(set(kernels.values())) == len(kernels), kernels
