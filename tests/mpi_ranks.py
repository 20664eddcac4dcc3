"""Run by tests/test_mpi.py under mpiexec: one batched generation over the ranks, rank 0 writes the logits.

python mpi_ranks.py OUT ROW_UNIT COLUMN_UNIT [fail]  ("fail": rank 1's matvec raises)
"""

from __future__ import annotations

import sys

import numpy as np

import reprosparse
from reprosparse.backends.numpy_backend import NumpyBackend
from reprosparse.model import Runtime, generate, make_model
from reprosparse.mpi import MpiPartition, world


class FailsOnRankOne(NumpyBackend):
    name = "fails-on-rank-one"

    def _matvec(self, W, x, mode, threads):
        if world().Get_rank() == 1:
            raise RuntimeError("rank one's kernel exploded")
        return super()._matvec(W, x, mode, threads)


def main(out: str, row_unit: int, column_unit: int, fail: bool) -> None:
    native = "cython" if reprosparse.available_backends()["cython"].available else "numpy"
    backend = FailsOnRankOne() if fail else reprosparse.get_backend(native)
    ranks = MpiPartition(backend, threads=1, row_unit=row_unit, column_unit=column_unit)
    model = make_model(layers=2, dim=64, ff=512, vocab=512, heads=4, kv_heads=2, seed=3)
    got = generate(Runtime(model, ranks, mode="deterministic"), [[5, 9, 200, 31, 7], [1, 2]], 4)
    if ranks.rank == 0:
        np.save(out, np.stack([g.logits for g in got]))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] == ["fail"])
