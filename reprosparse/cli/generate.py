"""`reprosparse generate`: decode from a model file, greedily or by counter-based sampling."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._model_args import add_model, add_prompt, backend, prompt_ids
from ._types import seed, temperature, thread_count

if TYPE_CHECKING:
    from ..model import Generated, Model


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("generate", help="generate tokens from a GGUF/PWRI model; with --prompt, text until EOS")
    add_model(p)
    add_prompt(p, n_default=16, n_help="tokens to generate: at most, with --prompt (it stops after EOS); "
               "exactly, with --tokens")
    # Omitted, these come from REPROSPARSE_BACKEND / _MODE / _THREADS, like every reprosparse op.
    p.add_argument("--backend", help="backend name or auto (default: REPROSPARSE_BACKEND, else auto)")
    p.add_argument("--mode", choices=("deterministic", "fast"),
                   help="default: REPROSPARSE_MODE, else deterministic")
    p.add_argument("--threads", type=thread_count,
                   help="default: REPROSPARSE_THREADS, else the backend's default")
    p.add_argument("--ffn", choices=("sparse", "dense"), default="sparse")
    p.add_argument("--temperature", type=temperature, default=0.0, help="0 is greedy")
    p.add_argument("--seed", type=seed, default=0, help="sampling key (with --temperature > 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.progress import Progress

    from .. import _config
    from ..model import ContextLengthError, Runtime, generate, load_model
    from . import CommandFailed

    settings = _config.current()
    mode = args.mode or settings.mode
    threads = args.threads or settings.threads
    chosen = backend(args.backend or settings.backend, mode, "--backend" if args.backend else "REPROSPARSE_BACKEND")
    err = Console(stderr=True)
    model = load_model(args.model)  # a ModelFormatError names the file and the key
    prompt = prompt_ids(args, model, default=[1])
    # Text in, text out, as PowerInfer's main: stop at EOS.  Ids in (--tokens): exactly -n ids, for comparisons.
    eos = model.vocabulary.eos if args.prompt is not None and model.vocabulary is not None else None
    runtime = Runtime(model, chosen, mode=mode, threads=threads, ffn=args.ffn)
    began = time.perf_counter()
    stopped: ContextLengthError | None = None
    # A progress bar is for a terminal: in a log, rich would leave a blank line where it stood.
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"{chosen.name} {mode}", total=args.n)
        try:
            out = generate(runtime, [prompt], args.n, args.temperature, args.seed,
                           on_token=lambda _: progress.advance(task), eos=eos)[0]
        except ContextLengthError as exc:  # show what was made, then fail
            stopped, out = exc, exc.generated[0]
    seconds = time.perf_counter() - began
    _show(prompt, out, model)
    err.print(f"{len(out.tokens)} tokens in {seconds:.2f} s ({len(out.tokens) / seconds:.1f} tokens/s, "
              f"backend {chosen.name}, {mode}, prefill included)")
    if stopped is not None:
        raise CommandFailed(f"-n {args.n}: {stopped}")
    return 0


def _show(prompt: list[int], out: Generated, model: Model) -> None:
    """The new ids, then their text: what decoding the prompt and them adds to the prompt's own text, so
    the first new word keeps its space (SentencePiece drops a text's leading space)."""
    import sys

    from ..model import Tokenizer

    print(",".join(str(t) for t in out.tokens))
    sys.stdout.flush()
    if model.vocabulary is None:
        return
    try:
        tokenizer = Tokenizer(model.vocabulary)
    except ValueError as exc:  # the ids are the output; say why there is no text
        print(f"no text: {exc}", file=sys.stderr)
        return
    before, whole = tokenizer.decode(prompt), tokenizer.decode(prompt + out.tokens)
    # Not always a prefix: prompt bytes of an incomplete UTF-8 character decode to U+FFFD alone.
    pairs = zip(before, whole, strict=False)
    same = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(before), len(whole)))
    print(whole[same:])
    sys.stdout.flush()
