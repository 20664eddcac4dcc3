"""Inputs a careless caller could build, for the tests of argument checks."""

from __future__ import annotations

from reprosparse import QuantizedMatrix


def mangled(q: QuantizedMatrix, **fields: object) -> QuantizedMatrix:
    """q with its private fields overwritten, bypassing the constructor's checks."""
    bad = QuantizedMatrix(q.data, q.shape, q.type)
    for k, v in fields.items():
        object.__setattr__(bad, f"_{k}", v)
    return bad
