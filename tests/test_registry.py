"""Backend selection: environment, rs.use, auto, and clear errors instead of fallbacks."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import reprosparse as rs
from reprosparse import _config, _registry
from reprosparse.backends import Backend, BackendUnavailable
from reprosparse.backends.numpy_backend import NumpyBackend


class _EntryPoint:
    def __init__(self, name, factory):
        self.name, self.value, self._factory = name, f"tests:{name}", factory

    def load(self):
        return self._factory


def _unavailable():
    raise BackendUnavailable("needs a quantum annealer")


def _broken_import():
    raise ImportError("libfoo.so: cannot open shared object file")


class Faster(NumpyBackend):
    name = "faster"
    priority = 99


@pytest.fixture
def fake_registry(monkeypatch):
    eps = {
        "numpy": _EntryPoint("numpy", NumpyBackend),
        "faster": _EntryPoint("faster", Faster),
        "annealer": _EntryPoint("annealer", _unavailable),
        "foo": _EntryPoint("foo", _broken_import),
        "notabackend": _EntryPoint("notabackend", dict),
    }
    monkeypatch.setattr(_registry, "_entry_points", lambda: eps)
    monkeypatch.setattr(_registry, "_loaded", {})
    return eps


def test_available_backends_says_why(fake_registry):
    st = rs.available_backends()
    assert st["numpy"].available and st["faster"].available
    assert not st["annealer"].available and st["annealer"].reason == "needs a quantum annealer"
    assert "libfoo.so" in st["foo"].reason
    assert "did not return a reprosparse Backend" in st["notabackend"].reason


def test_unknown_backend_lists_the_others(fake_registry):
    with pytest.raises(rs.BackendError) as info:
        rs.get_backend("cuda")
    msg = str(info.value)
    assert "unknown reprosparse backend 'cuda'" in msg
    assert "numpy: available" in msg and "annealer: unavailable (needs a quantum annealer)" in msg


def test_unavailable_backend_is_an_error_not_a_fallback(fake_registry):
    with pytest.raises(rs.BackendError, match="'annealer' is unavailable: needs a quantum annealer"):
        rs.get_backend("annealer")
    with pytest.raises(rs.BackendError):
        with rs.use(backend="annealer"):
            pass


def test_auto_picks_the_highest_priority(fake_registry):
    assert rs.get_backend("auto").name == "faster"


class Refusing(NumpyBackend):
    """Loads, but failed its self-test in deterministic mode."""

    name = "refusing"
    priority = 100

    def refuses(self, mode):
        return "self-test failed: matvec differs" if mode == "deterministic" else None


def test_auto_skips_a_backend_that_refuses_the_mode(fake_registry):
    fake_registry["refusing"] = _EntryPoint("refusing", Refusing)
    status = rs.available_backends()["refusing"]
    assert status.available and status.refused == {"deterministic": "self-test failed: matvec differs"}
    with rs.use(mode="deterministic"):
        assert rs.get_backend("auto").name == "faster"
    with rs.use(mode="fast"):
        assert rs.get_backend("auto").name == "refusing"
    fake_registry.pop("faster")
    fake_registry.pop("numpy")
    with rs.use(mode="deterministic"), pytest.raises(rs.BackendError, match=r"(?s)in deterministic mode.*"
                                                     r"refusing: available; refuses deterministic mode"):
        rs.get_backend("auto")


def test_use_scopes_backend_mode_threads(fake_registry):
    outer = rs.current_settings()
    with rs.use(backend="numpy", mode="fast", threads=3) as s:
        assert (s.backend, s.mode, s.threads) == ("numpy", "fast", 3)
        assert rs.get_backend().name == "numpy"
        with rs.use(mode="deterministic"):
            assert rs.current_settings().backend == "numpy"
            assert rs.current_settings().mode == "deterministic"
        assert rs.current_settings().mode == "fast"
    assert rs.current_settings() == outer


def test_use_changes_the_arithmetic():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((64, 4095)).astype(np.float32)
    x = rng.standard_normal(4095).astype(np.float32)
    with rs.use(backend="numpy", mode="deterministic"):
        det = rs.matvec(W, x)
    with rs.use(backend="numpy", mode="fast"):
        fast = rs.matvec(W, x)
    assert np.array_equal(det, rs.reference.matvec(W, x))
    assert not np.array_equal(det, fast)  # BLAS order differs somewhere in 64 rows of 4095 terms


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"REPROSPARSE_MODE": "quick"}, "REPROSPARSE_MODE must be one of deterministic, fast"),
        ({"REPROSPARSE_THREADS": "two"}, "REPROSPARSE_THREADS must be an integer from 1 to 256"),
        ({"REPROSPARSE_THREADS": "0"}, "REPROSPARSE_THREADS must be an integer from 1 to 256"),
        ({"REPROSPARSE_THREADS": "-3"}, "REPROSPARSE_THREADS must be an integer from 1 to 256, got -3"),
        ({"REPROSPARSE_THREADS": "300"}, "REPROSPARSE_THREADS must be an integer from 1 to 256, got 300"),
        ({"REPROSPARSE_THREADS": "99999999999999999999"}, "REPROSPARSE_THREADS must be an integer from 1 to 256"),
        ({"REPROSPARSE_BACKEND": "cuda"}, r"REPROSPARSE_BACKEND must be auto or the name of a registered backend "
                                          r"\(.*numpy.*\); got 'cuda'"),
    ],
)
def test_environment_errors_name_the_variable(env, error):
    with pytest.raises(ValueError, match=error):
        _config.from_environment(env)


def test_environment_defaults_and_values():
    assert _config.from_environment({}) == _config.Settings("auto", "deterministic", None)
    got = _config.from_environment({"REPROSPARSE_BACKEND": "numpy", "REPROSPARSE_MODE": "fast",
                                    "REPROSPARSE_THREADS": "4"})
    assert got == _config.Settings("numpy", "fast", 4)


def test_builtin_backends_register_through_entry_points():
    names = {ep.name for ep in _registry.entry_points(group=_registry.GROUP)}
    assert "numpy" in names
    assert isinstance(rs.get_backend("numpy"), Backend)


# ---- loading: factories that ask for backends, threads that ask at once -------

def _in_thread(fn, timeout=30.0):
    """fn's result or exception, from another thread; a hang fails the test instead of hanging it."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed back to the test
            out["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"{fn} still running after {timeout} s: the registry deadlocked"
    if "error" in out:
        raise out["error"]
    return out["value"]


class Wrapping(NumpyBackend):
    """A backend that delegates to another one it gets from the registry."""

    name = "wrapping"

    def __init__(self):
        self.inner = rs.get_backend("numpy")


def _selfish():
    return rs.get_backend("selfish")


def test_a_factory_may_ask_for_another_backend(fake_registry):
    fake_registry["wrapping"] = _EntryPoint("wrapping", Wrapping)
    got = _in_thread(lambda: rs.get_backend("wrapping"))
    assert isinstance(got, Wrapping)
    assert got.inner is rs.get_backend("numpy")


def test_a_factory_that_asks_for_itself_is_an_error_not_a_hang(fake_registry):
    fake_registry["selfish"] = _EntryPoint("selfish", _selfish)
    with pytest.raises(rs.BackendError, match=r"'selfish' is unavailable: .*'selfish' needs itself"):
        _in_thread(lambda: rs.get_backend("selfish"))
    # remembered with the reason, like any other failure
    status = rs.available_backends()["selfish"]
    assert not status.available and "needs itself" in status.reason


def test_factories_that_need_each_other_across_threads_fail_instead_of_hanging(fake_registry):
    both_loading = threading.Barrier(2)

    def needs(other):
        def factory():
            both_loading.wait(timeout=10)  # each thread holds its own name before asking for the other
            return rs.get_backend(other)
        return factory

    fake_registry["ping"] = _EntryPoint("ping", needs("pong"))
    fake_registry["pong"] = _EntryPoint("pong", needs("ping"))
    errors = []

    def ask(name):
        try:
            rs.get_backend(name)
        except rs.BackendError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=ask, args=(n,), daemon=True) for n in ("ping", "pong")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "two factories waiting on each other deadlocked"
    assert len(errors) == 2 and any("needs itself" in e for e in errors), errors


def test_concurrent_first_use_runs_the_factory_once(fake_registry):
    calls = []
    many = 8
    gate = threading.Event()

    def slow():
        calls.append(threading.get_ident())
        gate.wait(timeout=10)  # keep the load in progress until every thread has asked
        return NumpyBackend()

    fake_registry["slow"] = _EntryPoint("slow", slow)
    results = [None] * many
    start = threading.Barrier(many + 1)

    def ask(i):
        start.wait(timeout=10)
        results[i] = rs.get_backend("slow")

    threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(many)]
    for t in threads:
        t.start()
    start.wait(timeout=10)
    while len(_registry._waiting) < many - 1 and any(t.is_alive() for t in threads):
        time.sleep(0.001)  # the others are waiting for the one loader
    gate.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(calls) == 1
    assert all(r is results[0] for r in results) and isinstance(results[0], NumpyBackend)


def test_a_slow_factory_does_not_hold_up_other_backends(fake_registry):
    gate = threading.Event()

    def slow():
        gate.wait(timeout=30)
        return NumpyBackend()

    fake_registry["slow"] = _EntryPoint("slow", slow)
    loader = threading.Thread(target=rs.get_backend, args=("slow",), daemon=True)
    loader.start()
    while "slow" not in _registry._loading:
        time.sleep(0.001)
    try:
        assert _in_thread(lambda: rs.get_backend("faster"), timeout=10).name == "faster"
    finally:
        gate.set()
        loader.join(30)
