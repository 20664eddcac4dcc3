/* Picks the ISA variant, checks rows, and splits the work over OpenMP threads.
 *
 * Every output element is computed by exactly one thread, start to finish, in
 * the spec's order: dot products are split by rows, sparse_axpy by columns.
 * So the bits depend neither on the thread count nor on which thread takes
 * which piece, and the pieces are handed out dynamically: a thread that the OS
 * preempts (another process on the core) does not hold the others up. */
#include <stdlib.h>
#include <string.h>

#include "rs_kernels.h"
#include "rs_omp.h"

#if defined(RS_HAVE_SSE2)
#include <immintrin.h>
#endif

static const rs_isa_table *compiled_table(int isa) {
    switch (isa) {
    case RS_ISA_SCALAR: return &rs_isa_scalar;
#if defined(RS_HAVE_SSE2)
    case RS_ISA_SSE2: return &rs_isa_sse2;
#endif
#if defined(RS_HAVE_AVX2)
    case RS_ISA_AVX2: return &rs_isa_avx2;
#endif
#if defined(RS_HAVE_AVX512)
    case RS_ISA_AVX512: return &rs_isa_avx512;
#endif
    default: return NULL;
    }
}

const char *rs_isa_name(int isa) {
    static const char *const names[RS_ISA_COUNT] = {"scalar", "sse2", "avx2", "avx512"};
    return isa >= 0 && isa < RS_ISA_COUNT ? names[isa] : "?";
}

int rs_isa_compiled(int isa) { return compiled_table(isa) != NULL; }

int rs_isa_supported(int isa) {
    if (!compiled_table(isa)) return 0;
#if defined(RS_HAVE_SSE2) /* x86 with GCC or clang: __builtin_cpu_supports also checks OS support (XCR0) */
    __builtin_cpu_init();
    switch (isa) {
    case RS_ISA_SSE2: return __builtin_cpu_supports("sse2") != 0;
    case RS_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case RS_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    default: return 1;
    }
#else
    return isa == RS_ISA_SCALAR;
#endif
}

int rs_best_isa(void) {
    for (int isa = RS_ISA_COUNT - 1; isa > RS_ISA_SCALAR; isa--)
        if (rs_isa_supported(isa)) return isa;
    return RS_ISA_SCALAR;
}

int rs_openmp_enabled(void) { return RS_OPENMP_ENABLED; }

int rs_max_threads(void) { return rs_omp_max_threads(); }

int rs_team_size(int threads) {
    int got = 1;
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
        got = rs_omp_num_threads();
    }
    return got;
}

static const rs_isa_table *usable(int isa) { return rs_isa_supported(isa) ? compiled_table(isa) : NULL; }

/* rows strictly increasing and inside [0, n): what _checks.rows guarantees,
 * checked again here because an out-of-range row would be an out-of-bounds read. */
static int rows_ok(const int32_t *rows, int64_t nrows, int64_t n) {
    for (int64_t a = 0; a < nrows; a++) {
        if (rows[a] < 0 || rows[a] >= n) return 0;
        if (a > 0 && rows[a] <= rows[a - 1]) return 0;
    }
    return 1;
}

/* A known weight type, and rows of whole blocks for the quantized ones: what
 * _checks.weights guarantees, checked again because the kernels step through
 * rows by the block size. */
static int wtype_ok(int wtype, int64_t d) {
    if (wtype == RS_W_F32 || wtype == RS_W_F16) return 1;
    return RS_IS_QUANT(wtype) && d % RS_QK(wtype) == 0;
}

/* Rows per piece of dot-product work: 1 MiB of float32 weights at d = 4096. */
#define RS_ROW_PIECE 64

static int64_t pieces(int64_t n, int64_t per) { return (n + per - 1) / per; }

typedef void (*rs_piece_fn)(const void *work, int64_t c);

/* piece(work, c) for every c in [0, np), handed out to `threads` threads.  One
 * thread runs them in order without entering an OpenMP region at all: GNU
 * OpenMP's worker threads do not survive fork(), so a forked child (which the
 * cython backend keeps to one thread) must not touch the pool its parent made. */
static void run_pieces(int64_t np, int threads, rs_piece_fn piece, const void *work) {
    if (threads <= 1) {
        for (int64_t c = 0; c < np; c++) piece(work, c);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t c = 0; c < np; c++) piece(work, c);
}

/* Dot products of up to RS_DOT_JOBS jobs in one parallel loop: one thread start and one tail for all
 * of them (gate and up; a layer's Q, K and V, 1-2% faster cold than three calls in a C driver).
 * Piece c covers rows [(c - first[j]) * RS_ROW_PIECE, ...) of job j, first[j] <= c < first[j + 1]. */
typedef struct {
    const rs_isa_table *K;
    const rs_dot_args *jobs[RS_DOT_JOBS];
    int64_t nrows[RS_DOT_JOBS], first[RS_DOT_JOBS + 1];
} rs_dot_work;

static void dot_piece(const void *work, int64_t c) {
    const rs_dot_work *W = work;
    int j = 0;
    while (c >= W->first[j + 1]) j++;
    const int64_t p = c - W->first[j], end = (p + 1) * RS_ROW_PIECE;
    W->K->dot_rows(W->jobs[j], p * RS_ROW_PIECE, end < W->nrows[j] ? end : W->nrows[j]);
}

static void dot_parallel(const rs_isa_table *K, const rs_dot_args *const *jobs, const int64_t *nrows, int njobs,
                         int threads) {
    rs_dot_work work = {K, {NULL}, {0}, {0}};
    for (int j = 0; j < njobs; j++) {
        work.jobs[j] = jobs[j];
        work.nrows[j] = jobs[j]->t ? nrows[j] : 0;
        work.first[j + 1] = work.first[j] + pieces(work.nrows[j], RS_ROW_PIECE);
    }
    if (work.first[njobs] > 0) run_pieces(work.first[njobs], threads, dot_piece, &work);
}

int rs_dot(int isa, const rs_dot_args *A, int64_t nrows, int64_t n, int threads) {
    const int64_t ns[1] = {n};
    return rs_dot_jobs(isa, &A, &nrows, ns, 1, threads);
}

int rs_dot_jobs(int isa, const rs_dot_args *const *jobs, const int64_t *nrows, const int64_t *n, int njobs,
                int threads) {
    const rs_isa_table *K = usable(isa);
    if (!K) return RS_EISA;
    for (int j = 0; j < njobs; j++) {
        if (!wtype_ok(jobs[j]->wtype, jobs[j]->d)) return RS_EWTYPE;
        if (jobs[j]->rows && !rows_ok(jobs[j]->rows, nrows[j], n[j])) return RS_EROWS;
    }
    dot_parallel(K, jobs, nrows, njobs, threads);
    return RS_OK;
}

/* Columns [c * RS_TILE_COLS, ...) of sparse_axpy's output. */
typedef struct {
    const rs_isa_table *K;
    rs_axpy_args A;
} rs_axpy_work;

static void axpy_piece(const void *work, int64_t c) {
    const rs_axpy_work *W = work;
    const int64_t end = (c + 1) * RS_TILE_COLS;
    W->K->axpy_cols(&W->A, c * RS_TILE_COLS, end < W->A.d ? end : W->A.d);
}

/* Per token group, the rows live for any of its tokens (h != 0; NaN counts
 * as live), grouped by block. */
static int axpy_parallel(const rs_isa_table *K, const void *W, int wtype, int64_t n, int64_t d,
                         const int32_t *rows, int64_t nrows, const float *h, int64_t t, float *y, int fast,
                         int threads) {
    if (t == 0 || d == 0) return RS_OK;
    const int64_t nb = (n + 255) >> 8, groups = (t + RS_AXPY_TOKENS - 1) / RS_AXPY_TOKENS;
    int32_t *live = malloc((size_t)(groups * nrows > 0 ? groups * nrows : 1) * sizeof *live);
    int64_t *block_at = malloc((size_t)(groups * (nb + 1)) * sizeof *block_at);
    if (!live || !block_at) {
        free(live);
        free(block_at);
        return RS_ENOMEM;
    }
    for (int64_t gi = 0; gi < groups; gi++) {
        const int64_t u0 = gi * RS_AXPY_TOKENS, u1 = u0 + RS_AXPY_TOKENS < t ? u0 + RS_AXPY_TOKENS : t;
        int64_t *at = block_at + gi * (nb + 1), pos = gi * nrows, b = 0;
        at[0] = pos;
        for (int64_t a = 0; a < nrows; a++) {
            int any = 0;
            for (int64_t u = u0; u < u1; u++) any |= h[u * nrows + a] != 0.0f;
            if (any) {
                const int64_t blk = rows[a] >> 8;
                while (b < blk) at[++b] = pos;
                live[pos++] = (int32_t)a;
            }
        }
        while (b < nb) at[++b] = pos;
    }
    const rs_axpy_work work = {K, {W, wtype, d, rows, nrows, h, t, live, nb, block_at, y, fast}};
    run_pieces(pieces(d, RS_TILE_COLS), threads, axpy_piece, &work);
    free(live);
    free(block_at);
    return RS_OK;
}

int rs_axpy(int isa, const void *W, int wtype, int64_t n, int64_t d, const int32_t *rows, int64_t nrows,
            const float *h, int64_t t, float *y, int fast, int threads) {
    const rs_isa_table *K = usable(isa);
    if (!K) return RS_EISA;
    if (!wtype_ok(wtype, d)) return RS_EWTYPE;
    if (!rows_ok(rows, nrows, n)) return RS_EROWS;
    return axpy_parallel(K, W, wtype, n, d, rows, nrows, h, t, y, fast, threads);
}

/* relu(v) = v if v > 0 or NaN, else +0.0 (spec) */
static inline float relu(float v) { return (v > 0.0f || v != v) ? v : 0.0f; }

int rs_ffn(int isa, const float *x, int64_t t, int64_t d, int64_t n, int64_t d_out,
           const void *gate, int gate_wtype, const void *up, int up_wtype, const void *down_t, int down_wtype,
           const uint8_t *mask, float *y, int fast, int threads) {
    const rs_isa_table *K = usable(isa);
    if (!K) return RS_EISA;
    if (!wtype_ok(gate_wtype, d) || !wtype_ok(up_wtype, d) || !wtype_ok(down_wtype, d_out)) return RS_EWTYPE;
    if (t == 0) return RS_OK;
    uint8_t *any = calloc((size_t)(n > 0 ? n : 1), 1);
    int32_t *rows = malloc((size_t)(n > 0 ? n : 1) * sizeof *rows);
    if (!any || !rows) {
        free(any);
        free(rows);
        return RS_ENOMEM;
    }
    for (int64_t ti = 0; ti < t; ti++)
        for (int64_t i = 0; i < n; i++) any[i] |= mask[ti * n + i];
    int64_t nrows = 0;
    for (int64_t i = 0; i < n; i++)
        if (any[i]) rows[nrows++] = (int32_t)i;
    free(any);

    float *gu = malloc((size_t)(2 * t * nrows > 0 ? 2 * t * nrows : 1) * sizeof *gu);
    if (!gu) {
        free(rows);
        return RS_ENOMEM;
    }
    float *g = gu, *u = gu + t * nrows;
    const rs_dot_args G = {gate, gate_wtype, d, rows, x, t, g, nrows, fast};
    const rs_dot_args U = {up, up_wtype, d, rows, x, t, u, nrows, fast};
    /* gate and up in one parallel loop: the pieces of gate, then those of up */
    const rs_dot_args *const gu_jobs[2] = {&G, &U};
    const int64_t gu_rows[2] = {nrows, nrows};
    dot_parallel(K, gu_jobs, gu_rows, 2, threads);
    /* h = relu(g) * u, +0.0 where the token's own mask is False; written over g */
    for (int64_t ti = 0; ti < t; ti++)
        for (int64_t a = 0; a < nrows; a++) {
            const int64_t k = ti * nrows + a;
            g[k] = mask[ti * n + rows[a]] ? relu(g[k]) * u[k] : 0.0f;
        }
    const int rc = axpy_parallel(K, down_t, down_wtype, n, d_out, rows, nrows, g, t, y, fast, threads);
    free(gu);
    free(rows);
    return rc;
}

int rs_predict(int isa, const float *x, int64_t t, int64_t d, int64_t r, int64_t n,
               const void *fc1, int fc1_wtype, const void *fc2, int fc2_wtype, float thr,
               uint8_t *mask, int fast, int threads) {
    const rs_isa_table *K = usable(isa);
    if (!K) return RS_EISA;
    if (!wtype_ok(fc1_wtype, d) || !wtype_ok(fc2_wtype, r)) return RS_EWTYPE;
    if (t == 0 || n == 0) return RS_OK;
    float *hz = malloc((size_t)(t * r + t * n) * sizeof *hz);
    if (!hz) return RS_ENOMEM;
    float *hidden = hz, *z = hz + t * r;
    const rs_dot_args F1 = {fc1, fc1_wtype, d, NULL, x, t, hidden, r, fast}, *const f1 = &F1;
    dot_parallel(K, &f1, &r, 1, threads);
    for (int64_t k = 0; k < t * r; k++) hidden[k] = relu(hidden[k]);
    const rs_dot_args F2 = {fc2, fc2_wtype, r, NULL, hidden, t, z, n, fast}, *const f2 = &F2;
    dot_parallel(K, &f2, &n, 1, threads);
    for (int64_t k = 0; k < t * n; k++) mask[k] = z[k] >= thr || z[k] != z[k];
    free(hz);
    return RS_OK;
}

int rs_read_sum(int isa, const float *p, int64_t n, int threads, float *sum) {
    const rs_isa_table *K = usable(isa);
    if (!K) return RS_EISA;
    if (threads <= 1) { /* no OpenMP region: see run_pieces */
        *sum = 0.0f + K->read_sum(p, n); /* the same sum as one part added to 0 below */
        return RS_OK;
    }
    float *parts = calloc((size_t)threads, sizeof *parts);
    if (!parts) return RS_ENOMEM;
#pragma omp parallel num_threads(threads)
    {
        const int64_t nt = rs_omp_num_threads(), th = rs_omp_thread_num();
        const int64_t s = n * th / nt / 16 * 16, e = th + 1 == nt ? n : n * (th + 1) / nt / 16 * 16;
        parts[th] = K->read_sum(p + s, e - s);
    }
    float total = 0.0f;
    for (int i = 0; i < threads; i++) total = total + parts[i];
    free(parts);
    *sum = total;
    return RS_OK;
}

/* ---- a read of listed rows: the benchmark's gathered-read reference ------- */

/* Every byte of each listed row read once, RS_READ_ROWS rows at a time with the next
 * RS_READ_ROWS prefetched, as the kernels keep rows in flight; threads take pieces of
 * rows.  No arithmetic on the values: what reading those rows costs on this machine,
 * the ceiling of any kernel that reads them.  The sum wraps (uint64), so it is the
 * same for any split of the work: the call is deterministic. */
#define RS_READ_ROWS 8
#if defined(__GNUC__)
#define RS_PREFETCH_LINE(p) __builtin_prefetch(p)
#else
#define RS_PREFETCH_LINE(p) ((void)(p))
#endif

typedef struct {
    const unsigned char *W;
    int64_t row_bytes, nrows;
    const int32_t *rows;
    uint64_t *sums; /* one per piece */
} rs_rows_work;

static uint64_t read_bytes(const unsigned char *p, int64_t n) {
    uint64_t s = 0, v;
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        memcpy(&v, p + k, 8);
        s += v;
    }
    for (; k < n; k++) s += p[k];
    return s;
}

static void read_rows_piece(const void *work, int64_t c) {
    const rs_rows_work *R = (const rs_rows_work *)work;
    const int64_t a1 = (c + 1) * RS_ROW_PIECE < R->nrows ? (c + 1) * RS_ROW_PIECE : R->nrows;
    uint64_t s = 0;
    for (int64_t a = c * RS_ROW_PIECE; a < a1; a += RS_READ_ROWS) {
        const int G = a1 - a < RS_READ_ROWS ? (int)(a1 - a) : RS_READ_ROWS;
        const unsigned char *p[RS_READ_ROWS], *next[RS_READ_ROWS];
        for (int g = 0; g < RS_READ_ROWS; g++) {
            p[g] = g < G ? R->W + (size_t)R->rows[a + g] * (size_t)R->row_bytes : NULL;
            next[g] = a + G + g < R->nrows ? R->W + (size_t)R->rows[a + G + g] * (size_t)R->row_bytes : NULL;
        }
        for (int64_t off = 0; off < R->row_bytes; off += 64) {
            const int64_t len = R->row_bytes - off < 64 ? R->row_bytes - off : 64;
            for (int g = 0; g < RS_READ_ROWS; g++)
                if (next[g]) RS_PREFETCH_LINE(next[g] + off);
            for (int g = 0; g < G; g++) s += read_bytes(p[g] + off, len);
        }
    }
    R->sums[c] = s;
}

int rs_read_rows(const void *W, int64_t n, int64_t row_bytes, const int32_t *rows, int64_t nrows, int threads,
                 uint64_t *sum) {
    if (!rows_ok(rows, nrows, n)) return RS_EROWS;
    const int64_t np = pieces(nrows, RS_ROW_PIECE);
    uint64_t *sums = calloc((size_t)(np > 0 ? np : 1), sizeof *sums);
    if (!sums) return RS_ENOMEM;
    const rs_rows_work work = {(const unsigned char *)W, row_bytes, nrows, rows, sums};
    run_pieces(np, threads, read_rows_piece, &work);
    uint64_t total = 0;
    for (int64_t c = 0; c < np; c++) total += sums[c];
    free(sums);
    *sum = total;
    return RS_OK;
}

int rs_evict(const void *p, int64_t bytes) {
#if defined(RS_HAVE_SSE2)
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63), *end = (const char *)p + bytes;
    for (; c < end; c += 64) _mm_clflush(c);
    _mm_mfence();
    return 1;
#else
    (void)p;
    (void)bytes;
    return 0;
#endif
}
