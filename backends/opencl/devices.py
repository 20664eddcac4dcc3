"""Which OpenCL device the backend runs on: REPROSPARSE_OPENCL_DEVICE, or the default.

The variable reads ``platform:device``; each part is an index or a
case-insensitive substring of the name, and either may be left empty
(``pocl``, ``:1``, ``nvidia:h100``), as with pyopencl's PYOPENCL_TEST.
Without it the first GPU is chosen, else the first CPU device.

The choice works on plain descriptions, so that it can be tested without a
single OpenCL driver installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ENV = "REPROSPARSE_OPENCL_DEVICE"


class DeviceChoiceError(LookupError):
    """REPROSPARSE_OPENCL_DEVICE matched nothing, or there is no usable device."""


@dataclass(frozen=True)
class DeviceDesc:
    name: str
    is_gpu: bool
    is_cpu: bool


@dataclass(frozen=True)
class PlatformDesc:
    name: str
    devices: Sequence[DeviceDesc]


def _matches(part: str, index: int, name: str) -> bool:
    if not part:
        return True
    if part.isdigit():
        return int(part) == index
    return part.lower() in name.lower()


def parse(spec: str) -> tuple[str, str]:
    """``"platform:device"`` -> its two parts, stripped; a missing part is ``""``."""
    platform, _, device = spec.partition(":")
    return platform.strip(), device.strip()


def listing(platforms: Sequence[PlatformDesc]) -> str:
    lines = []
    for p, plat in enumerate(platforms):
        lines.append(f"  {p}: {plat.name}")
        lines.extend(f"    {p}:{i}: {dev.name}" for i, dev in enumerate(plat.devices))
    return "\n".join(lines) or "  (no OpenCL platforms)"


def choose(platforms: Sequence[PlatformDesc], spec: str | None) -> tuple[int, int]:
    """(platform index, device index) of the device to use.

    spec is the value of REPROSPARSE_OPENCL_DEVICE (None or blank: the default).
    """
    candidates = [
        (p, i, dev)
        for p, plat in enumerate(platforms)
        for i, dev in enumerate(plat.devices)
    ]
    if spec is not None and spec.strip():
        want_platform, want_device = parse(spec)
        for p, i, dev in candidates:
            if _matches(want_platform, p, platforms[p].name) and _matches(want_device, i, dev.name):
                return p, i
        raise DeviceChoiceError(
            f"{ENV}={spec!r} matches no OpenCL device; the devices are:\n{listing(platforms)}"
        )
    for wanted in ("is_gpu", "is_cpu"):
        for p, i, dev in candidates:
            if getattr(dev, wanted):
                return p, i
    raise DeviceChoiceError(f"no OpenCL GPU or CPU device; the devices are:\n{listing(platforms)}")
