/* The kernels, written once over "v16": the sixteen lanes of the spec's
 * lane_dot (one AVX-512 register, two AVX2 or four SSE2 registers, or plain
 * floats).  isa_<name>.c defines RS_V16_<NAME>, RS_ISA_TABLE and RS_ISA_NAME
 * and includes this file; each is compiled with its own -m flags, so no
 * instruction of a wider ISA leaks into the baseline code.
 *
 * Deterministic code uses separate multiply and add intrinsics, and the build
 * passes -ffp-contract=off so the compiler cannot fuse the scalar tails
 * either.  Fast code may use FMA. */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "rs_half.h"
#include "rs_kernels.h"

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "each float operation must round to float32 (needs FLT_EVAL_METHOD == 0, e.g. SSE math)"
#endif

#if defined(_MSC_VER)
#define RS_INLINE static __forceinline
#define RS_ALIGN64 __declspec(align(64))
#else
#define RS_INLINE static inline __attribute__((always_inline))
#define RS_ALIGN64 __attribute__((aligned(64)))
#endif

#define RS_BLOCK_SHIFT 8 /* sparse_axpy blocks of 256 neurons */

/* ---- v16 per instruction set ------------------------------------------ */

#if defined(RS_V16_AVX512) || defined(RS_V16_AVX2) || defined(RS_V16_SSE2)
#include <immintrin.h>

/* The spec's last folds: s = 2, then 1, on lanes 0..3. */
RS_INLINE float fold4(__m128 s4) {
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}
#define RS_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define RS_PREFETCH(p) ((void)(p))
#endif

#if defined(RS_V16_AVX512)
#define RS_TOKENS 4 /* tokens per dot tile: 4 rows x 4 tokens = 16 of 32 zmm registers */
typedef __m512 v16;
RS_INLINE v16 v_zero(void) { return _mm512_setzero_ps(); }
RS_INLINE v16 v_set1(float a) { return _mm512_set1_ps(a); }
RS_INLINE v16 v_ld(const float *p) { return _mm512_loadu_ps(p); }
RS_INLINE v16 v_ldh(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
RS_INLINE void v_st(float *p, v16 a) { _mm512_storeu_ps(p, a); }
RS_INLINE v16 v_add(v16 a, v16 b) { return _mm512_add_ps(a, b); }
RS_INLINE v16 v_mul(v16 a, v16 b) { return _mm512_mul_ps(a, b); }
RS_INLINE v16 v_fma(v16 a, v16 b, v16 c) { return _mm512_fmadd_ps(a, b, c); }
RS_INLINE float v_fold(v16 a) {
    __m256 lo = _mm512_castps512_ps256(a);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    return fold4(_mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)));
}

#elif defined(RS_V16_AVX2)
#define RS_TOKENS 1 /* 16 ymm registers: 4 rows x 2 halves of accumulators */
typedef struct { __m256 lo, hi; } v16; /* lanes 0-7, 8-15 */
RS_INLINE v16 v_zero(void) { v16 r = {_mm256_setzero_ps(), _mm256_setzero_ps()}; return r; }
RS_INLINE v16 v_set1(float a) { v16 r = {_mm256_set1_ps(a), _mm256_set1_ps(a)}; return r; }
RS_INLINE v16 v_ld(const float *p) { v16 r = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; return r; }
RS_INLINE v16 v_ldh(const uint16_t *p) {
    v16 r = {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)))};
    return r;
}
RS_INLINE void v_st(float *p, v16 a) { _mm256_storeu_ps(p, a.lo); _mm256_storeu_ps(p + 8, a.hi); }
RS_INLINE v16 v_add(v16 a, v16 b) { v16 r = {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; return r; }
RS_INLINE v16 v_mul(v16 a, v16 b) { v16 r = {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; return r; }
RS_INLINE v16 v_fma(v16 a, v16 b, v16 c) {
    v16 r = {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
    return r;
}
RS_INLINE float v_fold(v16 a) {
    __m256 s8 = _mm256_add_ps(a.lo, a.hi);
    return fold4(_mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)));
}

#elif defined(RS_V16_SSE2)
#define RS_TOKENS 1
typedef struct { __m128 q0, q1, q2, q3; } v16; /* lanes 0-3, 4-7, 8-11, 12-15 */
RS_INLINE v16 v_zero(void) { __m128 z = _mm_setzero_ps(); v16 r = {z, z, z, z}; return r; }
RS_INLINE v16 v_set1(float a) { __m128 s = _mm_set1_ps(a); v16 r = {s, s, s, s}; return r; }
RS_INLINE v16 v_ld(const float *p) {
    v16 r = {_mm_loadu_ps(p), _mm_loadu_ps(p + 4), _mm_loadu_ps(p + 8), _mm_loadu_ps(p + 12)};
    return r;
}
/* Four halves widened to 32 bits -> floats; no F16C in SSE2.  The multiply by
 * 2^112 rebiases normal and subnormal halves exactly; exponent 31 is Inf/NaN. */
RS_INLINE __m128 h4_to_f(__m128i h) {
    __m128i sign = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x8000)), 16);
    __m128i em = _mm_and_si128(h, _mm_set1_epi32(0x7fff));
    __m128i shifted = _mm_slli_epi32(em, 13);
    __m128 mag = _mm_mul_ps(_mm_castsi128_ps(shifted), _mm_castsi128_ps(_mm_set1_epi32(0x77800000)));
    __m128i special = _mm_cmpgt_epi32(em, _mm_set1_epi32(0x7bff));
    __m128i infnan = _mm_or_si128(shifted, _mm_set1_epi32(0x7f800000));
    __m128i bits = _mm_or_si128(_mm_and_si128(special, infnan), _mm_andnot_si128(special, _mm_castps_si128(mag)));
    return _mm_castsi128_ps(_mm_or_si128(bits, sign));
}
RS_INLINE v16 v_ldh(const uint16_t *p) {
    __m128i a = _mm_loadu_si128((const __m128i *)p), b = _mm_loadu_si128((const __m128i *)(p + 8));
    __m128i z = _mm_setzero_si128();
    v16 r = {h4_to_f(_mm_unpacklo_epi16(a, z)), h4_to_f(_mm_unpackhi_epi16(a, z)),
             h4_to_f(_mm_unpacklo_epi16(b, z)), h4_to_f(_mm_unpackhi_epi16(b, z))};
    return r;
}
RS_INLINE void v_st(float *p, v16 a) {
    _mm_storeu_ps(p, a.q0); _mm_storeu_ps(p + 4, a.q1); _mm_storeu_ps(p + 8, a.q2); _mm_storeu_ps(p + 12, a.q3);
}
RS_INLINE v16 v_add(v16 a, v16 b) {
    v16 r = {_mm_add_ps(a.q0, b.q0), _mm_add_ps(a.q1, b.q1), _mm_add_ps(a.q2, b.q2), _mm_add_ps(a.q3, b.q3)};
    return r;
}
RS_INLINE v16 v_mul(v16 a, v16 b) {
    v16 r = {_mm_mul_ps(a.q0, b.q0), _mm_mul_ps(a.q1, b.q1), _mm_mul_ps(a.q2, b.q2), _mm_mul_ps(a.q3, b.q3)};
    return r;
}
RS_INLINE v16 v_fma(v16 a, v16 b, v16 c) { return v_add(v_mul(a, b), c); }
RS_INLINE float v_fold(v16 a) {
    __m128 lo = _mm_add_ps(a.q0, a.q2), hi = _mm_add_ps(a.q1, a.q3); /* s = 8 */
    return fold4(_mm_add_ps(lo, hi));                              /* s = 4, 2, 1 */
}

#elif defined(RS_V16_SCALAR)
#define RS_TOKENS 1
typedef struct { float f[16]; } v16;
RS_INLINE v16 v_zero(void) { v16 r; for (int i = 0; i < 16; i++) r.f[i] = 0.0f; return r; }
RS_INLINE v16 v_set1(float a) { v16 r; for (int i = 0; i < 16; i++) r.f[i] = a; return r; }
RS_INLINE v16 v_ld(const float *p) { v16 r; memcpy(r.f, p, sizeof r.f); return r; }
RS_INLINE v16 v_ldh(const uint16_t *p) { v16 r; for (int i = 0; i < 16; i++) r.f[i] = rs_half_to_float(p[i]); return r; }
RS_INLINE void v_st(float *p, v16 a) { memcpy(p, a.f, sizeof a.f); }
RS_INLINE v16 v_add(v16 a, v16 b) { for (int i = 0; i < 16; i++) a.f[i] = a.f[i] + b.f[i]; return a; }
RS_INLINE v16 v_mul(v16 a, v16 b) { for (int i = 0; i < 16; i++) a.f[i] = a.f[i] * b.f[i]; return a; }
RS_INLINE v16 v_fma(v16 a, v16 b, v16 c) { return v_add(v_mul(a, b), c); }
RS_INLINE float v_fold(v16 a) {
    for (int s = 8; s >= 1; s >>= 1)
        for (int q = 0; q < s; q++) a.f[q] = a.f[q] + a.f[q + s];
    return a.f[0];
}
#else
#error "define one RS_V16_* before including rs_isa_impl.h"
#endif

#define RS_ROWS 4 /* rows per dot tile: independent add chains, several loads in flight */
#if defined(RS_V16_AVX512)
/* One token (a decode step): 8 rows x 1 token = 8 of 32 zmm accumulators, twice
 * the weight streams in flight (docs/performance.md: 13-18% more bandwidth for
 * contiguous and for gathered float16 rows on Zen 4; Q4_0, compute-bound, unchanged). */
#define RS_ROWS_1 8
#else
#define RS_ROWS_1 RS_ROWS /* AVX2 already uses 8 of 16 ymm registers for 4 rows */
#endif
#define RS_MAX_ROWS (RS_ROWS_1 > RS_ROWS ? RS_ROWS_1 : RS_ROWS)
#if defined(RS_V16_AVX512)
/* sparse_axpy adds up to 8 rows of a block per pass over a tile: twice the row slices in flight of 4.
 * float16 at 10% active, cold, Zen 4: 3-6% faster at 2 threads, 10-12% at 1 (docs/performance.md);
 * 16 rows gained nothing more. */
#define RS_AXPY_ROWS 8
#else
#define RS_AXPY_ROWS 4 /* 8 rows' weights would not fit AVX2's 16 ymm registers beside the partial */
#endif

#include "rs_quant_impl.h"

/* ---- shared helpers ---------------------------------------------------- */

/* Weights k .. k+15 of a row of type WT (an RS_W_* constant, so each kernel
 * instance keeps one branch). */
RS_INLINE v16 ld_w(const void *row, int64_t k, const int WT) {
    if (WT == RS_W_F16) return v_ldh((const uint16_t *)row + k);
    if (WT == RS_W_F32) return v_ld((const float *)row + k);
    return ld_q(row, k, WT);
}

RS_INLINE float w_at(const void *row, int64_t k, const int WT) {
    if (WT == RS_W_F16) return rs_half_to_float(((const uint16_t *)row)[k]);
    if (WT == RS_W_F32) return ((const float *)row)[k];
    return q_w_at(row, k, WT);
}

/* The last d % 16 terms, zero-padded in both operands: 0*0 = +0 leaves every
 * lane as it was, since a lane that starts at +0.0 never holds -0.0. */
RS_INLINE v16 ld_w_tail(const void *row, int64_t k, int64_t rem, const int WT) {
    RS_ALIGN64 float buf[16] = {0};
    for (int64_t i = 0; i < rem; i++) buf[i] = w_at(row, k + i, WT);
    return v_ld(buf);
}

RS_INLINE v16 ld_x_tail(const float *x, int64_t rem) {
    RS_ALIGN64 float buf[16] = {0};
    for (int64_t i = 0; i < rem; i++) buf[i] = x[i];
    return v_ld(buf);
}

/* acc + w*x: two roundings in deterministic mode, one (FMA) in fast mode. */
RS_INLINE v16 madd(v16 acc, v16 w, v16 x, const int FAST) {
    return FAST ? v_fma(w, x, acc) : v_add(acc, v_mul(w, x));
}

/* ---- lane_dot over a tile of R rows x T tokens ------------------------- */

/* A tile's rows sit at positions a, a + stride, ... of the row list (a + r * stride for r < R); the
 * next tile's, those of its positions next + r * stride below next_end, are the ones prefetched. */
RS_INLINE void dot_tile(const rs_dot_args *A, int64_t a, int64_t stride, int64_t next, int64_t next_end,
                        const int R, int64_t t0, const int T, const int WT, const int FAST) {
    const int64_t d = A->d, full = d - d % 16;
    const size_t row_bytes = w_offset(d, WT);
    const char *w[RS_MAX_ROWS], *pf[RS_MAX_ROWS];
    const float *x[RS_TOKENS];
    v16 acc[RS_MAX_ROWS][RS_TOKENS];
    for (int r = 0; r < R; r++) {
        const int64_t at = a + r * stride, next_at = next + r * stride;
        int64_t row = A->rows ? A->rows[at] : at;
        w[r] = (const char *)A->W + (size_t)row * row_bytes;
        pf[r] = NULL;
        /* The next tile's rows: gathered rows no hardware prefetcher can guess, and quantized rows,
         * whose blocks it follows badly (a cold Q6_K matvec ran twice as fast with it).  Contiguous
         * float rows of one token are the hardware prefetcher's: a software prefetch measured 10-25%
         * slower there (docs/performance.md). */
        if ((A->rows || A->t > 1 || RS_IS_QUANT(WT)) && t0 + T >= A->t && next_at < next_end) {
            const int64_t next_row = A->rows ? A->rows[next_at] : next_at;
            pf[r] = (const char *)A->W + (size_t)next_row * row_bytes;
        }
        for (int u = 0; u < T; u++) acc[r][u] = v_zero();
    }
    for (int u = 0; u < T; u++) x[u] = A->x + (t0 + u) * d;
    if (RS_IS_QUANT(WT)) { /* pairs of 16 (d % 32 == 0): terms k.. then k+16.., as below */
        for (int64_t k = 0; k < d; k += 32) {
            v16 xlo[RS_TOKENS], xhi[RS_TOKENS];
            for (int u = 0; u < T; u++) {
                xlo[u] = v_ld(x[u] + k);
                xhi[u] = v_ld(x[u] + k + 16);
            }
            for (int r = 0; r < R; r++) {
                if (pf[r]) RS_PREFETCH(pf[r] + w_prefetch_offset(k, WT));
                v16 wlo, whi;
                ld_q_block(w[r], k, WT, &wlo, &whi);
                for (int u = 0; u < T; u++) acc[r][u] = madd(madd(acc[r][u], wlo, xlo[u], FAST), whi, xhi[u], FAST);
            }
        }
    }
    for (int64_t k = RS_IS_QUANT(WT) ? full : 0; k < full; k += 16) {
        v16 xv[RS_TOKENS];
        for (int u = 0; u < T; u++) xv[u] = v_ld(x[u] + k);
        for (int r = 0; r < R; r++) {
            /* the same place in the next tile's rows: twice the misses in flight */
            if (pf[r]) RS_PREFETCH(pf[r] + w_offset(k, WT));
            v16 wv = ld_w(w[r], k, WT);
            for (int u = 0; u < T; u++) acc[r][u] = madd(acc[r][u], wv, xv[u], FAST);
        }
    }
    if (full < d) {
        v16 xv[RS_TOKENS];
        for (int u = 0; u < T; u++) xv[u] = ld_x_tail(x[u] + full, d - full);
        for (int r = 0; r < R; r++) {
            v16 wv = ld_w_tail(w[r], full, d - full, WT);
            for (int u = 0; u < T; u++) acc[r][u] = madd(acc[r][u], wv, xv[u], FAST);
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < T; u++) A->out[(t0 + u) * A->out_stride + a + r * stride] = v_fold(acc[r][u]);
}

/* Tiles of this row group over the batch; the last one prefetches the next group. */
RS_INLINE void dot_tokens(const rs_dot_args *A, int64_t a, int64_t stride, int64_t next, int64_t next_end,
                          const int R, const int WT, const int FAST) {
    int64_t t0 = 0;
    for (; t0 + RS_TOKENS <= A->t; t0 += RS_TOKENS) dot_tile(A, a, stride, next, next_end, R, t0, RS_TOKENS, WT, FAST);
#if RS_TOKENS > 2
    for (; t0 + 2 <= A->t; t0 += 2) dot_tile(A, a, stride, next, next_end, R, t0, 2, WT, FAST);
#endif
    for (; t0 < A->t; t0++) dot_tile(A, a, stride, next, next_end, R, t0, 1, WT, FAST);
}

RS_INLINE void dot_rows_as(const rs_dot_args *A, int64_t a0, int64_t a1, const int WT, const int FAST) {
    int64_t a = a0;
    if (A->t == 1 && !A->rows) {
        /* One token over contiguous rows: the range as RS_ROWS_1 regions of L rows, a tile taking the
         * i-th row of each.  Every region is then read front to back, one sequential stream the
         * hardware prefetcher keeps up with; tiles of adjacent rows instead start RS_ROWS_1 short
         * streams per tile, and rows of 1 KB (a predictor's fc2) read at a third of the streaming
         * rate (docs/performance.md).  Each row's sums are the same either way. */
        const int64_t L = (a1 - a0) / RS_ROWS_1, end = a0 + L * RS_ROWS_1;
        for (int64_t i = 0; i < L; i++)
            dot_tokens(A, a0 + i, L, a0 + i + 1, i + 1 < L ? end : 0, RS_ROWS_1, WT, FAST);
        a = end;
    }
    if (A->t == 1)
        for (; a + RS_ROWS_1 <= a1; a += RS_ROWS_1) dot_tokens(A, a, 1, a + RS_ROWS_1, a1, RS_ROWS_1, WT, FAST);
    for (; a + RS_ROWS <= a1; a += RS_ROWS) dot_tokens(A, a, 1, a + RS_ROWS, a1, RS_ROWS, WT, FAST);
    for (; a < a1; a++) dot_tokens(A, a, 1, a + 1, a1, 1, WT, FAST);
}

/* One instance per weight type and mode. */
#define RS_BY_WTYPE(fn, A, ...)                                                 \
    switch ((A)->wtype * 2 + ((A)->fast != 0)) {                                \
    case RS_W_F16 * 2: fn(__VA_ARGS__, RS_W_F16, 0); break;                     \
    case RS_W_F16 * 2 + 1: fn(__VA_ARGS__, RS_W_F16, 1); break;                 \
    case RS_W_Q8_0 * 2: fn(__VA_ARGS__, RS_W_Q8_0, 0); break;                   \
    case RS_W_Q8_0 * 2 + 1: fn(__VA_ARGS__, RS_W_Q8_0, 1); break;               \
    case RS_W_Q4_0 * 2: fn(__VA_ARGS__, RS_W_Q4_0, 0); break;                   \
    case RS_W_Q4_0 * 2 + 1: fn(__VA_ARGS__, RS_W_Q4_0, 1); break;               \
    case RS_W_Q6_K * 2: fn(__VA_ARGS__, RS_W_Q6_K, 0); break;                   \
    case RS_W_Q6_K * 2 + 1: fn(__VA_ARGS__, RS_W_Q6_K, 1); break;               \
    case RS_W_F32 * 2 + 1: fn(__VA_ARGS__, RS_W_F32, 1); break;                 \
    default: fn(__VA_ARGS__, RS_W_F32, 0); break;                               \
    }

static void dot_rows(const rs_dot_args *A, int64_t a0, int64_t a1) { RS_BY_WTYPE(dot_rows_as, A, A, a0, a1) }

/* ---- sparse_axpy over a range of columns ------------------------------- */

/* Adds G rows (1 <= G <= RS_AXPY_ROWS, ascending, one block) to the partials p[u] of the
 * U tokens of a group, reading each weight slice once for all of them.  Token
 * u takes row g only if bit g of live[u] is set (its h is non-zero): the spec
 * skips the others, and a skipped 0*Inf must not turn into NaN.
 * FIRST: p starts at +0.0 (the spec's p = +0.0, then p + h*w, which keeps the
 * sign of zero right).  LAST: the finished partial is added into y instead of
 * being stored; for a token without live rows in the block that adds +0.0,
 * which changes no bit of a y that can never be -0.0. */
/* Columns j .. j+15 of axpy_group, with the G rows' weights there already in wv. */
RS_INLINE void axpy_slice(float *const *p, float *const *y, int U, const v16 *wv, const float (*h)[RS_AXPY_ROWS],
                          const unsigned *live, int64_t j, const int G, const int FIRST, const int LAST,
                          const int FAST) {
    const unsigned all = (1u << G) - 1;
    for (int u = 0; u < U; u++) {
        v16 acc = FIRST ? v_zero() : v_ld(p[u] + j);
        if (live[u] == all) {
            for (int g = 0; g < G; g++) acc = madd(acc, wv[g], v_set1(h[u][g]), FAST);
        } else {
            for (int g = 0; g < G; g++)
                if (live[u] >> g & 1u) acc = madd(acc, wv[g], v_set1(h[u][g]), FAST);
        }
        if (LAST) v_st(y[u] + j, v_add(v_ld(y[u] + j), acc));
        else v_st(p[u] + j, acc);
    }
}

RS_INLINE void axpy_group(float *const *p, float *const *y, int U, const char *const *w,
                          const char *const *pf, const float (*h)[RS_AXPY_ROWS], const unsigned *live, int64_t ncol,
                          const int G, const int FIRST, const int LAST, const int WT, const int FAST) {
    const int64_t full = ncol - ncol % 16;
    if (RS_IS_QUANT(WT)) { /* pairs of 16 columns (ncol % 32 == 0), each decoded once */
        for (int64_t j = 0; j < ncol; j += 32) {
            for (int g = 0; g < RS_AXPY_ROWS; g++)
                if (pf[g]) RS_PREFETCH(pf[g] + w_prefetch_offset(j, WT));
            v16 lo[RS_AXPY_ROWS], hi[RS_AXPY_ROWS];
            for (int g = 0; g < G; g++) ld_q_block(w[g], j, WT, &lo[g], &hi[g]);
            axpy_slice(p, y, U, lo, h, live, j, G, FIRST, LAST, FAST);
            axpy_slice(p, y, U, hi, h, live, j + 16, G, FIRST, LAST, FAST);
        }
        return;
    }
    for (int64_t j = 0; j < full; j += 16) {
        /* the next group's slices, at the same columns: more misses in flight */
        for (int g = 0; g < RS_AXPY_ROWS; g++)
            if (pf[g]) RS_PREFETCH(pf[g] + w_offset(j, WT));
        v16 wv[RS_AXPY_ROWS];
        for (int g = 0; g < G; g++) wv[g] = ld_w(w[g], j, WT);
        axpy_slice(p, y, U, wv, h, live, j, G, FIRST, LAST, FAST);
    }
    for (int64_t j = full; j < ncol; j++) {
        for (int u = 0; u < U; u++) {
            float acc = FIRST ? 0.0f : p[u][j];
            for (int g = 0; g < G; g++)
                if (live[u] >> g & 1u) acc = acc + h[u][g] * w_at(w[g], j, WT);
            if (LAST) y[u][j] = y[u][j] + acc;
            else p[u][j] = acc;
        }
    }
}

#define RS_GROUP_CASES(G)                                                                  \
    switch (first * 2 + last) {                                                            \
    case 0: axpy_group(p, y, U, w, pf, hg, live, ncol, G, 0, 0, WT, FAST); break;       \
    case 1: axpy_group(p, y, U, w, pf, hg, live, ncol, G, 0, 1, WT, FAST); break;       \
    case 2: axpy_group(p, y, U, w, pf, hg, live, ncol, G, 1, 0, WT, FAST); break;       \
    default: axpy_group(p, y, U, w, pf, hg, live, ncol, G, 1, 1, WT, FAST); break;      \
    }
/* A block's last G < RS_AXPY_ROWS rows: always its last group, so only FIRST varies. */
#define RS_TAIL_CASE(G)                                                                    \
    case G:                                                                                \
        if (first) axpy_group(p, y, U, w, pf, hg, live, ncol, G, 1, 1, WT, FAST);        \
        else axpy_group(p, y, U, w, pf, hg, live, ncol, G, 0, 1, WT, FAST);              \
        break;

/* One token group, one block: the rows live for any of its tokens, ascending,
 * in groups of RS_AXPY_ROWS, the rest in one last group (one pass over the tile
 * for them all, not one per row: a block has ~26 rows at 10% active, and the
 * passes of one or few rows kept few misses in flight: 5% of the axpy's time,
 * float16 at 10%, 2 threads, Zen 4); then y[u] += p[u].  The grouping changes no
 * bit: each partial still takes its rows one after another, in order. */
RS_INLINE void axpy_block(const rs_axpy_args *A, int64_t u0, int U, int64_t s, int64_t e, int64_t list_end,
                          int64_t c0, int64_t ncol, float *const *p, const int WT, const int FAST) {
    /* c0: a tile start, a multiple of RS_TILE_COLS, so a whole block of every type (rs_kernels.h) */
    const size_t row_bytes = w_offset(A->d, WT), col = w_offset(c0, WT);
    float *y[RS_AXPY_TOKENS];
    for (int u = 0; u < U; u++) y[u] = A->y + (u0 + u) * A->d + c0;
    for (int64_t i = s; i < e;) {
        const int G = e - i >= RS_AXPY_ROWS ? RS_AXPY_ROWS : (int)(e - i);
        const char *w[RS_AXPY_ROWS];
        float hg[RS_AXPY_TOKENS][RS_AXPY_ROWS];
        unsigned live[RS_AXPY_TOKENS] = {0};
        for (int g = 0; g < G; g++) {
            const int32_t a = A->live[i + g];
            w[g] = (const char *)A->W + (size_t)A->rows[a] * row_bytes + col;
            for (int u = 0; u < U; u++) {
                hg[u][g] = A->h[(u0 + u) * A->nrows + a];
                live[u] |= (unsigned)(hg[u][g] != 0.0f) << g; /* NaN != 0: NaN terms stay */
            }
        }
        const char *pf[RS_AXPY_ROWS] = {NULL};
        for (int g = 0; g < RS_AXPY_ROWS && i + G + g < list_end; g++)
            pf[g] = (const char *)A->W + (size_t)A->rows[A->live[i + G + g]] * row_bytes + col;
        const int first = i == s, last = i + G == e;
        if (G == RS_AXPY_ROWS) {
            RS_GROUP_CASES(RS_AXPY_ROWS)
        } else {
            switch (G) {
#if RS_AXPY_ROWS > 4
                RS_TAIL_CASE(7)
                RS_TAIL_CASE(6)
                RS_TAIL_CASE(5)
                RS_TAIL_CASE(4)
#endif
                RS_TAIL_CASE(3)
                RS_TAIL_CASE(2)
                RS_TAIL_CASE(1)
            }
        }
        i += G;
    }
}

RS_INLINE void axpy_cols_as(const rs_axpy_args *A, int64_t c0, int64_t c1, const int WT, const int FAST) {
    RS_ALIGN64 float pbuf[RS_AXPY_TOKENS][RS_TILE_COLS];
    float *p[RS_AXPY_TOKENS];
    for (int u = 0; u < RS_AXPY_TOKENS; u++) p[u] = pbuf[u];
    const int64_t nb = A->nblocks, tile = RS_TILE_COLS, groups = (A->t + RS_AXPY_TOKENS - 1) / RS_AXPY_TOKENS;
    for (int64_t c = c0; c < c1; c += tile) {
        const int64_t ncol = c1 - c < tile ? c1 - c : tile;
        for (int64_t ti = 0; ti < A->t; ti++) memset(A->y + ti * A->d + c, 0, (size_t)ncol * sizeof(float));
        /* blocks outer, token groups inner: a block's row slices stay in cache for the whole batch */
        for (int64_t b = 0; b < nb; b++) {
            for (int64_t gi = 0; gi < groups; gi++) {
                const int64_t *at = A->block_at + gi * (nb + 1), u0 = gi * RS_AXPY_TOKENS;
                const int U = (int)(A->t - u0 < RS_AXPY_TOKENS ? A->t - u0 : RS_AXPY_TOKENS);
                if (at[b] < at[b + 1]) axpy_block(A, u0, U, at[b], at[b + 1], at[nb], c, ncol, p, WT, FAST);
            }
        }
    }
}

static void axpy_cols(const rs_axpy_args *A, int64_t c0, int64_t c1) { RS_BY_WTYPE(axpy_cols_as, A, A, c0, c1) }

/* ---- streaming read, for the benchmark's bandwidth reference ----------- */

/* Four streams at once, like the four rows of a dot tile: one stream per core
 * leaves bandwidth unused on CPUs with long memory latency. */
static float read_sum(const float *p, int64_t n) {
    const int64_t q = n / 64 * 16; /* each stream's length, a multiple of 16 */
    v16 s[4] = {v_zero(), v_zero(), v_zero(), v_zero()};
    for (int64_t k = 0; k < q; k += 16)
        for (int i = 0; i < 4; i++) s[i] = v_add(s[i], v_ld(p + i * q + k));
    float tail = 0.0f;
    for (int64_t k = 4 * q; k < n; k++) tail = tail + p[k];
    return v_fold(v_add(v_add(s[0], s[1]), v_add(s[2], s[3]))) + tail;
}

const rs_isa_table RS_ISA_TABLE = {RS_ISA_NAME, dot_rows, axpy_cols, read_sum};
