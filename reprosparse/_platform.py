"""Facts about this process and CPU that decide whether bits can be trusted."""

from __future__ import annotations

import os
import platform

import numpy as np

_INTERESTING = ("sse2", "sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_fp16", "neon", "asimd")


def flushes_subnormals() -> bool:
    """True if float32 arithmetic in this process flushes subnormals (FTZ or DAZ set).

    Some shared libraries built with -ffast-math set these CPU flags when
    loaded; deterministic mode cannot give the spec's bits after that.
    """
    tiny = np.array([2.0**-126], np.float32)
    sub = np.array([2.0**-149], np.float32)
    ftz = (tiny * np.float32(0.5))[0] == 0  # result would be subnormal
    daz = (sub + np.float32(0.0))[0] == 0  # subnormal input read as zero
    return bool(ftz or daz)


def cpu_features() -> list[str]:
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return [f for f in _INTERESTING if f in flags]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def describe() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": f"{platform.machine()} ({platform.processor() or platform.system()})",
        "cpus available": str(cpu_count()),
        "cpu features": " ".join(cpu_features()) or "unknown",
        "flushes subnormals": "YES: deterministic bits are not guaranteed" if flushes_subnormals() else "no",
    }
