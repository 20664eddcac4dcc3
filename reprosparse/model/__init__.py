"""A small ReLU-LLaMA runtime on reprosparse's operators, and its PowerInfer model files.

- `load_model(path)` / `save_model(model, path, magic)`: GGUF files with the
  "GGUF" or PowerInfer "PWRI" magic (gguf_file.py documents the tensor names
  and the GGUF -> numpy dimension mapping).
- `load_vocabulary(path)`, `Vocabulary`, `Tokenizer`: the file's SentencePiece
  vocabulary (vocabulary.py) and text <-> ids through the `sentencepiece`
  library (tokenizer.py); `make_vocabulary(size)` is make_model's.
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
from .gguf_file import ModelFormatError, load_model, load_vocabulary, save_model
from .make import make_model
from .runtime import KVCache, Runtime
from .tokenizer import Tokenizer, read_sentencepiece
from .vocabulary import TokenType, Vocabulary, make_vocabulary
from .weights import Hyper, Layer, Model

__all__ = [
    "ContextLengthError", "Generated", "Hyper", "KVCache", "Layer", "Model", "ModelFormatError", "Runtime",
    "TokenType", "Tokenizer", "Vocabulary", "generate", "load_model", "load_vocabulary", "make_model",
    "make_vocabulary", "read_sentencepiece", "save_model",
]
