# cython: language_level=3, boundscheck=False, wraparound=False
"""Python face of the C kernels in csrc/: checks what a pointer will be taken
from (a direct caller may skip the Backend's checks), then runs without the GIL.
"""

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t

import numpy as np

cnp.import_array()


cdef extern from "rs_kernels.h" nogil:
    enum:
        RS_ISA_COUNT
        RS_OK
        RS_ENOMEM
        RS_EROWS
        RS_EISA

    ctypedef struct rs_dot_args:
        const void *W
        int f16
        int64_t d
        const int32_t *rows
        const float *x
        int64_t t
        float *out
        int64_t out_stride
        int fast

    const char *rs_isa_name(int isa)
    int rs_isa_compiled(int isa)
    int rs_isa_supported(int isa)
    int rs_best_isa()
    int rs_openmp_enabled()
    int rs_max_threads()
    int rs_team_size(int threads)
    int rs_dot(int isa, const rs_dot_args *A, int64_t nrows, int64_t n, int threads)
    int rs_axpy(int isa, const void *W, int f16, int64_t n, int64_t d, const int32_t *rows, int64_t nrows,
                const float *h, int64_t t, float *y, int fast, int threads)
    int rs_ffn(int isa, const float *x, int64_t t, int64_t d, int64_t n, int64_t d_out,
               const void *gate, int gate_f16, const void *up, int up_f16, const void *down_t, int down_f16,
               const uint8_t *mask, float *y, int fast, int threads)
    int rs_evict(const void *p, int64_t bytes)
    int rs_read_sum(int isa, const float *p, int64_t n, int threads, float *sum)


cdef extern from *:
    """
    #if defined(__clang__)
    #define RS_COMPILER "clang " __clang_version__
    #elif defined(__GNUC__)
    #define RS_COMPILER "gcc " __VERSION__
    #elif defined(_MSC_VER)
    #define RS_COMPILER "msvc"
    #else
    #define RS_COMPILER "unknown"
    #endif
    """
    const char *RS_COMPILER


#: True when the extension was compiled with OpenMP (else it runs on one thread)
OPENMP_ENABLED = bool(rs_openmp_enabled())
#: the C compiler that built the kernels
COMPILER = RS_COMPILER.decode()
#: every ISA name the kernels know, in order of preference (worst first)
ISAS = tuple(rs_isa_name(i).decode() for i in range(RS_ISA_COUNT))
#: ISAs compiled into this build
COMPILED = tuple(name for i, name in enumerate(ISAS) if rs_isa_compiled(i))
#: ISAs this CPU can run
SUPPORTED = tuple(name for i, name in enumerate(ISAS) if rs_isa_supported(i))
BEST = ISAS[rs_best_isa()]


def max_threads():
    """omp_get_max_threads(): lowered by OMP_NUM_THREADS or threadpoolctl's limits."""
    return rs_max_threads()


def team_size(int threads):
    """How many threads a parallel region asking for `threads` really ran."""
    cdef int got
    _positive(threads)
    with nogil:
        got = rs_team_size(threads)
    return got


#: most threads one call starts: libgomp ends the process when it cannot create a thread
MAX_THREADS = 256


cdef _positive(int threads):
    if threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads}")
    if threads > MAX_THREADS:
        raise ValueError(f"threads must be at most {MAX_THREADS}, got {threads}")


cdef int _isa(str name) except -1:
    if name not in ISAS:
        raise ValueError(f"unknown ISA {name!r}; known: {', '.join(ISAS)}")
    if name not in SUPPORTED:
        raise ValueError(f"ISA {name!r} is not usable here; supported: {', '.join(SUPPORTED)}")
    return ISAS.index(name)


cdef _check(int rc):
    if rc == RS_ENOMEM:
        raise MemoryError("reprosparse cython kernels: out of memory")
    if rc == RS_EROWS:
        raise ValueError("rows must be strictly increasing and index rows of W")
    if rc == RS_EISA:
        raise ValueError("ISA not usable on this CPU")


cdef int _weight_f16(str name, cnp.ndarray w) except -1:
    if w.dtype == np.float32:
        f16 = 0
    elif w.dtype == np.float16:
        f16 = 1
    else:
        raise TypeError(f"{name} must have dtype float32 or float16, got {w.dtype}")
    if w.ndim != 2 or not w.flags.c_contiguous:
        raise ValueError(f"{name} must be a 2-D C-contiguous array")
    return f16


cdef _array(str name, cnp.ndarray a, dtype, int ndim):
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    if a.ndim != ndim or not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a {ndim}-D C-contiguous array")


def lane_dot_rows(cnp.ndarray W not None, rows, cnp.ndarray x not None, bint fast, int threads, str isa):
    """out[t, a] = lane_dot(W[rows[a]], x[t]); rows None means every row."""
    cdef rs_dot_args A
    cdef cnp.ndarray r
    cdef int code = _isa(isa), rc
    cdef int64_t nrows
    _positive(threads)
    A.f16 = _weight_f16("W", W)
    _array("x", x, np.float32, 2)
    if x.shape[1] != W.shape[1]:
        raise ValueError(f"x must have {W.shape[1]} columns, got shape {np.shape(x)}")
    if rows is None:
        A.rows = NULL
        nrows = W.shape[0]
    else:
        r = rows
        _array("rows", r, np.int32, 1)
        A.rows = <const int32_t *>cnp.PyArray_DATA(r)
        nrows = r.shape[0]
    out = np.empty((x.shape[0], nrows), np.float32)
    A.W = cnp.PyArray_DATA(W)
    A.d = W.shape[1]
    A.x = <const float *>cnp.PyArray_DATA(x)
    A.t = x.shape[0]
    A.out = <float *>cnp.PyArray_DATA(out)
    A.out_stride = nrows
    A.fast = fast
    with nogil:
        rc = rs_dot(code, &A, nrows, W.shape[0], threads)
    _check(rc)
    return out


def sparse_axpy(cnp.ndarray W not None, cnp.ndarray h not None, cnp.ndarray rows not None, bint fast, int threads, str isa):
    """y[t] = sum over a of h[t, a] * W[rows[a]] in the spec's block order."""
    cdef int code = _isa(isa), rc
    cdef int f16 = _weight_f16("W", W)
    _positive(threads)
    _array("h", h, np.float32, 2)
    _array("rows", rows, np.int32, 1)
    if h.shape[1] != rows.shape[0]:
        raise ValueError(f"h must have {rows.shape[0]} columns (one per row), got shape {np.shape(h)}")
    y = np.empty((h.shape[0], W.shape[1]), np.float32)
    cdef const void *w = cnp.PyArray_DATA(W)
    cdef const int32_t *r = <const int32_t *>cnp.PyArray_DATA(rows)
    cdef const float *hp = <const float *>cnp.PyArray_DATA(h)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    cdef int64_t n = W.shape[0], d = W.shape[1], nrows = rows.shape[0], t = h.shape[0]
    with nogil:
        rc = rs_axpy(code, w, f16, n, d, r, nrows, hp, t, yp, fast, threads)
    _check(rc)
    return y


def sparse_ffn(cnp.ndarray x not None, cnp.ndarray gate not None, cnp.ndarray up not None, cnp.ndarray down_t not None, cnp.ndarray mask not None,
               bint fast, int threads, str isa):
    """The spec's sparse_ffn in one call: rows from the mask, gate and up, h, sparse_axpy."""
    cdef int code = _isa(isa), rc
    cdef int gf = _weight_f16("gate", gate), uf = _weight_f16("up", up), df = _weight_f16("down_t", down_t)
    _positive(threads)
    _array("x", x, np.float32, 2)
    _array("mask", mask, np.bool_, 2)
    cdef int64_t t = x.shape[0], d = x.shape[1], n = gate.shape[0], d_out = down_t.shape[1]
    if gate.shape[1] != d or up.shape[0] != n or up.shape[1] != d or down_t.shape[0] != n:
        raise ValueError("gate and up must be (n, d) and down_t (n, d_out) for x of shape (t, d)")
    if mask.shape[0] != t or mask.shape[1] != n:
        raise ValueError(f"mask must have shape ({t}, {n}), got {np.shape(mask)}")
    y = np.empty((t, d_out), np.float32)
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef const void *gp = cnp.PyArray_DATA(gate)
    cdef const void *upp = cnp.PyArray_DATA(up)
    cdef const void *dp = cnp.PyArray_DATA(down_t)
    cdef const uint8_t *mp = <const uint8_t *>cnp.PyArray_DATA(mask)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    with nogil:
        rc = rs_ffn(code, xp, t, d, n, d_out, gp, gf, upp, uf, dp, df, mp, yp, fast, threads)
    _check(rc)
    return y


def read_sum(cnp.ndarray a not None, int threads, str isa):
    """Sum of a float32 array read once by `threads` threads: the benchmark's streaming read."""
    cdef int code = _isa(isa), rc
    cdef float total = 0
    _positive(threads)
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        raise TypeError("a must be a C-contiguous float32 array")
    cdef const float *p = <const float *>cnp.PyArray_DATA(a)
    cdef int64_t n = a.size
    with nogil:
        rc = rs_read_sum(code, p, n, threads, &total)
    _check(rc)
    return total


def evict(cnp.ndarray W not None, rows=None):
    """Drop W (or only W[rows]) from every cache level; False where the CPU offers no way to."""
    cdef const char *p = <const char *>cnp.PyArray_DATA(W)
    cdef int64_t row_bytes, i
    cdef int ok = 1
    if not W.flags.c_contiguous:
        raise ValueError("W must be C-contiguous")
    cdef int64_t nbytes = W.nbytes
    if rows is None:
        with nogil:
            ok = rs_evict(p, nbytes)
        return bool(ok)
    row_bytes = W.strides[0]
    for i in np.asarray(rows, np.int64):
        if not 0 <= i < W.shape[0]:
            raise ValueError(f"row {i} out of range")
        ok = rs_evict(p + i * row_bytes, row_bytes)
    return bool(ok)
