"""ndarray subclasses (spec §2): MaskedArray and matrix are refused by name, np.memmap is a plain array.

A masked array's mask was honoured by numpy code and ignored by native
kernels, so backends disagreed; np.matrix broke the numpy backend.  Model
weights are np.memmap views, which every implementation must accept.
"""

from __future__ import annotations

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import reference

F = np.float32
RNG = np.random.default_rng(9)
N, D, T = 300, 40, 3
W = RNG.standard_normal((N, D)).astype(F)
X = RNG.standard_normal((T, D)).astype(F)
ROWS = np.array([0, 7, 128, 255, 256, 299], np.int32)
H = RNG.standard_normal((T, ROWS.size)).astype(F)
FC1 = RNG.standard_normal((16, D)).astype(F)
FC2 = RNG.standard_normal((N, 16)).astype(F)
MASK = RNG.random((T, N)) < 0.2

# every op with every array argument by name (x batched, so each one is 2-D but rows)
CALLS = {
    "matvec": {"W": W, "x": X},
    "sparse_matvec": {"W": W, "x": X, "rows": ROWS},
    "sparse_axpy": {"W": W, "h": H, "rows": ROWS},
    "predict": {"x": X, "fc1": FC1, "fc2": FC2},
    "sparse_ffn": {"x": X, "gate": W, "up": W[::-1].copy(), "down_t": W * F(0.5), "mask": MASK},
    "dense_ffn": {"x": X, "gate": W, "up": W[::-1].copy(), "down_t": W * F(0.5)},
}
ARGS = [(op, arg) for op, kwargs in CALLS.items() for arg in kwargs]


def implementations():
    yield pytest.param(lambda: reference, id="reference")
    for name in ("numpy", "cython", "opencl"):
        yield pytest.param(lambda name=name: _backend(name), id=name)


def _backend(name):
    status = rs.available_backends().get(name)
    if status is None or not status.available:
        pytest.skip(f"{name}: {status.reason if status else 'not registered'}")
    return rs.get_backend(name)


@pytest.fixture(params=list(implementations()))
def impl(request):
    return request.param()


@pytest.mark.parametrize(("op", "arg"), ARGS, ids=[f"{op}-{arg}" for op, arg in ARGS])
def test_masked_array_is_refused_by_name(impl, op, arg):
    kwargs = dict(CALLS[op])
    kwargs[arg] = np.ma.masked_array(kwargs[arg], mask=np.ones(kwargs[arg].shape, bool))
    with pytest.raises(TypeError) as info:
        getattr(impl, op)(**kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{arg} must be a numpy.ndarray or numpy.memmap"), msg
    assert "MaskedArray" in msg, msg


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize(("op", "arg"), ARGS, ids=[f"{op}-{arg}" for op, arg in ARGS])
def test_matrix_is_refused_by_name(impl, op, arg):
    kwargs = dict(CALLS[op])
    kwargs[arg] = np.asmatrix(kwargs[arg])  # rows becomes (1, k): still refused for what it is, first
    with pytest.raises(TypeError) as info:
        getattr(impl, op)(**kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{arg} must be a numpy.ndarray or numpy.memmap"), msg
    assert "matrix" in msg, msg


def _memmap_view(tmp_path, name, a):
    """`a` as a view into a file mapping that starts one row earlier, as model weights are."""
    mm = np.memmap(tmp_path / f"{name}.bin", dtype=a.dtype, mode="w+", shape=(a.shape[0] + 1, *a.shape[1:]))
    mm[1:] = a
    view = mm[1:]
    assert isinstance(view, np.memmap) and view.flags.c_contiguous
    return view


@pytest.mark.parametrize("op", list(CALLS))
def test_memmap_is_accepted_and_gives_the_reference_bits(impl, op, tmp_path):
    if impl is not reference and impl.refuses("deterministic"):
        pytest.skip(f"{impl.name} refuses deterministic mode here: {impl.refuses('deterministic')}")
    plain = CALLS[op]
    mapped = {arg: _memmap_view(tmp_path, arg, a) for arg, a in plain.items()}
    kw = {} if impl is reference else {"mode": "deterministic"}
    got = getattr(impl, op)(**mapped, **kw)
    want = getattr(reference, op)(**plain)
    assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), f"{op}: memmap inputs changed the bits"
