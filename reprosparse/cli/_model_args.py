"""Options and checks shared by the subcommands that run a model (generate, audit, bench --decode).

Everything here runs before the first decode step, so that a bad prompt, backend or length is refused
before any work, not after it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import CommandFailed, UsageError, _first_line
from ._types import model_file, names, positive_int

if TYPE_CHECKING:
    from ..backends import Backend
    from ..model import Model, Tokenizer
    from ..partition import Partition


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=model_file, help="model file (GGUF or PowerInfer PWRI)")


def add_no_mmap(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("--no-mmap", action="store_true",
                   help=f"{what}read the model file into memory instead of mapping it: numpy's large arrays get "
                        "transparent huge pages where Linux allows, which made decode steps 1-2%% faster "
                        "(docs/performance.md); the load reads the whole file first")


def load(path: str, no_mmap: bool) -> Model:
    """The model file, mapped or (--no-mmap) read into memory; a ModelFormatError names the file and
    the key, and a read-in model that does not fit says how to map it instead."""
    from ..model import load_model

    try:
        return load_model(path, mmap=not no_mmap)
    except MemoryError as exc:
        if not no_mmap:
            raise
        raise CommandFailed(f"--no-mmap: no memory to read {path} into ({_first_line(exc)}); "
                            "without --no-mmap the file is mapped instead") from None


def add_prompt(p: argparse.ArgumentParser, n_default: int, n_help: str = "tokens to generate") -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tokens", type=token_ids, help="prompt as comma-separated token ids, e.g. 1,2,3")
    group.add_argument("--prompt", help="prompt text, tokenized by SentencePiece after a BOS token (needs a "
                       "vocabulary in the model file)")
    p.add_argument("-n", type=positive_int, default=n_default, help=n_help)


def token_ids(text: str) -> list[int]:
    ids = []
    for item in names(text):
        try:
            ids.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {item!r}") from None
    return ids


def tokenizer(model: Model, option: str) -> Tokenizer:
    """The model's tokenizer; a model file without a usable vocabulary is the run's failure (exit 1)."""
    from ..model.tokenizer import tokenizer_for

    if model.vocabulary is None:
        raise UsageError(f"{option}: the model has no vocabulary; give --tokens instead")
    try:
        return tokenizer_for(model.vocabulary)
    except ValueError as exc:
        raise CommandFailed(f"{option}: {exc}") from None


def prompt_ids(args: argparse.Namespace, model: Model, default: list[int]) -> list[int]:
    """The prompt from --tokens (exactly those ids) or --prompt (BOS, then the text's SentencePiece ids, as
    llama.cpp's llama_tokenize with add_bos; '' is BOS alone), or `default`; every id checked."""
    if args.tokens is not None:
        ids, source = args.tokens, "--tokens"
    elif args.prompt is not None:
        try:
            ids, source = tokenizer(model, "--prompt").encode(args.prompt), "--prompt"
        except ValueError as exc:  # text the tokenizer cannot take, e.g. an undecodable byte
            raise UsageError(f"--prompt: {exc}") from None
    else:
        ids, source = default, "the default prompt (give --tokens)"
    vocab = model.hyper.vocab
    bad = next((t for t in ids if not 0 <= t < vocab), None)
    if bad is not None:
        raise UsageError(f"{source}: token ids must lie in [0, {vocab}) for this model, got {bad}")
    if len(ids) > model.hyper.context_length:
        raise UsageError(f"{source}: {len(ids)} tokens exceed the model's context length {model.hyper.context_length}")
    return ids


def check_room(model: Model, need: int, what: str) -> None:
    """Refuse a run that would reach the context length part way: its results would be lost."""
    if need > model.hyper.context_length:
        raise UsageError(f"{what}: needs {need} positions, more than the model's context length "
                         f"{model.hyper.context_length}")


def check_known(name: str, option: str) -> None:
    """`name` is auto or a registered backend: the settings' own check, without loading any backend."""
    from .. import _config

    try:
        _config.check_backend_name(name, option)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def backend(name: str, mode: str, option: str) -> Backend:
    """The backend `name` ("auto": the best one that gives `mode`), refused now if it cannot run `mode`."""
    from .. import _config, _registry

    check_known(name, option)
    with _config.use(mode=mode):
        got = _registry.get_backend(name)
    why = got.refuses(mode)
    if why is not None:
        raise CommandFailed(f"{option}: backend {got.name!r} refuses {mode} mode: {_first_line(why)}")
    return got


def partition(spec: str, modes: tuple[str, ...], option: str) -> Partition:
    """The partition spec describes, each executor's backend checked to run every mode."""
    from ..partition import parse

    def resolve(name: str) -> Backend:
        for mode in modes:  # every mode is checked; the registry returns one backend for all
            got = backend(name, mode, f"{option} {spec!r}")
        return got

    return parse(spec, resolve)


def named_backends(wanted: tuple[str, ...], modes: tuple[str, ...], option: str) -> list[str]:
    """Backends named to be compared in every mode: each must run each mode (auto names none of them)."""
    if "auto" in wanted:
        raise UsageError(f"{option}: name the backends to compare; auto is not one")
    for name, mode in ((n, m) for n in wanted for m in modes):
        backend(name, mode, option)
    return list(wanted)


def weights_refusal(name: str | Backend, model: Model) -> str | None:
    """Why backend `name` (or this backend) does not take this model's weight types (e.g. quantized), or None."""
    from .. import _registry
    from ..model.weights import MATRICES

    got = _registry.get_backend(name) if isinstance(name, str) else name
    for w in (model.output, *(getattr(layer, m) for layer in model.layers for m in MATRICES)):
        why = got.refuses_weights(w)
        if why is not None:
            return why
    return None


def refused_pairs() -> set[tuple[str, str]]:
    """(backend, mode) for every available backend that refuses a mode here; left out when none was named."""
    from .. import available_backends

    return {(s.name, mode) for s in available_backends().values() if s.available for mode in s.refused}
