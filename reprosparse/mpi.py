"""Tensor parallelism over MPI ranks with one device's bits: ``mpiexec -n K reprosparse generate MODEL``.

Each rank is one executor of a `Partition` (reprosparse.partition): for every weight operator it
computes only its own rows (matvec, sparse_matvec: Q/K/V/O, predictor, gate, up, LM head) or columns
(sparse_axpy: down_t), in whole 256-row and 32-column units, and the ranks then exchange those
disjoint slices with one ``Allgatherv`` (rank order), so every rank holds the whole output and the
next step runs on the same activations everywhere.  No partial sum is reduced across ranks, so the
bits are those of one process for every rank count.  The light per-token work (rmsnorm, rope,
attention, sampling) is repeated on every rank: it reads no weights.

A rank reads only the pages of its rows from the model file (the file is mapped, not read);
its down_t columns are one strided read.  Across hosts every rank opens the same path: the file
must be on a shared file system or copied to each host; hosts come from the MPI implementation's
own host file.  Install with ``pip install 'reprosparse[mpi]'`` (mpi4py and MPICH's binary wheel,
whose ``mpiexec`` lands beside the Python that installed it).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from reprosparse.backends import Backend
from reprosparse.partition import COLUMN_UNIT, Executor, Part, Partition
from reprosparse.reference.sparse_axpy import BLOCK

#: Set by the MPI launchers (MPICH/Intel MPI's hydra, Open MPI) in every rank's environment.
LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched() -> bool:
    """Whether this process was started by mpiexec (so importing mpi4py will join its world)."""
    return any(os.environ.get(v) for v in LAUNCHER_VARIABLES)


def mpiexec() -> str:
    """The mpiexec beside this Python (where the mpi extra puts it) or on PATH, with mpi4py importable;
    else a ValueError saying what is missing."""
    import importlib.util
    import shutil
    import sys

    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if found is None or importlib.util.find_spec("mpi4py") is None:
        raise ValueError("needs mpi4py and an mpiexec (pip install 'reprosparse[mpi]')")
    return found


def world() -> Any:
    """MPI.COMM_WORLD, or a ValueError saying how to install mpi4py."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ValueError(f"started by mpiexec but mpi4py is missing ({exc}); pip install 'reprosparse[mpi]'") from None
    return MPI.COMM_WORLD


class MpiPartition(Partition):
    """One executor per rank of comm, each running `backend`; see the module docstring."""

    def __init__(self, backend: Backend, comm: Any = None, *, threads: int | None = None,
                 row_unit: int = BLOCK, column_unit: int = COLUMN_UNIT) -> None:
        self.comm = world() if comm is None else comm
        self.rank, size = self.comm.Get_rank(), self.comm.Get_size()
        super().__init__([Executor(backend, 1.0, threads, label=f"rank {r}") for r in range(size)],
                         row_unit=row_unit, column_unit=column_unit, spec=f"{backend.name} x {size} MPI ranks")

    @property
    def label(self) -> str:
        return f"mpi({self.spec})"

    def _execute(self, out: np.ndarray, parts: list[Part], threads: int) -> np.ndarray:
        """This rank's part, then every rank's slice gathered into out (rank order: disjoint slices).

        Each rank's message ends with one status word (0: its slice follows it, 1: it failed), so
        the good path is a single collective; after a failure every rank learns why (a second one)
        and raises, so no rank waits for a slice that will never come."""
        from mpi4py import MPI

        t = out.shape[0]
        counts = [1] * self.comm.Get_size()  # the status word
        for i, first, end, _ in parts:
            counts[i] += t * (end - first)
        send = np.zeros(counts[self.rank], np.float32)
        failure = None
        for i, _, _, compute in parts:
            if i == self.rank:
                e = self.executors[i]
                try:
                    send[:-1] = np.asarray(compute(e.backend, e.threads_for(threads)), np.float32).reshape(-1)
                except Exception as exc:
                    failure = exc
        send[-1] = 0.0 if failure is None else 1.0
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
        gathered = np.empty(sum(counts), np.float32)
        self.comm.Allgatherv(send, [gathered, counts, displs, MPI.FLOAT])
        if any(gathered[d + n - 1] != 0.0 for d, n in zip(displs, counts, strict=True)):
            failures = self.comm.allgather(None if failure is None else f"{type(failure).__name__}: {failure}")
            if failure is not None:
                raise failure
            rank, why = next((r, why) for r, why in enumerate(failures) if why is not None)
            raise RuntimeError(f"MPI rank {rank} failed: {why}")
        for i, first, end, _ in parts:
            out[:, first:end] = gathered[displs[i]:displs[i] + counts[i] - 1].reshape(t, end - first)
        return out
