"""decoder_layer: one whole decoder layer per backend call (docs/spec.md §12, reference/decoder_layer.py).

The conformance suite (conformance/layer_cases.py) holds every backend to the
reference's bits on its small layers.  Here: layers of make_model's models
(float16, float32 and Q4_0 weights, calibrated sparsity), a step mixing a
prefill with decode rows, every ISA this CPU runs and 1-3 threads; the cython backend's one native
call against the same backend's op-by-op composition in fast mode too; the
runtime's tokens either way; and the checks that keep bad input away from
native code.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reprosparse import get_backend, reference
from reprosparse.backends._base import Backend
from reprosparse.conformance.compare import mismatch
from reprosparse.model import Runtime, generate, make_model
from reprosparse.reference._runtime_checks import LAYER_MATRICES, LAYER_NORMS

kernels = pytest.importorskip("reprosparse.backends._cython_kernels")
from reprosparse.backends.cython_backend import CythonBackend  # noqa: E402


class Composed(CythonBackend):
    """The cython backend with the base class's decoder_layer: one backend call per operator."""

    name = "cython-composed"
    _decoder_layer = Backend._decoder_layer


@pytest.fixture(scope="module", params=["f16", "f32", "q4_0"])
def model(request):
    return make_model(layers=1, dim=64, ff=200, vocab=300, heads=4, kv_heads=2, seed=7, dtype=request.param)


def _step(model, t_prefill=5):
    """A step of sequence 0's 5-token prompt and one decode row each for sequences 1 and 2."""
    hd = model.hyper.head_dim
    rng = np.random.default_rng(3)
    k = [rng.standard_normal((12, model.hyper.n_head_kv, hd)).astype(np.float32) for _ in range(3)]
    v = [rng.standard_normal((12, model.hyper.n_head_kv, hd)).astype(np.float32) for _ in range(3)]
    seq = np.array([0] * t_prefill + [1, 2])
    positions = np.array([*range(t_prefill), 7, 11])
    x = model.token_embd[rng.integers(0, 300, len(seq))].astype(np.float32)
    return x, k, v, seq, positions


def _kwargs(model, ffn):
    hp = model.hyper
    return {"n_head": hp.n_head, "n_head_kv": hp.n_head_kv, "eps": hp.eps, "rope_base": hp.rope_base,
            "threshold": hp.sparse_threshold, "ffn": ffn}


def _run(backend, model, ffn, **run):
    x, k, v, seq, positions = _step(model)
    out, h, mask = backend.decoder_layer(x, model.layers[0], k, v, seq, positions, **_kwargs(model, ffn), **run)
    return out, h, mask, k, v


def _assert_same(got, want):
    for g, w in zip(got[:2], want[:2], strict=True):
        assert mismatch(g, w) is None
    assert (got[2] is None) == (want[2] is None)
    if want[2] is not None:
        assert np.array_equal(got[2], want[2])
    for g, w in zip(got[3] + got[4], want[3] + want[4], strict=True):  # the caches, stored rows included
        assert mismatch(g, w) is None


@pytest.mark.parametrize("ffn", ["sparse", "dense"])
@pytest.mark.parametrize("isa", kernels.SUPPORTED)
def test_native_layer_gives_the_references_bits(model, ffn, isa):
    x, k, v, seq, positions = _step(model)
    with np.errstate(all="ignore"):
        out, h, mask = reference.decoder_layer(x, model.layers[0], k, v, seq, positions, **_kwargs(model, ffn))
    want = (out, h, mask, k, v)
    if mask is not None:
        assert 0 < mask.sum() < mask.size  # a real sparse step, neither empty nor dense
    for threads in (1, 2, 3):
        _assert_same(_run(CythonBackend(isa), model, ffn, mode="deterministic", threads=threads), want)


@pytest.mark.parametrize("ffn", ["sparse", "dense"])
def test_native_layer_is_its_own_composition_in_fast_mode(model, ffn):
    for threads in (1, 2, 3):
        fused = _run(CythonBackend(), model, ffn, mode="fast", threads=threads)
        _assert_same(fused, _run(Composed(), model, ffn, mode="fast", threads=threads))


def test_runtime_tokens_are_the_same_with_one_call_per_layer_or_per_operator():
    m = make_model(layers=2, dim=64, ff=200, vocab=300, heads=4, kv_heads=2, seed=11)
    prompts = [[1, 5, 9, 200], [3, 4]]
    runs = [[(g.tokens, g.logits.tobytes()) for g in generate(Runtime(m, be, threads=2), prompts, 6)]
            for be in (CythonBackend(), Composed(), get_backend("numpy"))]
    assert runs[0] == runs[1] == runs[2]


# ---- bad input: a clear error before any native code runs, and the caches untouched ----


@pytest.fixture(scope="module")
def small():
    return make_model(layers=1, dim=64, ff=200, vocab=300, heads=4, kv_heads=2, seed=7)


def _bad(backend, model, error, match, *, layer=None, x=None, positions=None, caches=None, **kw):
    x0, k, v, seq, pos = _step(model)
    if caches is not None:
        k, v = caches(k), caches(v)
    before = [a.copy() for a in k + v]
    args = _kwargs(model, "sparse") | kw
    with pytest.raises(error, match=match):
        backend.decoder_layer(x0 if x is None else x, model.layers[0] if layer is None else layer, k, v, seq,
                              pos if positions is None else positions, **args)
    assert all(np.array_equal(a, b) for a, b in zip(k + v, before, strict=True))


@pytest.mark.parametrize("backend", [CythonBackend(), get_backend("numpy")], ids=lambda b: b.name)
def test_bad_arguments_are_named(backend, small):
    layer = small.layers[0]
    _bad(backend, small, TypeError, "L lacks ffn_norm, wq", layer=dataclasses.make_dataclass("L", ["attn_norm"])(1))
    _bad(backend, small, ValueError, "layer.wo must have shape",
         layer=dataclasses.replace(layer, wo=np.ascontiguousarray(layer.wo[:32])))
    _bad(backend, small, ValueError, "layer.ffn_norm must have shape",
         layer=dataclasses.replace(layer, ffn_norm=layer.ffn_norm[:5]))
    _bad(backend, small, ValueError, "x must have 64 columns", x=np.zeros((7, 63), np.float32))
    _bad(backend, small, ValueError, "positions must lie inside", positions=np.array([0, 1, 2, 3, 4, 7, 12]))
    _bad(backend, small, ValueError, "writeable", caches=lambda cs: [np.lib.stride_tricks.as_strided(c, writeable=False)
                                                                    for c in cs])
    _bad(backend, small, ValueError, "n_head_kv = 2 heads", caches=lambda cs: [np.zeros((12, 4, 16), np.float32)
                                                                               for _ in cs])
    _bad(backend, small, ValueError, "ffn must be one of", ffn="half")
    _bad(backend, small, ValueError, "n_head_kv must divide", n_head_kv=3)
    _bad(backend, small, TypeError, "n_head must be an integer", n_head=4.0)


def test_the_kernel_rechecks_shapes_on_a_direct_call(small):
    """A caller that skips Backend's checks gets a ValueError, not an out-of-bounds read."""
    x, k, v, seq, positions = _step(small)
    w = {f: getattr(small.layers[0], f) for f in LAYER_NORMS + LAYER_MATRICES}
    hp = small.hyper
    for field, bad in (("wo", w["wo"][:32]), ("fc2", w["fc2"][:100]), ("attn_norm", w["attn_norm"][:3])):
        with pytest.raises(ValueError, match=field):
            kernels.decoder_layer(x, w | {field: np.ascontiguousarray(bad)}, k, v, seq, positions, hp.n_head,
                                  hp.n_head_kv, hp.eps, hp.rope_base, 0.0, False, 2, CythonBackend().isa)
    wide = [np.zeros((12, 4, 16), np.float32) for _ in k]
    with pytest.raises(ValueError, match="n_kv = 2 heads"):
        kernels.decoder_layer(x, w, wide, wide, seq, positions, hp.n_head, hp.n_head_kv, hp.eps, hp.rope_base, 0.0,
                              False, 2, CythonBackend().isa)
    with pytest.raises(ValueError, match="out of range"):
        kernels.decoder_layer(x, w, k, v, seq, positions + 5, hp.n_head, hp.n_head_kv, hp.eps, hp.rope_base, 0.0,
                              False, 2, CythonBackend().isa)
