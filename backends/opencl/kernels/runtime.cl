#pragma OPENCL FP_CONTRACT OFF
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
/* The runtime's per-token operators (docs/spec.md §12): rmsnorm, rope's
 * rotation, attention, softmax, argmax and the residual add, in the spec's
 * operation order, written once.  §12 defines one arithmetic for both modes
 * (there is no fast variant), so the host builds this file once, without
 * options.
 *
 * Exactness:
 * - every product and sum is its own float32 rounding: FP_CONTRACT OFF, and
 *   products are named so that no expression holds a product and a sum;
 * - the spec's `/` and `sqrt` are the correctly rounded float32 operations,
 *   which OpenCL guarantees for float only with
 *   -cl-fp32-correctly-rounded-divide-sqrt on devices that report
 *   CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT.  Instead div32/sqrt32 compute in
 *   double, which OpenCL requires to be correctly rounded, and round once to
 *   float: for division and square root of float32 operands, binary64 has
 *   more than 2*24+2 bits, so the double rounding gives the correctly rounded
 *   float32 result (Figueroa, "When is double rounding innocuous?", 1995);
 *   float32 subnormals are normal doubles, so none is flushed there;
 * - sincos32 is specified in binary64 arithmetic;
 * so the program needs cl_khr_fp64, which the host checks before building.
 * No library exp/sin/cos: exp32 and sincos32 are the spec's polynomials.
 * Reductions are the spec's lane_dot (16 lanes, ascending, folded 8, 4, 2, 1),
 * one work-item per output row, so no work-group order can change a bit.
 *
 * The rope tables' theta_i and attention's scale are computed by the host
 * with the reference (a handful of values per call), and passed in.
 */

#define LANES 16

static float f32_bits(const uint b) { return as_float(b); }

static float div32(const float a, const float b) { return (float)((double)a / (double)b); }

static float sqrt32(const float a) { return (float)sqrt((double)a); }

/* The spec's lane_dot of a[0..d) and b[0..d). */
static float lane_dot(__global const float *a, __global const float *b, const int d)
{
    float acc[LANES];
    for (int l = 0; l < LANES; ++l) {
        acc[l] = 0.0f;
    }
    for (int k = 0; k < d; ++k) {
        const float p = a[k] * b[k];
        acc[k % LANES] = acc[k % LANES] + p;
    }
    for (int s = LANES / 2; s >= 1; s >>= 1) {
        for (int q = 0; q < s; ++q) {
            acc[q] = acc[q] + acc[q + s];
        }
    }
    return acc[0];
}

/* lane_dot(e, ones): e[k] * 1 is exact, so the product is left out. */
static float lane_sum(__global const float *e, const int n)
{
    float acc[LANES];
    for (int l = 0; l < LANES; ++l) {
        acc[l] = 0.0f;
    }
    for (int k = 0; k < n; ++k) {
        acc[k % LANES] = acc[k % LANES] + e[k];
    }
    for (int s = LANES / 2; s >= 1; s >>= 1) {
        for (int q = 0; q < s; ++q) {
            acc[q] = acc[q] + acc[q + s];
        }
    }
    return acc[0];
}

/* 2^e as a float32 for e in [-126, 127]: biased exponent, zero fraction. */
static float pow2f(const int e) { return f32_bits((uint)(e + 127) << 23); }

/* The spec's exp32. */
static float exp32(const float x)
{
    if (isnan(x)) {
        return x;
    }
    if (x > f32_bits(0x42B17217u)) {
        return INFINITY;
    }
    if (x < f32_bits(0xC2D00000u)) {
        return 0.0f;
    }
    const float t = x * f32_bits(0x3FB8AA3Bu);
    const float k = rint(t);
    const float khi = k * f32_bits(0x3F318000u);
    float r = x - khi;
    const float klo = k * f32_bits(0xB95E8083u);
    r = r - klo;
    const float z = r * r;
    const uint P[6] = {0x39506967u, 0x3AB743CEu, 0x3C088908u, 0x3D2AA9C1u, 0x3E2AAAAAu, 0x3F000000u};
    float p = f32_bits(P[0]);
    for (int i = 1; i < 6; ++i) {
        p = p * r;
        p = p + f32_bits(P[i]);
    }
    p = p * z;
    p = p + r;
    p = p + 1.0f;
    const int ki = (int)k;
    const int k1 = ki >= 0 ? ki / 2 : -((1 - ki) / 2); /* floor(k / 2); C's / truncates */
    const float scaled = p * pow2f(k1);
    return scaled * pow2f(ki - k1);
}

/* The spec's sincos32, in binary64 (S_n, C_n from the spec's table). */
static void sincos32(const float a, float *sin_out, float *cos_out)
{
    if (!isfinite(a)) {
        *sin_out = NAN;
        *cos_out = NAN;
        return;
    }
    const double S[8] = {0x1.0000000000000p+0,   -0x1.5555555555555p-3,  0x1.1111111111111p-7,
                         -0x1.a01a01a01a01ap-13, 0x1.71de3a556c734p-19,  -0x1.ae64567f544e4p-26,
                         0x1.6124613a86d09p-33,  -0x1.ae7f3e733b81fp-41};
    const double C[9] = {0x1.0000000000000p+0,   -0x1.0000000000000p-1,  0x1.5555555555555p-5,
                         -0x1.6c16c16c16c17p-10, 0x1.a01a01a01a01ap-16,  -0x1.27e4fb7789f5cp-22,
                         0x1.1eed8eff8d898p-29,  -0x1.93974a8c07c9dp-37, 0x1.ae7f3e733b81fp-45};
    const double x = (double)a;
    const double kt = x * 0x1.45f306dc9c883p-1;
    const double k = rint(kt);
    const double k1 = k * 0x1.921fb54400000p+0;
    double r = x - k1;
    const double k2 = k * 0x1.0b4611a626331p-34;
    r = r - k2;
    const double z = r * r;
    double ps = S[7];
    for (int n = 6; n >= 0; --n) {
        ps = ps * z;
        ps = ps + S[n];
    }
    double pc = C[8];
    for (int n = 7; n >= 0; --n) {
        pc = pc * z;
        pc = pc + C[n];
    }
    const double s = r * ps;
    const double c = pc;
    const double quarter = k * 0.25;
    const double four_floor = 4.0 * floor(quarter);
    const int q = (int)(k - four_floor); /* k mod 4, exact for every integer-valued k */
    const double sn = q == 0 ? s : q == 1 ? c : q == 2 ? -s : -c;
    const double cs = q == 0 ? c : q == 1 ? -s : q == 2 ? -c : s;
    *sin_out = (float)sn;
    *cos_out = (float)cs;
}

/* The spec's softmax of e[0..n) in place: m the first maximal element, NaNs ignored. */
static void softmax_row(__global float *e, const int n)
{
    int first = -1;
    for (int j = 0; j < n; ++j) {
        if (!isnan(e[j]) && (first < 0 || e[j] > e[first])) {
            first = j;
        }
    }
    const float m = e[first < 0 ? 0 : first];
    for (int j = 0; j < n; ++j) {
        e[j] = exp32(e[j] - m);
    }
    const float s = lane_sum(e, n);
    for (int j = 0; j < n; ++j) {
        e[j] = div32(e[j], s);
    }
}

/* ---- kernels ------------------------------------------------------------ */

/* rmsnorm of row get_global_id(0) of x (t, d); the weight is float32 or, read with vload_half
 * (exact), float16. */
#define RMSNORM(NAME, WT, LOAD)                                                                   \
    __kernel void NAME(__global const float *x, const int d, __global const WT *w, const float eps, \
                       __global float *y)                                                        \
    {                                                                                            \
        const size_t row = (size_t)get_global_id(0) * d;                                         \
        const float ss = lane_dot(x + row, x + row, d);                                          \
        const float mean = div32(ss, (float)d);                                                  \
        const float v = mean + eps;                                                              \
        const float inv = div32(1.0f, sqrt32(v));                                                \
        for (int j = 0; j < d; ++j) {                                                            \
            const float xi = x[row + j] * inv;                                                   \
            y[row + j] = xi * LOAD;                                                              \
        }                                                                                        \
    }
RMSNORM(rmsnorm_f32, float, w[j])
RMSNORM(rmsnorm_f16, half, vload_half(j, w))

/* rope: work-item (r, i) computes the tables of pair i at token r's position and rotates that
 * pair in each of the n_head heads of x (t, n_head, head_dim). */
__kernel void rope(__global const float *x, const int n_head, const int head_dim,
                   __global const int *positions, __global const float *theta, __global float *y)
{
    const int r = get_global_id(0), i = get_global_id(1);
    const float angle = (float)positions[r] * theta[i]; /* positions < 2^24: exact in float */
    float sn, cs;
    sincos32(angle, &sn, &cs);
    for (int h = 0; h < n_head; ++h) {
        const size_t at = ((size_t)r * n_head + h) * head_dim + 2 * i;
        const float x0 = x[at], x1 = x[at + 1];
        const float a = x0 * cs, b = x1 * sn, c = x0 * sn, e = x1 * cs;
        y[at] = a - b;
        y[at + 1] = c + e;
    }
}

/* attention: work-item (r - first, h) for the rows r = first .. first + tile - 1.  k and v hold
 * each sequence's cache rows one after another ((rows, n_kv, head_dim) per sequence), row r's
 * sequence starting at float offset start[r]; scratch holds `longest` floats per work-item for
 * the scores (the host tiles the rows so that it stays small). */
__kernel void attention(__global const float *q, const int n_head, const int head_dim, const int n_kv,
                        __global const float *k, __global const float *v, __global const long *start,
                        __global const int *positions, const float scale, __global float *scratch,
                        const int longest, const int first, __global float *out)
{
    const int r = first + get_global_id(0), h = get_global_id(1);
    const int g = h / (n_head / n_kv), n = positions[r] + 1, stride = n_kv * head_dim;
    const size_t item = (size_t)r * n_head + h;
    __global const float *qh = q + item * head_dim;
    __global const float *kh = k + start[r] + (size_t)g * head_dim;
    __global const float *vh = v + start[r] + (size_t)g * head_dim;
    __global float *a = scratch + ((size_t)get_global_id(0) * n_head + h) * longest;
    __global float *o = out + item * head_dim;
    for (int j = 0; j < n; ++j) {
        const float dot = lane_dot(qh, kh + (size_t)j * stride, head_dim);
        a[j] = dot * scale;
    }
    softmax_row(a, n);
    /* o[i] sums over j ascending, as the spec's loop; j outermost reads each value row in order */
    for (int i = 0; i < head_dim; ++i) {
        o[i] = 0.0f;
    }
    for (int j = 0; j < n; ++j) {
        __global const float *vj = vh + (size_t)j * stride;
        const float aj = a[j];
        for (int i = 0; i < head_dim; ++i) {
            const float p = aj * vj[i];
            o[i] = o[i] + p;
        }
    }
}

/* softmax of row r of x (t, n) over its first lengths[r] entries, +0.0 after them. */
__kernel void softmax(__global const float *x, const int n, __global const int *lengths, __global float *y)
{
    const size_t row = (size_t)get_global_id(0) * n;
    const int len = lengths[get_global_id(0)];
    for (int j = 0; j < n; ++j) {
        y[row + j] = j < len ? x[row + j] : 0.0f;
    }
    softmax_row(y + row, len);
}

/* argmax of row r of x (t, n): the first NaN, else the first maximal element (+0.0 == -0.0). */
__kernel void argmax(__global const float *x, const int n, __global long *out)
{
    __global const float *row = x + (size_t)get_global_id(0) * n;
    int best = 0;
    for (int j = 0; j < n; ++j) {
        if (isnan(row[j])) {
            best = j;
            break;
        }
        if (row[j] > row[best]) {
            best = j;
        }
    }
    out[get_global_id(0)] = best;
}

/* The residual add, one float32 addition per element. */
__kernel void add(__global const float *a, __global const float *b, __global float *y)
{
    const size_t i = get_global_id(0);
    y[i] = a[i] + b[i];
}
