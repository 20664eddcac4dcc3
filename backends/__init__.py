"""Backends: the `Backend` base class and the built-in implementations.

Backends are found through the entry-point group ``reprosparse.backends``;
each entry point names a zero-argument callable (usually the class) that
returns a `Backend` or raises `BackendUnavailable` saying why it cannot run
(or `BackendConfigError` when a setting meant for it is invalid).
"""

from ._base import Backend, BackendConfigError, BackendUnavailable, WeightsUnsupported

__all__ = ["Backend", "BackendConfigError", "BackendUnavailable", "WeightsUnsupported"]
