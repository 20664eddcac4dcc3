"""Options shared by the subcommands that run a model (generate, audit, bench --decode)."""

from __future__ import annotations

import argparse


def add_prompt(p: argparse.ArgumentParser, n_default: int) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tokens", help="prompt as comma-separated token ids, e.g. 1,2,3")
    group.add_argument("--prompt", help="prompt text (needs a vocabulary in the model file)")
    p.add_argument("-n", type=int, default=n_default, help="tokens to generate")


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def prompt_ids(args: argparse.Namespace, tokens: tuple[str, ...] | None, default: list[int]) -> list[int]:
    from ..model.tokenizer import encode

    if args.tokens:
        return int_list(args.tokens)
    if args.prompt:
        if tokens is None:
            raise SystemExit("error: the model has no vocabulary; give --tokens instead of --prompt")
        return encode(args.prompt, tokens)
    return default
