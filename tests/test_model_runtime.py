"""The runtime: batch/prefill invariance, reproducible generation, realistic sparsity, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gguf")

import reprosparse
from reprosparse.cli import main
from reprosparse.model import KVCache, Model, Runtime, generate, load_model, make_model, save_model

BACKENDS = [s.name for s in reprosparse.available_backends().values() if s.available]
TINY: dict[str, Any] = {"layers": 2, "dim": 64, "ff": 512, "vocab": 512, "heads": 4}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.gguf"
    save_model(make_model(**TINY, seed=0, kv_heads=2), path, "PWRI")
    return path


@pytest.fixture(scope="module")
def model(model_path: Path) -> Model:
    return load_model(model_path)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    nan = np.isnan(a) & np.isnan(b)
    return a.shape == b.shape and bool(np.all(nan | (a.view(np.uint32) == b.view(np.uint32))))


def _cache_bits(c: KVCache, li: int) -> bytes:
    return c.k[li][: c.length].tobytes() + c.v[li][: c.length].tobytes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_prefill_token_by_token_and_batch_agree_bitwise(model: Model, backend: str) -> None:
    rt = Runtime(model, reprosparse.get_backend(backend), mode="deterministic", threads=2)
    prompt = [5, 9, 200, 31, 7, 64, 3]
    # 1) the whole prompt in one prefill
    prefill = rt.new_cache()
    logits_prefill = rt.step([prefill], [prompt])[0]
    # 2) one token at a time
    single = rt.new_cache()
    for tok in prompt:
        logits_single = rt.step([single], [[tok]])[0]
    # 3) inside a batch with other sequences of other lengths, split into two chunks
    others = [[1, 2], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49]]
    caches = [rt.new_cache() for _ in range(3)]
    rt.step(caches, [others[0], prompt[:3], others[1]])
    logits_batch = rt.step(caches, [[8], prompt[3:], [9, 10]])[1]
    assert same_bits(logits_prefill, logits_single)
    assert same_bits(logits_prefill, logits_batch)
    for li in range(model.hyper.n_layer):
        assert _cache_bits(prefill, li) == _cache_bits(single, li) == _cache_bits(caches[1], li)


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_generation_is_reproducible_and_batch_independent(model: Model, backend: str) -> None:
    rt = Runtime(model, reprosparse.get_backend(backend))
    prompt = [3, 14, 15, 92, 65]
    alone = generate(rt, [prompt], 12)[0]
    again = generate(rt, [prompt], 12)[0]
    batched = generate(rt, [[1, 2, 3], prompt, list(range(20, 40))], 12)[1]
    assert alone.tokens == again.tokens == batched.tokens
    assert same_bits(alone.logits, again.logits) and same_bits(alone.logits, batched.logits)


def test_sampling_is_reproducible(model: Model) -> None:
    rt = Runtime(model, reprosparse.get_backend("numpy"))
    first = generate(rt, [[1, 2, 3]], 12, temperature=0.8, seed=3)[0].tokens
    assert generate(rt, [[1, 2, 3]], 12, temperature=0.8, seed=3)[0].tokens == first
    # In a batch each sequence draws by (seed, position): the same tokens again.
    assert generate(rt, [[7, 7], [1, 2, 3]], 12, temperature=0.8, seed=3)[1].tokens == first
    other_seeds = {tuple(generate(rt, [[1, 2, 3]], 12, temperature=0.8, seed=s)[0].tokens) for s in (4, 5, 6)}
    assert other_seeds != {tuple(first)}  # the seed is actually used


def test_sparsity_and_predictor_recall(model: Model, record_property: Callable[[str, object], None]) -> None:
    active, recall, predicted = [], [], []

    def observe(li: int, x: np.ndarray, mask: np.ndarray | None) -> None:
        assert mask is not None
        layer = model.layers[li]
        g = reprosparse.reference.matvec(layer.gate, x)  # the FFN's own pre-activations
        truly = g > 0
        active.append(truly.mean())
        recall.append((truly & mask).sum() / truly.sum())
        predicted.append(mask.mean())

    rt = Runtime(model, reprosparse.get_backend("numpy"), observer=observe)
    generate(rt, [[5, 6, 7, 8], [100, 101], [33, 34, 35, 36, 37, 38]], 16)
    a, r, p = float(np.mean(active)), float(np.mean(recall)), float(np.mean(predicted))
    record_property("active_fraction", a)
    record_property("predictor_recall", r)
    print(f"active {a:.3f}, predictor recall {r:.3f}, predicted {p:.3f}")
    assert 0.05 < a < 0.15
    assert 0.8 < r < 0.97


def test_predictor_reads_the_residual_before_ffn_norm(model: Model) -> None:
    """PowerInfer's input: predict gets the residual r, the FFN rmsnorm(r, ffn_norm) (docs/spec.md §12)."""
    from reprosparse.backends.numpy_backend import NumpyBackend
    from reprosparse.reference.rmsnorm import rmsnorm

    seen: list[np.ndarray] = []

    class Spy(NumpyBackend):
        def _predict(self, x, fc1, fc2, thr, mode, threads):  # type: ignore[no-untyped-def]
            seen.append(np.array(x))
            return super()._predict(x, fc1, fc2, thr, mode, threads)

    ffn_inputs: list[np.ndarray] = []
    rt = Runtime(model, Spy(), observer=lambda li, x, mask: ffn_inputs.append(np.array(x)))
    generate(rt, [[5, 6, 7]], 2)
    assert len(seen) == len(ffn_inputs) > 0
    for li, (r, h) in enumerate(zip(seen, ffn_inputs, strict=True)):
        layer = model.layers[li % len(model.layers)]
        assert not np.array_equal(r, h), "the predictor got the normed FFN input"
        assert np.array_equal(rmsnorm(r, layer.ffn_norm, model.hyper.eps).view(np.uint32), h.view(np.uint32))


def test_cli_generate_reproducible(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for _ in range(2):
        assert main(["generate", str(model_path), "--tokens", "1,2,3", "-n", "6", "--temperature", "0.8",
                     "--seed", "3", "--backend", "numpy"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    ids = [int(t) for t in outputs[0].splitlines()[0].split(",")]
    rt = Runtime(load_model(model_path), reprosparse.get_backend("numpy"))
    assert ids == generate(rt, [[1, 2, 3]], 6, temperature=0.8, seed=3)[0].tokens
    assert main(["generate", str(model_path), "--prompt", "the same bits", "-n", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()[0].split(",")) == 3


def test_cli_audit_every_backend(model_path: Path, tmp_path: Path) -> None:
    report = tmp_path / "audit.json"
    code = main(["audit", str(model_path), "-n", "6", "--threads", "1,2", "--repeats", "2",
                 "--json", str(report)])
    data = json.loads(report.read_text())
    det = data["summaries"]["deterministic"]
    assert code == 0
    assert det["distinct_outputs"] == 1 and det["distinct_logits"] == 1 and det["first_divergence"] is None
    assert {r["backend"] for r in data["runs"]} == set(BACKENDS)
    assert {r["composition"] for r in data["runs"]} == {"alone", "batched"}


def test_audit_summary_flags_divergence() -> None:
    from reprosparse.model.audit import Run, summarize

    logits = np.zeros((3, 4), np.float32)
    moved = logits.copy()
    moved[1, 2] = 0.5
    runs = [Run("numpy", 1, "deterministic", "alone", 0, [1, 2, 3], logits),
            Run("numpy", 1, "deterministic", "batched", 0, [1, 2, 0], moved)]
    s = summarize("deterministic", runs)
    assert (s.distinct_outputs, s.distinct_logits, s.first_divergence, s.max_logit_diff) == (2, 2, 2, 0.5)
    assert not s.deterministic_ok
    assert summarize("deterministic", runs[:1]).deterministic_ok
