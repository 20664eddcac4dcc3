"""The conformance suite fails every deliberately broken backend, on the check that matters."""

from __future__ import annotations

import pytest

from reprosparse import conformance
from reprosparse.backends.numpy_backend import NumpyBackend

import broken_backends as broken

QUICK = conformance.all_cases(quick=True)


def _failures(backend, mode, ops, family=None):
    cases = [c for c in QUICK if c.op in ops and (family is None or c.family == family)]
    return conformance.failures(conformance.run([backend], [mode], cases))


@pytest.mark.parametrize(
    ("backend", "mode", "ops", "family"),
    [
        (broken.Sequential(), "deterministic", ("matvec", "sparse_matvec", "predict", "sparse_ffn"), None),
        (broken.Fused(), "deterministic", ("matvec", "sparse_matvec", "sparse_ffn"), "values"),
        (broken.BlockOrder(), "deterministic", ("sparse_axpy", "sparse_ffn"), "masks"),
        (broken.OneUlp(), "deterministic", ("matvec", "sparse_matvec", "sparse_axpy", "sparse_ffn"), None),
        (broken.FarOff(), "fast", ("matvec", "sparse_matvec", "sparse_axpy", "sparse_ffn", "predict"), None),
        (broken.NoZeroSkip(), "fast", ("sparse_axpy",), "values"),
        (broken.FlushesSubnormals(), "deterministic", ("matvec", "sparse_matvec"), "values"),
        (broken.RuntimeNumpyExp(), "deterministic", ("softmax", "attention", "attention_batch"), "values"),
        (broken.RuntimeNumpyExp(), "fast", ("softmax", "attention", "attention_batch"), "values"),
        (broken.RuntimeSequentialNorm(), "deterministic", ("rmsnorm",), "shapes"),
        (broken.RuntimeSequentialNorm(), "deterministic", ("decoder_layer",), "shapes"),
        (broken.StoresAfterAttending(), "deterministic", ("attention_batch", "decoder_layer"), None),
        (broken.InterleavedNibbles(), "deterministic",
         ("matvec", "sparse_matvec", "sparse_axpy", "predict", "sparse_ffn", "dense_ffn"), "q4_0"),
        (broken.InterleavedNibbles(), "fast",
         ("matvec", "sparse_matvec", "sparse_axpy", "predict", "sparse_ffn", "dense_ffn"), "q4_0"),
    ],
    ids=lambda v: getattr(v, "name", None) if hasattr(v, "name") else None,
)
def test_broken_backend_fails_every_op(backend, mode, ops, family):
    failed = _failures(backend, mode, ops, family)
    assert {r.case.op for r in failed} == set(ops), f"{backend.name} slipped through on some ops"
    for r in failed:
        assert r.reproduction.endswith(f"--case {r.case.id}")


def test_thread_sweep_catches_thread_dependence():
    failed = _failures(broken.ThreadDependent(), "deterministic", ("matvec",), "shapes")
    assert failed and {r.check for r in failed} == {"threads=3"}


def test_batch_dependence_is_caught():
    failed = _failures(broken.BatchDependent(), "deterministic", ("sparse_ffn",), "masks")
    assert failed
    # Single tokens cannot show it; every failure is a batch of several.
    assert all(r.case.inputs()["x"].shape[0] >= 2 for r in failed)


def test_numpy_backend_passes_what_the_broken_ones_fail():
    """The same selections, run against the honest backend, pass: the failures above are real."""

    class Honest(NumpyBackend):  # a subclass gets every check, where NumpyBackend itself "is the reference"
        name = "honest"

    honest = Honest()
    for mode in ("deterministic", "fast"):
        assert not _failures(honest, mode, ("matvec", "sparse_matvec", "sparse_axpy", "sparse_ffn", "predict"))
        assert not _failures(honest, mode, ("softmax", "attention", "attention_batch", "rmsnorm"), "values")
        assert not _failures(honest, mode, ("attention_batch", "decoder_layer"))


def test_a_crashing_backend_fails_instead_of_stopping_the_suite():
    class Raises(NumpyBackend):
        name = "broken-raises"

        def _matvec(self, W, x, mode, threads):
            raise RuntimeError("kernel exploded")

    failed = _failures(Raises(), "deterministic", ("matvec",), "shapes")
    assert failed and all("kernel exploded" in r.detail for r in failed)
