/* The runtime's per-token operators, in the spec's order (see rs_runtime.h). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rs_half.h"
#include "rs_kernels.h"
#include "rs_omp.h"
#include "rs_runtime.h"

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "each float operation must round to float32 (needs FLT_EVAL_METHOD == 0, e.g. SSE math)"
#endif

/* ---- scalar building blocks -------------------------------------------- */

static float f32_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* The spec's lane_dot: term k into lane k % 16, ascending, then the fold
 * 8, 4, 2, 1.  Terms past d (the zero padding) would add +0.0 to a lane that
 * cannot hold -0.0, so they are left out.  The inner loop over lanes is
 * independent per lane, so the compiler may vectorise it without reordering. */
static float lane_dot(const float *a, const float *b, int64_t d) {
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= d; k += 16)
        for (int l = 0; l < 16; l++) acc[l] = acc[l] + a[k + l] * b[k + l];
    for (int l = 0; k + l < d; l++) acc[l] = acc[l] + a[k + l] * b[k + l];
    for (int s = 8; s >= 1; s >>= 1)
        for (int q = 0; q < s; q++) acc[q] = acc[q] + acc[q + s];
    return acc[0];
}

/* lane_dot(e, ones): e[j] * 1 is exact, so the product is left out. */
static float lane_sum(const float *e, int64_t n) {
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++) acc[l] = acc[l] + e[k + l];
    for (int l = 0; k + l < n; l++) acc[l] = acc[l] + e[k + l];
    for (int s = 8; s >= 1; s >>= 1)
        for (int q = 0; q < s; q++) acc[q] = acc[q] + acc[q + s];
    return acc[0];
}

/* 2^e as a float32 for e in [-126, 127]: biased exponent, zero fraction. */
static float pow2f(int e) { return f32_bits((uint32_t)(e + 127) << 23); }

/* floor(k / 2) for any int (C's / truncates towards zero). */
static int floor_half(int k) { return k >= 0 ? k / 2 : -((1 - k) / 2); }

float rs_exp32(float x) {
    static const float LOG2E = 0x1.715476p+0f, LN2_HI = 0x1.63p-1f, LN2_LO = -0x1.bd0106p-13f;
    static const float P[6] = {0x1.a0d2cep-13f, 0x1.6e879cp-10f, 0x1.111210p-7f,
                               0x1.555382p-5f,  0x1.555554p-3f,  0x1.0p-1f};
    static const float X_MAX = 0x1.62e42ep+6f, X_MIN = -0x1.ap+6f;
    if (x != x) return x;
    if (x > X_MAX) return INFINITY;
    if (x < X_MIN) return 0.0f;
    const float k = rintf(x * LOG2E);
    float r = x - k * LN2_HI;
    r = r - k * LN2_LO;
    const float z = r * r;
    float p = P[0];
    for (int i = 1; i < 6; i++) {
        p = p * r;
        p = p + P[i];
    }
    p = p * z;
    p = p + r;
    p = p + 1.0f;
    const int ki = (int)k, k1 = floor_half(ki);
    return (p * pow2f(k1)) * pow2f(ki - k1);
}

/* S[n] = (-1)^n / (2n+1)!, C[n] = (-1)^n / (2n)!, the correctly rounded float64 values (spec table). */
static const double SIN_C[8] = {0x1.0000000000000p+0,  -0x1.5555555555555p-3, 0x1.1111111111111p-7,
                                -0x1.a01a01a01a01ap-13, 0x1.71de3a556c734p-19, -0x1.ae64567f544e4p-26,
                                0x1.6124613a86d09p-33,  -0x1.ae7f3e733b81fp-41};
static const double COS_C[9] = {0x1.0000000000000p+0,  -0x1.0000000000000p-1, 0x1.5555555555555p-5,
                                -0x1.6c16c16c16c17p-10, 0x1.a01a01a01a01ap-16, -0x1.27e4fb7789f5cp-22,
                                0x1.1eed8eff8d898p-29,  -0x1.93974a8c07c9dp-37, 0x1.ae7f3e733b81fp-45};

void rs_sincos32(float a, float *sin_out, float *cos_out) {
    static const double TWO_OVER_PI = 0x1.45f306dc9c883p-1, PIO2_1 = 0x1.921fb54400000p+0,
                        PIO2_1T = 0x1.0b4611a626331p-34;
    if (!isfinite(a)) {
        *sin_out = *cos_out = NAN;
        return;
    }
    const double x = a, k = rint(x * TWO_OVER_PI);
    double r = x - k * PIO2_1;
    r = r - k * PIO2_1T;
    const double z = r * r;
    double ps = SIN_C[7], pc = COS_C[8];
    for (int n = 6; n >= 0; n--) {
        ps = ps * z;
        ps = ps + SIN_C[n];
    }
    for (int n = 7; n >= 0; n--) {
        pc = pc * z;
        pc = pc + COS_C[n];
    }
    const double s = r * ps, c = pc;
    const int q = (int)(k - 4.0 * floor(k * 0.25)); /* k mod 4, exact for every integer-valued k */
    const double sn[4] = {s, c, -s, -c}, cs[4] = {c, -s, -c, s};
    *sin_out = (float)sn[q];
    *cos_out = (float)cs[q];
}

/* ln(base) in float64 basic operations (spec §12, rope). */
static double ln64(double base) {
    static const double LN2_64 = 0x1.62e42fefa39efp-1;
    int exp;
    const double m = frexp(base, &exp) * 2.0, s = (m - 1.0) / (m + 1.0), z = s * s;
    double acc = 1.0 / 39.0;
    for (int j = 18; j >= 0; j--) {
        acc = acc * z;
        acc = acc + 1.0 / (double)(2 * j + 1);
    }
    const double ln_m = 2.0 * (s * acc);
    return (double)(exp - 1) * LN2_64 + ln_m;
}

/* softmax of e[0..n) in place (spec §12, softmax): first maximal element, NaNs ignored. */
static void softmax_row(float *e, int64_t n) {
    int64_t first = -1;
    for (int64_t j = 0; j < n; j++)
        if (e[j] == e[j] && (first < 0 || e[j] > e[first])) first = j;
    const float m = e[first < 0 ? 0 : first];
    for (int64_t j = 0; j < n; j++) e[j] = rs_exp32(e[j] - m);
    const float s = lane_sum(e, n);
    for (int64_t j = 0; j < n; j++) e[j] = e[j] / s;
}

/* ---- parallel loop over items ------------------------------------------ */

/* Work (about one float operation each) below which another thread costs more than it saves: a
 * parallel region's wake-up is 20-120 us on an idle 2-core machine and several ms when other
 * processes hold the cores, while this much work takes ~70 us on one.  A decode step's attention
 * over a short cache therefore stays on one thread.  Thread counts never change the bits. */
#define RT_GRAIN 262144

typedef void (*rt_item_fn)(const void *ctx, int64_t i, float *scratch);

/* fn(ctx, i, scratch) for i in [0, n); each thread gets its own scratch of
 * `scratch_floats`.  One thread runs without entering OpenMP (a process forked
 * after its parent ran threads must not touch the parent's pool, see dispatch.c). */
static int rt_for(int64_t n, int threads, int64_t work, rt_item_fn fn, const void *ctx, int64_t scratch_floats) {
    int64_t want = work / RT_GRAIN;
    if (want < threads) threads = (int)(want > 1 ? want : 1);
    if (n < threads) threads = (int)(n > 1 ? n : 1);
    const size_t bytes = (size_t)(scratch_floats > 0 ? scratch_floats : 1) * sizeof(float);
    if (threads <= 1) {
        float *scratch = malloc(bytes);
        if (!scratch) return RS_ENOMEM;
        for (int64_t i = 0; i < n; i++) fn(ctx, i, scratch);
        free(scratch);
        return RS_OK;
    }
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        float *scratch = malloc(bytes);
        if (!scratch) failed = 1; /* every thread that fails writes the same 1 */
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < n; i++)
            if (scratch) fn(ctx, i, scratch);
        free(scratch);
    }
    return failed ? RS_ENOMEM : RS_OK;
}

/* ---- rmsnorm ------------------------------------------------------------ */

typedef struct {
    const float *x;
    int64_t d;
    const void *w;
    int w_f16;
    float eps;
    float *y;
} rmsnorm_ctx;

static void rmsnorm_item(const void *ctx, int64_t r, float *scratch) {
    const rmsnorm_ctx *C = ctx;
    const float *x = C->x + r * C->d;
    float *y = C->y + r * C->d;
    (void)scratch;
    const float ss = lane_dot(x, x, C->d), mean = ss / (float)C->d, v = mean + C->eps, s = sqrtf(v),
                inv = 1.0f / s;
    if (C->w_f16) {
        const uint16_t *w = C->w;
        for (int64_t j = 0; j < C->d; j++) y[j] = (x[j] * inv) * rs_half_to_float(w[j]);
    } else {
        const float *w = C->w;
        for (int64_t j = 0; j < C->d; j++) y[j] = (x[j] * inv) * w[j];
    }
}

int rs_rmsnorm(const float *x, int64_t t, int64_t d, const void *w, int w_f16, float eps, float *y, int threads) {
    const rmsnorm_ctx C = {x, d, w, w_f16, eps, y};
    return rt_for(t, threads, t * d, rmsnorm_item, &C, 0);
}

/* ---- rope --------------------------------------------------------------- */

typedef struct {
    const float *x;
    int64_t n_head, head_dim;
    const int64_t *positions;
    const float *theta; /* (head_dim / 2,) */
    float *y;
} rope_ctx;

static void rope_item(const void *ctx, int64_t r, float *scratch) {
    const rope_ctx *C = ctx;
    const int64_t half = C->head_dim / 2, row = C->n_head * C->head_dim;
    float *sn = scratch, *cs = scratch + half;
    const float pos = (float)C->positions[r]; /* exact below 2^24 */
    for (int64_t i = 0; i < half; i++) rs_sincos32(pos * C->theta[i], sn + i, cs + i);
    const float *x = C->x + r * row;
    float *y = C->y + r * row;
    for (int64_t h = 0; h < C->n_head; h++) {
        const float *xh = x + h * C->head_dim;
        float *yh = y + h * C->head_dim;
        for (int64_t i = 0; i < half; i++) {
            const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
            yh[2 * i] = x0 * cs[i] - x1 * sn[i];
            yh[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

int rs_rope(const float *x, int64_t t, int64_t n_head, int64_t head_dim, const int64_t *positions, double base,
            float *y, int threads) {
    for (int64_t r = 0; r < t; r++)
        if (positions[r] < 0 || positions[r] >= (int64_t)1 << 24) return RS_EPOS;
    const int64_t half = head_dim / 2;
    float *theta = malloc((size_t)(half > 0 ? half : 1) * sizeof *theta);
    if (!theta) return RS_ENOMEM;
    const float ln_base = (float)ln64(base), d = (float)head_dim;
    for (int64_t i = 0; i < half; i++) {
        const float e = (-2.0f * (float)i) / d;
        theta[i] = rs_exp32(e * ln_base);
    }
    const rope_ctx C = {x, n_head, head_dim, positions, theta, y};
    /* a row's sin/cos cost about 40 flops each, its rotation 6 per pair and head */
    const int rc = rt_for(t, threads, t * half * (40 + 6 * n_head), rope_item, &C, 2 * half);
    free(theta);
    return rc;
}

/* ---- attention ---------------------------------------------------------- */

typedef struct {
    const float *q;
    int64_t n_head, head_dim, n_kv, group;
    const float *const *k, *const *v;
    const int64_t *seq, *positions;
    float scale;
    float *out;
} attention_ctx;

/* One (row, head): scores, softmax, then the weighted sum of values in ascending j. */
static void attention_item(const void *ctx, int64_t item, float *a) {
    const attention_ctx *C = ctx;
    const int64_t r = item / C->n_head, h = item % C->n_head, g = h / C->group, hd = C->head_dim;
    const int64_t n = C->positions[r] + 1, stride = C->n_kv * hd;
    const float *q = C->q + item * hd, *k = C->k[C->seq[r]] + g * hd, *v = C->v[C->seq[r]] + g * hd;
    float *o = C->out + item * hd;
    for (int64_t j = 0; j < n; j++) a[j] = lane_dot(q, k + j * stride, hd) * C->scale;
    softmax_row(a, n);
    for (int64_t i = 0; i < hd; i++) o[i] = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        const float *vj = v + j * stride, aj = a[j];
        for (int64_t i = 0; i < hd; i++) o[i] = o[i] + aj * vj[i];
    }
}

int rs_attention(const float *q, int64_t t, int64_t n_head, int64_t head_dim, float *const *k, float *const *v,
                 const int64_t *cache_len, int64_t n_seq, int64_t n_kv, const int64_t *seq, const int64_t *positions,
                 const float *new_k, const float *new_v, float *out, int threads) {
    int64_t longest = 0, work = 0;
    const int64_t row = n_kv * head_dim;
    for (int64_t r = 0; r < t; r++) {
        if (seq[r] < 0 || seq[r] >= n_seq) return RS_EPOS;
        if (positions[r] < 0 || positions[r] >= cache_len[seq[r]]) return RS_EPOS;
        if (positions[r] + 1 > longest) longest = positions[r] + 1;
        work += (positions[r] + 1) * head_dim * 2 * n_head;
    }
    /* a copy, no arithmetic: all rows are in place before a prefill row reads its predecessors */
    for (int64_t r = 0; new_k && r < t; r++) {
        memcpy(k[seq[r]] + positions[r] * row, new_k + r * row, (size_t)row * sizeof(float));
        memcpy(v[seq[r]] + positions[r] * row, new_v + r * row, (size_t)row * sizeof(float));
    }
    const attention_ctx C = {q,   n_head, head_dim,  n_kv, n_head / n_kv, (const float *const *)k,
                             (const float *const *)v, seq, positions, 1.0f / sqrtf((float)head_dim), out};
    return rt_for(t * n_head, threads, work, attention_item, &C, longest);
}

/* ---- softmax, argmax, add ----------------------------------------------- */

typedef struct {
    const float *x;
    int64_t n;
    const int64_t *lengths;
    float *y;
} softmax_ctx;

static void softmax_item(const void *ctx, int64_t r, float *scratch) {
    const softmax_ctx *C = ctx;
    const int64_t len = C->lengths[r];
    float *y = C->y + r * C->n;
    (void)scratch;
    memcpy(y, C->x + r * C->n, (size_t)len * sizeof *y);
    softmax_row(y, len);
    for (int64_t j = len; j < C->n; j++) y[j] = 0.0f;
}

int rs_softmax(const float *x, int64_t t, int64_t n, const int64_t *lengths, float *y, int threads) {
    for (int64_t r = 0; r < t; r++)
        if (lengths[r] < 1 || lengths[r] > n) return RS_EPOS;
    const softmax_ctx C = {x, n, lengths, y};
    return rt_for(t, threads, t * n * 8, softmax_item, &C, 0);
}

typedef struct {
    const float *x;
    int64_t n;
    int64_t *out;
} argmax_ctx;

/* The first NaN if there is one, else the first maximal element (+0.0 and -0.0 equal). */
static void argmax_item(const void *ctx, int64_t r, float *scratch) {
    const argmax_ctx *C = ctx;
    const float *x = C->x + r * C->n;
    int64_t best = 0;
    (void)scratch;
    for (int64_t j = 0; j < C->n; j++) {
        if (x[j] != x[j]) {
            best = j;
            break;
        }
        if (x[j] > x[best]) best = j;
    }
    C->out[r] = best;
}

int rs_argmax(const float *x, int64_t t, int64_t n, int64_t *out, int threads) {
    const argmax_ctx C = {x, n, out};
    return rt_for(t, threads, t * n, argmax_item, &C, 0);
}

#define RT_ADD_PIECE 65536

typedef struct {
    const float *a, *b;
    int64_t n;
    float *y;
} add_ctx;

static void add_item(const void *ctx, int64_t c, float *scratch) {
    const add_ctx *C = ctx;
    const int64_t s = c * RT_ADD_PIECE, e = s + RT_ADD_PIECE < C->n ? s + RT_ADD_PIECE : C->n;
    (void)scratch;
    for (int64_t i = s; i < e; i++) C->y[i] = C->a[i] + C->b[i];
}

int rs_add(const float *a, const float *b, int64_t n, float *y, int threads) {
    const add_ctx C = {a, b, n, y};
    return rt_for((n + RT_ADD_PIECE - 1) / RT_ADD_PIECE, threads, n, add_item, &C, 0);
}
