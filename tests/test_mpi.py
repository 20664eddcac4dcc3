"""mpiexec -n K gives one process's tokens and logit bits for K = 1, 2, 3, 4 (reprosparse.mpi)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# tox sets REPROSPARSE_REQUIRE_MPI=1: there a missing MPI is a failure, not a skip.
if os.environ.get("REPROSPARSE_REQUIRE_MPI") == "1":
    import mpi4py  # noqa: F401
else:
    pytest.importorskip("mpi4py", reason="the mpi extra is not installed (pip install '.[mpi]')")
pytest.importorskip("gguf")

from reprosparse.backends.numpy_backend import NumpyBackend
from reprosparse.model import Runtime, generate, make_model, save_model

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
if MPIEXEC is None:
    if os.environ.get("REPROSPARSE_REQUIRE_MPI") == "1":
        raise RuntimeError("REPROSPARSE_REQUIRE_MPI=1 but there is no mpiexec beside this Python or on PATH")
    pytest.skip("no mpiexec beside this Python or on PATH", allow_module_level=True)
HERE = Path(__file__).parent


def mpiexec(k: int, *args: str) -> subprocess.CompletedProcess[str]:
    # Oversubscribing the cores is fine: the ranks wait on each other, they do not race.
    # -P: a working directory holding the source tree must not shadow the installed package.
    return subprocess.run([MPIEXEC, "-n", str(k), sys.executable, "-P", *args], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mpi") / "tiny.gguf"
    save_model(make_model(layers=2, dim=64, ff=512, vocab=512, heads=4, kv_heads=2, seed=3), path)
    return path


@pytest.fixture(scope="module")
def single(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("single") / "one.json"
    done = subprocess.run([sys.executable, "-P", "-m", "reprosparse.cli", "generate", str(model_path), "--tokens",
                           "5,9,200", "-n", "6", "--backend", "numpy", "--json", str(out)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_generate_under_mpiexec_gives_one_process_bits(model_path: Path, single: dict[str, object], k: int,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "ranks.json"
    done = mpiexec(k, "-m", "reprosparse.cli", "generate", str(model_path), "--tokens", "5,9,200", "-n", "6",
                   "--threads", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == single
    assert done.stdout.count("\n") == 2, done.stdout  # rank 0 alone prints: the ids and their text
    assert f"mpi({'cython' if 'cython' in done.stderr else 'numpy'} x {k} MPI ranks)" in " ".join(done.stderr.split())


@pytest.mark.parametrize(("k", "row_unit", "column_unit"), [(2, 1, 1), (3, 7, 5), (4, 256, 32)])
def test_ranks_split_every_matrix_and_keep_the_bits_in_a_batch(tmp_path: Path, k: int, row_unit: int,
                                                              column_unit: int) -> None:
    """Prefill of two prompts of different lengths, then decoding, with splits inside blocks and heads."""
    out = tmp_path / "logits.npy"
    done = mpiexec(k, str(HERE / "mpi_ranks.py"), str(out), str(row_unit), str(column_unit))
    assert done.returncode == 0, done.stderr
    model = make_model(layers=2, dim=64, ff=512, vocab=512, heads=4, kv_heads=2, seed=3)
    want = generate(Runtime(model, NumpyBackend(), mode="deterministic"), [[5, 9, 200, 31, 7], [1, 2]], 4)
    assert np.load(out).tobytes() == np.stack([g.logits for g in want]).tobytes()


def test_a_failing_rank_stops_every_rank_with_its_reason(tmp_path: Path) -> None:
    done = mpiexec(3, str(HERE / "mpi_ranks.py"), str(tmp_path / "x.npy"), "1", "1", "fail")
    assert done.returncode != 0
    assert "MPI rank 1 failed: RuntimeError: rank one's kernel exploded" in done.stderr
    assert not (tmp_path / "x.npy").exists()


def test_partition_and_mpiexec_do_not_mix(model_path: Path) -> None:
    done = mpiexec(2, "-m", "reprosparse.cli", "generate", str(model_path), "-n", "2", "--partition", "numpy")
    assert done.returncode == 2 and "under mpiexec the ranks are the partition" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_audit_counts_rank_runs_among_its_runs(model_path: Path, tmp_path: Path) -> None:
    from reprosparse.cli import main

    report = tmp_path / "audit.json"
    code = main(["audit", str(model_path), "--tokens", "5,9,200", "-n", "4", "--backends", "numpy", "--modes",
                 "deterministic", "--threads", "1", "--repeats", "1", "--ranks", "1,3", "--json", str(report)])
    assert code == 0
    got = json.loads(report.read_text())
    assert [r["backend"] for r in got["runs"]] == ["numpy", "numpy", "mpi(numpy x 1)", "mpi(numpy x 3)"]
    assert got["summaries"]["deterministic"]["deterministic_ok"]
    assert len({tuple(r["tokens"]) for r in got["runs"]}) == 1


def test_generate_writes_the_logits_it_chose_from(model_path: Path, tmp_path: Path) -> None:
    out, logits = tmp_path / "g.json", tmp_path / "g.npy"
    done = mpiexec(2, "-m", "reprosparse.cli", "generate", str(model_path), "--tokens", "5,9,200", "-n", "3",
                   "--json", str(out), "--logits", str(logits))
    assert done.returncode == 0, done.stderr
    got = np.load(logits)
    assert got.shape == (3, 512) and got.dtype == np.float32  # 512: the vocabulary
    assert json.loads(out.read_text())["tokens"] == np.argmax(got, axis=1).tolist()
