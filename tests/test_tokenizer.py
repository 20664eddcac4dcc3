"""SentencePiece vocabulary and tokenizer: parity with the `sentencepiece` library itself.

Small BPE models are trained here with SentencePiece's own trainer, with LLaMA's text handling
(identity normalization, dummy prefix, whitespace kept; with and without byte fallback), turned into
model files by `reprosparse make-model --tokenizer`, read back, and tokenized; the oracle is the
trained .model file in SentencePieceProcessor.  The vocabulary make-model writes by default is checked
for what PowerInfer's loader (llm_load_vocab) and main need, read with gguf-py, not our loader.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

spm = pytest.importorskip("sentencepiece")
gguf = pytest.importorskip("gguf")
pytest.importorskip("google.protobuf")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from reprosparse.cli import main  # noqa: E402
from reprosparse.model import (  # noqa: E402
    Runtime,
    Tokenizer,
    TokenType,
    Vocabulary,
    generate,
    load_model,
    load_vocabulary,
    make_vocabulary,
    read_sentencepiece,
)

SHAPE = ["--layers", "1", "--dim", "32", "--ff", "64", "--heads", "4"]
WORDS = ["the", "same", "bits", "every", "time", "sparse", "model", "token", "naïve", "café", "Zürich", "日本語",
         "中文", "한국어", "テスト", "😀", "👍🏽", "e\u0301", "a\u0308", "über", "ничего", "مرحبا", "0123", "x=y+1;"]
# Characters the strings are built from besides the corpus: whitespace of every kind, SentencePiece's own
# "▁", joiners and flags, marks without a base, control characters and NUL, and some never seen in training.
ODD = [" ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "▁", "\u200d", "🇯🇵", "👨\u200d👩\u200d👧", "\u0301", "\x00",
       "\x7f", "<s>", "</s>", "<unk>", "<0x41>", "<|sep|>", "𝔘", "\U0010fffd", "\ufeff", "ǅ", "Ⅻ", "ﬁ", "Å"]


def _corpus(seed: int, lines: int) -> list[str]:
    """WORDS and made-up words, so that a few hundred merges have something to merge."""
    rng = random.Random(seed)
    made = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(1, 4)))
            for _ in range(300)]
    return [" ".join(rng.choice(WORDS + made) for _ in range(rng.randint(1, 12))) for _ in range(lines)]


def _train(path: Path, **options: Any) -> Path:
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(0, 3000)), model_writer=out, model_type="bpe",
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        num_threads=1, minloglevel=2, hard_vocab_limit=False, **options)
    path.write_bytes(out.getvalue())
    return path


MODELS = {
    # LLaMA's settings: bytes for everything not in the vocabulary, whitespace-only pieces
    "bytes": {"vocab_size": 600, "byte_fallback": True, "character_coverage": 1.0,
              "allow_whitespace_only_pieces": True, "user_defined_symbols": ["<|sep|>"], "control_symbols": ["<ctl>"]},
    # no byte pieces: unknown characters become <unk>; rare characters are left out of the vocabulary
    "unk": {"vocab_size": 150, "byte_fallback": False, "character_coverage": 0.98},
}


@pytest.fixture(scope="module", params=list(MODELS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Tokenizer, Path]:
    """(the trained SentencePieceProcessor, our tokenizer of the make-model file made from it, that file)."""
    d = tmp_path_factory.mktemp(f"spm-{request.param}")
    trained = _train(d / "t.model", **MODELS[request.param])
    assert main(["make-model", str(d / "m.gguf"), "--tokenizer", str(trained), *SHAPE]) == 0
    return spm.SentencePieceProcessor(model_file=str(trained)), Tokenizer(load_model(d / "m.gguf").vocabulary), d


def _strings(seed: int, n: int) -> list[str]:
    """Deterministic strings: words and odd characters, runs of spaces at either end, random code points."""
    rng = random.Random(seed)
    pool = WORDS + ODD
    out = ["", " ", "  ", "\n", "▁", "the same bits", " the same bits ", "the  same   bits"]
    while len(out) < n:
        parts = [rng.choice(pool) if rng.random() < 0.8 else chr(rng.choice([rng.randint(0x20, 0xD7FF),
                                                                            rng.randint(0xE000, 0x10FFFF)]))
                 for _ in range(rng.randint(1, 8))]
        text = "".join(p + rng.choice(["", "", " ", "  ", "\t"]) for p in parts)
        out.append(rng.choice(["", " ", "   "]) + text + rng.choice(["", " ", "  "]))
    return out


def _fields(path: Path) -> dict[str, Any]:
    """gguf-py's reading of a model file's metadata (gguf-py wants the GGUF magic, not PWRI)."""
    copy = path.with_suffix(".magic.gguf")
    copy.write_bytes(b"GGUF" + path.read_bytes()[4:])
    return {name: field.contents() for name, field in gguf.GGUFReader(copy).fields.items()}


def _same_as_sentencepiece(sp: Any, ours: Tokenizer, text: str) -> None:
    ids = sp.encode(text)
    assert ours.encode(text, bos=False) == ids, text
    assert ours.encode(text) == [ours.vocabulary.bos, *ids], text  # BOS first, as llama_tokenize(add_bos)
    assert ours.decode(ids) == sp.decode(ids), text
    if sp.decode(ids) == text:  # a round trip wherever SentencePiece's is one
        assert ours.decode(ours.encode(text)) == text


def test_thousands_of_strings_give_sentencepieces_ids(pair: tuple[Any, Tokenizer, Path]) -> None:
    sp, ours, _ = pair
    strings = _strings(1, 3000)
    for text in strings:
        _same_as_sentencepiece(sp, ours, text)
    # The strings reach what they are for: byte fallback or <unk>, and many round trips.
    used = {t for s in strings for t in sp.encode(s)}
    kinds = {TokenType(ours.vocabulary.types[t]) for t in used}
    has_bytes = TokenType.BYTE in ours.vocabulary.types
    assert (TokenType.BYTE in kinds) == has_bytes and (TokenType.UNKNOWN in kinds) != has_bytes
    assert sum(sp.decode(sp.encode(s)) == s for s in strings) > (1000 if has_bytes else 20)


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(st.lists(st.one_of(st.sampled_from(WORDS + ODD), st.characters(codec="utf-8")), max_size=16).map("".join))
def test_any_text_gives_sentencepieces_ids(pair: tuple[Any, Tokenizer, Path], text: str) -> None:
    sp, ours, _ = pair
    _same_as_sentencepiece(sp, ours, text)


def test_decoding_any_ids_is_sentencepieces(pair: tuple[Any, Tokenizer, Path]) -> None:
    """Byte pieces that are not UTF-8, control pieces, <unk> and a leading ▁ anywhere in the sequence."""
    sp, ours, _ = pair
    rng = random.Random(2)
    n = len(ours.vocabulary)
    for _ in range(1000):
        ids = [rng.randrange(n) for _ in range(rng.randint(0, 10))]
        assert ours.decode(ids) == sp.decode(ids), ids
    with pytest.raises(ValueError, match=rf"ids must be token ids in \[0, {n}\), got {n}"):
        ours.decode([1, n])


def test_the_file_carries_the_models_pieces_scores_and_types(pair: tuple[Any, Tokenizer, Path]) -> None:
    """Read with gguf-py, not our loader: every piece, its float32 score and its type, and the special ids."""
    sp, _, d = pair
    fields = _fields(d / "m.gguf")
    n = sp.get_piece_size()
    assert fields["tokenizer.ggml.tokens"] == [sp.id_to_piece(i) for i in range(n)]
    assert fields["tokenizer.ggml.scores"] == [sp.get_score(i) for i in range(n)]
    types = fields["tokenizer.ggml.token_type"]
    for i in range(n):  # the processor tells every type but USER_DEFINED from NORMAL
        expected = {sp.is_unknown(i): 2, sp.is_control(i): 3, sp.is_unused(i): 5, sp.is_byte(i): 6}.get(True)
        assert types[i] == expected or (expected is None and types[i] in (1, 4)), i
    assert [fields[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "unknown")] == [
        sp.bos_id(), sp.eos_id(), sp.unk_id()]
    assert fields["tokenizer.ggml.model"] == "llama"


def test_make_model_with_a_tokenizer_is_deterministic(pair: tuple[Any, Tokenizer, Path], tmp_path: Path) -> None:
    _, _, d = pair
    assert main(["make-model", str(tmp_path / "again.gguf"), "--tokenizer", str(d / "t.model"), *SHAPE]) == 0
    assert (tmp_path / "again.gguf").read_bytes() == (d / "m.gguf").read_bytes()


def _llama_cpp_spm(vocabulary: Vocabulary, text: str) -> list[int]:
    """llama.cpp's SPM tokenizer as PowerInfer (d3ebd7c) runs it, transcribed: llama_tokenize_internal's
    " " + text with spaces escaped, then llm_tokenizer_spm: characters merge pairwise into vocabulary pieces,
    highest score first (ties: leftmost), and a symbol that is no piece becomes its bytes' <0xNN> pieces.
    (Its rev_merge never applies: a merged symbol is a piece by construction.)"""
    import heapq

    if not text:
        return []
    index = {p: i for i, p in enumerate(vocabulary.pieces)}
    chars = list(("▁" + text).replace(" ", "▁"))
    n, prev, nxt = [1] * len(chars), list(range(-1, len(chars) - 1)), [*range(1, len(chars)), -1]
    start = list(range(len(chars)))
    work: list[tuple[float, int, int, int]] = []

    def text_of(i: int, length: int) -> str:
        return "".join(chars[start[i]:start[i] + length])

    def try_add(left: int, right: int) -> None:
        if left != -1 and right != -1:
            piece = text_of(left, n[left] + n[right])
            if piece in index:
                heapq.heappush(work, (-vocabulary.scores[index[piece]], left, right, len(piece)))

    for i in range(1, len(chars)):
        try_add(i - 1, i)
    while work:
        _, left, right, size = heapq.heappop(work)
        if n[left] == 0 or n[right] == 0 or n[left] + n[right] != size:
            continue  # one side merged since
        n[left] += n[right]
        n[right] = 0
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        try_add(prev[left], left)
        try_add(left, nxt[left])
    out, i = [], 0
    while i != -1:
        piece = text_of(i, n[i])
        out += [index[piece]] if piece in index else [index[f"<0x{b:02X}>"] for b in piece.encode()]
        i = nxt[i]
    return out


def test_llama_cpps_own_tokenizer_agrees_on_llama_style_vocabularies(tmp_path: Path) -> None:
    """Where the vocabulary is LLaMA's kind (byte pieces, no user-defined or unused pieces), PowerInfer's
    tokenizer gives the same ids: make-model's own vocabulary and a trained one."""
    _train(tmp_path / "llama.model", vocab_size=600, byte_fallback=True, character_coverage=1.0,
           allow_whitespace_only_pieces=True)
    for vocabulary in (make_vocabulary(512), read_sentencepiece(tmp_path / "llama.model")):
        ours = Tokenizer(vocabulary)
        for text in _strings(4, 1500):
            assert _llama_cpp_spm(vocabulary, text) == ours.encode(text, bos=False), text


# --- the vocabulary make-model writes by default: what PowerInfer needs ---


@pytest.fixture(scope="module")
def default_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("default") / "m.gguf"
    assert main(["make-model", str(path), *SHAPE]) == 0
    return path


def test_default_vocabulary_has_what_powerinfer_needs(default_file: Path) -> None:
    fields = _fields(default_file)
    pieces = fields["tokenizer.ggml.tokens"]
    types = fields["tokenizer.ggml.token_type"]
    scores = fields["tokenizer.ggml.scores"]
    assert fields["tokenizer.ggml.model"] == "llama"
    assert len(pieces) == len(types) == len(scores) == 512  # make-model's default --vocab
    # llama.cpp asserts that pieces are non-empty and distinct (token_to_id has one entry per id)
    assert all(pieces) and len(set(pieces)) == len(pieces)
    index = {p: i for i, p in enumerate(pieces)}
    for b in range(256):  # llm_load_vocab looks up <0x0A>; main needs the bytes of U+2581 (or a ▁ piece)
        assert types[index[f"<0x{b:02X}>"]] == 6
    assert "▁" in index and types[index["▁"]] == 1
    ids = {k: fields[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "unknown")}
    assert [pieces[ids[k]] for k in ("bos", "eos", "unknown")] == ["<s>", "</s>", "<unk>"]
    assert [types[ids[k]] for k in ("bos", "eos", "unknown")] == [3, 3, 2]
    assert {types[i] for i, p in enumerate(pieces) if p not in ("<s>", "</s>", "<unk>") and i >= 259} == {1}


def test_default_vocabulary_is_a_sentencepiece_model_that_spells_words(default_file: Path) -> None:
    """SentencePiece takes make-model's vocabulary as it is; its words come out whole."""
    vocabulary = load_vocabulary(default_file)
    assert vocabulary is not None
    ours = Tokenizer(vocabulary)
    assert [vocabulary.pieces[t] for t in ours.encode("the same bits", bos=False)] == ["▁the", "▁same", "▁bits"]
    for text in _strings(3, 300):  # any text: bytes for what has no piece, and back ("▁" reads as a space)
        assert ours.decode(ours.encode(text)) == text.replace("▁", " "), text


def test_make_vocabulary_sizes() -> None:
    for size in (259, 260, 512, 32000):
        v = make_vocabulary(size)
        assert len(v) == size and len(set(v.pieces)) == size
    assert make_vocabulary(600).pieces[:512] == make_vocabulary(512).pieces  # a larger one extends a smaller
    with pytest.raises(ValueError, match="size must be at least 259"):
        make_vocabulary(258)


# --- refusals ---


def _vocab(pieces: list[tuple[str, int]], **ids: int) -> Vocabulary:
    return Vocabulary(tuple(p for p, _ in pieces), (0.0,) * len(pieces), tuple(TokenType(t) for _, t in pieces), **ids)


@pytest.mark.parametrize(("vocabulary", "error"), [
    (_vocab([("<unk>", 1), ("<s>", 3), ("</s>", 3), ("▁", 1)]), "unk is not defined"),
    (_vocab([("<unk>", 2), ("<s>", 3), ("</s>", 3), ("a", 1), ("a", 1)]), "a is already defined"),
    (_vocab([("<unk>", 2), ("<s>", 3), ("</s>", 3), ("", 1)]), "piece must not be empty"),
    (_vocab([("<unk>", 2), ("<s>", 3), ("</s>", 3), ("<0x0A>", 6)]), "not 256 byte pieces"),
    (dataclasses.replace(make_vocabulary(300), model="gpt2"), "a 'gpt2' tokenizer's"),
])
def test_vocabularies_sentencepiece_cannot_use_are_refused(vocabulary: Vocabulary, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Tokenizer(vocabulary)


def test_vocabulary_checks_itself() -> None:
    with pytest.raises(ValueError, match="scores has 1 entries for 2 pieces"):
        Vocabulary(("a", "b"), (0.0,), (TokenType.NORMAL,) * 2, bos=0, eos=0, unk=0)
    with pytest.raises(ValueError, match=r"eos must be a token id in \[0, 2\), got 2"):
        Vocabulary(("a", "b"), (0.0,) * 2, (TokenType.NORMAL,) * 2, bos=0, eos=2, unk=0)


def test_text_must_be_unicode(default_file: Path) -> None:
    ours = Tokenizer(load_model(default_file).vocabulary)
    with pytest.raises(ValueError, match=r"text is not valid Unicode: '\\udcff' at offset 2"):
        ours.encode("ab\udcff")
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        ours.encode(b"ab")  # type: ignore[arg-type]
    assert ours.encode("") == [ours.vocabulary.bos]  # llama.cpp: encode('', add_bos=True) is [bos]


@pytest.mark.parametrize(("options", "error"), [
    ({"model_type": "unigram", "vocab_size": 300}, "a UNIGRAM model"),
    ({"model_type": "bpe", "vocab_size": 300, "normalization_rule_name": "nmt_nfkc"}, "its name is 'nmt_nfkc'"),
    ({"model_type": "bpe", "vocab_size": 300, "remove_extra_whitespaces": True}, "remove_extra_whitespaces is True"),
    ({"model_type": "bpe", "vocab_size": 300, "add_dummy_prefix": False}, "add_dummy_prefix is False"),
    ({"model_type": "bpe", "vocab_size": 300, "bos_id": -1}, "its bos_id is -1"),
])
def test_models_a_gguf_vocabulary_cannot_keep_are_refused(tmp_path: Path, options: dict[str, Any],
                                                          error: str) -> None:
    out = io.BytesIO()
    settings_ = {"normalization_rule_name": "identity", "remove_extra_whitespaces": False, **options}
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_corpus(0, 500)), model_writer=out, num_threads=1,
                                   minloglevel=2, hard_vocab_limit=False, **settings_)
    (tmp_path / "x.model").write_bytes(out.getvalue())
    with pytest.raises(ValueError, match=error):
        read_sentencepiece(tmp_path / "x.model")


def test_not_a_sentencepiece_model(tmp_path: Path) -> None:
    (tmp_path / "x.model").write_bytes(b"\xff\xff\xff not a protobuf")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        read_sentencepiece(tmp_path / "x.model")
    (tmp_path / "empty.model").write_bytes(b"")
    with pytest.raises(ValueError, match="it has no pieces"):
        read_sentencepiece(tmp_path / "empty.model")


# --- the command line ---


def test_cli_tokenize_prints_ids_and_pieces(pair: tuple[Any, Tokenizer, Path], capsys: pytest.CaptureFixture[str],
                                            ) -> None:
    sp, ours, d = pair
    text = " the  same\tbits 日本語 😀\n"
    for extra, first in (([], [ours.vocabulary.bos]), (["--no-bos"], [])):
        assert main(["tokenize", str(d / "m.gguf"), text, *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        ids = first + sp.encode(text)
        assert lines[0] == ",".join(map(str, ids))
        assert lines[1:] == [f"{t}\t{json.dumps(sp.id_to_piece(t), ensure_ascii=False)}" for t in ids]


def test_cli_tokenize_reads_a_vocabulary_only_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A GGUF with the vocabulary keys and no tensors, like llama.cpp's ggml-vocab-*.gguf test files."""
    v = make_vocabulary(300)
    w = gguf.GGUFWriter(str(tmp_path / "vocab.gguf"), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(list(v.pieces))
    w.add_token_scores(list(v.scores))
    w.add_token_types([int(t) for t in v.types])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    assert main(["tokenize", str(tmp_path / "vocab.gguf"), "the bits", "--no-bos"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(map(str, Tokenizer(v).encode("the bits", bos=False)))


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_errors_are_one_line(default_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = load_model(default_file)
    from reprosparse.model import save_model

    save_model(dataclasses.replace(model, vocabulary=None), tmp_path / "novocab.gguf")
    assert model.vocabulary is not None
    no_unk = dataclasses.replace(model.vocabulary, types=(TokenType.NORMAL,) * len(model.vocabulary))
    save_model(dataclasses.replace(model, vocabulary=no_unk), tmp_path / "nounk.gguf")
    (tmp_path / "bad.model").write_bytes(b"\xff\xff not a model")
    cases = [
        (["tokenize", str(default_file), "a\udcffb"], 2, "text is not valid Unicode: '\\udcff' at offset 1"),
        (["tokenize", str(tmp_path / "novocab.gguf"), "hi"], 1, "has no vocabulary (tokenizer.ggml.tokens)"),
        (["tokenize", str(tmp_path / "missing.gguf"), "hi"], 2, "cannot open"),
        (["tokenize", str(tmp_path / "nounk.gguf"), "hi"], 1, "nounk.gguf: SentencePiece cannot use the model's "
         "vocabulary: unk is not defined"),
        (["generate", str(tmp_path / "nounk.gguf"), "--prompt", "hi"], 1, "--prompt: SentencePiece cannot use"),
        (["tokenize", str(default_file)], 2, "the following arguments are required: text"),
        (["make-model", str(tmp_path / "o.gguf"), "--tokenizer", str(tmp_path / "bad.model")], 2,
         "--tokenizer: " + str(tmp_path / "bad.model") + ": not a SentencePiece model"),
        (["make-model", str(tmp_path / "o.gguf"), "--tokenizer", str(tmp_path)], 2, "is a directory"),
    ]
    for argv, code, text in cases:
        assert main(argv) == code, argv
        assert text in _error(capsys), argv


def test_cli_vocab_must_agree_with_the_tokenizer(pair: tuple[Any, Tokenizer, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    sp, _, d = pair
    n = sp.get_piece_size()
    argv = ["make-model", str(tmp_path / "o.gguf"), "--tokenizer", str(d / "t.model"), *SHAPE]
    assert main([*argv, "--vocab", str(n + 1)]) == 2
    assert f"--vocab {n + 1} differs from --tokenizer's {n} pieces" in _error(capsys)
    assert main([*argv, "--vocab", str(n)]) == 0


# --- generation: BOS, EOS and text ---


def test_generation_stops_at_eos(default_file: Path) -> None:
    """A head that always prefers EOS: the sequence ends there, alone or in a batch; without eos it goes on."""
    import numpy as np

    from reprosparse import get_backend

    model = load_model(default_file)
    assert model.vocabulary is not None
    eos = model.vocabulary.eos
    head = np.zeros_like(model.output)
    head[eos, 0] = 1.0  # channel 0 is make_model's constant positive bias unit
    rt = Runtime(dataclasses.replace(model, output=head), get_backend("numpy"))
    assert [g.tokens for g in generate(rt, [[1, 5], [1]], 4, eos=eos)] == [[eos], [eos]]
    assert generate(rt, [[1, 5]], 4)[0].tokens == [eos] * 4
    normal = Runtime(model, get_backend("numpy"))
    alone = generate(normal, [[1, 5, 6]], 6)[0].tokens
    stop = alone[2]  # a token it makes: it stops there, the others in its batch go on as alone
    got = generate(normal, [[1, 5, 6], [1, 7]], 6, eos=stop)
    assert got[0].tokens == alone[:alone.index(stop) + 1]
    assert got[1].tokens == generate(normal, [[1, 7]], 6, eos=stop)[0].tokens


def test_cli_generate_prompt_adds_bos_and_prints_text(default_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reprosparse import get_backend

    model = load_model(default_file)
    assert model.vocabulary is not None
    ours = Tokenizer(model.vocabulary)
    prompt = ours.encode("the same bits")
    assert prompt[0] == model.vocabulary.bos
    assert main(["generate", str(default_file), "--prompt", "the same bits", "-n", "8", "--backend", "numpy"]) == 0
    ids_line, text = capsys.readouterr().out.removesuffix("\n").split("\n", 1)  # the text may hold newlines
    ids = [int(t) for t in ids_line.split(",")]
    rt = Runtime(model, get_backend("numpy"))
    assert ids == generate(rt, [prompt], 8, eos=model.vocabulary.eos)[0].tokens
    whole, before = ours.decode(prompt + ids), ours.decode(prompt)
    assert whole.startswith(before) and text == whole[len(before):]
    # --tokens is exact: no BOS added, and the same ids the prompt's tokens give
    assert main(["generate", str(default_file), "--tokens", ",".join(map(str, prompt)), "-n", "8",
                 "--backend", "numpy"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split(",")[:len(ids)] == ids_line.split(",")
