"""Bad arguments to the runtime operators raise TypeError/ValueError naming the argument (docs/spec.md §12)."""

from __future__ import annotations

import numpy as np
import pytest

from reprosparse.reference.argmax import argmax
from reprosparse.reference.attention import attention
from reprosparse.reference.exp import exp32
from reprosparse.reference.rmsnorm import rmsnorm
from reprosparse.reference.rope import rope
from reprosparse.reference.sample import sample, uniform
from reprosparse.reference.softmax import softmax
from reprosparse.reference.trig import sincos32

F = np.float32
Q = np.zeros((2, 4, 8), F)
KV = np.zeros((3, 2, 8), F)
POS = np.array([0, 2])
ROW = np.zeros(5, F)

BAD = [
    (argmax, (np.zeros(5, F),), ValueError, ["x", "2-D", "(t, n)"]),
    (argmax, (np.zeros((2, 0), F),), ValueError, ["x", "at least one column"]),
    (argmax, (np.zeros((2, 3)),), TypeError, ["x", "float32", "float64"]),
    (argmax, ([[1.0, 2.0]],), TypeError, ["x", "numpy.ndarray"]),
    (softmax, (np.zeros(5, F),), ValueError, ["x", "2-D"]),
    (softmax, (np.zeros((2, 3), F), np.array([1, 4])), ValueError, ["lengths", "[1, 4)", "4"]),
    (softmax, (np.zeros((2, 3), F), np.array([1, 0])), ValueError, ["lengths", "found 0"]),
    (softmax, (np.zeros((2, 3), F), np.array([1])), ValueError, ["lengths", "(2,)"]),
    (softmax, (np.zeros((2, 3), F), np.array([1.0, 2.0])), TypeError, ["lengths", "integer"]),
    (softmax, (np.zeros((2, 3), F), [1, 2]), TypeError, ["lengths", "numpy.ndarray"]),
    (exp32, (np.zeros(3),), TypeError, ["x", "float32"]),
    (exp32, ([1.0],), TypeError, ["x", "numpy.ndarray"]),
    (sincos32, (np.zeros(3, np.float16),), TypeError, ["angle", "float32"]),
    (rope, (np.zeros((2, 8), F), POS, 1e4), ValueError, ["x", "3-D", "(t, n_head, head_dim)"]),
    (rope, (np.zeros((2, 1, 7), F), POS, 1e4), ValueError, ["x", "even head_dim"]),
    (rope, (Q, np.array([0, 1 << 24]), 1e4), ValueError, ["positions", "16777216"]),
    (rope, (Q, np.array([0, -1]), 1e4), ValueError, ["positions", "found -1"]),
    (rope, (Q, np.array([0]), 1e4), ValueError, ["positions", "(2,)"]),
    (rope, (Q, POS, 0.0), ValueError, ["base", "finite number > 0"]),
    (rope, (Q, POS, 10**400), ValueError, ["base", "finite"]),
    (rope, (Q, POS, "1e4"), TypeError, ["base", "real number"]),
    (rmsnorm, (np.zeros(4, F), np.ones(4, F), 1e-6), ValueError, ["x", "2-D", "(t, d)"]),
    (rmsnorm, (np.zeros((2, 4), F), np.ones(5, F), 1e-6), ValueError, ["weight", "(4,)"]),
    (rmsnorm, (np.zeros((2, 4), F), np.ones(4), 1e-6), TypeError, ["weight", "float16", "float64"]),
    (rmsnorm, (np.zeros((2, 4), F), [1.0] * 4, 1e-6), TypeError, ["weight", "numpy.ndarray"]),
    (rmsnorm, (np.zeros((2, 4), F), np.ones(4, F), "1e-6"), TypeError, ["eps", "real number"]),
    (attention, (np.zeros((2, 8), F), KV, KV, POS), ValueError, ["q", "3-D"]),
    (attention, (Q, np.zeros((3, 2, 4), F), KV, POS), ValueError, ["k", "head_dim 8"]),
    (attention, (Q, KV, np.zeros((4, 2, 8), F), POS), ValueError, ["v", "shape of k"]),
    (attention, (Q, np.zeros((3, 3, 8), F), np.zeros((3, 3, 8), F), POS), ValueError, ["k", "n_kv_head", "dividing"]),
    (attention, (Q, np.zeros((3, 0, 8), F), np.zeros((3, 0, 8), F), POS), ValueError, ["k", "n_kv_head >= 1"]),
    (attention, (Q, KV, KV, np.array([0, 3])), ValueError, ["positions", "[0, 3)"]),
    (attention, (Q, KV.astype(np.float16), KV, POS), TypeError, ["k", "float32"]),
    (sample, (np.zeros((1, 5), F), 1.0, 0, 0), ValueError, ["logits", "1-D"]),
    (sample, (np.zeros(0, F), 1.0, 0, 0), ValueError, ["logits", "at least one"]),
    (sample, (ROW, 0.0, 0, 0), ValueError, ["temperature", "finite number > 0"]),
    (sample, (ROW, -1.0, 0, 0), ValueError, ["temperature"]),
    (sample, (ROW, float("inf"), 0, 0), ValueError, ["temperature", "finite"]),
    (sample, (ROW, float("nan"), 0, 0), ValueError, ["temperature"]),
    (sample, (ROW, "1", 0, 0), TypeError, ["temperature", "real number"]),
    (sample, (ROW, 1.0, -1, 0), ValueError, ["seed", "2**128"]),
    (sample, (ROW, 1.0, 2**128, 0), ValueError, ["seed", "2**128"]),
    (sample, (ROW, 1.0, 1.5, 0), TypeError, ["seed", "integer"]),
    (sample, (ROW, 1.0, 0, 2**64), ValueError, ["position", "2**64"]),
    (sample, (ROW, 1.0, 0, True), TypeError, ["position", "integer"]),
    (uniform, (0, -1), ValueError, ["position"]),
]


@pytest.mark.parametrize(("fn", "args", "exc", "words"), BAD, ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_runtime_arguments_are_named(fn, args, exc, words):
    with pytest.raises(exc) as info:
        fn(*args)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_good_arguments_of_every_accepted_kind_still_run():
    """numpy integer scalars and positions of any integer dtype are accepted; float16 weights too."""
    assert sample(ROW, np.float32(0.5), np.uint64(3), np.int32(4)) in range(5)
    assert rope(Q, POS.astype(np.uint16), np.float32(1e4)).shape == Q.shape
    assert rmsnorm(np.ones((2, 4), F), np.ones(4, np.float16), 0).dtype == F
    assert softmax(np.zeros((2, 3), F), np.array([1, 3], np.int32))[0, 0] == 1
    assert exp32(np.float32(0.0)) == 1
