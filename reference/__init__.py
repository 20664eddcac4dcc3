"""The executable form of docs/spec.md: one module per operator, pure numpy.

Every backend must reproduce these functions bit for bit in deterministic
mode.  `bounds` holds the fast-mode error bounds of the same spec.
"""

from .ffn import dense_ffn, sparse_ffn
from .matvec import matvec
from .predict import predict
from .relu import relu
from .sparse_axpy import sparse_axpy
from .sparse_matvec import sparse_matvec

OPS = ("matvec", "sparse_matvec", "sparse_axpy", "predict", "sparse_ffn", "dense_ffn")

__all__ = ["OPS", "dense_ffn", "matvec", "predict", "relu", "sparse_axpy", "sparse_ffn", "sparse_matvec"]
