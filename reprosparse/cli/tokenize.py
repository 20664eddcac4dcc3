"""`reprosparse tokenize`: the token ids and pieces of a text, as `generate --prompt` feeds them."""

from __future__ import annotations

import argparse

from ._model_args import add_model


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tokenize", help="print the SentencePiece token ids and pieces of a text")
    add_model(p)
    p.add_argument("text", help="the text ('' gives BOS alone)")
    p.add_argument("--no-bos", action="store_true", help="leave out the BOS token that --prompt puts first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..model import Tokenizer, load_vocabulary
    from . import CommandFailed, UsageError

    vocabulary = load_vocabulary(args.model)  # only the header: vocabulary-only GGUF files work too
    if vocabulary is None:
        raise CommandFailed(f"{args.model}: the file has no vocabulary (tokenizer.ggml.tokens)")
    try:
        tokenizer = Tokenizer(vocabulary)
    except ValueError as exc:  # SentencePiece refuses the vocabulary: the file's fault (exit 1)
        raise CommandFailed(f"{args.model}: {exc}") from None
    try:
        ids = tokenizer.encode(args.text, bos=not args.no_bos)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # First the ids as --tokens takes them, then one line per token; json.dumps shows a piece's spaces,
    # tabs and newlines unambiguously.
    print(",".join(str(t) for t in ids))
    for t in ids:
        print(f"{t}\t{json.dumps(vocabulary.pieces[t], ensure_ascii=False)}")
    return 0
