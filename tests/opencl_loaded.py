"""The opencl backend as its tests load it: a skip, not a failure, where the host has no usable device.

Import after `pytest.importorskip("pyopencl")`.  test_opencl_selftest.py keeps its own loader: there a
self-test failure is the outcome under test, not a reason to skip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reprosparse.backends import BackendUnavailable, opencl
from reprosparse.backends.opencl import backend as ocl
from reprosparse.conformance.compare import mismatch


def load(**kwargs: Any) -> ocl.OpenCLBackend:
    try:
        got = opencl.load(**kwargs)
    except BackendUnavailable as exc:
        pytest.skip(f"no usable OpenCL device: {exc}")
    assert isinstance(got, ocl.OpenCLBackend)
    return got


def with_layout(layout: str) -> ocl.OpenCLBackend:
    """The backend restricted to one kernel layout (every layout must give the same bits)."""
    got = load(layout=layout)
    assert set(got.plan.layouts.values()) <= {layout}, got.plan
    if got.plan.refused:  # a driver that miscompiles this layout: refused, as it must be (the default falls back)
        pytest.skip(f"the {layout} layout failed its self-test on this device: {got.plan.refused}")
    return got


def assert_bits(got: np.ndarray, want: np.ndarray) -> None:
    problem = mismatch(got, want)
    assert problem is None, problem
