"""A model's SentencePiece vocabulary as GGUF stores it, and the one `make-model` writes.

A GGUF "llama" vocabulary (llama.cpp's SPM vocabulary) is three parallel arrays,
`tokenizer.ggml.tokens` (the pieces), `tokenizer.ggml.scores` (float32: merges
with higher scores happen first) and `tokenizer.ggml.token_type`, plus the ids
of the BOS, EOS and unknown tokens.  The token types are llama.cpp's, which are
SentencePiece's piece types (sentencepiece_model.proto) with the same numbers.

`make_vocabulary(size)` is a LLaMA-shaped vocabulary for seeded test models:
`<unk>`, `<s>`, `</s>`, the 256 byte tokens `<0x00>`..`<0xFF>` at ids 3..258
(PowerInfer's loader looks up `<0x0A>` for the newline, and its `main` needs
the bytes of U+2581 or a `▁` piece), then `▁`-prefixed words and characters
with descending scores, as SentencePiece's BPE trainer orders its merges.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

SPACE = "▁"  # U+2581: SentencePiece's escaped space
#: llama.cpp's defaults for a "llama" vocabulary without the id keys (llm_load_vocab).
DEFAULT_UNK, DEFAULT_BOS, DEFAULT_EOS = 0, 1, 2
SPECIALS = ("<unk>", "<s>", "</s>")
#: make_vocabulary's floor: the three specials and the 256 byte tokens.
MIN_VOCAB = len(SPECIALS) + 256


class TokenType(IntEnum):
    """llama.cpp's llama_token_type and SentencePiece's ModelProto.SentencePiece.Type: the same numbers."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


@dataclass(frozen=True)
class Vocabulary:
    """Checked on construction: equal lengths, known types, special ids inside the vocabulary.

    Whether SentencePiece can tokenize with it (unique pieces, one unknown piece, all 256 bytes or none)
    is the tokenizer's check: a model runs from token ids without one.
    """

    pieces: tuple[str, ...]
    scores: tuple[float, ...]  # float32 values
    types: tuple[TokenType, ...]
    bos: int = DEFAULT_BOS
    eos: int = DEFAULT_EOS
    unk: int = DEFAULT_UNK
    model: str = "llama"  # tokenizer.ggml.model: "llama" is SentencePiece; "gpt2" would be byte-level BPE

    def __post_init__(self) -> None:
        n = len(self.pieces)
        for name in ("scores", "types"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} pieces")
        for name in ("bos", "eos", "unk"):
            if not 0 <= getattr(self, name) < n:
                raise ValueError(f"{name} must be a token id in [0, {n}), got {getattr(self, name)}")

    def __len__(self) -> int:
        return len(self.pieces)


def byte_piece(b: int) -> str:
    """The piece of byte `b`: `<0x0A>` for the newline, as SentencePiece and llama.cpp spell them."""
    return f"<0x{b:02X}>"


WORDS = (
    "▁the", "▁a", "▁of", "▁and", "▁to", "▁in", "▁is", "▁it", "▁that", "▁was", "▁for", "▁on", "▁with",
    "▁as", "▁be", "▁at", "▁by", "▁this", "▁from", "▁or", "▁sparse", "▁model", "▁token", "▁same",
    "▁bits", "▁every", "▁time", "▁run", "▁again", "ing", "ed", "er", "es", "▁un", "▁re", "th", "he",
)


def _normal_pieces() -> Iterator[str]:
    """Every piece after the bytes, best first, without end.

    Each piece of two or more characters comes after the piece one character shorter (its prefix), so a
    word's merges can always build it left to right.
    """
    yield SPACE
    yield from string.printable[:94]  # the ASCII characters 33..126: any ASCII text has pieces
    for word in WORDS:
        yield from (word[:k] for k in range(2, len(word) + 1))
    for length in itertools.count(1):  # then ▁ + lowercase strings and lowercase strings, shortest first
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            yield SPACE + "".join(letters)
        for letters in itertools.product(string.ascii_lowercase, repeat=length + 1):
            yield "".join(letters)


def make_vocabulary(size: int) -> Vocabulary:
    """The `size` tokens `make-model` writes; the pieces after the bytes score 0, -1, -2, ... in order."""
    if size < MIN_VOCAB:
        raise ValueError(f"size must be at least {MIN_VOCAB} (<unk>, <s>, </s> and 256 byte tokens), got {size}")
    normal: list[str] = []
    seen: set[str] = set()
    for piece in _normal_pieces():  # the words' prefixes repeat characters and each other
        if len(normal) == size - MIN_VOCAB:
            break
        if piece not in seen:
            seen.add(piece)
            normal.append(piece)
    pieces = (*SPECIALS, *(byte_piece(b) for b in range(256)), *normal)
    types = (TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL, *[TokenType.BYTE] * 256,
             *[TokenType.NORMAL] * len(normal))
    scores = (0.0,) * MIN_VOCAB + tuple(-float(k) for k in range(len(normal)))
    return Vocabulary(pieces, scores, types)
