"""The opencl backend against reprosparse.reference: bits in deterministic mode, the bound in fast mode.

Runs on whatever device REPROSPARSE_OPENCL_DEVICE (or the default) selects;
here that is PoCL's CPU device.  Skipped when pyopencl or a device is missing.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from reprosparse import reference as ref
from reprosparse.backends import BackendUnavailable
from reprosparse.reference import bounds

cl = pytest.importorskip("pyopencl", reason="pyopencl is not installed (pip install '.[opencl]')")

import opencl_loaded  # noqa: E402
from opencl_loaded import assert_bits  # noqa: E402

from reprosparse.backends import opencl  # noqa: E402
from reprosparse.backends.opencl import backend as ocl  # noqa: E402
from reprosparse.backends.opencl import devices, programs, weights  # noqa: E402

MODES = ("deterministic", "fast")
TINY = np.finfo(np.float32).tiny  # below it, nonzero float32 values are subnormal
DTYPES = (np.float32, np.float16)


@pytest.fixture(scope="module", params=tuple(programs.LAYOUTS))
def backend(request) -> ocl.OpenCLBackend:
    """The backend on the selected device, once per kernel layout (all must give the same bits)."""
    return opencl_loaded.with_layout(request.param)


def layout_of(b: ocl.OpenCLBackend) -> str:
    (layout,) = set(b.plan.layouts.values())
    return layout




def assert_within(got: np.ndarray, bound: bounds.Bound) -> None:
    assert got.dtype == np.float32
    ok = bound.contains(got.reshape(bound.centre.shape))
    assert ok.all(), f"{int((~ok).sum())} elements outside the fast-mode bound"


def normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    return (rng.standard_normal(shape) * np.exp2(rng.integers(-6, 6, shape))).astype(dtype)


def check_all_ops(
    b: ocl.OpenCLBackend, W: np.ndarray, x: np.ndarray, rows: np.ndarray, h: np.ndarray
) -> None:
    """Every primitive in both modes: deterministic bits, fast within the bound."""
    assert_bits(b.matvec(W, x, mode="deterministic"), ref.matvec(W, x))
    assert_bits(b.sparse_matvec(W, x, rows, mode="deterministic"), ref.sparse_matvec(W, x, rows))
    assert_bits(b.sparse_axpy(W, h, rows, mode="deterministic"), ref.sparse_axpy(W, h, rows))
    assert_within(b.matvec(W, x, mode="fast"), bounds.matvec(W, x))
    assert_within(b.sparse_matvec(W, x, rows, mode="fast"), bounds.sparse_matvec(W, x, rows))
    assert_within(b.sparse_axpy(W, h, rows, mode="fast"), bounds.sparse_axpy(W, h, rows))


# ---- shapes -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 15, 16, 17, 33, 4095])
def test_odd_widths(backend, dtype, d):
    rng = np.random.default_rng(d)
    n, t = 40, 3
    W = normal(rng, (n, d), dtype)
    x = normal(rng, (t, d))
    rows = np.array([0, 3, 16, 17, 39], np.int32)
    h = normal(rng, (t, rows.size))
    h[1, 2] = 0.0
    check_all_ops(backend, W, x, rows, h)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [300, 513])
@pytest.mark.parametrize("t", [1, 3, 64])
def test_block_edges(backend, dtype, n, t):
    """Rows on both sides of the 256-neuron block boundaries, and h zeros of both signs."""
    rng = np.random.default_rng(n * 100 + t)
    d = 37
    W = normal(rng, (n, d), dtype)
    x = normal(rng, (t, d))
    edges = [0, 1, 254, 255, 256, 257, 299, 511, 512]
    rows = np.array([r for r in edges if r < n], np.int32)
    h = normal(rng, (t, rows.size))
    h[rng.random(h.shape) < 0.3] = 0.0
    h[rng.random(h.shape) < 0.1] = -0.0
    check_all_ops(backend, W, x, rows, h)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_token_1d(backend, dtype):
    rng = np.random.default_rng(7)
    W = normal(rng, (513, 33), dtype)
    x = normal(rng, (33,))
    rows = np.arange(0, 513, 5, dtype=np.int32)
    h = normal(rng, (rows.size,))
    for mode in MODES:
        assert backend.matvec(W, x, mode=mode).shape == (513,)
    assert_bits(backend.sparse_matvec(W, x, rows, mode="deterministic"), ref.sparse_matvec(W, x, rows))
    assert_bits(backend.sparse_axpy(W, h, rows, mode="deterministic"), ref.sparse_axpy(W, h, rows))


@pytest.mark.parametrize("mode", MODES)
def test_empty_launches_nothing(backend, monkeypatch, mode):
    """t = 0, no rows, d = 0: the right empty or +0.0 result without a zero-size kernel or buffer."""

    def no_launch(*args, **kwargs):
        raise AssertionError("a kernel was launched for an empty problem")

    monkeypatch.setattr(backend, "_launch", no_launch)
    monkeypatch.setattr(backend, "_upload", no_launch)
    W = np.ones((300, 17), np.float32)
    none = np.zeros(0, np.int32)
    some = np.array([1, 260], np.int32)
    cases = [
        (backend.matvec(W, np.zeros((0, 17), np.float32), mode=mode),
         ref.matvec(W, np.zeros((0, 17), np.float32))),
        (backend.sparse_matvec(W, np.ones((3, 17), np.float32), none, mode=mode),
         ref.sparse_matvec(W, np.ones((3, 17), np.float32), none)),
        (backend.sparse_axpy(W, np.zeros((3, 0), np.float32), none, mode=mode),
         ref.sparse_axpy(W, np.zeros((3, 0), np.float32), none)),
        (backend.sparse_axpy(W, np.zeros((0, 2), np.float32), some, mode=mode),
         ref.sparse_axpy(W, np.zeros((0, 2), np.float32), some)),
        # d = 0: sixteen untouched +0.0 lanes fold to +0.0 (the reference divides by zero here).
        (backend.matvec(np.ones((4, 0), np.float32), np.zeros((2, 0), np.float32), mode=mode),
         np.zeros((2, 4), np.float32)),
    ]
    gate = np.ones((300, 17), np.float16)
    mask = np.zeros((2, 300), bool)
    x = np.ones((2, 17), np.float32)
    cases.append((backend.sparse_ffn(x, gate, gate, gate, mask, mode=mode),
                  ref.sparse_ffn(x, gate, gate, gate, mask)))
    for got, want in cases:
        assert_bits(got, want)


# ---- values -------------------------------------------------------------------

def test_no_fused_multiply_add(backend):
    """-1 + (1+2^-12)^2 is 2^-11 with separate roundings and 2^-11 + 2^-24 with an FMA."""
    W = np.zeros((1, 17), np.float32)
    x = np.zeros((1, 17), np.float32)
    W[0, 0], x[0, 0] = -1.0, 1.0  # lane 0, first term
    W[0, 16] = x[0, 16] = 1 + 2.0**-12  # lane 0, second term
    want = ref.matvec(W, x)
    assert want[0, 0] == np.float32(2.0**-11)
    assert_bits(backend.matvec(W, x, mode="deterministic"), want)
    axpy_w = np.array([[-1.0], [1 + 2.0**-12]], np.float32)
    h = np.array([[1.0, 1 + 2.0**-12]], np.float32)
    rows = np.array([0, 1], np.int32)
    assert_bits(backend.sparse_axpy(axpy_w, h, rows, mode="deterministic"), ref.sparse_axpy(axpy_w, h, rows))


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormals_kept(backend, dtype):
    """Subnormal inputs, products that underflow to subnormals, float16 subnormal weights."""
    tiny = np.float32(2.0**-149)
    x = np.array([[2.0**-110] * 16 + [2.0**-140, -(2.0**-140)]], np.float32)
    # products 2^-140 or 2^-134 (subnormal float32); float16 2^-24 is itself subnormal
    small = 2.0**-30 if dtype == np.float32 else 2.0**-24
    W = np.array([[small] * 16 + [1.0, 0.5]], dtype)
    W = np.vstack([W, -W])
    rows = np.array([0, 1], np.int32)
    h = np.array([[2.0**-140, tiny], [3 * tiny, 1.0]], np.float32)
    for got, want in [
        (backend.matvec(W, x, mode="deterministic"), ref.matvec(W, x)),
        (backend.sparse_axpy(W, h, rows, mode="deterministic"), ref.sparse_axpy(W, h, rows)),
    ]:
        assert np.any((want != 0) & (np.abs(want) < TINY)), "test needs subnormal results"
        assert_bits(got, want)
    for got, bound in [
        (backend.matvec(W, x, mode="fast"), bounds.matvec(W, x)),
        (backend.sparse_axpy(W, h, rows, mode="fast"), bounds.sparse_axpy(W, h, rows)),
    ]:
        assert_within(got, bound)
        assert np.any((got != 0) & (np.abs(got) < TINY)), "fast mode flushed subnormals"


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(backend, dtype):
    rng = np.random.default_rng(3)
    n, d, t = 300, 35, 3
    big = 6.0e4 if dtype == np.float16 else 3.0e38  # near overflow of the weight type
    W = normal(rng, (n, d), np.float32)
    z = rng.random((n, d))
    W[z < 0.02] = np.nan
    W[(z >= 0.02) & (z < 0.04)] = np.inf
    W[(z >= 0.04) & (z < 0.06)] = -np.inf
    W[(z >= 0.06) & (z < 0.1)] = -0.0
    W[(z >= 0.1) & (z < 0.12)] = big
    W[(z >= 0.12) & (z < 0.14)] = 2.0**-24 if dtype == np.float16 else 2.0**-149
    W = W.astype(dtype)
    x = normal(rng, (t, d))
    x[:, 3] = -0.0
    x[0, 5] = np.inf
    x[1, 7] = np.nan
    x[2, 9] = 2.0**-149
    x[2, 10] = 3.0e38
    rows = np.array([0, 5, 255, 256, 299], np.int32)
    h = normal(rng, (t, rows.size))
    h[0, 0] = 0.0
    h[1, 1] = -0.0
    h[2, 2] = np.nan
    h[0, 3] = np.inf
    h[1, 4] = 3.0e38
    with np.errstate(all="ignore"):
        check_all_ops(backend, W, x, rows, h)


def test_zero_h_skips_infinite_weights(backend):
    """0 * Inf must not become NaN in either mode: zero-h terms are skipped."""
    W = np.array([[np.inf, -np.inf, np.nan], [1.0, 2.0, 3.0]], np.float32)
    h = np.array([[0.0, 1.0], [-0.0, 2.0]], np.float32)
    rows = np.array([0, 1], np.int32)
    want = ref.sparse_axpy(W, h, rows)
    assert not np.isnan(want).any()
    for mode in MODES:
        assert_bits(backend.sparse_axpy(W, h, rows, mode=mode), want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [1, 5])
def test_sparse_ffn(backend, dtype, t):
    """The fused path: per-token masks, a neuron masked for one token only, NaN gate values."""
    rng = np.random.default_rng(t)
    n, d = 600, 48
    gate, up, down_t = (normal(rng, (n, d), dtype) for _ in range(3))
    gate[7, 3] = np.nan
    x = normal(rng, (t, d))
    mask = rng.random((t, n)) < 0.2
    mask[:, 7] = True
    mask[0, 255:258] = True
    with np.errstate(all="ignore"):
        assert_bits(backend.sparse_ffn(x, gate, up, down_t, mask, mode="deterministic"),
                    ref.sparse_ffn(x, gate, up, down_t, mask))
        assert_within(backend.sparse_ffn(x, gate, up, down_t, mask, mode="fast"),
                      bounds.sparse_ffn(x, gate, up, down_t, mask))
        assert_bits(backend.dense_ffn(x, gate, up, down_t, mode="deterministic"),
                    ref.dense_ffn(x, gate, up, down_t))


def test_sparse_ffn_mixed_weight_dtypes(backend):
    rng = np.random.default_rng(11)
    gate = normal(rng, (300, 20), np.float16)
    up = normal(rng, (300, 20), np.float16)
    down_t = normal(rng, (300, 20), np.float32)
    x = normal(rng, (2, 20))
    mask = rng.random((2, 300)) < 0.3
    assert_bits(backend.sparse_ffn(x, gate, up, down_t, mask, mode="deterministic"),
                ref.sparse_ffn(x, gate, up, down_t, mask))


@pytest.fixture(scope="module")
def llama7b_ffn() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """A LLaMA-7B FFN (4096 x 11008, 10% active, float16 weights, one token) and its reference output."""
    rng = np.random.default_rng(2024)
    n, d = 11008, 4096
    gate, up, down_t = ((rng.standard_normal((n, d)) * 0.02).astype(np.float16) for _ in range(3))
    x = rng.standard_normal((1, d)).astype(np.float32)
    mask = rng.random((1, n)) < 0.1
    args = (x, gate, up, down_t, mask)
    return args, ref.sparse_ffn(*args)


def test_llama7b_sparse_ffn_bits(backend, llama7b_ffn):
    args, want = llama7b_ffn
    assert_bits(backend.sparse_ffn(*args, mode="deterministic"), want)


# ---- errors, devices, build options ----------------------------------------------

BAD_INPUTS = [
    ("matvec", lambda W, x, r, h: (W.astype(np.float64), x)),
    ("matvec", lambda W, x, r, h: (W, x[:, :-1])),
    ("matvec", lambda W, x, r, h: (np.asfortranarray(W), x)),
    ("sparse_matvec", lambda W, x, r, h: (W, x, r[::-1].copy())),
    ("sparse_matvec", lambda W, x, r, h: (W, x, r.astype(np.int64))),
    ("sparse_matvec", lambda W, x, r, h: (W, x, np.array([0, 300], np.int32))),
    ("sparse_axpy", lambda W, x, r, h: (W, h[:, :-1], r)),
    ("sparse_axpy", lambda W, x, r, h: (W, h.astype(np.float16), r)),
]


@pytest.mark.parametrize(("op", "make"), BAD_INPUTS)
def test_bad_input_same_error_as_reference(backend, monkeypatch, op, make):
    W = np.ones((300, 8), np.float32)
    x = np.ones((2, 8), np.float32)
    r = np.array([1, 2, 3], np.int32)
    h = np.ones((2, 3), np.float32)
    args = make(W, x, r, h)
    with pytest.raises(Exception) as want:
        getattr(ref, op)(*args)

    def no_buffers(*a, **k):
        raise AssertionError("a device buffer was made before the input was validated")

    monkeypatch.setattr(backend, "_upload", no_buffers)
    with pytest.raises(type(want.value)) as got:
        getattr(backend, op)(*args, mode="deterministic")
    assert str(got.value) == str(want.value)


PLATFORMS = [
    devices.PlatformDesc("Portable Computing Language", [
        devices.DeviceDesc("pthread-Intel(R) Xeon(R)", False, True),
    ]),
    devices.PlatformDesc("NVIDIA CUDA", [
        devices.DeviceDesc("NVIDIA H100 80GB HBM3", True, False),
        devices.DeviceDesc("NVIDIA A100-SXM4-40GB", True, False),
    ]),
]


@pytest.mark.parametrize(("spec", "want"), [
    (None, (1, 0)),  # the first GPU wins over an earlier CPU
    ("", (1, 0)),
    ("0:0", (0, 0)),
    ("1:1", (1, 1)),
    ("portable", (0, 0)),
    ("nvidia:a100", (1, 1)),
    ("NVIDIA:1", (1, 1)),
    (":a100", (1, 1)),
    (":xeon", (0, 0)),
    ("1", (1, 0)),
    (" cuda : h100 ", (1, 0)),
])
def test_device_choice(spec, want):
    assert devices.choose(PLATFORMS, spec) == want


def test_device_choice_defaults_to_cpu_and_reports_misses():
    cpu_only = PLATFORMS[:1]
    assert devices.choose(cpu_only, None) == (0, 0)
    with pytest.raises(devices.DeviceChoiceError, match=r"(?s)matches no OpenCL device.*NVIDIA H100"):
        devices.choose(PLATFORMS, "nvidia:v100")
    with pytest.raises(devices.DeviceChoiceError, match="matches no OpenCL device"):
        devices.choose(PLATFORMS, "2")
    accel = [devices.PlatformDesc("FPGA", [devices.DeviceDesc("fpga0", False, False)])]
    with pytest.raises(devices.DeviceChoiceError, match="no OpenCL GPU or CPU"):
        devices.choose(accel, None)


def test_env_var_selects_device(monkeypatch):
    monkeypatch.setenv(devices.ENV, "0:0")
    assert isinstance(opencl.load(), ocl.OpenCLBackend)
    monkeypatch.setenv(devices.ENV, "no-such-platform")
    with pytest.raises(BackendUnavailable, match="no-such-platform"):
        opencl.load()


def test_device_without_denormals_refuses_deterministic_mode(backend, monkeypatch):
    fp = cl.device_fp_config
    monkeypatch.setattr(ocl, "single_fp_config", lambda device: fp.ROUND_TO_NEAREST | fp.INF_NAN)
    flushing = opencl.load()
    assert "CL_FP_DENORM" in flushing.info()["deterministic mode"]
    W = np.ones((4, 4), np.float32)
    x = np.ones((1, 4), np.float32)
    with pytest.raises(ocl.DeterministicUnsupported, match=r"cannot run deterministic mode.*CL_FP_DENORM"):
        flushing.matvec(W, x, mode="deterministic")
    with pytest.raises(ocl.DeterministicUnsupported, match=r"cannot run deterministic mode.*CL_FP_DENORM"):
        flushing.sparse_ffn(x, W, W, W, np.ones((1, 4), bool), mode="deterministic")
    assert "CL_FP_DENORM" in flushing.refuses("deterministic") and flushing.refuses("fast") is None
    assert_bits(flushing.matvec(W, x, mode="fast"), ref.matvec(W, x))
    assert "REFUSED" not in backend.info()["deterministic mode"]


def test_default_layouts_follow_device_type():
    try:
        default = opencl.load()
    except BackendUnavailable as exc:
        pytest.skip(f"no usable OpenCL device: {exc}")
    assert isinstance(default, ocl.OpenCLBackend)
    is_cpu = bool(default._device.type & cl.device_type.CPU)
    candidates = opencl.CPU_LAYOUTS if is_cpu else opencl.GPU_LAYOUTS
    # Each (mode, weight type) runs the first candidate whose self-test passes on this device.
    def layouts_passing(layout: str) -> dict[tuple[str, str], str]:
        try:
            return dict(opencl.load(layout=layout).plan.layouts)
        except BackendUnavailable:  # the layout failed in every mode
            return {}

    one_by_one = {layout: layouts_passing(layout) for layout in candidates}
    for key, layout in default.plan.layouts.items():
        earlier = candidates[:candidates.index(layout)]
        assert not any(key in one_by_one[e] for e in earlier), (key, layout, default.plan)
        assert one_by_one[layout].get(key) == layout
    assert (default.weights.budget == 0) == is_cpu, "resident weights only where memory is separate"
    assert default.zero_copy == is_cpu
    with pytest.raises(ValueError, match="layout must be one of"):
        opencl.load(layout="diagonal")


def test_info_lists_devices(backend):
    facts = backend.info()
    assert "(in use)" in facts["devices"]
    assert backend.device_name.split(" (")[0] in facts["device"]
    assert backend.priority == (40 if isinstance(backend, ocl.OpenCLGpuBackend) else 20)
    assert ocl.OpenCLGpuBackend.priority > ocl.OpenCLBackend.priority


def test_one_source_fma_only_in_fast_mode():
    """Deterministic programs cannot fuse: the source's one fma() is fast mode's MAC."""
    text = programs.source()
    assert text.startswith("#pragma OPENCL FP_CONTRACT OFF\n")
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # the code, not the comments
    assert not re.search(r"\batom(?:ic)?_\w+\s*\(|\bmad\s*\(|float16|half16", text)
    assert len(re.findall(r"\bfma\s*\(", text)) == 1
    fast_branch = re.search(r"#if RS_FAST\n(.*?)\n#else", text, re.S)
    assert fast_branch and "fma(" in fast_branch.group(1)
    for mode in MODES:
        for layout in programs.LAYOUTS:
            options = programs.Variant(mode, layout, "float16", 8).options()
            assert not set(options) & set(programs.FORBIDDEN_OPTIONS)
            assert f"-DRS_FAST={int(mode == 'fast')}" in options


def test_build_errors_name_the_file_and_device(backend, monkeypatch):
    variant = programs.Variant("deterministic", "grouped", "float32", 1)
    monkeypatch.setattr(programs, "source", lambda name="ops.cl": "__kernel void broken( {")
    with pytest.raises(programs.OpenCLError, match=r"building ops\.cl with -DRS_FAST=0 .*for OpenCL device"):
        programs.build(backend._context, backend._device, variant)
    # A build that succeeds without the kernels (what a broken PoCL kernel cache gave) is an error too.
    no_kernels = "__kernel void lane_dot(__global float *o) { o[0] = 1.0f; }"
    monkeypatch.setattr(programs, "source", lambda name="ops.cl": no_kernels)
    with pytest.raises(programs.OpenCLError, match=r"reported success but the program lacks \['axpy_fold'"):
        programs.build(backend._context, backend._device, variant)


def test_programs_are_cached(backend):
    cache = programs.ProgramCache(backend._context, backend._device)
    fast = programs.Variant("fast", "vector4", "float32", 1)
    assert cache.get(fast) is cache.get(fast)
    assert cache.get(fast) is not cache.get(programs.Variant("deterministic", "vector4", "float32", 1))


# ---- resident weights -------------------------------------------------------------

def frozen(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def test_is_frozen(tmp_path):
    owner = np.ones((3, 4), np.float32)
    assert not weights.is_frozen(owner)
    view = owner[1:]
    view.flags.writeable = False
    assert not weights.is_frozen(view), "writable through its base"
    assert weights.is_frozen(frozen(owner))
    assert weights.is_frozen(np.frombuffer(bytes(16), np.float32))
    assert not weights.is_frozen(np.frombuffer(bytearray(16), np.float32))
    path = tmp_path / "w.bin"
    owner.tofile(path)
    assert weights.is_frozen(np.memmap(path, np.float32, mode="r", shape=(3, 4)))
    assert not weights.is_frozen(np.memmap(path, np.float32, mode="r+", shape=(3, 4)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_uploaded_weights_give_the_same_bits(backend, dtype):
    """The path of devices with their own memory: active rows gathered and uploaded per call."""
    uploads = opencl.load(layout=layout_of(backend), weight_cache_bytes=0, zero_copy=False)
    assert isinstance(uploads, ocl.OpenCLBackend)
    rng = np.random.default_rng(4)
    W = normal(rng, (513, 33), dtype)
    x = normal(rng, (3, 33))
    rows = np.array([0, 255, 256, 300, 512], np.int32)
    h = normal(rng, (3, rows.size))
    check_all_ops(uploads, W, x, rows, h)
    gate, up, down_t = (normal(rng, (513, 33), dtype) for _ in range(3))
    mask = rng.random((3, 513)) < 0.2
    assert_bits(uploads.sparse_ffn(x, gate, up, down_t, mask, mode="deterministic"),
                ref.sparse_ffn(x, gate, up, down_t, mask))


@pytest.fixture
def cached(backend) -> ocl.OpenCLBackend:
    got = opencl.load(layout=layout_of(backend), weight_cache_bytes=1 << 20, zero_copy=False)
    assert isinstance(got, ocl.OpenCLBackend)
    return got


@pytest.mark.parametrize("dtype", DTYPES)
def test_resident_weights_give_the_same_bits(cached, dtype):
    rng = np.random.default_rng(5)
    W = frozen(normal(rng, (300, 33), dtype))
    x = normal(rng, (3, 33))
    rows = np.array([0, 255, 256, 299], np.int32)
    h = normal(rng, (3, rows.size))
    check_all_ops(cached, W, x, rows, h)
    assert len(cached.weights) == 1
    gate, up, down_t = (frozen(normal(rng, (300, 33), dtype)) for _ in range(3))
    mask = rng.random((3, 300)) < 0.2
    assert_bits(cached.sparse_ffn(x, gate, up, down_t, mask, mode="deterministic"),
                ref.sparse_ffn(x, gate, up, down_t, mask))
    assert len(cached.weights) == 4


@pytest.mark.parametrize("which", ["gate", "up", "down_t"])
def test_sparse_ffn_with_some_weights_resident(cached, which):
    """gate, up and down_t are read through one index buffer, so a resident matrix (all rows)
    next to gathered ones (active rows only) must not mix the two indexings."""
    rng = np.random.default_rng(9)
    mats = {k: normal(rng, (300, 33)) for k in ("gate", "up", "down_t")}
    mats[which] = frozen(mats[which])
    x = normal(rng, (3, 33))
    mask = rng.random((3, 300)) < 0.2
    assert_bits(cached.sparse_ffn(x, **mats, mask=mask, mode="deterministic"), ref.sparse_ffn(x, **mats, mask=mask))
    assert len(cached.weights) == 1


def test_resident_weights_follow_their_arrays(cached):
    rng = np.random.default_rng(6)
    W = frozen(normal(rng, (300, 16)))
    x = normal(rng, (1, 16))
    first = cached.weights.get(W)
    assert first is not None and cached.weights.get(W) is first
    W.flags.writeable = True  # may now change: never served from the cache again while writable
    W[0] = 1.0
    assert_bits(cached.matvec(W, x, mode="deterministic"), ref.matvec(W, x))
    assert len(cached.weights) == 0
    assert cached.weights.get(normal(rng, (2, 2))) is None, "writable arrays are not cached"
    W.flags.writeable = False
    cached.weights.get(W)
    assert len(cached.weights) == 1
    del W  # a dead array's entry goes (and its id may be reused)
    assert len(cached.weights) == 0


def test_resident_weights_stay_within_budget(cached):
    rng = np.random.default_rng(7)
    mats = [frozen(normal(rng, (1024, 100))) for _ in range(4)]  # 400 KiB each, budget 1 MiB
    for W in mats:
        assert cached.weights.get(W) is not None
    assert len(cached.weights) == 2 and cached.weights.nbytes <= cached.weights.budget
    assert cached.weights.get(frozen(normal(rng, (1024, 300)))) is None, "larger than the budget"
    x = normal(rng, (2, 100))
    for W in mats:
        assert_bits(cached.matvec(W, x, mode="deterministic"), ref.matvec(W, x))


def test_read_only_memmap_weights(backend, tmp_path):
    """Weights in read-only pages (as a GGUF file maps them): never written, also in place."""
    rng = np.random.default_rng(8)
    path = tmp_path / "w.bin"
    normal(rng, (300, 40), np.float16).tofile(path)
    W = np.memmap(path, np.float16, mode="r", shape=(300, 40))
    x = normal(rng, (2, 40))
    rows = np.array([3, 256, 299], np.int32)
    h = normal(rng, (2, rows.size))
    check_all_ops(backend, W, x, rows, h)


def test_threads_share_a_backend(backend):
    """Each thread launches its own Kernel objects, so concurrent calls cannot swap arguments."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    W = normal(rng, (300, 40))
    rows = np.arange(0, 300, 3, dtype=np.int32)
    xs = [normal(rng, (2, 40)) for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: backend.sparse_matvec(W, x, rows, mode="deterministic"), xs * 4))
    for x, y in zip(xs * 4, got, strict=True):
        assert_bits(y, ref.sparse_matvec(W, x, rows))


@pytest.mark.parametrize("dtype", ["f16", "q4_0"])
def test_loaded_model_weights_stay_on_the_device(tmp_path, dtype):
    """A GGUF model's tensors (a quantized one's block bytes too) are read-only views of the file, so a
    device keeps them between calls: the head (Q8_0 in a q4_0 model this narrow) is uploaded once."""
    pytest.importorskip("gguf")
    from reprosparse import QuantizedMatrix
    from reprosparse.model import load_model, make_model, save_model

    path = tmp_path / "m.gguf"
    save_model(make_model(layers=1, dim=64, ff=256, vocab=300, heads=4, seed=3, dtype=dtype), path)
    model = load_model(path)
    tensors = [model.token_embd, model.output, model.output_norm]
    tensors += [getattr(layer, f) for layer in model.layers for f in layer.__dataclass_fields__]
    assert all(weights.is_frozen(a.data if isinstance(a, QuantizedMatrix) else a) for a in tensors)
    head = model.output
    assert isinstance(head, QuantizedMatrix) == (dtype == "q4_0")
    key = head.data if isinstance(head, QuantizedMatrix) else head
    try:
        gpu_like = opencl.load(weight_cache_bytes=1 << 24, zero_copy=False)
    except BackendUnavailable as exc:
        pytest.skip(f"no usable OpenCL device: {exc}")
    assert isinstance(gpu_like, ocl.OpenCLBackend)
    uploaded: list[int] = []
    upload = gpu_like._upload
    gpu_like._upload = lambda a: uploaded.append(a.nbytes) or upload(a)  # type: ignore[method-assign]
    x = np.ones((1, 64), np.float32)
    first = gpu_like.matvec(head, x)
    assert_bits(first, ref.matvec(head, x))
    resident = gpu_like.weights.get(key)
    assert resident is not None and len(gpu_like.weights) == 1
    assert_bits(gpu_like.matvec(head, x), first)
    assert gpu_like.weights.get(key) is resident
    assert head.nbytes not in uploaded, "the head was uploaded per call"


@pytest.mark.parametrize("mode", MODES)
def test_axpy_tiles_tokens_within_the_scratch_budget(backend, mode):
    """Partials for one token at a time (scratch of one byte): the same bits, one launch per token."""
    tiny = opencl.load(layout=layout_of(backend), scratch_bytes=1)
    assert isinstance(tiny, ocl.OpenCLBackend)
    launches: list[str] = []
    launch = tiny._launch
    tiny._launch = lambda v, k, *a: launches.append(k) or launch(v, k, *a)  # type: ignore[method-assign]
    rng = np.random.default_rng(12)
    t, n, d = 9, 600, 40
    gate, up, down_t = (normal(rng, (n, d)) for _ in range(3))
    x = normal(rng, (t, d))
    mask = rng.random((t, n)) < 0.3
    h = normal(rng, (t, n))
    rows = np.arange(n, dtype=np.int32)
    got_axpy = tiny.sparse_axpy(down_t, h, rows, mode=mode)
    got_ffn = tiny.sparse_ffn(x, gate, up, down_t, mask, mode=mode)
    assert launches.count("axpy_partials") == 2 * t and launches.count("axpy_fold") == 2 * t
    if mode == "deterministic":
        assert_bits(got_axpy, ref.sparse_axpy(down_t, h, rows))
        assert_bits(got_ffn, ref.sparse_ffn(x, gate, up, down_t, mask))
    else:
        assert_within(got_axpy, bounds.sparse_axpy(down_t, h, rows))
        assert_within(got_ffn, bounds.sparse_ffn(x, gate, up, down_t, mask))


def test_scratch_beyond_the_device_limit_is_an_error(backend, monkeypatch):
    monkeypatch.setattr(backend, "_max_alloc", 1024)
    W = np.ones((600, 300), np.float32)
    h = np.ones((1, 600), np.float32)
    with pytest.raises(programs.OpenCLError, match=r"needs \d+ bytes, more than one allocation may take on "
                                                   r"OpenCL device .*\(1024 bytes\)"):
        backend.sparse_axpy(W, h, np.arange(600, dtype=np.int32))
