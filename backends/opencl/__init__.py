"""The `opencl` backend (PyOpenCL); install with ``pip install 'reprosparse[opencl]'``.

`load` is the entry point: it picks the device (REPROSPARSE_OPENCL_DEVICE or
the first GPU, else the first CPU device) and returns the backend, or raises
BackendUnavailable saying why it cannot run here.
"""

from __future__ import annotations

import os

from .._base import Backend, BackendUnavailable


def load(
    *, layout: str | None = None, weight_cache_bytes: int | None = None, zero_copy: bool | None = None
) -> Backend:
    """The backend on the chosen device; the arguments override OpenCLBackend's defaults."""
    try:
        import pyopencl as cl
    except ImportError as exc:
        raise BackendUnavailable(
            f"pyopencl is not installed ({exc}); pip install 'reprosparse[opencl]'"
        ) from exc

    from . import devices
    from .backend import OpenCLBackend, OpenCLGpuBackend

    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:  # the ICD loader found no platform at all
        raise BackendUnavailable(f"no OpenCL platform: {exc}") from exc
    described = [
        devices.PlatformDesc(
            p.name.strip(),
            [
                devices.DeviceDesc(
                    d.name.strip(),
                    bool(d.type & cl.device_type.GPU),
                    bool(d.type & cl.device_type.CPU),
                )
                for d in p.get_devices()
            ],
        )
        for p in platforms
    ]
    try:
        where = devices.choose(described, os.environ.get(devices.ENV))
    except devices.DeviceChoiceError as exc:
        raise BackendUnavailable(str(exc)) from exc
    is_gpu = described[where[0]].devices[where[1]].is_gpu
    return (OpenCLGpuBackend if is_gpu else OpenCLBackend)(
        platforms, *where, layout=layout, weight_cache_bytes=weight_cache_bytes, zero_copy=zero_copy
    )
