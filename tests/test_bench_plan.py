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


def test_targets_judge_against_issue_11s_goals():
    """det/fast within 1.05 and sparse_axpy at >= 80% of the stream: just inside passes, just outside fails."""
    cores = bench._platform.cpu_count()

    def result(op, mode, median_s, of_stream):
        return bench.Result(op, "float16", 1, 0.10, "cython", mode, cores, median_s, median_s, 1, 1.0, of_stream)

    def verdicts(ratio, share):
        report = bench.Report({}, {}, [result("sparse_axpy", "deterministic", ratio, share),
                                       result("sparse_axpy", "fast", 1.0, share)])
        found = {t.what: t for t in bench.targets(report)}
        return (found["float16 sparse_axpy: det time / fast time"].met,
                found["float16 sparse_axpy det: fraction of streaming read"].met)

    assert verdicts(1.049, 0.801) == (True, True)
    assert verdicts(1.051, 0.799) == (False, False)
