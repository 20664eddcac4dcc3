"""Builds the `cython` backend's extension, reprosparse.backends._cython_kernels.

Everything else about the package is in pyproject.toml.  The kernels are C
(backends/cython/csrc) behind a Cython wrapper.  Three decisions live here:

* OpenMP is used when a test program compiles and links with -fopenmp; else
  the extension is built without it and runs on one thread (it reports
  OPENMP_ENABLED = False).  REPROSPARSE_REQUIRE_OPENMP=1 makes that an error.
* No -march=native: each ISA variant (isa_<name>.c) is compiled with its own
  flags and chosen at run time, so one wheel runs on any x86-64 CPU.
* -O3 -ffp-contract=off, never -ffast-math: the deterministic kernels rely on
  every product and sum being rounded separately, with subnormals kept.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CSRC = Path("backends") / "cython" / "csrc"
COMMON_FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fvisibility=hidden", "-std=c11"]
# ISA variants: file, extra flags.  Baseline x86-64 always has SSE2.
X86_ISAS = {
    "sse2": ["-msse2"],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "avx512": ["-mavx512f", "-mavx2", "-mfma", "-mf16c"],
}
IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def _try_compile(compiler, source: str, flags: list[str], link: bool) -> bool:
    """Whether `source` compiles (and links, if asked) with `flags`."""
    tmp = Path(tempfile.mkdtemp(prefix="reprosparse-probe-"))
    try:
        src = tmp / "probe.c"
        src.write_text(source)
        objects = compiler.compile([str(src)], output_dir=str(tmp), extra_postargs=flags)
        if link:
            compiler.link_executable(objects, "probe", output_dir=str(tmp), extra_postargs=flags)
        return True
    except Exception:  # any compiler or linker failure means "not supported"
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_PROBE = """
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel num_threads(2) reduction(+:n)
    n += omp_get_num_threads() > 0;
    return n > 0 ? 0 : 1;
}
"""


class BuildKernels(build_ext):
    """build_ext that compiles each ISA variant with its own flags and adds OpenMP when it works."""

    def build_extension(self, ext: Extension) -> None:
        cc = self.compiler
        openmp = _try_compile(cc, OPENMP_PROBE, ["-fopenmp"], link=True)
        if not openmp and os.environ.get("REPROSPARSE_REQUIRE_OPENMP") == "1":
            raise RuntimeError("REPROSPARSE_REQUIRE_OPENMP=1 but the C compiler cannot build with -fopenmp")
        print(f"reprosparse: OpenMP {'enabled' if openmp else 'NOT available: building single-threaded'}")
        omp = ["-fopenmp"] if openmp else []

        variants = {"scalar": []}
        if IS_X86_64:
            for isa, flags in X86_ISAS.items():
                if _try_compile(cc, "int main(void) { return 0; }\n", flags, link=False):
                    variants[isa] = flags
        print(f"reprosparse: ISA variants {', '.join(variants)}")
        macros = [(f"RS_HAVE_{isa.upper()}", "1") for isa in variants if isa != "scalar"]
        objects = []
        for isa, flags in variants.items():
            objects += cc.compile(
                [str(CSRC / f"isa_{isa}.c")],
                output_dir=self.build_temp,
                macros=macros,
                include_dirs=[str(CSRC)],
                extra_postargs=COMMON_FLAGS + omp + flags,
                depends=[str(p) for p in CSRC.glob("*.h")],
            )
        ext.extra_objects = objects
        ext.define_macros = [*ext.define_macros, *macros]
        ext.extra_compile_args = [*COMMON_FLAGS, *omp]
        ext.extra_link_args = list(omp)
        super().build_extension(ext)


extension = Extension(
    "reprosparse.backends._cython_kernels",
    sources=[
        str(Path("backends") / "cython" / "_cython_kernels.pyx"), str(CSRC / "dispatch.c"), str(CSRC / "rs_runtime.c"),
        str(CSRC / "rs_layer.c"),
    ],
    libraries=["m"],  # rs_runtime.c: rint, floor, frexp, sqrtf
    include_dirs=[np.get_include(), str(CSRC)],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    depends=[str(p) for p in CSRC.glob("*")],
)

if sys.platform == "win32":
    raise SystemExit("the cython backend's build supports GCC and clang (Linux, macOS) only")

setup(
    ext_modules=cythonize([extension], compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildKernels},
)
