"""Backend discovery through the ``reprosparse.backends`` entry-point group.

Backends load lazily, once, on first request.  A backend that fails to load
is remembered with the reason, so that asking for it by name raises an error
that says why; nothing silently falls back to another backend.
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
    from .backends import Backend

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


_lock = threading.Lock()
_loaded: dict[str, Backend | str] = {}  # name -> backend, or the reason it failed


@functools.cache  # scanning installed metadata takes milliseconds; every op call asks
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _load(name: str) -> Backend | str:
    from .backends import Backend, BackendUnavailable

    with _lock:
        if name in _loaded:
            return _loaded[name]
        ep = _entry_points()[name]
        try:
            backend = ep.load()()  # type: ignore[attr-defined]
            if not isinstance(backend, Backend):
                raise TypeError(f"entry point {ep.value} did not return a reprosparse Backend")  # type: ignore[attr-defined]
            result: Backend | str = backend
        except BackendUnavailable as exc:
            result = str(exc)
        except Exception as exc:  # a broken plug-in must not break the registry
            result = f"{type(exc).__name__}: {exc}"
        _loaded[name] = result
        return result


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
    if got is not None and not isinstance(got, str):
        return got
    if name not in _entry_points():
        raise BackendError(f"unknown reprosparse backend {name!r}; registered backends:\n" + _summary())
    got = _load(name)
    if isinstance(got, str):
        raise BackendError(f"reprosparse backend {name!r} is unavailable: {got}\nall backends:\n" + _summary())
    return got
