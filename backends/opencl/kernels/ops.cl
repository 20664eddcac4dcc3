#pragma OPENCL FP_CONTRACT OFF
/* Every kernel of the opencl backend, written once.  The host builds one
 * program per variant (programs.py), choosing with these definitions:
 *
 *   RS_FAST   0: deterministic mode, the exact operation sequence of
 *                docs/spec.md: every product and every sum is its own float32
 *                rounding (FP_CONTRACT OFF forbids fusing a*b+c, and the
 *                product is also named, so no expression holds both);
 *             1: fast mode: the same loops with each product fused into its
 *                sum by fma() (never -cl-mad-enable, whose accuracy is
 *                unbounded); the host also folds sparse_axpy over balanced
 *                chunks instead of the 256-neuron blocks.
 *   RS_WTYPE  the weight type: 0 float32, 1 float16 (read with vload_half:
 *             exact, subnormals included), 2 GGML Q8_0, 3 GGML Q4_0,
 *             4 GGML Q6_K (spec §13).
 *             Every kernel reads weights through one `__global const uchar *`
 *             per row and the two loads below, so a type is one more pair of
 *             load functions and its block geometry.
 *   RS_VW     the layout.  0, "grouped": one row is spread over 16 work-items
 *             (the spec's lanes) and one column per work-item, so neighbouring
 *             work-items read neighbouring addresses, as GPUs need.  4 or 8,
 *             "vector4"/"vector8": one work-item holds the 16 lanes (or 16
 *             columns) as 16/RS_VW float vectors, which CPU compilers turn
 *             into SIMD code (PoCL does not vectorise the grouped loops).
 *             No float16 vectors: LLVM 14 (PoCL 3.0) miscompiles or aborts on
 *             them for CPUs without AVX-512 in its target list (Zen 4 is
 *             "znver3" there), and a function returning one changes the ABI.
 *   TOKENS    tokens per work-item (1, 4 or 8): each weight read serves them all.
 *   ROWS      rows per work-group of the grouped dot kernels.
 *
 * No atomics in either mode: each output element is written by one work-item.
 */

#define LANES 16
#define COLS 16 /* columns per work-item in the vector layout's axpy_partials */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#if RS_FAST
#define MAC(T, acc, a, b) (acc) = fma((T)(a), (b), (acc))
#else
#define MAC(T, acc, a, b) do { const T p_ = (a) * (b); (acc) = (acc) + p_; } while (0)
#endif

/* ---- weight types ------------------------------------------------------------
 * A row of d weights is d / WBLOCK blocks of WBLOCK_BYTES bytes (a float is a
 * block of one); w_at(row, k) is weight k of a row as float32, and in the
 * vector layouts w_lanes(row, k, w) weights k .. k+15 (k a multiple of 16,
 * so they never straddle a quantized block; GGML's types with 16 or more
 * weights per scale, Q6_K's sub-blocks too, convert one scale per call).
 *
 * A quantized weight is float(q) * float(scale): an integer of at most 8 bits
 * times a float16 converted exactly, a product that is exact in float32 (far
 * from overflow, and the smallest nonzero, 2^-24, is normal in float32), so
 * dequantizing in registers gives the converted float16 weight's bits in
 * every mode.  Q6_K's is (float(d) * float(sc)) * float(q), d the block's
 * float16, sc the int8 scale of the weight's 16-weight sub-block, q a 6-bit
 * code minus 32: both products are exact (|significands| < 2^11 * 2^7 * 2^5),
 * so d * sc is formed once per 16 weights and is their scale.  Scales sit at
 * even offsets (blocks of 34, 18 and 210 bytes, Q6_K's d at byte 208), as
 * vload_half needs. */
#define RS_F32 0
#define RS_F16 1
#define RS_Q8_0 2
#define RS_Q4_0 3
#define RS_Q6_K 4

#if RS_WTYPE == RS_F32
#define WBLOCK 1
#define WBLOCK_BYTES 4
#elif RS_WTYPE == RS_F16
#define WBLOCK 1
#define WBLOCK_BYTES 2
#elif RS_WTYPE == RS_Q8_0
#define WBLOCK 32
#define WBLOCK_BYTES 34
#elif RS_WTYPE == RS_Q4_0
#define WBLOCK 32
#define WBLOCK_BYTES 18
#elif RS_WTYPE == RS_Q6_K
#define WBLOCK 256
#define WBLOCK_BYTES 210
#else
#error "RS_WTYPE: unknown weight type"
#endif

/* Bytes of one row of d weights (d a multiple of WBLOCK). */
#define ROW_BYTES(d) ((size_t)((d) / WBLOCK) * WBLOCK_BYTES)
/* Row r of the matrix W. */
#define W_ROW(W, r, d) ((W) + (size_t)(r) * ROW_BYTES(d))

#if WBLOCK > 1
/* The block holding weight k of a row, and its float16 scale: the block's first two
 * bytes, Q6_K's last two. */
#define Q_BLOCK(row, k) ((row) + (size_t)((k) / WBLOCK) * WBLOCK_BYTES)
#if RS_WTYPE == RS_Q6_K
#define Q_SCALE(block) vload_half(0, (__global const half *)((block) + 208))
#else
#define Q_SCALE(block) vload_half(0, (__global const half *)(block))
#endif
#endif

#if RS_WTYPE == RS_Q6_K
/* Element j = 128h + 32c + l of a Q6_K block: ql[128] holds the low 4 bits (the
 * low nibble of ql[64h + 32(c & 1) + l] for c < 2, the high one for c >= 2),
 * qh[64] at byte 128 the high 2 (bits 2c, 2c+1 of qh[32h + l]); QL_AT and QH_AT
 * are the byte offsets, Q6_LOW_SHIFT and Q6_HIGH_SHIFT the shifts.  Sixteen
 * weights j .. j+15 from a multiple of 16 share h and c, so their bytes are
 * consecutive. */
#define Q6_QL_AT(j) (64 * ((j) >> 7) + 32 * (((j) >> 5) & 1) + ((j) & 31))
#define Q6_QH_AT(j) (128 + 32 * ((j) >> 7) + ((j) & 31))
#define Q6_LOW_SHIFT(j) (4 * (((j) >> 6) & 1))
#define Q6_HIGH_SHIFT(j) (2 * (((j) >> 5) & 3))
/* float(d) * float(sc) of element j's 16-weight sub-block: sc the int8 at byte 192 + j / 16. */
#define Q6_FACTOR(block, j) (Q_SCALE(block) * (float)(char)(block)[192 + ((j) >> 4)])
#endif

static float w_at(__global const uchar *row, const int k)
{
#if RS_WTYPE == RS_F32
    return ((__global const float *)row)[k];
#elif RS_WTYPE == RS_F16
    return vload_half(k, (__global const half *)row);
#else
    __global const uchar *block = Q_BLOCK(row, k);
    const int j = k % WBLOCK;
#if RS_WTYPE == RS_Q6_K
    const int low = block[Q6_QL_AT(j)] >> Q6_LOW_SHIFT(j) & 15;
    const int high = block[Q6_QH_AT(j)] >> Q6_HIGH_SHIFT(j) & 3;
    const float factor = Q6_FACTOR(block, j);
    const float w = factor * (float)((low | high << 4) - 32);
    return w;
#else
#if RS_WTYPE == RS_Q8_0
    const int q = (char)block[2 + j];
#else /* Q4_0: byte i holds element i (low nibble) and i + 16 (high), each biased by 8 */
    const int q = (j < 16 ? block[2 + j] & 15 : block[2 + j - 16] >> 4) - 8;
#endif
    const float w = (float)q * Q_SCALE(block);
    return w;
#endif
#endif
}

/* relu(g) * u, and +0.0 where the token's own mask is 0;
 * relu(v) = v if v > 0 or v is NaN, else +0.0. */
static float gated(const float g, const float u, const uchar own)
{
    const float r = (g > 0.0f || isnan(g)) ? g : 0.0f;
    const float prod = r * u;
    return own ? prod : 0.0f;
}

/* One column j of a group's partial for tokens t0 .. t0+nt-1: p = p + h[t, a] * W[rows[a], j]
 * over rows a = begin .. end-1 in ascending order, from +0.0, skipping terms whose h is
 * +0.0 or -0.0 (NaN is kept); written to partial[(t0 + i) * d + j]. */
static void column_partial(__global const uchar *W, const int d, __global const int *rows,
                           const int begin, const int end, __global const float *h, const int m,
                           const int t0, const int nt, const int j, __global float *partial)
{
    float p[TOKENS];
    for (int i = 0; i < TOKENS; ++i) {
        p[i] = 0.0f;
    }
    for (int a = begin; a < end; ++a) {
        const float w = w_at(W_ROW(W, rows[a], d), j);
        for (int i = 0; i < TOKENS; ++i) {
            if (i < nt) {
                const float hv = h[(size_t)(t0 + i) * m + a];
                if (hv != 0.0f) {
                    MAC(float, p[i], hv, w);
                }
            }
        }
    }
    for (int i = 0; i < nt; ++i) {
        partial[(size_t)i * d + j] = p[i];
    }
}

#if RS_VW == 0 /* ---- grouped layout -------------------------------------- */

/* Lane `lane`'s terms k = lane (mod 16), ascending, of w . x[j], added into
 * acc[j] for the nt tokens at x. */
static void accumulate(__global const uchar *w, const int d, __global const float *x,
                       const int nt, const int lane, float acc[TOKENS])
{
    for (int k = lane; k < d; k += LANES) {
        const float wk = w_at(w, k);
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                MAC(float, acc[j], wk, x[(size_t)j * d + k]);
            }
        }
    }
}

/* The spec's fold of the 16 lanes, 8, 4, 2, 1, through local memory, of the
 * n sums in red ([n][LANES]).  Every work-item of the group must call it (it
 * holds barriers). */
static void fold_lanes(__local float *red, const int n, const int lane)
{
    for (int s = LANES / 2; s > 0; s >>= 1) {
        if (lane < s) {
            for (int j = 0; j < n; ++j) {
                red[j * LANES + lane] = red[j * LANES + lane] + red[j * LANES + lane + s];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

#define MAXW 2 /* matrices a dot_rows call reads: gate and up */

/* lane_dot of one row of each of the nw (1 or MAXW) matrices w0, w1 with the
 * tokens at x, into out[i * TOKENS + j] for matrix i, token j (valid on lane 0
 * only).  Work-group (LANES, ROWS, 1); red holds ROWS * nw * TOKENS * LANES
 * floats.  Both rows are accumulated before the one fold, so no private array
 * lives across a barrier: PoCL 5.0 (Debian's, on an Intel Xeon) returned
 * wrong bits for gated_lane_dot when g was held across a second fold's
 * barriers. */
static void dot_rows(__global const uchar *w0, __global const uchar *w1, const int nw, const int d,
                     __global const float *x, const int nt, const bool live, __local float *red,
                     float out[MAXW * TOKENS])
{
    const int lane = get_local_id(0);
    const int n = nw * TOKENS;
    __local float *mine = red + get_local_id(1) * n * LANES;
    float acc[MAXW * TOKENS];
    for (int j = 0; j < MAXW * TOKENS; ++j) {
        acc[j] = 0.0f;
    }
    if (live) {
        accumulate(w0, d, x, nt, lane, acc);
        if (nw > 1) {
            accumulate(w1, d, x, nt, lane, acc + TOKENS);
        }
    }
    for (int j = 0; j < n; ++j) {
        mine[j * LANES + lane] = acc[j];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    fold_lanes(mine, n, lane);
    for (int j = 0; j < n; ++j) {
        out[j] = mine[j * LANES];
    }
}

#define DOT_KERNEL __kernel __attribute__((reqd_work_group_size(LANES, ROWS, 1)))
#define DOT_ROW() get_global_id(1)
#define DOT_TOKEN0() (get_global_id(2) * TOKENS)
#define WRITER() (get_local_id(0) == 0)

#else /* ---- vector layouts ----------------------------------------------- */

#define VT CAT(float, RS_VW)
#define NV (16 / RS_VW) /* vectors per 16 lanes or columns */
#define VLOAD(i, p) CAT(vload, RS_VW)((i), (p))
#define VSTORE(v, i, p) CAT(vstore, RS_VW)((v), (i), (p))
#define CONVERT_VT CAT(convert_float, RS_VW)

/* Weights k .. k+15 of a row (k a multiple of 16, so within one quantized
 * block and one Q6_K sub-block: its scale is converted once) as NV vectors
 * (see w_at). */
static void w_lanes(__global const uchar *row, const int k, VT w[NV])
{
#if RS_WTYPE == RS_F32
    for (int v = 0; v < NV; ++v) {
        w[v] = VLOAD(0, (__global const float *)row + k + v * RS_VW);
    }
#elif RS_WTYPE == RS_F16
    for (int v = 0; v < NV; ++v) {
        w[v] = CAT(vload_half, RS_VW)(0, (__global const half *)row + k + v * RS_VW);
    }
#else
    __global const uchar *block = Q_BLOCK(row, k);
    const int j = k % WBLOCK;
#if RS_WTYPE == RS_Q6_K
    typedef CAT(uchar, RS_VW) UV;
    const VT factor = (VT)(Q6_FACTOR(block, j));
    for (int v = 0; v < NV; ++v) {
        const UV low = VLOAD(0, block + Q6_QL_AT(j) + v * RS_VW) >> (UV)(Q6_LOW_SHIFT(j)) & (UV)15;
        const UV high = VLOAD(0, block + Q6_QH_AT(j) + v * RS_VW) >> (UV)(Q6_HIGH_SHIFT(j)) & (UV)3;
        const VT q = CONVERT_VT(low | high << (UV)4) - (VT)(32.0f);
        w[v] = factor * q;
    }
#else
    const VT scale = (VT)(Q_SCALE(block));
    for (int v = 0; v < NV; ++v) {
#if RS_WTYPE == RS_Q8_0
        const VT q = CONVERT_VT(VLOAD(0, (__global const char *)block + 2 + j + v * RS_VW));
#else
        const CAT(uchar, RS_VW) packed = VLOAD(0, block + 2 + (j & 15) + v * RS_VW);
        const VT q = CONVERT_VT(j < 16 ? packed & (uchar)15 : packed >> (uchar)4) - (VT)(8.0f);
#endif
        w[v] = q * scale;
    }
#endif
#endif
}

/* The spec's fold 8, 4, 2, 1 of 16 lanes held as NV vectors (vector v holds
 * lanes v*RS_VW ..). */
static float fold(const VT acc[NV])
{
#if RS_VW == 4
    const float4 s4 = (acc[0] + acc[2]) + (acc[1] + acc[3]);
#else
    const float8 s8 = acc[0] + acc[1];
    const float4 s4 = s8.lo + s8.hi;
#endif
    const float2 s2 = s4.lo + s4.hi;
    return s2.x + s2.y;
}

/* lane_dot of one row for nt tokens: the full chunks of 16 terms, then the
 * tail padded with 0 * 0 = +0.0 terms, which change no lane (a lane that
 * starts at +0.0 is never -0.0), then the fold. */
static void dot_vector(__global const uchar *w, const int d, __global const float *x,
                       const int nt, float out[TOKENS])
{
    VT acc[TOKENS][NV];
    for (int j = 0; j < TOKENS; ++j) {
        for (int v = 0; v < NV; ++v) {
            acc[j][v] = (VT)(0.0f);
        }
    }
    const int full = d / LANES;
    for (int c = 0; c < full; ++c) {
        VT wc[NV];
        w_lanes(w, c * LANES, wc);
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                for (int v = 0; v < NV; ++v) {
                    MAC(VT, acc[j][v], wc[v], VLOAD(c * NV + v, x + (size_t)j * d));
                }
            }
        }
    }
    const int rest = d - full * LANES;
    if (rest) {
        float tw[LANES];
        float tx[LANES];
        for (int l = 0; l < LANES; ++l) {
            tw[l] = l < rest ? w_at(w, full * LANES + l) : 0.0f;
        }
        for (int j = 0; j < TOKENS; ++j) {
            if (j < nt) {
                for (int l = 0; l < LANES; ++l) {
                    tx[l] = l < rest ? x[(size_t)j * d + full * LANES + l] : 0.0f;
                }
                for (int v = 0; v < NV; ++v) {
                    MAC(VT, acc[j][v], VLOAD(v, tw), VLOAD(v, tx));
                }
            }
        }
    }
    for (int j = 0; j < TOKENS; ++j) {
        out[j] = fold(acc[j]);
    }
}

#define DOT_KERNEL __kernel
#define DOT_ROW() get_global_id(0)
#define DOT_TOKEN0() (get_global_id(1) * TOKENS)
#define WRITER() true

#endif

/* ---- the kernels ------------------------------------------------------------ */

/* out[t, a] = lane_dot(W[rows[a]], x[t]).  Grouped: global (LANES, rows
 * rounded up to ROWS, ceil(t / TOKENS)); vector: global (rows, ceil(t / TOKENS)). */
DOT_KERNEL void lane_dot(__global const uchar *W, const int d, __global const int *rows, const int m,
                         __global const float *x, const int t, __global float *out)
{
    const int a = DOT_ROW();
    const int t0 = DOT_TOKEN0();
    const int nt = min(TOKENS, t - t0);
#if RS_VW == 0
    float res[MAXW * TOKENS];
    __local float red[ROWS * TOKENS * LANES];
    __global const uchar *w = W_ROW(W, rows[min(a, m - 1)], d);
    dot_rows(w, w, 1, d, x + (size_t)t0 * d, nt, a < m, red, res);
#else
    float res[TOKENS];
    if (a >= m) {
        return;
    }
    dot_vector(W_ROW(W, rows[a], d), d, x + (size_t)t0 * d, nt, res);
#endif
    if (WRITER() && a < m) {
        for (int j = 0; j < nt; ++j) {
            out[(size_t)(t0 + j) * m + a] = res[j];
        }
    }
}

/* The gate/up half of sparse_ffn: g and u as lane_dot, then
 * h[t, a] = gated(g, u, own[t, a]).  Sizes as lane_dot's. */
DOT_KERNEL void gated_lane_dot(__global const uchar *gate, __global const uchar *up, const int d,
                               __global const int *rows, const int m, __global const float *x, const int t,
                               __global const uchar *own, __global float *h)
{
    const int a = DOT_ROW();
    const int t0 = DOT_TOKEN0();
    const int nt = min(TOKENS, t - t0);
#if RS_VW == 0
    float gu[MAXW * TOKENS];
    __local float red[ROWS * MAXW * TOKENS * LANES];
    const size_t row = (size_t)rows[min(a, m - 1)] * ROW_BYTES(d);
    dot_rows(gate + row, up + row, MAXW, d, x + (size_t)t0 * d, nt, a < m, red, gu);
    const float *g = gu;
    const float *u = gu + TOKENS;
#else
    float g[TOKENS];
    float u[TOKENS];
    if (a >= m) {
        return;
    }
    const size_t row = (size_t)rows[a] * ROW_BYTES(d);
    dot_vector(gate + row, d, x + (size_t)t0 * d, nt, g);
    dot_vector(up + row, d, x + (size_t)t0 * d, nt, u);
#endif
    if (WRITER() && a < m) {
        for (int j = 0; j < nt; ++j) {
            const size_t at = (size_t)(t0 + j) * m + a;
            h[at] = gated(g[j], u[j], own[at]);
        }
    }
}

/* sparse_axpy, step 1, for the tokens t_first .. t_first+t_count-1 of h:
 * the partial of group b (rows[starts[b] .. starts[b+1]): a 256-neuron block
 * in deterministic mode) for each column, written to partial, which is
 * (groups, t_count, d).  Grouped: one column per work-item, global (d rounded
 * up, groups, ceil(t_count / TOKENS)); vector: COLS columns per work-item,
 * global (ceil(d / COLS), groups, ceil(t_count / TOKENS)), which start on a
 * multiple of 16, so a quantized row's COLS columns lie in one block. */
__kernel void axpy_partials(__global const uchar *W, const int d, __global const int *rows,
                            __global const int *starts, __global const float *h, const int m,
                            const int t_first, const int t_count, __global float *partial)
{
    const int b = get_global_id(1);
    const int t0 = get_global_id(2) * TOKENS;
    const int nt = min(TOKENS, t_count - t0);
    const int begin = starts[b];
    const int end = starts[b + 1];
    __global const float *hs = h + (size_t)t_first * m;
    __global float *out = partial + ((size_t)b * t_count + t0) * d;
#if RS_VW == 0
    const int j = get_global_id(0);
    if (j < d) {
        column_partial(W, d, rows, begin, end, hs, m, t0, nt, j, out);
    }
#else
    const int j0 = get_global_id(0) * COLS;
    if (j0 + COLS > d) { /* the last, narrower group of columns */
        for (int j = j0; j < d; ++j) {
            column_partial(W, d, rows, begin, end, hs, m, t0, nt, j, out);
        }
        return;
    }
    VT p[TOKENS][NV];
    for (int i = 0; i < TOKENS; ++i) {
        for (int v = 0; v < NV; ++v) {
            p[i][v] = (VT)(0.0f);
        }
    }
    for (int a = begin; a < end; ++a) {
        __global const uchar *wrow = W_ROW(W, rows[a], d);
        VT w[NV];
        w_lanes(wrow, j0, w);
        for (int i = 0; i < TOKENS; ++i) {
            if (i < nt) {
                const float hv = hs[(size_t)(t0 + i) * m + a];
                if (hv != 0.0f) {
                    for (int v = 0; v < NV; ++v) {
                        MAC(VT, p[i][v], (VT)(hv), w[v]);
                    }
                }
            }
        }
    }
    for (int i = 0; i < nt; ++i) {
        for (int v = 0; v < NV; ++v) {
            VSTORE(p[i][v], v, out + (size_t)i * d + j0);
        }
    }
#endif
}

/* sparse_axpy, step 2: y[first + i] = +0.0 + p_0[i] + p_1[i] + ... over the
 * groups in ascending order; each group's partial holds n elements. */
__kernel void axpy_fold(__global const float *partial, const int groups, const int n,
                        __global float *y, const int first)
{
    const int i = get_global_id(0);
    if (i >= n) {
        return;
    }
    float s = 0.0f;
    for (int b = 0; b < groups; ++b) {
        s = s + partial[(size_t)b * n + i];
    }
    y[(size_t)first + i] = s;
}
