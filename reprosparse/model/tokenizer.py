"""Text <-> token ids for printing: greedy longest match over the model's token strings.

This is not SentencePiece: it is enough to type prompts for the tiny models of
`reprosparse make-model` and to print any model's output.  "▁" (SentencePiece's
space) is shown as a space; special tokens (<...>) are never matched in text.
"""

from __future__ import annotations

SPACE = "▁"


def encode(text: str, tokens: tuple[str, ...]) -> list[int]:
    spaced = any(t.startswith(SPACE) for t in tokens)
    if spaced:
        text = text.replace(" ", SPACE)
    index = {t: i for i, t in enumerate(tokens) if t and not (t.startswith("<") and t.endswith(">"))}
    longest = max((len(t) for t in index), default=0)
    ids = []
    at = 0
    while at < len(text):
        for n in range(min(longest, len(text) - at), 0, -1):
            if text[at : at + n] in index:
                ids.append(index[text[at : at + n]])
                at += n
                break
        else:
            raise ValueError(f"the model's vocabulary cannot encode {text[at]!r} at offset {at}")
    return ids


def decode(ids: list[int], tokens: tuple[str, ...]) -> str:
    return "".join(tokens[i] for i in ids).replace(SPACE, " ")
