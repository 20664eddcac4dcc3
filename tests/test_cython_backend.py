"""The cython backend against the executable spec (reprosparse.reference).

Deterministic mode must give the reference's bits for every ISA variant this
CPU runs, every thread count (more threads than cores included) and batch
size; fast mode must stay inside the spec's error bound, however often and
however concurrently it is called.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import _registry
from reprosparse import reference as ref
from reprosparse.backends import BackendConfigError, BackendUnavailable
from reprosparse.conformance.quant_cases import quantized
from reprosparse.reference import bounds

try:
    from reprosparse.backends import _cython_kernels as kernels
    from reprosparse.backends.cython_backend import CythonBackend
except (ImportError, BackendUnavailable) as exc:  # not built here: nothing to test
    pytest.skip(f"cython backend unavailable: {exc}", allow_module_level=True)

ISAS = kernels.SUPPORTED
THREADS = (1, 2, 3, 4, 7, 8)
BACKENDS = {isa: CythonBackend(isa=isa) for isa in ISAS}
DTYPES = (np.float32, np.float16)


def assert_same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Every bit equal, the sign of zero included; NaNs equal whatever their payload."""
    assert got.dtype == want.dtype == np.float32, what
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_got, nan_want), f"{what}: NaNs differ"
    g, w = got[~nan_got].view(np.uint32), want[~nan_want].view(np.uint32)
    bad = np.flatnonzero(g != w)
    if bad.size:
        first_got, first_want = got[~nan_got][bad[0]], want[~nan_want][bad[0]]
        raise AssertionError(f"{what}: {bad.size} elements differ, first {first_got!r} != {first_want!r}")


def every_variant():
    for isa in ISAS:
        for threads in THREADS:
            yield f"isa={isa} threads={threads}", BACKENDS[isa], threads


def sorted_rows(rng: np.random.Generator, n: int, k: int, must: tuple[int, ...] = ()) -> np.ndarray:
    picked = set(rng.choice(n, size=min(k, n), replace=False).tolist()) | {m for m in must if m < n}
    return np.array(sorted(picked), np.int32)


# ---- bitwise against the reference ----------------------------------------

SIZES = [(1, 37), (15, 50), (16, 64), (17, 70), (33, 90), (4095, 12)]  # (d, n)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize(("d", "n"), SIZES, ids=[f"d{d}" for d, _ in SIZES])
@pytest.mark.parametrize("t", [0, 1, 3, 64])
def test_matvec_and_sparse_matvec_bits(dtype, d, n, t):
    rng = np.random.default_rng(d * 1000 + t)
    W = rng.standard_normal((n, d)).astype(dtype)
    x = rng.standard_normal((t, d)).astype(np.float32)
    rows = sorted_rows(rng, n, n // 3, must=(0, n - 1))
    want_dense, want_sparse = ref.matvec(W, x), ref.sparse_matvec(W, x, rows)
    for what, b, threads in every_variant():
        assert_same_bits(b.matvec(W, x, mode="deterministic", threads=threads), want_dense, f"matvec {what}")
        got = b.sparse_matvec(W, x, rows, mode="deterministic", threads=threads)
        assert_same_bits(got, want_sparse, f"sparse_matvec {what}")


# (d, n): n never a multiple of 256
AXPY_SIZES = [(1, 300), (15, 600), (16, 513), (17, 1000), (33, 777), (4095, 520)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize(("d", "n"), AXPY_SIZES, ids=[f"d{d}" for d, _ in AXPY_SIZES])
@pytest.mark.parametrize("t", [0, 1, 3, 64])
def test_sparse_axpy_bits(dtype, d, n, t):
    rng = np.random.default_rng(d * 7 + t)
    W = rng.standard_normal((n, d)).astype(dtype)
    edges = (0, 1, 254, 255, 256, 257, 511, 512, 767, 768, n - 1)
    rows = sorted_rows(rng, n, 40 if d > 1000 else n // 4, must=edges)
    h = rng.standard_normal((t, rows.size)).astype(np.float32)
    h[rng.random(h.shape) < 0.3] = 0.0  # skipped terms, per token
    h[rng.random(h.shape) < 0.1] = -0.0
    if t >= 3:
        h[1] = 0.0  # a token with no live term
    want = ref.sparse_axpy(W, h, rows)
    for what, b, threads in every_variant():
        assert_same_bits(b.sparse_axpy(W, h, rows, mode="deterministic", threads=threads), want, what)


@pytest.mark.parametrize("wtype", ["float32", "float16", "q4_0", "q6_k"])
@pytest.mark.parametrize("mode", ["deterministic", "fast"])
def test_sparse_axpy_every_row_count_of_a_block(wtype, mode):
    """Block b of 17 holds b + 1 rows: every size of a block's last group (the kernels add a block's rows
    up to 8 at a time, 4 with AVX2, and its last 1-7 in one more pass), with skipped terms inside the groups
    and a batch of 5 tokens (a group of 4 and one alone)."""
    rng = np.random.default_rng(29)
    blocks, d = 17, 512
    n = 256 * blocks
    rows = np.concatenate([b * 256 + np.sort(rng.choice(256, b + 1, replace=False)) for b in range(blocks)])
    rows = rows.astype(np.int32)
    W = (quantized(rng, (n, d), "normal", wtype) if wtype.startswith("q")
         else rng.standard_normal((n, d)).astype(wtype))
    h = rng.standard_normal((5, rows.size)).astype(np.float32)
    h[rng.random(h.shape) < 0.25] = 0.0
    h[rng.random(h.shape) < 0.05] = -0.0
    h[3] = 0.0  # a token with no live term, beside tokens that use every row
    want, bound = ref.sparse_axpy(W, h, rows), bounds.sparse_axpy(W, h, rows)
    for what, b, threads in every_variant():
        got = b.sparse_axpy(W, h, rows, mode=mode, threads=threads)
        if mode == "deterministic":
            assert_same_bits(got, want, f"{wtype} {what}")
        else:
            assert bound.contains(got).all(), f"{wtype} fast {what}"


def special_values(dtype) -> np.ndarray:
    f = np.finfo(dtype)
    return np.array(
        [np.nan, np.inf, -np.inf, 0.0, -0.0, f.tiny, -f.tiny, f.smallest_subnormal, -f.smallest_subnormal,
         f.max, -f.max, f.max / 2, 1.0, -1.0, 3.0, f.tiny * 3],
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_special_values_bits(dtype):
    """NaN, ±Inf, subnormals (weights and activations), signed zeros, near-overflow."""
    rng = np.random.default_rng(5)
    n, d, t = 600, 47, 3
    W = rng.choice(special_values(dtype), size=(n, d))
    W = np.where(rng.random((n, d)) < 0.5, rng.standard_normal((n, d)).astype(dtype), W)
    sub = np.float32(2.0**-140)  # subnormal products and sums in float32
    x = rng.choice(np.array([1.0, -1.0, 0.5, sub, -sub, 0.0, -0.0, 1e30, 3e38], np.float32), size=(t, d))
    # rows of W that are all tiny, so the sums stay subnormal
    W[: n // 4] = rng.choice(np.array([1.0, -2.0, 0.0, -0.0], dtype), size=(n // 4, d))
    x[0] = sub
    rows = sorted_rows(rng, n, 200, must=(0, 255, 256, 599))
    h_values = np.array([0.0, -0.0, 1.0, np.nan, np.inf, -3.5, 2.0**-130, 1e38], np.float32)
    h = rng.choice(h_values, size=(t, rows.size))
    want_mv, want_ax = ref.sparse_matvec(W, x, rows), ref.sparse_axpy(W, h, rows)
    for what, b, threads in every_variant():
        assert_same_bits(b.sparse_matvec(W, x, rows, mode="deterministic", threads=threads), want_mv, what)
        assert_same_bits(b.sparse_axpy(W, h, rows, mode="deterministic", threads=threads), want_ax, what)


def test_float16_conversion_is_exact_for_every_half():
    """All 65536 float16 bit patterns through each ISA's vector (d = 16) and scalar-tail (d = 1) paths."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    vector = np.zeros((halves.size, 16), np.float16)
    vector[:, 0] = halves
    for W in (vector, halves.reshape(-1, 1)):
        x = np.zeros((1, W.shape[1]), np.float32)
        x[0, 0] = 1.0
        want = ref.matvec(W, x)
        for isa, b in BACKENDS.items():
            got = b.matvec(W, x, mode="deterministic", threads=2)
            assert_same_bits(got, want, f"d={W.shape[1]} isa={isa}")


def test_ffn_and_predict_bits():
    rng = np.random.default_rng(11)
    n, d, t = 700, 40, 5
    gate = rng.standard_normal((n, d)).astype(np.float16)
    up = rng.standard_normal((n, d)).astype(np.float32)
    down_t = rng.standard_normal((n, d + 9)).astype(np.float16)  # the output width may differ from d
    x = rng.standard_normal((t, d)).astype(np.float32)
    mask = rng.random((t, n)) < 0.2
    mask[2] = False  # a token that selects nothing
    fc1 = rng.standard_normal((30, d)).astype(np.float32)
    fc2 = rng.standard_normal((n, 30)).astype(np.float16)
    want_sparse = ref.sparse_ffn(x, gate, up, down_t, mask)
    want_dense = ref.dense_ffn(x[:2], gate, up, down_t)
    want_one = ref.sparse_ffn(x[0], gate, up, down_t, mask[0])
    want_pred = ref.predict(x, fc1, fc2, 0.25)
    want_pred_one = ref.predict(x[3], fc1, fc2, 0.25)  # one token: the kernels' one-token tiles
    for what, b, threads in every_variant():
        kw = {"mode": "deterministic", "threads": threads}
        assert_same_bits(b.sparse_ffn(x, gate, up, down_t, mask, **kw), want_sparse, f"sparse_ffn {what}")
        assert_same_bits(b.dense_ffn(x[:2], gate, up, down_t, **kw), want_dense, f"dense_ffn {what}")
        assert_same_bits(b.sparse_ffn(x[0], gate, up, down_t, mask[0], **kw), want_one, f"1-D {what}")
        assert np.array_equal(b.predict(x, fc1, fc2, 0.25, **kw), want_pred), f"predict {what}"
        assert np.array_equal(b.predict(x[3], fc1, fc2, 0.25, **kw), want_pred_one), f"1-D predict {what}"
        assert b.sparse_ffn(x[:0], gate, up, down_t, mask[:0], **kw).shape == (0, d + 9)


def test_empty_rows():
    W = np.ones((300, 20), np.float32)
    x = np.ones((3, 20), np.float32)
    none = np.zeros(0, np.int32)
    for what, b, threads in every_variant():
        assert b.sparse_matvec(W, x, none, threads=threads).shape == (3, 0), what
        y = b.sparse_axpy(W, np.zeros((3, 0), np.float32), none, threads=threads)
        assert_same_bits(y, np.zeros((3, 20), np.float32), what)


# ---- fast mode: within the bound, never a race ------------------------------

def test_fast_mode_hammer():
    """Hundreds of multi-threaded fast calls; every output inside the spec's bound (reference.bounds)."""
    rng = np.random.default_rng(3)
    n, d = 520, 61
    W = rng.standard_normal((n, d)).astype(np.float32)
    W16 = rng.standard_normal((n, d)).astype(np.float16)
    x = rng.standard_normal((2, d)).astype(np.float32)
    # A fixed number of calls, not "as many as fit in N seconds": the same inputs on every machine.
    for calls in range(750):
        isa = ISAS[calls % len(ISAS)]
        threads = THREADS[1 + calls % (len(THREADS) - 1)]
        b = BACKENDS[isa]
        W_ = W if calls % 2 else W16
        rows = sorted_rows(rng, n, 48 + calls % 50)
        got = b.sparse_matvec(W_, x, rows, mode="fast", threads=threads)
        assert bounds.sparse_matvec(W_, x, rows).contains(got).all(), f"sparse_matvec isa={isa} threads={threads}"
        h = rng.standard_normal((2, rows.size)).astype(np.float32)
        h[:, ::3] = 0.0
        y = b.sparse_axpy(W_, h, rows, mode="fast", threads=threads)
        assert bounds.sparse_axpy(W_, h, rows).contains(y).all(), f"sparse_axpy isa={isa} threads={threads}"
        if calls % 10 == 0:
            mask = rng.random((2, n)) < 0.1
            y = b.sparse_ffn(x, W_, W, W16, mask, mode="fast", threads=threads)
            assert bounds.sparse_ffn(x, W_, W, W16, mask).contains(y).all(), f"sparse_ffn isa={isa} threads={threads}"


@pytest.mark.parametrize("mode", ["deterministic", "fast"])
def test_zero_h_terms_are_skipped(mode):
    """0 * Inf must not become NaN, also when other tokens of the batch use that row."""
    W = np.ones((300, 33), np.float32)
    W[1] = np.inf
    W[5] = -np.inf
    rows = np.array([0, 1, 2, 3, 4, 5, 6, 270], np.int32)
    h = np.ones((6, rows.size), np.float32)
    h[0, [1, 5]] = 0.0  # token 0 skips the Inf rows that tokens 1 and 2 use
    h[2, 5] = -0.0
    h[4, :] = 0.0
    h[5, [1, 5]] = 0.0
    want = ref.sparse_axpy(W, h, rows)
    assert np.isfinite(want[[0, 4, 5]]).all()
    for what, b, threads in every_variant():
        assert_same_bits(b.sparse_axpy(W, h, rows, mode=mode, threads=threads), want, f"{mode} {what}")


# ---- threads, GIL, OpenMP ----------------------------------------------------

def test_concurrent_python_threads_get_their_own_bits():
    rng = np.random.default_rng(8)
    n, d = 600, 130
    jobs = []
    for i in range(6):
        W = rng.standard_normal((n, d)).astype(DTYPES[i % 2])
        x = rng.standard_normal((3, d)).astype(np.float32)
        rows = sorted_rows(rng, n, 90)
        h = rng.standard_normal((3, rows.size)).astype(np.float32)
        jobs.append((W, x, rows, h, ref.sparse_matvec(W, x, rows), ref.sparse_axpy(W, h, rows)))
    failures: list[str] = []

    def work(i: int) -> None:
        W, x, rows, h, want_mv, want_ax = jobs[i]
        b = BACKENDS[ISAS[i % len(ISAS)]]
        for k in range(40):
            threads = 1 + (i + k) % 4
            try:
                assert_same_bits(b.sparse_matvec(W, x, rows, threads=threads), want_mv, "mv")
                assert_same_bits(b.sparse_axpy(W, h, rows, threads=threads), want_ax, "axpy")
                b.sparse_axpy(W, h, rows, mode="fast", threads=threads)
            except AssertionError as exc:
                failures.append(f"job {i} call {k}: {exc}")

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not failures, failures[:3]


def _longest_stall(work: Callable[[], None]) -> tuple[float, float]:
    """Run `work` in another thread while this one spins in Python: (the longest time this thread
    made no progress during the call, as a fraction of the call; the call's seconds).

    The worker stamps the start, so a call that holds the GIL from the start, which keeps this
    thread from even returning from `started.wait()`, still shows as one long stall."""
    started, done = threading.Event(), threading.Event()
    span: list[float] = []

    def run() -> None:
        span.append(time.perf_counter())
        started.set()
        work()
        span.append(time.perf_counter())
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    started.wait()
    last, longest = span[0], 0.0
    while not done.is_set():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    took = span[1] - span[0]
    return longest / took, took


def test_kernels_release_the_gil():
    """While one thread is inside a kernel call, this thread keeps running Python.

    A call that held the GIL would stall this thread for the whole call (a stall fraction
    near 1).  Released, the stalls are scheduling noise, measured alongside with a control
    worker that releases the GIL for as long (numpy ufuncs); a try where even the control
    stalls this thread for half its call says the machine is too busy to tell, not that
    the kernel is wrong.  Only fractions of a call are asserted, no wall time.
    """
    b = BACKENDS[kernels.BEST]
    W = np.ones((6000, 4096), np.float16)
    x = np.ones((128, 4096), np.float32)  # one call of a few hundred ms, far above scheduling noise
    a = np.ones(1 << 20)

    def releasing_control(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            np.sqrt(a, out=a)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # a waiting thread gets the GIL within 0.1 ms of the holder's next bytecode
    tries = []
    try:
        for _ in range(3):
            kernel, took = _longest_stall(lambda: b.matvec(W, x, threads=1))
            control, _ = _longest_stall(lambda: releasing_control(took))  # noqa: B023 (called at once)
            tries.append((round(kernel, 3), round(control, 3)))
            if kernel < 0.5 or control < 0.5:
                break
    finally:
        sys.setswitchinterval(old)
    kernel, control = tries[-1]
    if control >= 0.5:
        pytest.skip(f"machine too busy: even the control stalled this thread (kernel, control: {tries})")
    assert kernel < 0.5, f"longest stall of this thread as a fraction of the call (kernel, control): {tries}"


def openmp_expected() -> bool:
    return os.environ.get("REPROSPARSE_REQUIRE_OPENMP") == "1" or (
        sys.platform.startswith("linux") and kernels.COMPILER.startswith("gcc")
    )


def test_openmp_present_where_expected():
    if not openmp_expected():
        pytest.skip(f"OpenMP not required for {kernels.COMPILER} on {sys.platform}")
    assert kernels.OPENMP_ENABLED, "built without OpenMP although the compiler supports it"
    assert kernels.team_size(3) == 3, "a parallel region asked for 3 threads did not get them"
    assert "yes" in CythonBackend().info()["OpenMP"]


def test_default_threads_follow_threadpoolctl_but_explicit_requests_win():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not kernels.OPENMP_ENABLED:
        pytest.skip("built without OpenMP")
    b = CythonBackend()
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert b.default_threads() == 1
        assert kernels.team_size(2) == 2
    assert b.default_threads() == min(len(os.sched_getaffinity(0)), kernels.max_threads())


def _run_forked(child, timeout=60.0):
    """child()'s return value, computed in a process forked from this one; a hang kills it and fails."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(r)
            with os.fdopen(w, "wb") as out:
                pickle.dump(child(), out)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as got:
        deadline = time.monotonic() + timeout
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung (killed after {timeout} s)")
        assert os.waitstatus_to_exitcode(done[1]) == 0, "the forked child failed"
        return pickle.load(got)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_after_threaded_calls_computes_the_same_bits():
    """GNU OpenMP's pool does not survive fork: the child must run without it, not hang."""
    rng = np.random.default_rng(4)
    b = CythonBackend()
    W = rng.standard_normal((300, 64)).astype(np.float32)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    rows = np.array([1, 64, 65, 255, 256, 299], np.int32)
    h = rng.standard_normal((3, rows.size)).astype(np.float32)
    mask = rng.random((3, 300)) < 0.3
    want = [ref.matvec(W, x), ref.sparse_axpy(W, h, rows), ref.sparse_ffn(x, W, W[::-1].copy(), W, mask)]

    def calls(threads):
        return [b.matvec(W, x, threads=threads), b.sparse_axpy(W, h, rows, threads=threads),
                b.sparse_ffn(x, W, W[::-1].copy(), W, mask, threads=threads)]

    for got, expected in zip(calls(2), want, strict=True):  # the parent starts OpenMP's threads
        assert_same_bits(got, expected, "parent, 2 threads")
    in_child = _run_forked(lambda: (b.default_threads(), calls(2), calls(None)))
    assert in_child[0] == 1
    for label, results in (("2 threads", in_child[1]), ("default threads", in_child[2])):
        for got, expected in zip(results, want, strict=True):
            assert_same_bits(got, expected, f"forked child, {label}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_before_any_threads_keeps_them():
    """Only a parent that ran threads makes its children single-threaded (a forkserver never does)."""
    script = (
        "import os, sys\n"
        "from reprosparse.backends.cython_backend import CythonBackend\n"
        "b = CythonBackend()\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(w, str(b.default_threads()).encode()); os._exit(0)\n"
        "os.close(w); os.waitpid(pid, 0)\n"
        "print(b.default_threads(), os.read(r, 100).decode())\n"
    )
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=120, check=True)
    parent, child = map(int, out.stdout.split())
    if parent == 1:
        pytest.skip("one thread by default here: nothing to keep")
    assert child == parent


def test_isa_override(monkeypatch):
    monkeypatch.setenv("REPROSPARSE_CYTHON_ISA", "scalar")
    assert CythonBackend().isa == "scalar"
    assert CythonBackend(isa=ISAS[-1]).isa == ISAS[-1]
    for spelling in (ISAS[-1].upper(), f" {ISAS[-1].capitalize()} "):
        monkeypatch.setenv("REPROSPARSE_CYTHON_ISA", spelling)
        assert CythonBackend().isa == ISAS[-1], spelling
    monkeypatch.setenv("REPROSPARSE_CYTHON_ISA", "avx9000")
    with pytest.raises(BackendConfigError, match="REPROSPARSE_CYTHON_ISA must be one of scalar, sse2, avx2, avx512"):
        CythonBackend()
    with pytest.raises(ValueError, match=r"isa must be one of .*'neon'"):
        CythonBackend(isa="neon")
    unsupported = [i for i in kernels.ISAS if i not in ISAS]
    for isa in unsupported:
        with pytest.raises(BackendUnavailable, match=f"isa='{isa}' is not usable here"):
            CythonBackend(isa=isa)


def test_unknown_isa_is_an_error_wherever_the_backend_would_load(monkeypatch):
    """Not "cython unavailable": then auto would quietly choose another backend."""
    monkeypatch.setattr(_registry, "_loaded", {})
    monkeypatch.setenv("REPROSPARSE_CYTHON_ISA", "avx9000")
    for ask in (lambda: rs.get_backend("cython"), lambda: rs.get_backend("auto"), rs.available_backends):
        with pytest.raises(ValueError, match=r"REPROSPARSE_CYTHON_ISA must be one of .*got 'avx9000'"):
            ask()
    assert rs.get_backend("numpy").name == "numpy"  # a backend that does not read it is unaffected


# ---- the benchmark's gathered-read reference -----------------------------------

@pytest.mark.parametrize("wtype", ["float32", "float16", "q4_0"])
def test_read_rows_reads_every_byte_of_the_rows(wtype):
    """read_rows's sum is every listed row's bytes as native 8-byte words plus the bytes past the last whole
    word, added with wrap-around: the same for any thread count, and any byte it missed would change it."""
    rng = np.random.default_rng(5)
    n = 700
    for d in ((64, 4096) if wtype == "q4_0" else (3, 61, 4096)):  # odd float16 rows: 6 and 122 bytes
        W = (quantized(rng, (n, d), "normal", wtype) if wtype == "q4_0"
             else rng.standard_normal((n, d)).astype(wtype))
        data = W.data if wtype == "q4_0" else W
        rows = sorted_rows(rng, n, 90, must=(0, n - 1))
        raw = data.view(np.uint8).reshape(n, -1)[rows]
        whole = raw.shape[1] // 8 * 8
        words = np.ascontiguousarray(raw[:, :whole]).view(np.uint64)
        want = (int(words.sum(dtype=np.uint64)) + int(raw[:, whole:].sum(dtype=np.uint64))) % (1 << 64)
        for threads in THREADS:
            assert kernels.read_rows(W, rows, threads) == want, f"{wtype} d={d} threads={threads}"
        assert kernels.read_rows(W, rows[:0], 2) == 0


# ---- bad input: errors, never a crash ----------------------------------------

def test_bad_input_is_rejected():
    b = CythonBackend()
    W = np.ones((300, 32), np.float32)
    x = np.ones(32, np.float32)
    rows = np.array([1, 2, 3], np.int32)
    h = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        b.sparse_matvec(np.ones((300, 64), np.float32)[:, ::2], x, rows)
    with pytest.raises(TypeError):
        b.sparse_matvec(W.astype(np.float64), x, rows)
    with pytest.raises(TypeError):
        b.sparse_matvec(W, x.astype(np.float16), rows)
    with pytest.raises(TypeError):
        b.sparse_axpy(W, h, rows.astype(np.int64))
    for bad in ([3, 2, 1], [1, 1, 2], [1, 2, 300], [-1, 0, 1]):
        with pytest.raises(ValueError):
            b.sparse_matvec(W, x, np.array(bad, np.int32))
        with pytest.raises(ValueError):
            b.sparse_axpy(W, h, np.array(bad, np.int32))
    with pytest.raises(ValueError):
        b.sparse_axpy(W, np.ones(4, np.float32), rows)
    with pytest.raises(ValueError):
        b.matvec(W, x, threads=0)
    with pytest.raises(ValueError, match=f"from 1 to {kernels.MAX_THREADS}"):
        b.matvec(W, x, threads=kernels.MAX_THREADS + 1)


def test_public_ops_leave_the_rows_values_to_the_kernels(monkeypatch):
    """native_row_checks: the public sparse ops check rows' type and layout in Python and leave their values
    to the kernels (the numpy check, cold, was 15-20% of a 10% float16 sparse_axpy); bad values still get
    the reference's message naming the first bad row, with tokens or without."""
    from reprosparse.reference import _checks

    asked: list[bool] = []
    full = _checks.rows

    def spy(name, r, n, weights_name, values=True):
        asked.append(values)
        return full(name, r, n, weights_name, values)

    monkeypatch.setattr(_checks, "rows", spy)
    b = CythonBackend()
    W = np.ones((300, 32), np.float32)
    rows = np.array([1, 5, 299], np.int32)
    b.sparse_axpy(W, np.ones((2, 3), np.float32), rows)
    b.sparse_matvec(W, np.ones((2, 32), np.float32), rows)
    assert asked == [False, False]
    for t in (2, 0):
        for bad, words in (([5, 1, 2], "rows[0]=5 is followed by 1"), ([1, 2, 300], "found 300"),
                           ([-1, 2, 3], "found -1")):
            r = np.array(bad, np.int32)
            with pytest.raises(ValueError, match=re.escape(words)):
                b.sparse_axpy(W, np.ones((t, 3), np.float32), r)
            with pytest.raises(ValueError, match=re.escape(words)):
                b.sparse_matvec(W, np.ones((t, 32), np.float32), r)


def test_kernel_module_rechecks_rows_itself():
    """A direct call that skips the Backend's checks still cannot read out of bounds."""
    W = np.ones((300, 32), np.float32)
    x = np.ones((1, 32), np.float32)
    for bad in ([1, 0], [0, 300], [-5], [2, 2]):
        r = np.array(bad, np.int32)
        with pytest.raises(ValueError, match="rows"):
            kernels.lane_dot_rows(W, r, x, False, 2, kernels.BEST)
        with pytest.raises(ValueError, match="rows"):
            kernels.sparse_axpy(W, np.ones((1, r.size), np.float32), r, False, 2, kernels.BEST)
        with pytest.raises(ValueError, match="rows"):
            kernels.read_rows(W, r, 2)
    with pytest.raises(TypeError):
        kernels.lane_dot_rows(None, None, x, False, 1, kernels.BEST)
    with pytest.raises(TypeError):
        kernels.lane_dot_rows(W.astype(np.float64), None, x, False, 1, kernels.BEST)
    with pytest.raises(ValueError):
        kernels.lane_dot_rows(W[:, ::2], None, x, False, 1, kernels.BEST)
    with pytest.raises(ValueError):
        kernels.lane_dot_rows(W, None, np.ones((1, 31), np.float32), False, 1, kernels.BEST)
    with pytest.raises(ValueError):
        kernels.lane_dot_rows(W, None, x, False, 0, kernels.BEST)
    fc1 = np.ones((8, 32), np.float32)
    with pytest.raises(ValueError, match="fc2"):
        kernels.predict(x, fc1, np.ones((5, 7), np.float32), 0.0, False, 1, kernels.BEST)
    with pytest.raises(ValueError, match="fc1"):
        kernels.predict(np.ones((1, 31), np.float32), fc1, np.ones((5, 8), np.float32), 0.0, False, 1, kernels.BEST)
