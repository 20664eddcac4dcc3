"""The benchmark's plan: what runs, in which order (nothing is timed here)."""

from __future__ import annotations

from reprosparse import bench


def test_cases_that_run_openblas_come_last():
    # OpenBLAS's threads spin after a call; a 2-thread case timed after one waited for its second core.
    plan = bench.Plan(backends=("numpy", "cython"), modes=("deterministic", "fast"), threads=(1, 2),
                      fractions=(0.1, 1.0), batches=(1, 16), dtypes=("float32", "float16"))
    order = [c.backend for c in bench.cases(plan)]
    blas = [i for i, b in enumerate(order) if b in ("numpy", bench.BLAS)]
    others = [i for i, b in enumerate(order) if b not in ("numpy", bench.BLAS)]
    assert blas and others and max(others) < min(blas)
    # nothing lost or repeated by the reordering: every op case per backend and mode, and the baselines
    assert len(order) == len(set(bench.cases(plan))) == 2 * 2 * 2 * len(bench.OPS) * (2 * 2 + 2) + 2 * 2 * 2
