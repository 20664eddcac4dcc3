"""A small ReLU-LLaMA runtime on reprosparse's operators, and its PowerInfer model files.

- `load_model(path)` / `save_model(model, path, magic)`: GGUF files with the
  "GGUF" or PowerInfer "PWRI" magic (gguf_file.py documents the tensor names
  and the GGUF -> numpy dimension mapping).
- `make_model(...)`: seeded random models with realistic FFN sparsity and an
  imperfect predictor (`reprosparse make-model`).
- `Runtime`: the decoder.  Every operator runs on the selected backend: the
  weight-heavy ones (Q/K/V/O projections and LM head = `matvec`, predictor =
  `predict`, FFN = `sparse_ffn`/`dense_ffn`) and the per-token ones of
  docs/spec.md §12 (rmsnorm, rope, attention, residual adds, argmax), which a
  backend may leave to the reference; sampling is `reprosparse.reference`.
- `generate(...)`: greedy or counter-based sampled decoding of a batch of prompts.
- `audit.run_audit(...)`: the same greedy generation across backends, thread
  counts, modes and batch compositions (`reprosparse audit`).
- `bench.decode_speed(...)`: decode tokens/s (`reprosparse bench --decode MODEL`).
"""

from .generate import ContextLengthError, Generated, generate
from .gguf_file import ModelFormatError, load_model, save_model
from .make import make_model
from .runtime import KVCache, Runtime
from .weights import Hyper, Layer, Model

__all__ = [
    "ContextLengthError", "Generated", "Hyper", "KVCache", "Layer", "Model", "ModelFormatError", "Runtime",
    "generate", "load_model", "make_model", "save_model",
]
