"""The committed golden vectors: the reference, the scalar spec and every backend reproduce them."""

from __future__ import annotations

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import reference
from reprosparse.conformance import golden
from reprosparse.reference.rope import ln64

import spec_scalar
import spec_scalar_runtime


def test_golden_file_matches_the_reference():
    with np.errstate(all="ignore"):  # NaN and Inf inputs are deliberate
        assert golden.check(lambda op, inputs: getattr(reference, op)(**inputs)) == []


def test_golden_file_matches_the_scalar_spec():
    """An independent computation of the committed hashes: they are not just the reference's say-so."""
    assert golden.check(lambda op, inputs: getattr(spec_scalar, op)(**inputs), reference.OPS) == []


#: the runtime ops with golden vectors: the per-token ops and the two that store into KV caches
GOLDEN_RUNTIME_OPS = (*reference.RUNTIME_OPS, *golden.CACHE_OPS)


def _rows(fn, x, *rest):
    return np.array([fn(list(r), *rest) for r in x], np.float32)


def _scalar_rope(x, positions, base):
    return np.array([[spec_scalar_runtime.rope_row(list(x[t, h]), int(positions[t]), base, ln64)
                      for h in range(x.shape[1])] for t in range(x.shape[0])], np.float32)


def _scalar_attention_batch(q, k, v, seq, positions, new_k=None, new_v=None):
    """Spec §12's attention_batch: every row's key and value stored in row order, then attention_row."""
    if new_k is not None:
        for r in range(q.shape[0]):
            k[seq[r]][positions[r]] = new_k[r]
            v[seq[r]][positions[r]] = new_v[r]
    group = q.shape[1] // k[0].shape[1]

    def row(r, h):
        s, p, g = seq[r], positions[r], h // group
        return spec_scalar_runtime.attention_row(list(q[r, h]), [list(k[s][j, g]) for j in range(p + 1)],
                                                 [list(v[s][j, g]) for j in range(p + 1)])

    return np.array([[row(r, h) for h in range(q.shape[1])] for r in range(q.shape[0])], np.float32)


def _scalar_decoder_layer(x, layer, k, v, seq, positions, n_head, n_head_kv, eps, rope_base, threshold=0.0,
                          ffn="sparse"):
    """Spec §12's decoder_layer written out with the scalar pieces of both transcriptions."""
    S, t, hd = spec_scalar, x.shape[0], x.shape[1] // n_head
    a = _rows(spec_scalar_runtime.rmsnorm_row, x, list(layer.attn_norm), eps)
    q = _scalar_rope(S.matvec(layer.wq, a).reshape(t, n_head, hd), positions, rope_base)
    kr = _scalar_rope(S.matvec(layer.wk, a).reshape(t, n_head_kv, hd), positions, rope_base)
    vn = S.matvec(layer.wv, a).reshape(t, n_head_kv, hd)
    att = _scalar_attention_batch(q, k, v, seq, positions, kr, vn)
    r = x + S.matvec(layer.wo, att.reshape(t, -1))  # one float32 addition per element
    h = _rows(spec_scalar_runtime.rmsnorm_row, r, list(layer.ffn_norm), eps)
    if ffn == "dense":
        return r + S.dense_ffn(h, layer.gate, layer.up, layer.down_t), h, None
    mask = S.predict(r, layer.fc1, layer.fc2, threshold)  # the residual r, not h
    return r + S.sparse_ffn(h, layer.gate, layer.up, layer.down_t, mask), h, mask


def _scalar_runtime(op, a):
    """The runtime ops of spec §12 through their scalar transcription, row by row."""
    S, f32 = spec_scalar_runtime, np.float32
    if op == "attention_batch":
        return _scalar_attention_batch(**a)
    if op == "decoder_layer":
        return _scalar_decoder_layer(**a)
    if op == "exp32":
        return np.array([S.exp32(v) for v in a["x"]], f32)
    if op == "sincos32":
        pairs = [S.sincos32(v) for v in a["angle"]]
        return np.array([p[0] for p in pairs], f32), np.array([p[1] for p in pairs], f32)
    if op == "rope":
        return _scalar_rope(a["x"], a["positions"], a["base"])
    if op == "rmsnorm":
        return _rows(S.rmsnorm_row, a["x"], list(a["weight"]), a["eps"])
    if op == "softmax":
        n = a["x"].shape[1]
        lens = a.get("lengths", [n] * a["x"].shape[0])
        # Row r is the softmax of its first lengths[r] entries, then +0.0 (spec §12, "softmax").
        pairs = zip(a["x"], lens, strict=True)
        return np.array([S.softmax_row(list(r[:m])) + [f32(0.0)] * (n - m) for r, m in pairs], f32)
    if op == "sample":
        return S.sample_row(list(a["logits"]), a["temperature"], a["seed"], a["position"])
    if op == "argmax":
        return np.array([S.argmax_row(list(r)) for r in a["x"]])
    # attention: one sequence's caches
    return _scalar_attention_batch(a["q"], [a["k"]], [a["v"]], np.zeros(len(a["positions"]), int), a["positions"])


def test_golden_runtime_ops_match_the_scalar_spec():
    with np.errstate(all="ignore"):
        assert golden.check(_scalar_runtime, GOLDEN_RUNTIME_OPS) == []


def test_every_runtime_op_has_golden_vectors():
    ops = [e["op"] for e in golden.load()]
    assert {op: ops.count(op) for op in GOLDEN_RUNTIME_OPS if ops.count(op) < 1} == {}
    assert ops.count("sample") >= 8 and ops.count("rope") >= 5
    assert ops.count("attention_batch") >= 3 and ops.count("decoder_layer") >= 4


def test_golden_sample_vectors_reach_every_branch_of_the_rule():
    """The edge vectors do what their names say: a draw beyond the rounded total, and NaN p (greedy)."""
    S = spec_scalar_runtime
    cases = {e["id"].split("/")[-1]: e["inputs"] for e in golden.load() if e["op"] == "sample"}
    with np.errstate(all="ignore"):
        for name, a in cases.items():
            inv = np.float32(1.0) / np.float32(a["temperature"])
            p = S.softmax_row([v * inv for v in a["logits"]])
            total = np.float32(0.0)
            for pj in p:
                total = total + pj
            u = np.float32(S.draw(a["seed"], a["position"]) >> 40) * np.float32(2.0**-24)
            greedy = all(np.isnan(pj) for pj in p)
            assert greedy == (name in {"t-rounds-to-zero", "t-subnormal", "inf-logit", "all-minus-inf",
                                       "nan-logit", "overflow"}), name
            assert (not greedy and u >= total) == (name == "short-total"), name


# numpy is left out: its deterministic mode is the reference's own code, which the tests above check.
@pytest.mark.parametrize("name", [n for n, s in rs.available_backends().items() if s.available and n != "numpy"])
def test_backends_reproduce_the_golden_vectors(name):
    """Every vector, except that a backend refusing a weight type (Backend.weight_types) must raise."""
    backend = rs.get_backend(name)
    wrong, refused = [], []
    for e in golden.load():
        if e["op"] not in reference.OPS:
            continue
        run = getattr(backend, e["op"])
        if any(isinstance(v, rs.QuantizedMatrix) and v.type not in backend.weight_types for v in e["inputs"].values()):
            with pytest.raises(TypeError, match=r"does not take q\d_[0k] weights"):
                run(**e["inputs"], mode="deterministic")
            refused.append(e["id"])
        elif golden.digest(run(**e["inputs"], mode="deterministic")) != e["sha256"]:
            wrong.append(e["id"])
    assert wrong == []
    assert bool(refused) == (backend.weight_types != reference.quant.WEIGHT_TYPES)


#: The runtime ops with golden vectors that are also Backend operations (exp32, sincos32 and sample are not).
BACKEND_RUNTIME_OPS = ("rope", "rmsnorm", "softmax", "argmax", "attention", *golden.CACHE_OPS)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", [n for n, s in rs.available_backends().items() if s.available and n != "numpy"])
def test_backends_reproduce_the_runtime_golden_vectors(name, threads):
    """Each golden.check decodes the file anew: every run stores into caches of its own."""
    backend = rs.get_backend(name)
    assert {e["op"] for e in golden.load() if e["op"] in BACKEND_RUNTIME_OPS} == set(BACKEND_RUNTIME_OPS)
    with np.errstate(all="ignore"):  # the reference's fallback, where a backend has one, sees NaN and Inf
        assert golden.check(lambda op, inputs: getattr(backend, op)(**inputs, mode="deterministic", threads=threads),
                            BACKEND_RUNTIME_OPS) == []


def test_digest_ignores_nan_payload_but_not_zero_sign():
    a = np.array([np.nan, 0.0], np.float32)
    b = a.copy()
    b.view(np.uint32)[0] = 0xFFC00123  # another NaN
    assert golden.digest(a) == golden.digest(b)
    b[1] = -0.0
    assert golden.digest(a) != golden.digest(b)


def test_golden_check_fails_on_a_wrong_answer():
    def off_by_one_ulp(op, inputs):
        out = getattr(reference, op)(**inputs)
        if out.dtype == np.bool_:
            return ~out
        flat = out.reshape(-1)
        finite = np.flatnonzero(np.isfinite(flat))
        if finite.size:
            flat[finite[0]] = np.nextafter(flat[finite[0]], np.float32(np.inf))
        else:
            flat[0] = 0.0
        return out

    assert len(golden.check(off_by_one_ulp, reference.OPS)) == len(golden.CASES)


def test_golden_check_catches_a_wrong_cache():
    """The caches after the call are hashed: one wrong bit in a stored row fails, and it reaches no later check."""
    def one_wrong_store(op, inputs):
        out = getattr(reference, op)(**inputs)
        row = inputs["k"][inputs["seq"][-1]][inputs["positions"][-1]]  # where the last row's key is stored
        row[0, 0] = np.nextafter(row[0, 0], np.float32(np.inf))
        return out

    with np.errstate(all="ignore"):
        ids = [e["id"] for e in golden.load() if e["op"] in golden.CACHE_OPS]
        assert golden.check(one_wrong_store, golden.CACHE_OPS) == ids
        assert golden.check(lambda op, inputs: getattr(reference, op)(**inputs), golden.CACHE_OPS) == []
