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


def _scalar_runtime(op, a):
    """The runtime ops of spec §12 through their scalar transcription, row by row."""
    S, f32 = spec_scalar_runtime, np.float32

    def rows(fn, x, *rest):
        return np.array([fn(list(r), *rest) for r in x], f32)

    if op == "exp32":
        return np.array([S.exp32(v) for v in a["x"]], f32)
    if op == "sincos32":
        pairs = [S.sincos32(v) for v in a["angle"]]
        return np.array([p[0] for p in pairs], f32), np.array([p[1] for p in pairs], f32)
    if op == "rope":
        x = a["x"]
        return np.array([[S.rope_row(list(x[t, h]), int(a["positions"][t]), a["base"], ln64)
                          for h in range(x.shape[1])] for t in range(x.shape[0])], f32)
    if op == "rmsnorm":
        return rows(S.rmsnorm_row, a["x"], list(a["weight"]), a["eps"])
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
    q, k, v, pos = a["q"], a["k"], a["v"], a["positions"]
    group = q.shape[1] // k.shape[1]
    return np.array([[S.attention_row(list(q[t, h]), [list(k[j, h // group]) for j in range(pos[t] + 1)],
                                      [list(v[j, h // group]) for j in range(pos[t] + 1)])
                      for h in range(q.shape[1])] for t in range(q.shape[0])], f32)


def test_golden_runtime_ops_match_the_scalar_spec():
    with np.errstate(all="ignore"):
        assert golden.check(_scalar_runtime, reference.RUNTIME_OPS) == []


def test_every_runtime_op_has_golden_vectors():
    ops = [e["op"] for e in golden.load()]
    assert {op: ops.count(op) for op in reference.RUNTIME_OPS if ops.count(op) < 1} == {}
    assert ops.count("sample") >= 8 and ops.count("rope") >= 5


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
BACKEND_RUNTIME_OPS = ("rope", "rmsnorm", "softmax", "argmax", "attention")


@pytest.mark.parametrize("name", [n for n, s in rs.available_backends().items() if s.available and n != "numpy"])
def test_backends_reproduce_the_runtime_golden_vectors(name):
    backend = rs.get_backend(name)
    entries = [e for e in golden.load() if e["op"] in BACKEND_RUNTIME_OPS]
    assert {e["op"] for e in entries} == set(BACKEND_RUNTIME_OPS)
    with np.errstate(all="ignore"):  # the reference's fallback, where a backend has one, sees NaN and Inf
        wrong = [e["id"] for e in entries
                 if golden.digest(getattr(backend, e["op"])(**e["inputs"], mode="deterministic")) != e["sha256"]]
    assert wrong == []


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
