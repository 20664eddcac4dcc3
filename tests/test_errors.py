"""Bad input raises ValueError/TypeError naming the argument, in the reference and every backend."""

from __future__ import annotations

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import reference

F = np.float32
W = np.ones((300, 8), F)
X = np.ones((2, 8), F)
ROWS = np.array([1, 5, 299], np.int32)
H = np.ones((2, 3), F)
MASK = np.zeros((2, 300), bool)


def implementations():
    yield pytest.param(reference, id="reference")
    for name, status in rs.available_backends().items():
        if status.available:
            yield pytest.param(rs.get_backend(name), id=name)


BAD = [
    # (op, kwargs, exception, words the message must contain)
    ("matvec", {"W": W.tolist(), "x": X}, TypeError, ["W", "numpy.ndarray"]),
    ("matvec", {"W": W.astype(np.float64), "x": X}, TypeError, ["W", "float32 or float16"]),
    ("matvec", {"W": W, "x": X.astype(np.float64)}, TypeError, ["x", "float32"]),
    ("matvec", {"W": W[:, 0], "x": X}, ValueError, ["W", "2-D"]),
    ("matvec", {"W": W, "x": np.ones((2, 7), F)}, ValueError, ["x", "8 columns"]),
    ("matvec", {"W": W, "x": np.ones((1, 2, 8), F)}, ValueError, ["x", "1-D", "2-D"]),
    ("matvec", {"W": np.ones((8, 300), F).T, "x": X}, ValueError, ["W", "C-contiguous"]),
    ("matvec", {"W": W, "x": np.ones((2, 16), F)[:, ::2]}, ValueError, ["x", "C-contiguous"]),
    ("sparse_matvec", {"W": W, "x": X, "rows": ROWS.astype(np.int64)}, TypeError, ["rows", "int32"]),
    ("sparse_matvec", {"W": W, "x": X, "rows": np.array([5, 1], np.int32)}, ValueError, ["rows", "strictly"]),
    ("sparse_matvec", {"W": W, "x": X, "rows": np.array([1, 1], np.int32)}, ValueError, ["rows", "strictly"]),
    ("sparse_matvec", {"W": W, "x": X, "rows": np.array([1, 300], np.int32)}, ValueError, ["rows", "300"]),
    ("sparse_matvec", {"W": W, "x": X, "rows": np.array([-1, 3], np.int32)}, ValueError, ["rows", "-1"]),
    ("sparse_matvec", {"W": W, "x": X, "rows": np.array([[1]], np.int32)}, ValueError, ["rows", "1-D"]),
    ("sparse_matvec", {"W": W, "x": X, "rows": np.arange(0, 20, 2, dtype=np.int32)[::2]}, ValueError,
     ["rows", "C-contiguous"]),
    ("sparse_axpy", {"W": W, "h": np.ones((2, 4), F), "rows": ROWS}, ValueError, ["h", "3 columns", "len(rows)"]),
    ("sparse_axpy", {"W": W, "h": H, "rows": np.array([3, 2, 1], np.int32)}, ValueError, ["rows"]),
    ("predict", {"x": X, "fc1": np.ones((4, 8), F), "fc2": np.ones((300, 5), F)}, ValueError, ["fc2", "4 columns"]),
    ("predict", {"x": X, "fc1": np.ones((4, 8), F), "fc2": np.ones((300, 4), F), "threshold": float("nan")},
     ValueError, ["threshold", "NaN"]),
    ("predict", {"x": X, "fc1": np.ones((4, 8), F), "fc2": np.ones((300, 4), F), "threshold": "0"},
     TypeError, ["threshold", "real"]),
    ("sparse_ffn", {"x": X, "gate": W, "up": np.ones((300, 9), F), "down_t": W, "mask": MASK}, ValueError,
     ["up", "shape of gate"]),
    ("sparse_ffn", {"x": X, "gate": W, "up": W, "down_t": np.ones((299, 8), F), "mask": MASK}, ValueError,
     ["down_t", "300 rows"]),
    ("sparse_ffn", {"x": X, "gate": W, "up": W, "down_t": W, "mask": MASK[:1]}, ValueError, ["mask", "(2, 300)"]),
    ("sparse_ffn", {"x": X, "gate": W, "up": W, "down_t": W, "mask": MASK.astype(np.uint8)}, TypeError,
     ["mask", "bool"]),
    ("dense_ffn", {"x": X[0, :4].copy(), "gate": W, "up": W, "down_t": W}, ValueError, ["x", "8 columns"]),
]


@pytest.mark.parametrize("impl", list(implementations()))
@pytest.mark.parametrize(("op", "kwargs", "exc", "words"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_named(impl, op, kwargs, exc, words):
    with pytest.raises(exc) as info:
        getattr(impl, op)(**kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"


@pytest.mark.parametrize("impl", list(implementations()))
def test_empty_is_valid(impl):
    empty_rows = np.zeros(0, np.int32)
    assert impl.sparse_matvec(W, X, empty_rows).shape == (2, 0)
    y = impl.sparse_axpy(W, np.zeros((2, 0), F), empty_rows)
    assert y.shape == (2, 8) and not np.signbit(y).any() and not y.any()
    assert impl.matvec(W, np.zeros((0, 8), F)).shape == (0, 300)
    assert impl.sparse_ffn(np.zeros((0, 8), F), W, W, W, np.zeros((0, 300), bool)).shape == (0, 8)
    assert impl.predict(X[0], np.ones((4, 8), F), np.ones((300, 4), F)).shape == (300,)
    zero_width = impl.matvec(np.ones((5, 0), F), np.ones((2, 0), F))  # d = 0: every lane_dot is +0.0
    assert zero_width.shape == (2, 5) and not zero_width.any() and not np.signbit(zero_width).any()


@pytest.mark.parametrize("mode", ["turbo", None])
def test_bad_mode_and_threads(mode):
    b = rs.get_backend("numpy")
    if mode is not None:
        with pytest.raises(ValueError, match="mode must be one of deterministic, fast"):
            b.matvec(W, X, mode=mode)
    for threads in (0, -2, 1.5, True, 257, 2**70, np.float64(2)):
        with pytest.raises(ValueError, match="threads must be an integer from 1 to 256"):
            b.matvec(W, X, threads=threads)
    assert np.array_equal(b.matvec(W, X, threads=np.int64(2)), b.matvec(W, X, threads=1)), "numpy integers count"
