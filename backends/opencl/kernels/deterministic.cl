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
 */

#define LANES 16

#ifdef WEIGHT_HALF
#define WTYPE half
#define LOAD_W(p, i) vload_half((i), (p))
#else
#define WTYPE float
#define LOAD_W(p, i) ((p)[i])
#endif

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
void lane_dot(__global const WTYPE *W, const int d, __global const int *rows, const int m,
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

/* The gate/up half of sparse_ffn: g and u as lane_dot, then
 * h[t, a] = relu(g) * u, and +0.0 where the token's own mask is 0.
 * relu(v) = v if v > 0 or v is NaN, else +0.0. */
__kernel __attribute__((reqd_work_group_size(LANES, ROWS, 1)))
void gated_lane_dot(__global const WTYPE *gate, __global const WTYPE *up, const int d,
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
            const float g = mine_g[j * LANES];
            const float r = (g > 0.0f || isnan(g)) ? g : 0.0f;
            const float prod = r * mine_u[j * LANES];
            h[at] = own[at] ? prod : 0.0f;
        }
    }
}

/* sparse_axpy, step 1: the partial of block b for columns j, tokens t0..:
 * p = p + h[t, a] * W[rows[a], j] over the block's rows a in ascending order,
 * from +0.0, skipping terms whose h is +0.0 or -0.0 (NaN is kept).
 * Block b holds rows[starts[b] .. starts[b+1]).  partial is (blocks, t, d).
 * Global (d rounded up, blocks, ceil(t / TOKENS)). */
__kernel void axpy_partials(__global const WTYPE *W, const int d, __global const int *rows,
                            __global const int *starts, __global const float *h, const int m,
                            const int t, __global float *partial)
{
    const int j = get_global_id(0);
    const int b = get_global_id(1);
    const int t0 = get_global_id(2) * TOKENS;
    const int nt = min(TOKENS, t - t0);
    if (j >= d) {
        return;
    }
    float p[TOKENS];
    for (int i = 0; i < TOKENS; ++i) {
        p[i] = 0.0f;
    }
    const int end = starts[b + 1];
    for (int a = starts[b]; a < end; ++a) {
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
        partial[((size_t)b * t + t0 + i) * d + j] = p[i];
    }
}

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
