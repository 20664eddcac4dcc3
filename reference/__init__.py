"""The executable form of docs/spec.md: one module per operator, pure numpy.

Every backend must reproduce these functions bit for bit in deterministic
mode.  `bounds` holds the fast-mode error bounds of the same spec.
"""

from .argmax import argmax
from .attention import attention, attention_batch
from .decoder_layer import decoder_layer, decoder_layers
from .exp import exp32
from .ffn import dense_ffn, sparse_ffn
from .matvec import matvec
from .predict import predict
from .quant import QuantizedMatrix
from .relu import relu
from .rmsnorm import rmsnorm
from .rope import rope
from .sample import sample
from .softmax import softmax
from .sparse_axpy import sparse_axpy
from .sparse_matvec import sparse_matvec
from .trig import sincos32

#: the operators every backend implements
OPS = ("matvec", "sparse_matvec", "sparse_axpy", "predict", "sparse_ffn", "dense_ffn")
#: the runtime's per-token operators (spec §12); attention_batch and decoder_layer, which store into
#: KV caches, are compositions of these and of OPS, and decoder_layers a stack of decoder_layer
RUNTIME_OPS = ("exp32", "sincos32", "rope", "rmsnorm", "softmax", "attention", "argmax", "sample")

__all__ = [
    "OPS", "RUNTIME_OPS", "QuantizedMatrix", "argmax", "attention", "attention_batch", "decoder_layer",
    "decoder_layers", "dense_ffn", "exp32", "matvec", "predict", "relu",
    "rmsnorm", "rope", "sample", "sincos32", "softmax", "sparse_axpy", "sparse_ffn", "sparse_matvec",
]
