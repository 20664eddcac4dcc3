"""Which backend, mode and thread count the public ops use.

Defaults come from REPROSPARSE_BACKEND, REPROSPARSE_MODE and
REPROSPARSE_THREADS, read when first needed; `reprosparse.use(...)` overrides
them for a block of code (per thread and per asyncio task, via contextvars).
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

MODES = ("deterministic", "fast")
#: No backend may be asked for more threads: the cython kernels' own limit (libgomp exits the
#: process when it cannot create a thread), checked here so the error names the setting.
MAX_THREADS = 256


@dataclass(frozen=True)
class Settings:
    backend: str = "auto"
    mode: str = "deterministic"
    #: None means the backend's default (all cores for threaded backends)
    threads: int | None = None


def check_mode(mode: object, source: str = "mode") -> str:
    if mode not in MODES:
        raise ValueError(f"{source} must be one of {', '.join(MODES)}; got {mode!r}")
    return str(mode)


def check_threads(threads: object, source: str = "threads") -> int:
    """A thread count in [1, MAX_THREADS] (any integer type, numpy's included, but not bool)."""
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or not 1 <= int(threads) <= MAX_THREADS:
        raise ValueError(f"{source} must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    return int(threads)


def check_backend_name(name: str, source: str) -> str:
    """A registered backend's name or "auto"; whether it can run here is the registry's question, asked later."""
    from . import _registry

    registered = sorted(_registry._entry_points())
    if name != "auto" and name not in registered:
        known = ", ".join(registered) or "none registered: is reprosparse installed?"
        raise ValueError(f"{source} must be auto or the name of a registered backend ({known}); got {name!r}")
    return name


def from_environment(env: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
    threads: int | None = None
    raw = env.get("REPROSPARSE_THREADS", "").strip()
    if raw:
        try:
            threads = int(raw)
        except ValueError:
            raise ValueError(f"REPROSPARSE_THREADS must be an integer from 1 to {MAX_THREADS}, got {raw!r}") from None
        check_threads(threads, "REPROSPARSE_THREADS")
    return Settings(
        backend=check_backend_name(env.get("REPROSPARSE_BACKEND", "").strip() or "auto", "REPROSPARSE_BACKEND"),
        mode=check_mode(env.get("REPROSPARSE_MODE", "").strip() or "deterministic", "REPROSPARSE_MODE"),
        threads=threads,
    )


_current: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("reprosparse_settings", default=None)


def current() -> Settings:
    settings = _current.get()
    if settings is None:
        settings = from_environment()
        _current.set(settings)
    return settings


@contextlib.contextmanager
def use(
    backend: str | None = None, mode: str | None = None, threads: int | None = None
) -> Iterator[Settings]:
    """Run a block with another backend, mode or thread count.

    >>> with reprosparse.use(backend="numpy", mode="fast"):
    ...     y = reprosparse.sparse_ffn(x, gate, up, down_t, mask)
    """
    from . import _registry

    changes: dict[str, object] = {}
    if backend is not None:
        _registry.get_backend(backend)  # fail here, not at the first op
        changes["backend"] = backend
    if mode is not None:
        changes["mode"] = check_mode(mode)
    if threads is not None:
        changes["threads"] = check_threads(threads)
    token = _current.set(replace(current(), **changes))  # type: ignore[arg-type]
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)
