"""Partitioned execution gives one device's bits: every split, share, executor mix and thread count."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import reprosparse
from reprosparse import conformance
from reprosparse.backends.numpy_backend import NumpyBackend
from reprosparse.partition import Executor, Partition, parse

AVAILABLE = {s.name for s in reprosparse.available_backends().values() if s.available}
NATIVE = "cython" if "cython" in AVAILABLE else "numpy"
QUICK = conformance.all_cases(quick=True)
WEIGHT_OPS = ("matvec", "sparse_matvec", "sparse_axpy", "predict", "sparse_ffn", "dense_ffn")


class Honest(NumpyBackend):
    """The reference's code under another name, so the suite checks it rather than skipping it."""

    name = "honest"


def executors(spec: str) -> list[Executor]:
    return list(parse(spec, resolve=lambda name: Honest() if name == "honest" else reprosparse.get_backend(name))
                .executors)


# Units small enough that the conformance cases (tens of rows and columns) split everywhere: inside
# and at 256-neuron block edges, into empty executors, or not at all.
PARTITIONS = {
    "two-units-7-5": (f"{NATIVE}:1@1,honest:1", 7, 5),
    "three-units-1-1": (f"honest:1,{NATIVE}:2@2,{NATIVE}:1@3", 1, 1),
    "empty-executor": (f"{NATIVE}:0,honest:1,{NATIVE}:0", 3, 2),
    "block-units": (f"{NATIVE}:1@2,honest:1", 256, 32),
}


@pytest.mark.parametrize(
    ("name", "mode"),
    [(name, "deterministic") for name in PARTITIONS] + [("three-units-1-1", "fast")],
)
def test_partitions_pass_the_conformance_suite(name: str, mode: str) -> None:
    spec, row_unit, column_unit = PARTITIONS[name]
    partition = Partition(executors(spec), row_unit=row_unit, column_unit=column_unit)
    cases = [c for c in QUICK if c.op in WEIGHT_OPS]
    failed = conformance.failures(conformance.run([partition], [mode], cases))
    assert not failed, "\n".join(f"{r.case.id} {r.check}: {r.detail[:300]}" for r in failed[:5])


class RowSplitAxpy(Partition):
    """The obvious way to split the FFN's down projection, and the one PowerInfer's hybrid split takes:
    each executor folds its own neurons from +0, and the outputs are added.  Float addition does
    not associate, so this is not the spec's single chain of block partials."""

    def _sparse_axpy(self, W: np.ndarray, h: np.ndarray, rows: np.ndarray, mode: str, threads: int) -> np.ndarray:
        y = np.zeros((h.shape[0], W.shape[1]), np.float32)
        for k, a, b in self._parts(W.shape[0], self.row_unit):
            i, j = np.searchsorted(rows, [a, b])
            own = self.executors[k].backend.sparse_axpy(W[a:b], h[:, i:j], rows[i:j] - np.int32(a), mode=mode,
                                                        threads=threads)
            y = y + own
        return y


def test_adding_partial_sums_across_executors_is_caught() -> None:
    broken = RowSplitAxpy(executors(f"{NATIVE}:1,honest:1"), row_unit=256)
    cases = [c for c in QUICK if c.op in ("sparse_axpy", "sparse_ffn") and c.family == "masks"]
    failed = conformance.failures(conformance.run([broken], ["deterministic"], cases))
    assert {r.case.op for r in failed} == {"sparse_axpy", "sparse_ffn"}


# ---- a whole model --------------------------------------------------------

pytest.importorskip("gguf")

from reprosparse.model import Runtime, generate, make_model  # noqa: E402

MODEL_PARTITIONS = [
    (f"{NATIVE}:1", 256, 32),
    (f"{NATIVE}:1@1,{NATIVE}:1@2", 256, 32),  # the FFN's two blocks on two executors
    (f"{NATIVE}:3@2,honest:1", 1, 1),  # splits inside blocks, heads and rows of every matrix
    (f"honest:1,{NATIVE}:0,{NATIVE}:2@1", 5, 3),
]
if "opencl" in AVAILABLE:
    MODEL_PARTITIONS += [("opencl:0.5,cython", 256, 32), ("cython:1@2,opencl:2", 7, 16)]


@pytest.fixture(scope="module")
def tiny() -> Any:
    return make_model(layers=2, dim=64, ff=512, vocab=512, heads=4, kv_heads=2, seed=3)


def _logits(runtime: Runtime) -> tuple[list[list[int]], np.ndarray]:
    """Prefill two prompts of different lengths in one batch, then decode four tokens each."""
    out = generate(runtime, [[5, 9, 200, 31, 7], [1, 2]], 4)
    return [g.tokens for g in out], np.stack([g.logits for g in out])


@pytest.mark.parametrize(("spec", "row_unit", "column_unit"), MODEL_PARTITIONS)
def test_a_partitioned_model_gives_one_devices_bits(tiny: Any, spec: str, row_unit: int, column_unit: int) -> None:
    """Prefill and decode, in a batch: the reference's tokens and logit bits, for every split.  (Fast
    mode promises bounds per op, which the conformance test above checks, not equal bits.)"""
    partition = Partition(executors(spec), row_unit=row_unit, column_unit=column_unit)
    want_tokens, want = _logits(Runtime(tiny, NumpyBackend(), mode="deterministic"))
    tokens, got = _logits(Runtime(tiny, partition, mode="deterministic", threads=2))
    assert tokens == want_tokens
    assert got.tobytes() == want.tobytes()


# ---- errors ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "NAME"),
        ("cython:-1", "share >= 0"),
        ("cython:nan", "finite share"),
        ("cython:x", "cython:x"),
        ("cython@0", "threads >= 1"),
        ("cython,,numpy", "''"),
        ("cython:0,numpy:0", "must not all be 0"),
    ],
)
def test_bad_partitions_are_refused_naming_the_part(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse(spec)


def test_an_unknown_backend_in_a_partition_is_named() -> None:
    with pytest.raises(reprosparse.BackendError, match="no-such-backend"):
        parse("cython,no-such-backend")


def test_an_executor_must_hold_a_backend() -> None:
    with pytest.raises(TypeError, match="Backend"):
        Partition([Executor("cython", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Executor"):
        Partition([])


def test_a_partition_refuses_what_any_executor_refuses() -> None:
    class Refusing(NumpyBackend):
        name = "refusing"

        def refuses(self, mode: str) -> str | None:
            return "failed its self-test" if mode == "deterministic" else None

    p = Partition([Executor(NumpyBackend(), 1), Executor(Refusing(), 1)])
    assert p.refuses("deterministic") == "refusing: failed its self-test"
    assert p.refuses("fast") is None


# ---- the command line -----------------------------------------------------

from reprosparse.cli import main  # noqa: E402
from reprosparse.model import save_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny_path(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("partition") / "tiny.gguf"
    save_model(tiny, path)
    return str(path)


def test_generate_on_a_partition_prints_the_single_backends_tokens(tiny_path: str, capsys: Any) -> None:
    args = ["generate", tiny_path, "--tokens", "5,9,200", "-n", "6"]
    assert main([*args, "--backend", "numpy"]) == 0
    want = capsys.readouterr().out.splitlines()[0]
    assert main([*args, "--partition", f"{NATIVE}:1@1,numpy,{NATIVE}:0.5@2"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == want
    assert f"partition({NATIVE}:1@1,numpy,{NATIVE}:0.5@2)" in " ".join(out.err.split())


def test_audit_runs_partitions_as_more_rows_of_its_matrix(tiny_path: str, tmp_path: Any, capsys: Any) -> None:
    report = tmp_path / "audit.json"
    code = main(["audit", tiny_path, "--tokens", "5,9,200", "-n", "4", "--backends", "numpy", "--threads", "1,2",
                 "--modes", "deterministic", "--repeats", "1", "--partitions", f"{NATIVE}:1,numpy;numpy:0,{NATIVE}",
                 "--json", str(report)])
    assert code == 0
    got = json.loads(report.read_text())
    assert {r["backend"] for r in got["runs"]} == {"numpy", f"partition({NATIVE}:1,numpy)",
                                                   f"partition(numpy:0,{NATIVE})"}
    assert got["summaries"]["deterministic"]["deterministic_ok"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--partition", "cython:-2"], "argument --partition: partition 'cython:-2'"),
        (["--partition", "cuda,numpy"], "got 'cuda'"),
        (["--partition", "numpy", "--backend", "numpy"], "not allowed with"),
    ],
)
def test_bad_partitions_on_the_command_line_are_one_line_errors(tiny_path: str, capsys: Any, args: list[str],
                                                                message: str) -> None:
    assert main(["generate", tiny_path, "-n", "2", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_quantized_model_is_split_in_its_own_blocks(tiny_path: str) -> None:
    """Q4_0 rows and 32-column ranges go to the executors as blocks (no float32 copy), same bits."""
    from reprosparse.reference.quant import QuantizedMatrix

    model = make_model(layers=1, dim=64, ff=512, vocab=300, heads=4, seed=4, dtype="q4_0")
    seen: list[object] = []

    class Watching(Honest):
        def _sparse_axpy(self, W, h, rows, mode, threads):  # type: ignore[no-untyped-def]
            seen.append(W)
            return super()._sparse_axpy(W, h, rows, mode, threads)

    partition = Partition([Executor(Watching(), 1), Executor(reprosparse.get_backend(NATIVE), 1, 1)], row_unit=256)
    want_tokens, want = _logits(Runtime(model, NumpyBackend(), mode="deterministic"))
    tokens, got = _logits(Runtime(model, partition, mode="deterministic"))
    assert tokens == want_tokens and got.tobytes() == want.tobytes()
    assert seen and all(isinstance(W, QuantizedMatrix) and W.shape[1] == 32 for W in seen)
    seen.clear()
    odd = Partition([Executor(Watching(), 1), Executor(Watching(), 1)], column_unit=8)  # 8 -> one 32-column block
    W, h, rows = model.layers[0].down_t, np.ones((1, 2), np.float32), np.array([0, 3], np.int32)
    assert odd.sparse_axpy(W, h, rows).tobytes() == NumpyBackend().sparse_axpy(W, h, rows).tobytes()
    assert [w.shape[1] for w in seen] == [32, 32]  # type: ignore[attr-defined]


def test_a_q6_k_down_t_is_split_on_256_column_blocks() -> None:
    """Q6_K columns go to the executors in whole 256-column blocks (whatever the column unit), same bits."""
    from reprosparse.conformance.quant_cases import quantized

    seen: list[object] = []

    class Watching(Honest):
        def sparse_axpy(self, W, h, rows, **kw):  # type: ignore[no-untyped-def]
            seen.append(W)
            return super().sparse_axpy(W, h, rows, **kw)

    rng = np.random.default_rng(9)
    W = quantized(rng, (301, 768), "normal", "q6_k")
    rows = np.flatnonzero(rng.random(301) < 0.3).astype(np.int32)
    h = rng.standard_normal((3, rows.size)).astype(np.float32)
    want = NumpyBackend().sparse_axpy(W.dequantize(), h, rows)
    for unit in (8, 32, 128):
        seen.clear()
        split = Partition([Executor(Watching(), 1), Executor(Watching(), 1), Executor(Watching(), 1)],
                          column_unit=unit)
        assert split.sparse_axpy(W, h, rows).tobytes() == want.tobytes()
        widths = [w.shape[1] for w in seen]  # type: ignore[attr-defined]
        assert sum(widths) == 768 and all(w % 256 == 0 for w in widths) and len(widths) > 1, (unit, widths)
