/* The runtime's per-token operators (docs/spec.md §12) for the cython backend:
 * rmsnorm, rope, attention over KV caches, softmax, argmax and the residual
 * add, plus exp32 and sincos32 on their own (the tests sweep them).
 *
 * They are light next to the weight-heavy kernels, so they are plain C in one
 * file (rs_runtime.c) built with the baseline flags: -ffp-contract=off and no
 * fast-math, so every product and sum is its own IEEE rounding, as the spec
 * writes them.  Work is split over rows (attention: over (row, head) pairs);
 * each output element is computed by one thread from start to finish, so the
 * thread count never changes a bit.  Inputs are C-contiguous and validated by
 * the caller; what would read out of bounds (positions, sequence indices) is
 * checked again here.  Functions return 0 or a negative RS_E* code. */
#ifndef RS_RUNTIME_H
#define RS_RUNTIME_H

#include <stdint.h>

enum { RS_EPOS = -5 }; /* after rs_kernels.h's codes: a layer call can return either kind */

float rs_exp32(float x);
void rs_sincos32(float a, float *sin_out, float *cos_out);

/* x (t, d), w (d,) float32 or float16 -> y (t, d) */
int rs_rmsnorm(const float *x, int64_t t, int64_t d, const void *w, int w_f16, float eps, float *y, int threads);

/* x (t, n_head, head_dim), positions (t,) in [0, 2^24) -> y, same shape */
int rs_rope(const float *x, int64_t t, int64_t n_head, int64_t head_dim, const int64_t *positions, double base,
            float *y, int threads);

/* Row r of q (t, n_head, head_dim) belongs to sequence seq[r] < n_seq, whose
 * cache rows k[seq[r]], v[seq[r]] are (cache_len[seq[r]], n_kv, head_dim);
 * it attends to cache rows 0 .. positions[r] -> out (t, n_head, head_dim).
 * With new_k and new_v (t, n_kv, head_dim) (else NULL), every row's key and
 * value are first stored at cache row positions[r] of its sequence, in row
 * order, before any row attends. */
int rs_attention(const float *q, int64_t t, int64_t n_head, int64_t head_dim, float *const *k, float *const *v,
                 const int64_t *cache_len, int64_t n_seq, int64_t n_kv, const int64_t *seq, const int64_t *positions,
                 const float *new_k, const float *new_v, float *out, int threads);

/* x (t, n), lengths (t,) in [1, n] -> y (t, n) */
int rs_softmax(const float *x, int64_t t, int64_t n, const int64_t *lengths, float *y, int threads);

/* x (t, n), n >= 1 -> out (t,) */
int rs_argmax(const float *x, int64_t t, int64_t n, int64_t *out, int threads);

/* y = a + b over n floats */
int rs_add(const float *a, const float *b, int64_t n, float *y, int threads);

#endif
