/* Fast-mode kernels: any summation order and fused multiply-add (explicit
 * fma(), never -cl-mad-enable, whose reduced accuracy is unbounded), within
 * the error bound of docs/spec.md.  Subnormals are kept: the host never
 * passes -cl-denorms-are-zero or -cl-fast-relaxed-math.
 *
 * Compile-time definitions (from the host):
 *   WEIGHT_HALF  weights are float16, read with vload_half
 *   TOKENS       tokens handled per work-item (1..8)
 *   ROWS         rows per work-group in the dot kernels
 *
 * The two layouts are those of deterministic.cl: "grouped" for GPUs, "vector"
 * (float16 vectors per work-item) for CPUs.
 */

#define LANES 16
#define WIDTH 4 /* consecutive elements a lane reads at once */
#define VEC 16 /* columns per work-item in axpy_partials_vector */

#ifdef WEIGHT_HALF
#define WTYPE half
#define LOAD_W(p, i) vload_half((i), (p))
#define LOAD_W4(p, i) vload_half4((i), (p))
#define LOAD_W16(p, i) vload_half16((i), (p))
#else
#define WTYPE float
#define LOAD_W(p, i) ((p)[i])
#define LOAD_W4(p, i) vload4((i), (p))
#define LOAD_W16(p, i) vload16((i), (p))
#endif

/* relu(g) * u, and +0.0 where the token's own mask is 0. */
static float gated(const float g, const float u, const uchar own)
{
    const float r = (g > 0.0f || isnan(g)) ? g : 0.0f;
    return own ? r * u : 0.0f;
}

/* ---- grouped layout ------------------------------------------------------- */


/* Adds this lane's share of w . x[j] into acc[j]: groups of WIDTH
 * consecutive elements round-robin over the lanes, then the tail one by one. */
static void accumulate(__global const WTYPE *w, const int d, __global const float *x,
                       const int nt, const int lane, float acc[TOKENS])
{
    float4 acc4[TOKENS];
    for (int j = 0; j < TOKENS; ++j) {
        acc4[j] = (float4)(0.0f);
    }
    const int groups = d / WIDTH;
    for (int g = lane; g < groups; g += LANES) {
        const float4 wg = LOAD_W4(w, g);
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                acc4[j] = fma(wg, vload4(g, x + (size_t)j * d), acc4[j]);
            }
        }
    }
    for (int j = 0; j < TOKENS; ++j) {
        acc[j] += (acc4[j].x + acc4[j].y) + (acc4[j].z + acc4[j].w);
    }
    for (int k = groups * WIDTH + lane; k < d; k += LANES) {
        const float wk = LOAD_W(w, k);
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                acc[j] = fma(wk, x[(size_t)j * d + k], acc[j]);
            }
        }
    }
}

/* Tree sum of the LANES partials of each token; every work-item of the group
 * must call this (it holds barriers). */
static void fold_lanes(__local float *red, const int lane)
{
    for (int s = LANES / 2; s > 0; s >>= 1) {
        if (lane < s) {
            for (int j = 0; j < TOKENS; ++j) {
                red[j * LANES + lane] += red[j * LANES + lane + s];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* out[t, a] = W[rows[a]] . x[t].  Work-group (LANES, ROWS, 1). */
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

/* g and u as dot products, then h[t, a] = gated(g, u, own). */
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

/* One column j of a chunk's partial for tokens t0 .. t0+nt-1, with fma, terms whose h is
 * +0.0 or -0.0 skipped; written to chunk_partial[(t0 + i) * d + j]. */
static void column_partial(__global const WTYPE *W, const int d, __global const int *rows,
                           const int begin, const int end, __global const float *h, const int m,
                           const int t0, const int nt, const int j, __global float *chunk_partial)
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
                    p[i] = fma(hv, w, p[i]);
                }
            }
        }
    }
    for (int i = 0; i < nt; ++i) {
        chunk_partial[(size_t)(t0 + i) * d + j] = p[i];
    }
}

/* sparse_axpy, step 1: the partial of chunk b (rows[starts[b] .. starts[b+1]))
 * for columns j and tokens t0..; terms whose h is +0.0 or -0.0 are skipped so
 * that 0 * Inf never becomes NaN.  partial is (chunks, t, d). */
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

/* w . x[j] for nt tokens with a float16 of fma accumulators per token. */
static void dot_vector(__global const WTYPE *w, const int d, __global const float *x,
                       const int nt, float out[TOKENS])
{
    float16 acc[TOKENS];
    for (int j = 0; j < TOKENS; ++j) {
        acc[j] = (float16)(0.0f);
    }
    const int full = d / 16;
    for (int c = 0; c < full; ++c) {
        const float16 wc = LOAD_W16(w, c);
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                acc[j] = fma(wc, vload16(c, x + (size_t)j * d), acc[j]);
            }
        }
    }
    for (int j = 0; j < TOKENS; ++j) {
        const float8 s8 = acc[j].lo + acc[j].hi;
        const float4 s4 = s8.lo + s8.hi;
        out[j] = (s4.x + s4.y) + (s4.z + s4.w);
        for (int k = full * 16; k < d; ++k) {
            out[j] = fma(LOAD_W(w, k), x[(size_t)j * d + k], out[j]);
        }
    }
}

/* out[t, a] = W[rows[a]] . x[t], one work-item per (row, TOKENS tokens). */
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
 * (the last one takes the remaining columns one by one). */
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
                        p[i] = fma((float16)(hv), w, p[i]);
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

/* sparse_axpy, step 2: y = sum of the chunks' partials, n = t * d elements. */
__kernel void axpy_fold(__global const float *partial, const int chunks, const int n, __global float *y)
{
    const int i = get_global_id(0);
    if (i >= n) {
        return;
    }
    float s = 0.0f;
    for (int b = 0; b < chunks; ++b) {
        s += partial[(size_t)b * n + i];
    }
    y[i] = s;
}
