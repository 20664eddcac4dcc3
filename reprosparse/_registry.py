"""Backend discovery through the ``reprosparse.backends`` entry-point group.

Backends load lazily, once, on first request.  A backend that fails to load
is remembered with the reason, so that asking for it by name raises an error
that says why; nothing silently falls back to another backend.  A backend
whose own setting is wrong (`BackendConfigError`) is an error wherever it
would be loaded, "auto" included, so a typo cannot change auto's choice.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from . import _config

if TYPE_CHECKING:
    from .backends import Backend, BackendConfigError

GROUP = "reprosparse.backends"
log = logging.getLogger("reprosparse")


class BackendError(RuntimeError):
    """An unknown or unavailable backend was asked for."""


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str | None  # why it is unavailable, None when it loaded
    priority: int
    refused: dict[str, str] = field(default_factory=dict)  # mode -> why the loaded backend refuses it


# _lock guards the tables below and is never held while a factory runs: a
# factory may itself ask for a backend (a wrapping backend), and one slow
# factory (a device self-test) must not hold up loading the others.
_lock = threading.Lock()
_loaded: dict[str, Backend | str | BackendConfigError] = {}  # name -> backend, why it failed, or a bad setting
_loading: dict[str, tuple[int, threading.Event]] = {}  # name -> (thread running its factory, set when it is done)
_waiting: dict[int, str] = {}  # thread -> the name it waits for another thread to load


@functools.cache  # scanning installed metadata takes milliseconds; every op call asks
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _cycle(name: str, owner: int, me: int) -> list[str] | None:
    """The names in a wait that would never end (me -> name -> ... -> me), or None.  Call under _lock."""
    chain = [name]
    while owner != me:
        wanted = _waiting.get(owner)
        if wanted is None or wanted not in _loading or wanted in chain:
            return None
        chain.append(wanted)
        owner = _loading[wanted][0]
    return chain


def _claim(name: str) -> Backend | str | BackendConfigError | threading.Event:
    """What is known about `name`, or, when nobody is loading it, an Event that makes this thread its loader."""
    me = threading.get_ident()
    while True:
        with _lock:
            if name in _loaded:
                return _loaded[name]
            if name not in _loading:
                done = threading.Event()
                _loading[name] = (me, done)
                return done
            owner, done = _loading[name]
            chain = _cycle(name, owner, me)
            if chain is not None:
                path = " -> ".join(repr(n) for n in [chain[-1], *chain])
                raise BackendError(f"reprosparse backend {chain[-1]!r} needs itself to load: {path}")
            _waiting[me] = name
        try:
            done.wait()
        finally:
            with _lock:
                del _waiting[me]


def _run_factory(name: str) -> Backend | str | BackendConfigError:
    from .backends import Backend, BackendConfigError, BackendUnavailable

    ep = _entry_points()[name]
    try:
        backend = ep.load()()  # type: ignore[attr-defined]
        if not isinstance(backend, Backend):
            raise TypeError(f"entry point {ep.value} did not return a reprosparse Backend")  # type: ignore[attr-defined]
        return backend
    except BackendUnavailable as exc:
        return str(exc)
    except BackendConfigError as exc:  # the user's setting is wrong: an error, never a reason to skip it
        return exc
    except Exception as exc:  # a broken plug-in must not break the registry
        return f"{type(exc).__name__}: {exc}"


def _load(name: str) -> Backend | str:
    """Runs `name`'s factory once, even when several threads ask first; later calls get the same answer."""
    got = _claim(name)
    if isinstance(got, threading.Event):
        done = got
        try:
            got = _run_factory(name)
            with _lock:
                _loaded[name] = got
        finally:
            with _lock:
                del _loading[name]
            done.set()
    if isinstance(got, Exception):
        raise type(got)(*got.args)  # a fresh exception: re-raising the stored one would grow its traceback
    return got


def available_backends() -> dict[str, BackendStatus]:
    """Every registered backend, whether it loaded, and if not, why."""
    out = {}
    for name in sorted(_entry_points()):
        got = _load(name)
        if isinstance(got, str):
            out[name] = BackendStatus(name, False, got, 0)
        else:
            refused = {mode: why for mode in _config.MODES if (why := got.refuses(mode)) is not None}
            out[name] = BackendStatus(name, True, None, got.priority, refused)
    return out


def _summary() -> str:
    lines = []
    for s in available_backends().values():
        state = "available" if s.available else f"unavailable ({s.reason})"
        state += "".join(f"; refuses {mode} mode ({why})" for mode, why in s.refused.items())
        lines.append(f"  {s.name}: {state}")
    return "\n".join(lines) or "  (no backends registered: is reprosparse installed?)"


def get_backend(name: str | None = None) -> Backend:
    """The backend called `name`, or the current one; "auto" picks the fastest available."""
    if name is None:
        name = _config.current().backend
    if name == "auto":
        mode = _config.current().mode
        ready = [s for s in available_backends().values() if s.available and mode not in s.refused]
        if not ready:
            raise BackendError(f"no reprosparse backend is available in {mode} mode:\n" + _summary())
        name = max(ready, key=lambda s: s.priority).name
        log.info("REPROSPARSE_BACKEND=auto chose %r", name)
    got = _loaded.get(name)
    if got is not None and not isinstance(got, (str, Exception)):
        return got
    if name not in _entry_points():
        raise BackendError(f"unknown reprosparse backend {name!r}; registered backends:\n" + _summary())
    got = _load(name)
    if isinstance(got, str):
        raise BackendError(f"reprosparse backend {name!r} is unavailable: {got}\nall backends:\n" + _summary())
    return got
