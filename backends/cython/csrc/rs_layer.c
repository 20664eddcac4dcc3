/* One decoder layer in one call (see rs_layer.h). */
#include <stdlib.h>
#include <string.h>

#include "rs_kernels.h"
#include "rs_layer.h"
#include "rs_runtime.h"

/* M's rows against every row of x (t, M.n), into out */
static rs_dot_args dot_args(const rs_matrix *M, const float *x, int64_t t, float *out, int fast) {
    return (rs_dot_args){M->p, M->wtype, M->d, NULL, x, t, out, M->n, fast};
}

/* out (t, M.n) = lane_dot of every row of M with every row of x */
static int project(int isa, const rs_matrix *M, const float *x, int64_t t, float *out, int fast, int threads) {
    const rs_dot_args A = dot_args(M, x, t, out, fast);
    return rs_dot(isa, &A, M->n, M->n, threads);
}

/* project() of Q, K and V, which share their input, in one parallel loop */
static int project_qkv(int isa, const rs_layer_args *L, const float *x, int64_t t, float *q, float *k, float *v,
                       int fast, int threads) {
    const rs_dot_args A[3] = {dot_args(&L->wq, x, t, q, fast), dot_args(&L->wk, x, t, k, fast),
                              dot_args(&L->wv, x, t, v, fast)};
    const rs_dot_args *const jobs[3] = {&A[0], &A[1], &A[2]};
    const int64_t n[3] = {L->wq.n, L->wk.n, L->wv.n};
    return rs_dot_jobs(isa, jobs, n, n, 3, threads);
}

int rs_layer(int isa, const rs_layer_args *L, const float *x, int64_t t, float *const *k, float *const *v,
             const int64_t *cache_len, int64_t n_seq, const int64_t *seq, const int64_t *positions,
             float *x_out, float *h, uint8_t *mask, int fast, int threads) {
    const int64_t dim = L->wq.d, kv = L->wk.n, n_ff = L->gate.n, hd = dim / L->n_head;
    if (t == 0) return RS_OK;
    /* a: normed input, then the attention output; q, k, v; o: O's product, then the FFN's */
    float *buf = malloc((size_t)(t * (4 * dim + 3 * kv)) * sizeof *buf);
    uint8_t *ones = L->sparse ? NULL : malloc((size_t)(t * n_ff));
    if (!buf || (!L->sparse && !ones)) {
        free(buf);
        free(ones);
        return RS_ENOMEM;
    }
    float *a = buf, *q = a + t * dim, *qr = q + t * dim, *kn = qr + t * dim, *kr = kn + t * kv, *vn = kr + t * kv,
          *o = vn + t * kv, *r = x_out; /* the residual lives in x_out until the FFN's sum replaces it */
    int rc = rs_rmsnorm(x, t, dim, L->attn_norm, L->attn_norm_f16, L->eps, a, threads);
    if (!rc) rc = project_qkv(isa, L, a, t, q, kn, vn, fast, threads);
    if (!rc) rc = rs_rope(q, t, L->n_head, hd, positions, L->rope_base, qr, threads);
    if (!rc) rc = rs_rope(kn, t, L->n_kv, hd, positions, L->rope_base, kr, threads);
    if (!rc)
        rc = rs_attention(qr, t, L->n_head, hd, k, v, cache_len, n_seq, L->n_kv, seq, positions, kr, vn, a,
                          threads);
    if (!rc) rc = project(isa, &L->wo, a, t, o, fast, threads);
    if (!rc) rc = rs_add(x, o, t * dim, r, threads);
    if (!rc) rc = rs_rmsnorm(r, t, dim, L->ffn_norm, L->ffn_norm_f16, L->eps, h, threads);
    if (!rc && L->sparse)
        rc = rs_predict(isa, r, t, dim, L->fc1.n, n_ff, L->fc1.p, L->fc1.wtype, L->fc2.p, L->fc2.wtype,
                        L->threshold, mask, fast, threads);
    if (!rc && !L->sparse) memset(ones, 1, (size_t)(t * n_ff));
    if (!rc)
        rc = rs_ffn(isa, h, t, dim, n_ff, L->down_t.d, L->gate.p, L->gate.wtype, L->up.p, L->up.wtype, L->down_t.p,
                    L->down_t.wtype, L->sparse ? mask : ones, o, fast, threads);
    if (!rc) rc = rs_add(r, o, t * dim, x_out, threads);
    free(buf);
    free(ones);
    return rc;
}
