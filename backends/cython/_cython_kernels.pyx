# cython: language_level=3, boundscheck=False, wraparound=False
"""Python face of the C kernels in csrc/: checks what a pointer will be taken
from (a direct caller may skip the Backend's checks), then runs without the GIL.
"""

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memset

import numpy as np

from reprosparse.reference.quant import QuantizedMatrix, block, row_bytes

cnp.import_array()


cdef extern from "rs_kernels.h" nogil:
    enum:
        RS_ISA_COUNT
        RS_OK
        RS_ENOMEM
        RS_EROWS
        RS_EISA
        RS_EWTYPE
        RS_W_F32
        RS_W_F16
        RS_W_Q8_0
        RS_W_Q4_0
        RS_W_Q6_K

    ctypedef struct rs_dot_args:
        const void *W
        int wtype
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
    int rs_axpy(int isa, const void *W, int wtype, int64_t n, int64_t d, const int32_t *rows, int64_t nrows,
                const float *h, int64_t t, float *y, int fast, int threads)
    int rs_ffn(int isa, const float *x, int64_t t, int64_t d, int64_t n, int64_t d_out,
               const void *gate, int gate_wtype, const void *up, int up_wtype, const void *down_t, int down_wtype,
               const uint8_t *mask, float *y, int fast, int threads)
    int rs_predict(int isa, const float *x, int64_t t, int64_t d, int64_t r, int64_t n,
                   const void *fc1, int fc1_wtype, const void *fc2, int fc2_wtype, float thr,
                   uint8_t *mask, int fast, int threads)
    int rs_evict(const void *p, int64_t bytes)
    int rs_read_sum(int isa, const float *p, int64_t n, int threads, float *sum)
    int rs_read_rows(const void *W, int64_t n, int64_t row_bytes, const int32_t *rows, int64_t nrows, int threads,
                     uint64_t *sum)


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
    if rc == RS_EWTYPE:
        raise ValueError("quantized weights must have a multiple of their block (32, Q6_K 256) columns")


_QUANT_CODES = {"q8_0": RS_W_Q8_0, "q4_0": RS_W_Q4_0, "q6_k": RS_W_Q6_K}


cdef class _Weight:
    """What the kernels read of a weight matrix: its memory, type code and logical shape."""
    cdef cnp.ndarray mem
    cdef int wtype
    cdef int64_t n, d


cdef _Weight _weight(str name, object w):
    cdef _Weight out = _Weight()
    cdef cnp.ndarray a
    if isinstance(w, QuantizedMatrix):
        a = w.data
        n, d = w.shape
        if w.type not in _QUANT_CODES or d % block(w.type) or a.dtype != np.uint8 or not a.flags.c_contiguous \
                or a.ndim != 2 or a.shape[0] != n or a.shape[1] != row_bytes(w.type, d):
            raise ValueError(f"{name}: a QuantizedMatrix whose bytes do not match its type and shape")
        out.wtype = _QUANT_CODES[w.type]
    elif isinstance(w, np.ndarray):
        a = w
        if a.dtype == np.float32:
            out.wtype = RS_W_F32
        elif a.dtype == np.float16:
            out.wtype = RS_W_F16
        else:
            raise TypeError(f"{name} must have dtype float32 or float16, got {a.dtype}")
        if a.ndim != 2 or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a 2-D C-contiguous array")
        n, d = a.shape[0], a.shape[1]
    else:
        raise TypeError(f"{name} must be a numpy.ndarray or a QuantizedMatrix, got {type(w).__name__}")
    out.mem, out.n, out.d = a, n, d
    return out


cdef _array(str name, cnp.ndarray a, dtype, int ndim):
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    if a.ndim != ndim or not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a {ndim}-D C-contiguous array")


def lane_dot_rows(W not None, rows, cnp.ndarray x not None, bint fast, int threads, str isa):
    """out[t, a] = lane_dot(W[rows[a]], x[t]); rows None means every row."""
    cdef rs_dot_args A
    cdef cnp.ndarray r
    cdef int code = _isa(isa), rc
    cdef int64_t nrows
    cdef _Weight w = _weight("W", W)
    _positive(threads)
    A.wtype = w.wtype
    _array("x", x, np.float32, 2)
    if x.shape[1] != w.d:
        raise ValueError(f"x must have {w.d} columns, got shape {np.shape(x)}")
    if rows is None:
        A.rows = NULL
        nrows = w.n
    else:
        r = rows
        _array("rows", r, np.int32, 1)
        A.rows = <const int32_t *>cnp.PyArray_DATA(r)
        nrows = r.shape[0]
    out = np.empty((x.shape[0], nrows), np.float32)
    A.W = cnp.PyArray_DATA(w.mem)
    A.d = w.d
    A.x = <const float *>cnp.PyArray_DATA(x)
    A.t = x.shape[0]
    A.out = <float *>cnp.PyArray_DATA(out)
    A.out_stride = nrows
    A.fast = fast
    with nogil:
        rc = rs_dot(code, &A, nrows, w.n, threads)
    _check(rc)
    return out


def sparse_axpy(W not None, cnp.ndarray h not None, cnp.ndarray rows not None, bint fast, int threads, str isa):
    """y[t] = sum over a of h[t, a] * W[rows[a]] in the spec's block order."""
    cdef int code = _isa(isa), rc
    cdef _Weight w = _weight("W", W)
    cdef int wtype = w.wtype
    _positive(threads)
    _array("h", h, np.float32, 2)
    _array("rows", rows, np.int32, 1)
    if h.shape[1] != rows.shape[0]:
        raise ValueError(f"h must have {rows.shape[0]} columns (one per row), got shape {np.shape(h)}")
    y = np.empty((h.shape[0], w.d), np.float32)
    cdef const void *wp = cnp.PyArray_DATA(w.mem)
    cdef const int32_t *r = <const int32_t *>cnp.PyArray_DATA(rows)
    cdef const float *hp = <const float *>cnp.PyArray_DATA(h)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    cdef int64_t n = w.n, d = w.d, nrows = rows.shape[0], t = h.shape[0]
    with nogil:
        rc = rs_axpy(code, wp, wtype, n, d, r, nrows, hp, t, yp, fast, threads)
    _check(rc)
    return y


def sparse_ffn(cnp.ndarray x not None, gate not None, up not None, down_t not None, cnp.ndarray mask not None,
               bint fast, int threads, str isa):
    """The spec's sparse_ffn in one call: rows from the mask, gate and up, h, sparse_axpy."""
    cdef int code = _isa(isa), rc
    cdef _Weight g = _weight("gate", gate), u = _weight("up", up), dw = _weight("down_t", down_t)
    cdef int gf = g.wtype, uf = u.wtype, df = dw.wtype
    _positive(threads)
    _array("x", x, np.float32, 2)
    _array("mask", mask, np.bool_, 2)
    cdef int64_t t = x.shape[0], d = x.shape[1], n = g.n, d_out = dw.d
    if g.d != d or u.n != n or u.d != d or dw.n != n:
        raise ValueError("gate and up must be (n, d) and down_t (n, d_out) for x of shape (t, d)")
    if mask.shape[0] != t or mask.shape[1] != n:
        raise ValueError(f"mask must have shape ({t}, {n}), got {np.shape(mask)}")
    y = np.empty((t, d_out), np.float32)
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef const void *gp = cnp.PyArray_DATA(g.mem)
    cdef const void *upp = cnp.PyArray_DATA(u.mem)
    cdef const void *dp = cnp.PyArray_DATA(dw.mem)
    cdef const uint8_t *mp = <const uint8_t *>cnp.PyArray_DATA(mask)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    with nogil:
        rc = rs_ffn(code, xp, t, d, n, d_out, gp, gf, upp, uf, dp, df, mp, yp, fast, threads)
    _check(rc)
    return y


def predict(cnp.ndarray x not None, fc1 not None, fc2 not None, float thr, bint fast, int threads, str isa):
    """The spec's predict in one call: mask[t, i] = z >= thr or z is NaN, z = fc2 . relu(fc1 . x)."""
    cdef int code = _isa(isa), rc
    cdef _Weight f1 = _weight("fc1", fc1), f2 = _weight("fc2", fc2)
    cdef int w1 = f1.wtype, w2 = f2.wtype
    _positive(threads)
    _array("x", x, np.float32, 2)
    cdef int64_t t = x.shape[0], d = x.shape[1], r = f1.n, n = f2.n
    if f1.d != d or f2.d != r:
        raise ValueError("fc1 must be (r, d) and fc2 (n, r) for x of shape (t, d)")
    mask = np.empty((t, n), np.bool_)
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef const void *p1 = cnp.PyArray_DATA(f1.mem)
    cdef const void *p2 = cnp.PyArray_DATA(f2.mem)
    cdef uint8_t *mp = <uint8_t *>cnp.PyArray_DATA(mask)
    with nogil:
        rc = rs_predict(code, xp, t, d, r, n, p1, w1, p2, w2, thr, mp, fast, threads)
    _check(rc)
    return mask


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


def read_rows(W not None, cnp.ndarray rows not None, int threads):
    """Every byte of W[rows] read once, several rows in flight (the benchmark's gathered-read reference);
    the bytes' 8-byte words added with wrap-around."""
    cdef _Weight w = _weight("W", W)
    cdef uint64_t total = 0
    cdef int rc
    _positive(threads)
    _array("rows", rows, np.int32, 1)
    cdef const void *wp = cnp.PyArray_DATA(w.mem)
    cdef const int32_t *r = <const int32_t *>cnp.PyArray_DATA(rows)
    cdef int64_t n = w.n, row_bytes = w.mem.strides[0], nrows = rows.shape[0]
    with nogil:
        rc = rs_read_rows(wp, n, row_bytes, r, nrows, threads, &total)
    _check(rc)
    return total


def evict(W_ not None, rows=None):
    """Drop W (or only W[rows]) from every cache level; False where the CPU offers no way to."""
    cdef cnp.ndarray W = W_.data if isinstance(W_, QuantizedMatrix) else W_
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


# ---- the runtime's per-token operators (csrc/rs_runtime.c, docs/spec.md §12) ----

cdef extern from "rs_runtime.h" nogil:
    enum:
        RS_EPOS

    float rs_exp32(float x)
    void rs_sincos32(float a, float *sin_out, float *cos_out)
    int rs_rmsnorm(const float *x, int64_t t, int64_t d, const void *w, int w_f16, float eps, float *y, int threads)
    int rs_rope(const float *x, int64_t t, int64_t n_head, int64_t head_dim, const int64_t *positions, double base,
                float *y, int threads)
    int rs_attention(const float *q, int64_t t, int64_t n_head, int64_t head_dim, float *const *k, float *const *v,
                     const int64_t *cache_len, int64_t n_seq, int64_t n_kv, const int64_t *seq,
                     const int64_t *positions, const float *new_k, const float *new_v, float *out, int threads)
    int rs_softmax(const float *x, int64_t t, int64_t n, const int64_t *lengths, float *y, int threads)
    int rs_argmax(const float *x, int64_t t, int64_t n, int64_t *out, int threads)
    int rs_add(const float *a, const float *b, int64_t n, float *y, int threads)


cdef _runtime_check(int rc):
    if rc == RS_EPOS:
        raise ValueError("positions, lengths or sequence indices out of range")
    _check(rc)


def exp32(cnp.ndarray x not None):
    """The spec's exp32, elementwise over a C-contiguous float32 array."""
    _array("x", x, np.float32, x.ndim)
    y = np.empty_like(x)
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    cdef int64_t i, n = x.size
    with nogil:
        for i in range(n):
            yp[i] = rs_exp32(xp[i])
    return y


def sincos32(cnp.ndarray a not None):
    """The spec's (sin, cos) pair, elementwise over a C-contiguous float32 array."""
    _array("angle", a, np.float32, a.ndim)
    s = np.empty_like(a)
    c = np.empty_like(a)
    cdef const float *ap = <const float *>cnp.PyArray_DATA(a)
    cdef float *sp = <float *>cnp.PyArray_DATA(s)
    cdef float *cp = <float *>cnp.PyArray_DATA(c)
    cdef int64_t i, n = a.size
    with nogil:
        for i in range(n):
            rs_sincos32(ap[i], sp + i, cp + i)
    return s, c


def rmsnorm(cnp.ndarray x not None, cnp.ndarray w not None, float eps, int threads):
    """x (t, d) float32, w (d,) float32 or float16, eps already a float32 value."""
    cdef int rc, f16
    _positive(threads)
    _array("x", x, np.float32, 2)
    if w.dtype == np.float16:
        f16 = 1
    else:
        f16 = 0
        _array("weight", w, np.float32, 1)
    if w.ndim != 1 or not w.flags.c_contiguous or w.shape[0] != x.shape[1]:
        raise ValueError(f"weight must be a C-contiguous ({x.shape[1]},) array")
    y = np.empty_like(x)
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef const void *wp = cnp.PyArray_DATA(w)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    cdef int64_t t = x.shape[0], d = x.shape[1]
    with nogil:
        rc = rs_rmsnorm(xp, t, d, wp, f16, eps, yp, threads)
    _runtime_check(rc)
    return y


def rope(cnp.ndarray x not None, cnp.ndarray positions not None, double base, int threads):
    """x (t, n_head, head_dim) float32, positions (t,) int64, base finite and > 0."""
    cdef int rc
    _positive(threads)
    _array("x", x, np.float32, 3)
    _array("positions", positions, np.int64, 1)
    if positions.shape[0] != x.shape[0] or x.shape[2] % 2:
        raise ValueError("positions must have one entry per row of x, and x an even head_dim")
    if not (base > 0 and base < float("inf")):
        raise ValueError(f"base must be finite and > 0, got {base}")
    y = np.empty_like(x)
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef const int64_t *pp = <const int64_t *>cnp.PyArray_DATA(positions)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    cdef int64_t t = x.shape[0], nh = x.shape[1], hd = x.shape[2]
    with nogil:
        rc = rs_rope(xp, t, nh, hd, pp, base, yp, threads)
    _runtime_check(rc)
    return y


cdef class _StepRows:
    """A step's rows as rs_attention and rs_layer take them: row r of sequence seq[r] at positions[r], and
    each sequence's caches as pointer arrays and row counts.  Holds the arrays the pointers point into."""
    cdef object arrays
    cdef float *const *k
    cdef float *const *v
    cdef const int64_t *lengths
    cdef const int64_t *seq
    cdef const int64_t *positions
    cdef int64_t n_seq, n_kv


cdef _StepRows _step_rows(list k, list v, cnp.ndarray seq, cnp.ndarray positions, int64_t t, int64_t hd,
                          bint store):
    """Every k[s], v[s] checked (P, n_kv, hd) float32 (n_kv k[0]'s), writeable when the step stores."""
    cdef _StepRows rows = _StepRows()
    cdef int64_t s, n_seq = len(k)
    cdef cnp.ndarray ks, vs
    _array("seq", seq, np.int64, 1)
    _array("positions", positions, np.int64, 1)
    if len(v) != n_seq or n_seq < 1 or seq.shape[0] != t or positions.shape[0] != t:
        raise ValueError("need one v per k, at least one cache, and seq and positions with one entry per row")
    _array("k", k[0], np.float32, 3)
    cdef int64_t n_kv = (<cnp.ndarray>k[0]).shape[1]
    kp = np.empty(n_seq, np.uintp)
    vp = np.empty(n_seq, np.uintp)
    lens = np.empty(n_seq, np.int64)
    for s in range(n_seq):
        ks = k[s]
        vs = v[s]
        _array("k", ks, np.float32, 3)
        _array("v", vs, np.float32, 3)
        if ks.shape[1] != n_kv or ks.shape[2] != hd or vs.shape[0] != ks.shape[0] or vs.shape[1] != n_kv or vs.shape[2] != hd:
            raise ValueError("every k and v must be (P, n_kv_head, head_dim) with q's head_dim")
        if store and not (ks.flags.writeable and vs.flags.writeable):
            raise ValueError("the caches must be writeable to store new_k and new_v")
        kp[s] = <size_t>cnp.PyArray_DATA(ks)
        vp[s] = <size_t>cnp.PyArray_DATA(vs)
        lens[s] = ks.shape[0]
    rows.arrays = (kp, vp, lens, seq, positions)
    rows.k = <float *const *>cnp.PyArray_DATA(kp)
    rows.v = <float *const *>cnp.PyArray_DATA(vp)
    rows.lengths = <const int64_t *>cnp.PyArray_DATA(lens)
    rows.seq = <const int64_t *>cnp.PyArray_DATA(seq)
    rows.positions = <const int64_t *>cnp.PyArray_DATA(positions)
    rows.n_seq, rows.n_kv = n_seq, n_kv
    return rows


def attention(cnp.ndarray q not None, list k not None, list v not None, cnp.ndarray seq not None,
              cnp.ndarray positions not None, new_k, new_v, int threads):
    """q (t, n_head, hd); k[s], v[s] (P_s, n_kv, hd) caches; row r reads k[seq[r]], v[seq[r]].

    new_k, new_v (t, n_kv, hd) or None: stored at cache row positions[r] first (the caches are written).
    """
    cdef int rc
    cdef const float *nkp = NULL
    cdef const float *nvp = NULL
    _positive(threads)
    _array("q", q, np.float32, 3)
    cdef int64_t t = q.shape[0], nh = q.shape[1], hd = q.shape[2]
    if (new_k is None) != (new_v is None):
        raise ValueError("give both new_k and new_v, or neither")
    cdef _StepRows rows = _step_rows(k, v, seq, positions, t, hd, new_k is not None)
    cdef int64_t n_kv = rows.n_kv
    if n_kv < 1 or nh % n_kv:
        raise ValueError("the caches' n_kv_head must divide n_head")
    cdef cnp.ndarray nk, nv
    if new_k is not None:
        nk = new_k
        nv = new_v
        _array("new_k", nk, np.float32, 3)
        _array("new_v", nv, np.float32, 3)
        if np.shape(nk) != (t, n_kv, hd) or np.shape(nv) != (t, n_kv, hd):
            raise ValueError(f"new_k and new_v must have shape {(t, n_kv, hd)}")
        nkp = <const float *>cnp.PyArray_DATA(nk)
        nvp = <const float *>cnp.PyArray_DATA(nv)
    out = np.empty_like(q)
    cdef const float *qp = <const float *>cnp.PyArray_DATA(q)
    cdef float *op = <float *>cnp.PyArray_DATA(out)
    with nogil:
        rc = rs_attention(qp, t, nh, hd, rows.k, rows.v, rows.lengths, rows.n_seq, n_kv, rows.seq, rows.positions,
                          nkp, nvp, op, threads)
    _runtime_check(rc)
    return out


def softmax(cnp.ndarray x not None, cnp.ndarray lengths not None, int threads):
    """x (t, n) float32, lengths (t,) int64 in [1, n]."""
    cdef int rc
    _positive(threads)
    _array("x", x, np.float32, 2)
    _array("lengths", lengths, np.int64, 1)
    if lengths.shape[0] != x.shape[0]:
        raise ValueError("lengths must have one entry per row of x")
    y = np.empty_like(x)
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef const int64_t *lp = <const int64_t *>cnp.PyArray_DATA(lengths)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    cdef int64_t t = x.shape[0], n = x.shape[1]
    with nogil:
        rc = rs_softmax(xp, t, n, lp, yp, threads)
    _runtime_check(rc)
    return y


def argmax(cnp.ndarray x not None, int threads):
    """x (t, n) float32, n >= 1 -> (t,) int64."""
    cdef int rc
    _positive(threads)
    _array("x", x, np.float32, 2)
    if x.shape[1] < 1:
        raise ValueError("x must have at least one column")
    out = np.empty(x.shape[0], np.int64)
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef int64_t *op = <int64_t *>cnp.PyArray_DATA(out)
    cdef int64_t t = x.shape[0], n = x.shape[1]
    with nogil:
        rc = rs_argmax(xp, t, n, op, threads)
    _runtime_check(rc)
    return out


def add(cnp.ndarray a not None, cnp.ndarray b not None, int threads):
    """a + b, two C-contiguous float32 arrays of one shape."""
    cdef int rc
    _positive(threads)
    _array("a", a, np.float32, a.ndim)
    _array("b", b, np.float32, a.ndim)
    if np.shape(a) != np.shape(b):  # cnp.ndarray.shape is a C pointer here
        raise ValueError(f"b must have the shape of a {np.shape(a)}, got {np.shape(b)}")
    y = np.empty_like(a)
    cdef const float *ap = <const float *>cnp.PyArray_DATA(a)
    cdef const float *bp = <const float *>cnp.PyArray_DATA(b)
    cdef float *yp = <float *>cnp.PyArray_DATA(y)
    cdef int64_t n = a.size
    with nogil:
        rc = rs_add(ap, bp, n, yp, threads)
    _runtime_check(rc)
    return y


# ---- one decoder layer in one call (csrc/rs_layer.c) ----

cdef extern from "rs_layer.h" nogil:
    ctypedef struct rs_matrix:
        const void *p
        int wtype
        int64_t n
        int64_t d

    ctypedef struct rs_layer_args:
        const void *attn_norm
        const void *ffn_norm
        int attn_norm_f16
        int ffn_norm_f16
        rs_matrix wq, wk, wv, wo, gate, up, down_t, fc1, fc2
        int64_t n_head
        int64_t n_kv
        float eps
        float threshold
        double rope_base
        int sparse

    int rs_layer(int isa, const rs_layer_args *L, const float *x, int64_t t, float *const *k, float *const *v,
                 const int64_t *cache_len, int64_t n_seq, const int64_t *seq, const int64_t *positions,
                 float *x_out, float *h, uint8_t *mask, int fast, int threads)


cdef rs_matrix _matrix(_Weight w, str name, int64_t n, int64_t d) except *:
    if w.n != n or w.d != d:
        raise ValueError(f"{name} must be ({n}, {d}), got ({w.n}, {w.d})")
    cdef rs_matrix m
    m.p = cnp.PyArray_DATA(w.mem)
    m.wtype = w.wtype
    m.n = w.n
    m.d = w.d
    return m


cdef const void *_norm(str name, cnp.ndarray a, int64_t d, int *f16) except NULL:
    if a.dtype == np.float16:
        f16[0] = 1
    else:
        f16[0] = 0
        _array(name, a, np.float32, 1)
    if a.ndim != 1 or not a.flags.c_contiguous or a.shape[0] != d:
        raise ValueError(f"{name} must be a C-contiguous ({d},) array")
    return cnp.PyArray_DATA(a)


def decoder_layer(cnp.ndarray x not None, dict w not None, list k not None, list v not None,
                  cnp.ndarray seq not None, cnp.ndarray positions not None, int64_t n_head, int64_t n_kv,
                  float eps, double rope_base, threshold, bint fast, int threads, str isa):
    """One decoder layer: x (t, dim) -> (out, h, mask or None); w the layer's arrays by field name
    (fc1 and fc2 unread when threshold is None: a dense FFN); the caches are written."""
    cdef int code = _isa(isa), rc
    cdef rs_layer_args L
    memset(&L, 0, sizeof(L))
    _positive(threads)
    _array("x", x, np.float32, 2)
    cdef int64_t t = x.shape[0], dim = x.shape[1]
    if n_head < 1 or n_kv < 1 or dim % n_head or (dim // n_head) % 2 or n_head % n_kv:
        raise ValueError("n_head must split dim into heads of even width, and n_kv divide n_head")
    cdef int64_t hd = dim // n_head
    cdef _StepRows rows = _step_rows(k, v, seq, positions, t, hd, True)
    if rows.n_kv != n_kv:
        raise ValueError(f"the caches must have n_kv = {n_kv} heads, got {rows.n_kv}")
    L.attn_norm = _norm("attn_norm", w["attn_norm"], dim, &L.attn_norm_f16)
    L.ffn_norm = _norm("ffn_norm", w["ffn_norm"], dim, &L.ffn_norm_f16)
    # the _Weight objects hold the arrays for the call
    held = {f: _weight(f, w[f]) for f in ("wq", "wk", "wv", "wo", "gate", "up", "down_t")}
    L.wq = _matrix(held["wq"], "wq", dim, dim)
    L.wk = _matrix(held["wk"], "wk", n_kv * hd, dim)
    L.wv = _matrix(held["wv"], "wv", n_kv * hd, dim)
    L.wo = _matrix(held["wo"], "wo", dim, dim)
    cdef int64_t n_ff = (<_Weight>held["gate"]).n
    L.gate = _matrix(held["gate"], "gate", n_ff, dim)
    L.up = _matrix(held["up"], "up", n_ff, dim)
    L.down_t = _matrix(held["down_t"], "down_t", n_ff, dim)
    L.sparse = threshold is not None
    if L.sparse:
        held["fc1"] = _weight("fc1", w["fc1"])
        held["fc2"] = _weight("fc2", w["fc2"])
        L.fc1 = _matrix(held["fc1"], "fc1", (<_Weight>held["fc1"]).n, dim)
        L.fc2 = _matrix(held["fc2"], "fc2", n_ff, (<_Weight>held["fc1"]).n)
        L.threshold = threshold
    L.n_head, L.n_kv, L.eps, L.rope_base = n_head, n_kv, eps, rope_base
    out = np.empty((t, dim), np.float32)
    h = np.empty((t, dim), np.float32)
    mask = np.empty((t, n_ff), np.bool_) if L.sparse else None
    cdef uint8_t *mp = <uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>mask) if L.sparse else NULL
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef float *op = <float *>cnp.PyArray_DATA(out)
    cdef float *hp = <float *>cnp.PyArray_DATA(h)
    with nogil:
        rc = rs_layer(code, &L, xp, t, rows.k, rows.v, rows.lengths, rows.n_seq, rows.seq, rows.positions, op, hp,
                      mp, fast, threads)
    _runtime_check(rc)
    return out, h, mask
