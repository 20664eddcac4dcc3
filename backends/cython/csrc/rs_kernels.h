/* Kernels of the cython backend: the spec's lane_dot and sparse_axpy, one
 * implementation per instruction set (isa_*.c), chosen at run time.
 *
 * Everything here takes validated, C-contiguous arrays; the dispatch layer
 * (dispatch.c) still rechecks rows so that a direct call cannot read out of
 * bounds. Functions return 0 or a negative RS_E* code. */
#ifndef RS_KERNELS_H
#define RS_KERNELS_H

#include <stdint.h>

enum { RS_ISA_SCALAR = 0, RS_ISA_SSE2 = 1, RS_ISA_AVX2 = 2, RS_ISA_AVX512 = 3, RS_ISA_COUNT = 4 };

/* sparse_axpy works on tiles of this many columns: 8 KiB of each float32 row,
 * 4 KiB of a float16 one (the fastest of 1024/2048/4096 measured at d = 4096);
 * the tile's partials (8 KiB) stay in L1 */
#define RS_TILE_COLS 2048

enum { RS_OK = 0, RS_ENOMEM = -1, RS_EROWS = -2, RS_EISA = -3, RS_EWTYPE = -4 };

/* Weight types: float32, float16 (as uint16), GGML Q8_0 and Q4_0 blocks (d a multiple of 32) and
 * Q6_K blocks (d a multiple of 256). */
enum { RS_W_F32 = 0, RS_W_F16 = 1, RS_W_Q8_0 = 2, RS_W_Q4_0 = 3, RS_W_Q6_K = 4 };
#define RS_IS_QUANT(WT) ((WT) >= RS_W_Q8_0 && (WT) <= RS_W_Q6_K)
/* weights per block of a quantized type: every row and column tile starts on one */
#define RS_QK(WT) ((WT) == RS_W_Q6_K ? 256 : 32)
#if RS_TILE_COLS % 256
#error "sparse_axpy's column tiles must start on whole Q6_K blocks"
#endif

/* out[ti * out_stride + a] = lane_dot(W[rows[a]], x[ti]) for a in [a0, a1). */
typedef struct {
    const void *W;          /* (n, d) rows of weight type wtype */
    int wtype;              /* RS_W_* */
    int64_t d;
    const int32_t *rows;    /* NULL: row a is W[a] */
    const float *x;         /* (t, d) */
    int64_t t;
    float *out;
    int64_t out_stride;
    int fast;               /* 0: the spec's exact order, 1: FMA, any order */
} rs_dot_args;

/* y[ti] = sum over live a of h[ti, a] * W[rows[a]], the spec's block order.
 * Tokens go in groups of RS_AXPY_TOKENS that read each weight slice once. */
#define RS_AXPY_TOKENS 4
typedef struct {
    const void *W;
    int wtype;
    int64_t d;
    const int32_t *rows;
    int64_t nrows;
    const float *h;          /* (t, nrows) */
    int64_t t;
    const int32_t *live;     /* per token group, the a with h[ti, a] != 0 (NaN included) for some
                                token ti of the group, ascending */
    int64_t nblocks;         /* blocks of 256 neurons in W */
    const int64_t *block_at; /* (groups, nblocks + 1): group gi's live rows of block b are
                                live[block_at[gi, b] .. block_at[gi, b + 1]) */
    float *y;                /* (t, d) */
    int fast;
} rs_axpy_args;

typedef struct {
    const char *name;
    void (*dot_rows)(const rs_dot_args *A, int64_t a0, int64_t a1);
    /* columns [c0, c1) of every y[ti]; c0 is a multiple of 16 */
    void (*axpy_cols)(const rs_axpy_args *A, int64_t c0, int64_t c1);
    float (*read_sum)(const float *p, int64_t n);
} rs_isa_table;

/* Tables of the variants this build compiled (NULL where not compiled). */
extern const rs_isa_table rs_isa_scalar;
#if defined(RS_HAVE_SSE2)
extern const rs_isa_table rs_isa_sse2;
#endif
#if defined(RS_HAVE_AVX2)
extern const rs_isa_table rs_isa_avx2;
#endif
#if defined(RS_HAVE_AVX512)
extern const rs_isa_table rs_isa_avx512;
#endif

/* dispatch.c */
const char *rs_isa_name(int isa);
int rs_isa_compiled(int isa);
int rs_isa_supported(int isa);   /* compiled and the CPU (and OS) can run it */
int rs_best_isa(void);
int rs_openmp_enabled(void);
int rs_max_threads(void);
int rs_team_size(int threads);   /* threads a parallel region really got */

int rs_dot(int isa, const rs_dot_args *A, int64_t nrows, int64_t n, int threads);
/* rs_dot of 1 to RS_DOT_JOBS jobs (job j: nrows[j] rows of a matrix of n[j]) in one parallel loop */
#define RS_DOT_JOBS 3
int rs_dot_jobs(int isa, const rs_dot_args *const *jobs, const int64_t *nrows, const int64_t *n, int njobs,
                int threads);
int rs_axpy(int isa, const void *W, int wtype, int64_t n, int64_t d, const int32_t *rows, int64_t nrows,
            const float *h, int64_t t, float *y, int fast, int threads);
/* x (t, d), gate and up (n, d), down_t (n, d_out), mask (t, n) -> y (t, d_out) */
int rs_ffn(int isa, const float *x, int64_t t, int64_t d, int64_t n, int64_t d_out,
           const void *gate, int gate_wtype, const void *up, int up_wtype, const void *down_t, int down_wtype,
           const uint8_t *mask, float *y, int fast, int threads);
/* x (t, d), fc1 (r, d), fc2 (n, r) -> mask (t, n): z = lane_dot(fc2, relu(lane_dot(fc1, x))),
 * mask = z >= thr or z is NaN (spec §8) */
int rs_predict(int isa, const float *x, int64_t t, int64_t d, int64_t r, int64_t n,
               const void *fc1, int fc1_wtype, const void *fc2, int fc2_wtype, float thr,
               uint8_t *mask, int fast, int threads);
/* Writes the cache lines of [p, p + bytes) back to memory and drops them from
 * every cache level (benchmarks' cold cache); 0 where this ISA cannot. */
int rs_evict(const void *p, int64_t bytes);
int rs_read_sum(int isa, const float *p, int64_t n, int threads, float *sum);
/* Every byte of rows[0 .. nrows) of an (n, row_bytes) matrix read once (strictly increasing rows,
 * as the kernels take them), several rows in flight: the benchmark's gathered-read reference.
 * sum: the bytes' 8-byte words (and tail bytes) added with wrap-around, the same for any split. */
int rs_read_rows(const void *W, int64_t n, int64_t row_bytes, const int32_t *rows, int64_t nrows, int threads,
                 uint64_t *sum);

#endif
