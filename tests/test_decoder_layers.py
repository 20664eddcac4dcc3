"""decoder_layers: a stack of decoder layers in one call, as the runtime's decode step runs it.

It must give the bits of decoder_layer called layer after layer (output, every
layer's h and mask through the observer, every layer's caches), on every
backend this machine has; and check every layer's arguments before the first
layer stores anything.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import reference
from reprosparse.conformance.compare import mismatch
from reprosparse.model import make_model

BACKENDS = [n for n, s in rs.available_backends().items() if s.available]


@pytest.fixture(scope="module", params=["f16", "q4_0"])
def model(request):
    return make_model(layers=3, dim=64, ff=200, vocab=300, heads=4, kv_heads=2, seed=5, dtype=request.param)


def step(model, seed=3):
    """Sequence 0's 5-token prompt and one decode row each for sequences 1 and 2: x, and per layer the caches."""
    hp = model.hyper
    rng = np.random.default_rng(seed)
    k, v = ([[rng.standard_normal((12, hp.n_head_kv, hp.head_dim)).astype(np.float32) for _ in range(3)]
             for _ in model.layers] for _ in range(2))
    seq, positions = np.array([0] * 5 + [1, 2]), np.array([*range(5), 7, 11])
    x = model.token_embd[rng.integers(0, hp.vocab, seq.size)].astype(np.float32)
    return x, k, v, seq, positions


def kwargs(model, ffn="sparse"):
    hp = model.hyper
    return {"n_head": hp.n_head, "n_head_kv": hp.n_head_kv, "eps": hp.eps, "rope_base": hp.rope_base,
            "threshold": hp.sparse_threshold, "ffn": ffn}


def one_by_one(op, model, ffn, **run):
    """decoder_layer through the layers in turn: (output, [(h, mask) per layer], k, v)."""
    x, k, v, seq, positions = step(model)
    seen = []
    with np.errstate(all="ignore"):
        for i, layer in enumerate(model.layers):
            x, h, mask = op(x, layer, k[i], v[i], seq, positions, **kwargs(model, ffn), **run)
            seen.append((i, h, mask))
    return x, seen, k, v


def stacked(op, model, ffn, **run):
    x, k, v, seq, positions = step(model)
    seen = []
    with np.errstate(all="ignore"):
        out = op(x, list(model.layers), k, v, seq, positions, **kwargs(model, ffn),
                 observer=lambda i, h, mask: seen.append((i, h, mask)), **run)
    return out, seen, k, v


def flat(per_layer):
    return [a for caches in per_layer for a in caches]


def assert_same(got, want):
    assert mismatch(got[0], want[0]) is None
    assert [i for i, _, _ in got[1]] == [i for i, _, _ in want[1]] == list(range(len(want[1])))
    for (_, h, mask), (_, wh, wmask) in zip(got[1], want[1], strict=True):
        assert mismatch(h, wh) is None
        assert (mask is None) == (wmask is None) and (wmask is None or np.array_equal(mask, wmask))
    for g, w in zip(flat(got[2] + got[3]), flat(want[2] + want[3]), strict=True):
        assert mismatch(g, w) is None  # every layer's caches, stored rows included


@pytest.mark.parametrize("ffn", ["sparse", "dense"])
def test_the_reference_stack_is_its_layers_in_turn(model, ffn):
    want = one_by_one(reference.decoder_layer, model, ffn)
    assert want[1][0][2] is None or 0 < want[1][0][2].sum() < want[1][0][2].size
    assert_same(stacked(reference.decoder_layers, model, ffn), want)


@pytest.mark.parametrize("ffn", ["sparse", "dense"])
@pytest.mark.parametrize("name", BACKENDS)
def test_backends_stack_is_their_layers_in_turn(model, ffn, name):
    backend = rs.get_backend(name)
    for mode in ("deterministic", "fast"):
        if backend.refuses(mode) or backend.refuses_weights(model.layers[0].wq):
            continue
        want = one_by_one(backend.decoder_layer, model, ffn, mode=mode)
        assert_same(stacked(backend.decoder_layers, model, ffn, mode=mode), want)
        if mode == "deterministic":
            assert_same(want, one_by_one(reference.decoder_layer, model, ffn))


@pytest.mark.parametrize("op", [reference.decoder_layers, rs.get_backend("numpy").decoder_layers],
                         ids=["reference", "backend"])
def test_every_layer_is_checked_before_the_first_runs(model, op):
    """A bad argument of the last layer: the error names it, and no cache (the first layer's included) changed."""
    layers = list(model.layers)

    def bad(error, match, *, change=None, caches=None):
        x, k, v, seq, positions = step(model)
        if caches is not None:  # changes the keys' caches, and the values' only where it names them
            k, v = caches(k, v)
        before = [a.copy() for a in flat(k + v)]
        ls = layers if change is None else [*layers[:-1], change(layers[-1])]
        with pytest.raises(error, match=match):
            op(x, ls, k, v, seq, positions, **kwargs(model))
        assert all(np.array_equal(a, b) for a, b in zip(flat(k + v), before, strict=True))

    bad(ValueError, r"layers\[2\]\.wo must have shape",
        change=lambda lay: dataclasses.replace(lay, wo=np.zeros((32, 64), np.float32)))
    bad(TypeError, "lacks ffn_norm", change=lambda lay: dataclasses.make_dataclass("L", ["attn_norm"])(1))
    bad(ValueError, r"k\[2\]\[1\] must be a C-contiguous, writeable array",
        caches=lambda k, v: ([*k[:2], [k[2][0], np.zeros((11, 2, 16), np.float32), k[2][2]]], v))
    bad(ValueError, r"v\[2\]\[0\] must be a C-contiguous, writeable array",
        caches=lambda k, v: (k, [*v[:2], [np.lib.stride_tricks.as_strided(v[2][0], writeable=False), *v[2][1:]]]))
    bad(ValueError, r"k\[1\] must be a list of 3 cache arrays", caches=lambda k, v: ([k[0], k[1][:2], k[2]], v))
    bad(TypeError, r"k\[1\]\[0\] must have dtype float32",
        caches=lambda k, v: ([k[0], [k[1][0].astype(np.float64), *k[1][1:]], k[2]], v))
    x, k, v, seq, positions = step(model)
    with pytest.raises(ValueError, match="layers, k and v must be lists of the same length"):
        op(x, layers, k[:2], v, seq, positions, **kwargs(model))
    with pytest.raises(TypeError, match="layers must be a list"):
        op(x, iter(layers), k, v, seq, positions, **kwargs(model))
