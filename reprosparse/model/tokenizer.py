"""Text <-> token ids with a model's SentencePiece vocabulary, by the `sentencepiece` library itself.

Why the library and not an encoder of our own: a GGUF "llama" vocabulary is a SentencePiece BPE model
minus its normalizer settings, which llama.cpp fixes (no normalization, spaces escaped to "▁", one "▁"
prepended, extra whitespace kept).  So the vocabulary's pieces, scores and types, with exactly those
settings, make a ModelProto that `sentencepiece.SentencePieceProcessor` runs as it runs the model it
came from: score-ordered merges, byte fallback to `<0xNN>` pieces, `<unk>` (one per run of unknown
characters) when there are no byte pieces, and decoding (▁ -> space, byte pieces -> bytes -> UTF-8,
the first piece's leading space dropped).  Writing that ourselves would be a second implementation to
keep equal to the first; the tests prove the round trip .model -> GGUF -> tokenizer gives
SentencePiece's ids.

What SentencePiece cannot express it refuses, and so do we, naming the problem: pieces that repeat or
are empty (llama.cpp asserts on both too), no unknown piece or two, or some but not all 256 byte pieces.

Where llama.cpp's SPM tokenizer (PowerInfer's, llm_tokenizer_spm) differs, this follows SentencePiece,
the tokenizer the vocabulary was made for: llama.cpp may merge into CONTROL, BYTE and UNUSED pieces and
does not match USER_DEFINED pieces whole, neither of which arises with LLaMA's vocabulary, which has no
user-defined or unused pieces and no path of merges into a control or byte piece.

`read_sentencepiece(path)` turns a SentencePiece .model file into a Vocabulary (`make-model
--tokenizer`); it refuses models whose tokenization a GGUF vocabulary cannot keep (not BPE, or other
normalizer settings than llama.cpp's).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

from .vocabulary import TokenType, Vocabulary


def _modules() -> tuple[Any, Any]:
    try:
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2  # needs protobuf
    except ImportError as exc:
        raise ValueError(
            f"tokenizing text needs the sentencepiece and protobuf packages ({exc}): pip install 'reprosparse[model]'"
        ) from None
    return sentencepiece, sentencepiece_model_pb2


def _model_proto(vocabulary: Vocabulary) -> Any:
    """The ModelProto of a GGUF "llama" vocabulary: its pieces with llama.cpp's fixed text handling."""
    pb = _modules()[1]
    proto = pb.ModelProto()
    for piece, score, kind in zip(vocabulary.pieces, vocabulary.scores, vocabulary.types, strict=True):
        proto.pieces.add(piece=piece, score=score, type=int(kind))
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(vocabulary)
    proto.trainer_spec.byte_fallback = TokenType.BYTE in vocabulary.types
    spec = proto.normalizer_spec
    spec.name = "identity"
    spec.add_dummy_prefix = True
    spec.remove_extra_whitespaces = False
    spec.escape_whitespaces = True
    return proto


class Tokenizer:
    """encode(text) -> ids, BOS first as PowerInfer's main adds it; decode(ids) -> text."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        if vocabulary.model != "llama":
            raise ValueError(f"the vocabulary is a {vocabulary.model!r} tokenizer's; only SentencePiece "
                             "('llama') vocabularies are supported")
        spm = _modules()[0]
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=_model_proto(vocabulary).SerializeToString())
        except RuntimeError as exc:  # e.g. "INTERNAL: unk is not defined."
            reason = str(exc).removeprefix("INTERNAL: ").rstrip(".")
            raise ValueError(f"SentencePiece cannot use the model's vocabulary: {reason}") from None
        self.vocabulary = vocabulary

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """SentencePiece's ids for `text`, after vocabulary.bos when `bos` (llama.cpp: '' gives [bos])."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. an undecodable byte of a command line
            raise ValueError(f"text is not valid Unicode: {text[exc.start:exc.end]!r} at offset {exc.start}") from None
        ids: list[int] = self._sp.encode(text)
        return [self.vocabulary.bos, *ids] if bos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`; control pieces (BOS, EOS) give nothing, as in SentencePiece."""
        n = len(self.vocabulary)
        bad = next((t for t in ids if not 0 <= t < n), None)
        if bad is not None:
            raise ValueError(f"ids must be token ids in [0, {n}), got {bad}")
        return str(self._sp.decode([int(t) for t in ids]))


@functools.lru_cache(maxsize=4)
def tokenizer_for(vocabulary: Vocabulary) -> Tokenizer:
    """The vocabulary's Tokenizer, built once per process (about 0.26 s for 32000 pieces); a vocabulary
    SentencePiece refuses raises its ValueError on every call (failures are not cached)."""
    return Tokenizer(vocabulary)


def read_sentencepiece(path: str | os.PathLike[str]) -> Vocabulary:
    """The pieces, scores and types of a SentencePiece BPE .model file, and its BOS/EOS/unknown ids."""
    pb = _modules()[1]
    from google.protobuf.message import DecodeError

    with open(path, "rb") as f:
        raw = f.read()
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(f"{path}: not a SentencePiece model ({exc})") from None
    if not proto.pieces:
        raise ValueError(f"{path}: not a SentencePiece model (it has no pieces)")
    trainer, spec = proto.trainer_spec, proto.normalizer_spec
    if trainer.model_type != pb.TrainerSpec.BPE:
        raise ValueError(f"{path}: a {pb.TrainerSpec.ModelType.Name(trainer.model_type)} model; a GGUF 'llama' "
                         "vocabulary is tokenized by score-ordered merges, which only keeps a BPE model's tokens")
    # llama.cpp applies no normalization rule and always the dummy prefix: other settings would change the ids.
    kept = {"name": (spec.name, "identity"), "add_dummy_prefix": (spec.add_dummy_prefix, True),
            "remove_extra_whitespaces": (spec.remove_extra_whitespaces, False),
            "escape_whitespaces": (spec.escape_whitespaces, True),
            "treat_whitespace_as_suffix": (trainer.treat_whitespace_as_suffix, False)}
    for name, (got, want) in kept.items():
        if got != want:
            raise ValueError(f"{path}: its {name} is {got!r}; a GGUF 'llama' vocabulary is tokenized "
                             f"with {name} {want!r} (llama.cpp's text handling)")
    for name in ("bos_id", "eos_id", "unk_id"):
        if not 0 <= getattr(trainer, name) < len(proto.pieces):
            raise ValueError(f"{path}: its {name} is {getattr(trainer, name)}; PowerInfer needs a BOS, an EOS "
                             "and an unknown token")
    return Vocabulary(
        pieces=tuple(p.piece for p in proto.pieces), scores=tuple(p.score for p in proto.pieces),
        types=tuple(TokenType(p.type) for p in proto.pieces),
        bos=trainer.bos_id, eos=trainer.eos_id, unk=trainer.unk_id,
    )
