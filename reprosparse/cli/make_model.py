"""`reprosparse make-model`: write a seeded random sparse ReLU-LLaMA model file with a SentencePiece vocabulary."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import UsageError
from ._types import input_file, output_file, positive_int, seed

if TYPE_CHECKING:
    from ..model import Vocabulary

DEFAULT_VOCAB = 512

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("make-model", help="write a seeded random sparse ReLU-LLaMA model file (GGUF/PWRI)")
    p.add_argument("path", type=output_file, help="output file")
    p.add_argument("--layers", type=positive_int, default=2, help="decoder layers")
    p.add_argument("--dim", type=positive_int, default=64, help="model width (LLaMA-7B: 4096)")
    p.add_argument("--ff", type=positive_int, default=512, help="FFN neurons (LLaMA-7B: 11008)")
    p.add_argument("--vocab", type=positive_int, default=None,
                   help=f"vocabulary size, >= 259: <unk>, <s>, </s>, 256 byte tokens, then pieces (LLaMA: 32000); "
                        f"omitted: {DEFAULT_VOCAB}, or --tokenizer's size")
    p.add_argument("--tokenizer", type=input_file, default=None,
                   help="a SentencePiece BPE .model file whose pieces, scores and types become the vocabulary "
                        "(omitted: a generated LLaMA-style vocabulary)")
    p.add_argument("--heads", type=positive_int, default=4, help="attention heads (LLaMA-7B: 32)")
    p.add_argument("--kv-heads", type=positive_int, default=None, help="key/value heads for grouped-query attention; "
                   "omitted: as many as --heads")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random weights")
    p.add_argument("--type", choices=("f32", "f16", "q8_0", "q4_0"), default="f16",
                   help="tensor type of the weight matrices, as PowerInfer's files of that type use them "
                        "(q4_0: the LM head is Q6_K, or Q8_0 when --dim is not a multiple of 256; norms stay F32)")
    p.add_argument("--magic", choices=("PWRI", "GGUF"), default="PWRI", help="file magic: PowerInfer's or plain GGUF")
    p.set_defaults(func=run)


def _check_shape(args: argparse.Namespace) -> None:
    """The options that must agree with each other, named, before minutes of building a model."""
    kv_heads = args.heads if args.kv_heads is None else args.kv_heads
    if args.dim % args.heads:
        raise UsageError(f"--dim {args.dim} is not divisible by --heads {args.heads}")
    if (args.dim // args.heads) % 2:
        raise UsageError(f"--dim {args.dim} / --heads {args.heads} = {args.dim // args.heads}: "
                         "heads need an even width (rope rotates pairs)")
    if args.heads % kv_heads:
        raise UsageError(f"--heads {args.heads} is not divisible by --kv-heads {kv_heads}")
    if args.type in ("q8_0", "q4_0") and args.dim % 32:
        raise UsageError(f"--dim {args.dim} is not a multiple of 32, the block of --type {args.type}")


def _vocabulary(args: argparse.Namespace) -> Vocabulary:
    """--tokenizer's vocabulary (its size must agree with --vocab) or the generated one of --vocab tokens."""
    from ..model import make_vocabulary, read_sentencepiece
    from ..model.vocabulary import MIN_VOCAB

    if args.tokenizer is None:
        size = DEFAULT_VOCAB if args.vocab is None else args.vocab
        if size < MIN_VOCAB:
            raise UsageError(f"--vocab must be >= {MIN_VOCAB} (<unk>, <s>, </s> and 256 byte tokens), got {size}")
        return make_vocabulary(size)
    try:
        vocabulary = read_sentencepiece(args.tokenizer)
    except ValueError as exc:
        raise UsageError(f"--tokenizer: {exc}") from None
    if args.vocab is not None and args.vocab != len(vocabulary):
        raise UsageError(f"--vocab {args.vocab} differs from --tokenizer's {len(vocabulary)} pieces; omit --vocab")
    return vocabulary


def run(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console

    from ..model import make_model, save_model

    _check_shape(args)
    vocabulary = _vocabulary(args)
    console = Console(stderr=True)
    model = make_model(layers=args.layers, dim=args.dim, ff=args.ff, vocab=len(vocabulary), heads=args.heads,
                       kv_heads=args.kv_heads, seed=args.seed, dtype=args.type, vocabulary=vocabulary)
    save_model(model, args.path, args.magic)
    size = os.path.getsize(args.path) / 2**20
    console.print(f"wrote {args.path} ({size:.1f} MiB, {args.magic}, {args.type}, {len(vocabulary)} tokens)")
    return 0
