#pragma OPENCL FP_CONTRACT OFF
/* Deterministic kernels: the exact operation sequence of docs/spec.md.
 *
 * Every product and every sum is its own float32 rounding (FP_CONTRACT OFF
 * forbids fusing a*b+c into an FMA; the products are also named so that no
 * expression holds both a multiply and an add).  No atomics: each output
 * element is written by one work-item, after a fixed reduction order.
 *
 * Compile-time definitions (from the host):
 *   WEIGHT_HALF  weights are float16, read with vload_half (exact, subnormals included)
 *   TOKENS       tokens handled per work-item (1..8)
 *   ROWS         rows per work-group in the dot kernels
 *
 * Each op has two layouts with the same arithmetic: "grouped" kernels spread
 * one row (or column) over many work-items, so that neighbouring work-items
 * read neighbouring addresses (what GPUs need); "vector" kernels give each
 * work-item a float16 vector of lanes or columns, which CPU compilers turn
 * into SIMD instructions (PoCL does not vectorise the grouped loops).
 */

#define LANES 16
#define VEC 16 /* columns per work-item in axpy_partials_vector */

#ifdef WEIGHT_HALF
#define WTYPE half
#define LOAD_W(p, i) vload_half((i), (p))
#define LOAD_W16(p, i) vload_half16((i), (p))
#else
#define WTYPE float
#define LOAD_W(p, i) ((p)[i])
#define LOAD_W16(p, i) vload16((i), (p))
#endif

/* relu(g) * u, and +0.0 where the token's own mask is 0;
 * relu(v) = v if v > 0 or v is NaN, else +0.0. */
static float gated(const float g, const float u, const uchar own)
{
    const float r = (g > 0.0f || isnan(g)) ? g : 0.0f;
    const float prod = r * u;
    return own ? prod : 0.0f;
}

/* ---- grouped layout ------------------------------------------------------- */

/* lane_dot of one row: lane l adds the terms k = l (mod 16) in ascending k
 * (accumulate), then the lanes are folded 8, 4, 2, 1 through local memory
 * (fold_lanes).  red points at this row's [TOKENS][LANES] slice; every
 * work-item of the group must call fold_lanes (it holds barriers). */
static void fold_lanes(__local float *red, const int lane)
{
    for (int s = LANES / 2; s > 0; s >>= 1) {
        if (lane < s) {
            for (int j = 0; j < TOKENS; ++j) {
                red[j * LANES + lane] = red[j * LANES + lane] + red[j * LANES + lane + s];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* Adds lane `lane`'s terms of w . x[j] into acc[j] for the nt tokens at x. */
static void accumulate(__global const WTYPE *w, const int d, __global const float *x,
                       const int nt, const int lane, float acc[TOKENS])
{
    for (int k = lane; k < d; k += LANES) {
        const float wk = LOAD_W(w, k);
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                const float p = wk * x[(size_t)j * d + k];
                acc[j] = acc[j] + p;
            }
        }
    }
}

/* out[t, a] = lane_dot(W[rows[a]], x[t]).  Work-group (LANES, ROWS, 1);
 * global (LANES, rows rounded up to ROWS, ceil(t / TOKENS)). */
__kernel __attribute__((reqd_work_group_size(LANES, ROWS, 1)))
void lane_dot_grouped(__global const WTYPE *W, const int d, __global const int *rows, const int m,
              __global const float *x, const int t, __global float *out)
{
    __local float red[ROWS * TOKENS * LANES];
    const int lane = get_local_id(0);
    const int a = get_global_id(1);
    const int t0 = get_global_id(2) * TOKENS;
    const int nt = min(TOKENS, t - t0);
    __local float *mine = red + get_local_id(1) * TOKENS * LANES;

    float acc[TOKENS];
    for (int j = 0; j < TOKENS; ++j) {
        acc[j] = 0.0f;
    }
    if (a < m) {
        accumulate(W + (size_t)rows[a] * d, d, x + (size_t)t0 * d, nt, lane, acc);
    }
    for (int j = 0; j < TOKENS; ++j) {
        mine[j * LANES + lane] = acc[j];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    fold_lanes(mine, lane);
    if (lane == 0 && a < m) {
        for (int j = 0; j < nt; ++j) {
            out[(size_t)(t0 + j) * m + a] = mine[j * LANES];
        }
    }
}

/* The gate/up half of sparse_ffn: g and u as lane_dot, then h[t, a] = gated(g, u, own). */
__kernel __attribute__((reqd_work_group_size(LANES, ROWS, 1)))
void gated_lane_dot_grouped(__global const WTYPE *gate, __global const WTYPE *up, const int d,
                    __global const int *rows, const int m, __global const float *x, const int t,
                    __global const uchar *own, __global float *h)
{
    __local float red_g[ROWS * TOKENS * LANES];
    __local float red_u[ROWS * TOKENS * LANES];
    const int lane = get_local_id(0);
    const int a = get_global_id(1);
    const int t0 = get_global_id(2) * TOKENS;
    const int nt = min(TOKENS, t - t0);
    __local float *mine_g = red_g + get_local_id(1) * TOKENS * LANES;
    __local float *mine_u = red_u + get_local_id(1) * TOKENS * LANES;

    float acc_g[TOKENS];
    float acc_u[TOKENS];
    for (int j = 0; j < TOKENS; ++j) {
        acc_g[j] = 0.0f;
        acc_u[j] = 0.0f;
    }
    if (a < m) {
        const size_t row = (size_t)rows[a] * d;
        accumulate(gate + row, d, x + (size_t)t0 * d, nt, lane, acc_g);
        accumulate(up + row, d, x + (size_t)t0 * d, nt, lane, acc_u);
    }
    for (int j = 0; j < TOKENS; ++j) {
        mine_g[j * LANES + lane] = acc_g[j];
        mine_u[j * LANES + lane] = acc_u[j];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    fold_lanes(mine_g, lane);
    fold_lanes(mine_u, lane);
    if (lane == 0 && a < m) {
        for (int j = 0; j < nt; ++j) {
            const size_t at = (size_t)(t0 + j) * m + a;
            h[at] = gated(mine_g[j * LANES], mine_u[j * LANES], own[at]);
        }
    }
}

/* One column j of a block's partial for tokens t0 .. t0+nt-1: p = p + h[t, a] * W[rows[a], j]
 * over rows a = begin .. end-1 in ascending order, from +0.0, skipping terms whose h is +0.0
 * or -0.0 (NaN is kept); written to block_partial[(t0 + i) * d + j]. */
static void column_partial(__global const WTYPE *W, const int d, __global const int *rows,
                           const int begin, const int end, __global const float *h, const int m,
                           const int t0, const int nt, const int j,
                           __global float *block_partial)
{
    float p[TOKENS];
    for (int i = 0; i < TOKENS; ++i) {
        p[i] = 0.0f;
    }
    for (int a = begin; a < end; ++a) {
        const float w = LOAD_W(W, (size_t)rows[a] * d + j);
        for (int i = 0; i < TOKENS; ++i) {
            if (i < nt) {
                const float hv = h[(size_t)(t0 + i) * m + a];
                if (hv != 0.0f) {
                    const float q = hv * w;
                    p[i] = p[i] + q;
                }
            }
        }
    }
    for (int i = 0; i < nt; ++i) {
        block_partial[(size_t)(t0 + i) * d + j] = p[i];
    }
}

/* sparse_axpy, step 1: the partial of block b for columns j, tokens t0..:
 * p = p + h[t, a] * W[rows[a], j] over the block's rows a in ascending order,
 * from +0.0, skipping terms whose h is +0.0 or -0.0 (NaN is kept).
 * Block b holds rows[starts[b] .. starts[b+1]).  partial is (blocks, t, d).
 * Global (d rounded up, blocks, ceil(t / TOKENS)). */
__kernel void axpy_partials_grouped(__global const WTYPE *W, const int d, __global const int *rows,
                            __global const int *starts, __global const float *h, const int m,
                            const int t, __global float *partial)
{
    const int j = get_global_id(0);
    const int b = get_global_id(1);
    const int t0 = get_global_id(2) * TOKENS;
    const int nt = min(TOKENS, t - t0);
    if (j < d) {
        column_partial(W, d, rows, starts[b], starts[b + 1], h, m, t0, nt, j, partial + (size_t)b * t * d);
    }
}

/* ---- vector layout -------------------------------------------------------- */

/* lane_dot of one row with the 16 lanes as the components of a float16: the
 * full chunks of 16 terms, then the tail padded with 0 * 0 = +0.0 terms, which
 * change no lane (a lane that starts at +0.0 is never -0.0), then the fold. */
static void dot_vector(__global const WTYPE *w, const int d, __global const float *x,
                       const int nt, float out[TOKENS])
{
    float16 acc[TOKENS];
    for (int j = 0; j < TOKENS; ++j) {
        acc[j] = (float16)(0.0f);
    }
    const int full = d / LANES;
    for (int c = 0; c < full; ++c) {
        const float16 wc = LOAD_W16(w, c);
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                const float16 p = wc * vload16(c, x + (size_t)j * d);
                acc[j] = acc[j] + p;
            }
        }
    }
    const int rest = d - full * LANES;
    if (rest) {
        float tw[LANES];
        float tx[LANES];
        for (int l = 0; l < LANES; ++l) {
            tw[l] = l < rest ? LOAD_W(w, full * LANES + l) : 0.0f;
        }
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                for (int l = 0; l < LANES; ++l) {
                    tx[l] = l < rest ? x[(size_t)j * d + full * LANES + l] : 0.0f;
                }
                const float16 p = vload16(0, tw) * vload16(0, tx);
                acc[j] = acc[j] + p;
            }
        }
    }
    for (int j = 0; j < TOKENS; ++j) {
        const float8 s8 = acc[j].lo + acc[j].hi;
        const float4 s4 = s8.lo + s8.hi;
        const float2 s2 = s4.lo + s4.hi;
        out[j] = s2.x + s2.y;
    }
}

/* lane_dot_grouped's result with one work-item per (row, TOKENS tokens);
 * global (rows, ceil(t / TOKENS)). */
__kernel void lane_dot_vector(__global const WTYPE *W, const int d, __global const int *rows, const int m,
                              __global const float *x, const int t, __global float *out)
{
    const int a = get_global_id(0);
    const int t0 = get_global_id(1) * TOKENS;
    if (a >= m) {
        return;
    }
    const int nt = min(TOKENS, t - t0);
    float res[TOKENS];
    dot_vector(W + (size_t)rows[a] * d, d, x + (size_t)t0 * d, nt, res);
    for (int j = 0; j < nt; ++j) {
        out[(size_t)(t0 + j) * m + a] = res[j];
    }
}

/* gated_lane_dot_grouped's result with one work-item per (row, TOKENS tokens). */
__kernel void gated_lane_dot_vector(__global const WTYPE *gate, __global const WTYPE *up, const int d,
                                    __global const int *rows, const int m, __global const float *x,
                                    const int t, __global const uchar *own, __global float *h)
{
    const int a = get_global_id(0);
    const int t0 = get_global_id(1) * TOKENS;
    if (a >= m) {
        return;
    }
    const int nt = min(TOKENS, t - t0);
    const size_t row = (size_t)rows[a] * d;
    float g[TOKENS];
    float u[TOKENS];
    dot_vector(gate + row, d, x + (size_t)t0 * d, nt, g);
    dot_vector(up + row, d, x + (size_t)t0 * d, nt, u);
    for (int j = 0; j < nt; ++j) {
        const size_t at = (size_t)(t0 + j) * m + a;
        h[at] = gated(g[j], u[j], own[at]);
    }
}

/* axpy_partials_grouped's result with VEC consecutive columns per work-item
 * (fewer in the last one); global (ceil(d / VEC), blocks, ceil(t / TOKENS)). */
__kernel void axpy_partials_vector(__global const WTYPE *W, const int d, __global const int *rows,
                                   __global const int *starts, __global const float *h, const int m,
                                   const int t, __global float *partial)
{
    const int j0 = get_global_id(0) * VEC;
    const int b = get_global_id(1);
    const int t0 = get_global_id(2) * TOKENS;
    const int nt = min(TOKENS, t - t0);
    if (j0 >= d) {
        return;
    }
    const int end = starts[b + 1];
    if (j0 + VEC <= d) {
        float16 p[TOKENS];
        for (int i = 0; i < TOKENS; ++i) {
            p[i] = (float16)(0.0f);
        }
        for (int a = starts[b]; a < end; ++a) {
            const float16 w = LOAD_W16(W + (size_t)rows[a] * d + j0, 0);
            for (int i = 0; i < TOKENS; ++i) {
                if (i < nt) {
                    const float hv = h[(size_t)(t0 + i) * m + a];
                    if (hv != 0.0f) {
                        const float16 q = hv * w;
                        p[i] = p[i] + q;
                    }
                }
            }
        }
        for (int i = 0; i < nt; ++i) {
            vstore16(p[i], 0, partial + ((size_t)b * t + t0 + i) * d + j0);
        }
        return;
    }
    for (int j = j0; j < d; ++j) {  /* the last, narrower group of columns */
        column_partial(W, d, rows, starts[b], end, h, m, t0, nt, j, partial + (size_t)b * t * d);
    }
}

/* ---- both layouts --------------------------------------------------------- */

/* sparse_axpy, step 2: y = y + p_b over blocks in ascending order, from +0.0.
 * y and each block's partial are (t, d), n = t * d elements. */
__kernel void axpy_fold(__global const float *partial, const int blocks, const int n, __global float *y)
{
    const int i = get_global_id(0);
    if (i >= n) {
        return;
    }
    float s = 0.0f;
    for (int b = 0; b < blocks; ++b) {
        s = s + partial[(size_t)b * n + i];
    }
    y[i] = s;
}
