"""The `opencl` backend (PyOpenCL); install with ``pip install 'reprosparse[opencl]'``.

`load` is the entry point: it picks the device (REPROSPARSE_OPENCL_DEVICE or
the first GPU, else the first CPU device), self-tests the kernels there
(verify.py) and returns the backend, or raises BackendUnavailable saying why
it cannot run here.
"""

from __future__ import annotations

import dataclasses
import functools
import os

from .._base import Backend, BackendUnavailable

#: Layouts tried in turn until one passes the self-test: vector code first on CPU devices
#: (about 20x faster on PoCL), coalesced work-groups first on GPUs.
CPU_LAYOUTS = ("vector8", "vector4", "grouped")
GPU_LAYOUTS = ("grouped", "vector8", "vector4")


def load(
    *, layout: str | None = None, weight_cache_bytes: int | None = None, zero_copy: bool | None = None,
    scratch_bytes: int | None = None,
) -> Backend:
    """The backend on the chosen device; layout restricts the self-test to that one layout,
    the other arguments override OpenCLBackend's defaults."""
    try:
        import pyopencl as cl
    except ImportError as exc:
        raise BackendUnavailable(
            f"pyopencl is not installed ({exc}); pip install 'reprosparse[opencl]'"
        ) from exc

    from . import devices, runtime_selftest, verify
    from .backend import SCRATCH_BYTES, OpenCLBackend, OpenCLGpuBackend, deterministic_problem, single_fp_config
    from .programs import LAYOUTS

    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {tuple(LAYOUTS)}, got {layout!r}")
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
    device = platforms[where[0]].get_devices()[where[1]]
    candidates = (layout,) if layout else GPU_LAYOUTS if is_gpu else CPU_LAYOUTS
    problem = deterministic_problem(single_fp_config(device))
    test = functools.partial(verify.make_plan, device, where, candidates, problem)
    plan = test()  # the float types now; a quantized type when its first weights arrive
    if not plan.layouts:
        reasons = {mode: plan.refuses(mode) for mode in verify.MODES}
        if len(set(reasons.values())) == 1:
            why = str(reasons[verify.MODES[0]])
        else:
            why = "; ".join(f"{mode} mode: {reason}" for mode, reason in reasons.items())
        raise BackendUnavailable(f"OpenCL device {device.name.strip()} failed its self-test in every mode: {why}")
    plan = dataclasses.replace(plan, runtime=runtime_selftest.verdict(device, where, problem))
    return (OpenCLGpuBackend if is_gpu else OpenCLBackend)(
        platforms, *where, plan, weight_cache_bytes=weight_cache_bytes, zero_copy=zero_copy,
        scratch_bytes=SCRATCH_BYTES if scratch_bytes is None else scratch_bytes,
        self_test=lambda wtype: test(wtypes=(wtype,)),
    )
