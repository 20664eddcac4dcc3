/* One ReLU-LLaMA decoder layer in one call (docs/spec.md §12, "decoder_layer"):
 * the operators of the decoder step, in the step's order, each computed by the
 * same function its own backend call uses (rs_kernels.h, rs_runtime.h), so the
 * bits are those of the op-by-op composition for every thread count.  What it
 * saves is the Python between the ops: their argument checks, allocations and
 * the interpreter's cold caches after every weight stream. */
#ifndef RS_LAYER_H
#define RS_LAYER_H

#include <stdint.h>

typedef struct {
    const void *p;  /* rows of weight type wtype */
    int wtype;      /* RS_W_* */
    int64_t n, d;   /* rows, columns */
} rs_matrix;

typedef struct {
    const void *attn_norm, *ffn_norm;   /* (dim,) */
    int attn_norm_f16, ffn_norm_f16;
    rs_matrix wq, wk, wv, wo;           /* (dim, dim), (n_kv * hd, dim) twice, (dim, dim) */
    rs_matrix gate, up, down_t;         /* (n_ff, dim) each; down_t neuron-major */
    rs_matrix fc1, fc2;                 /* (rank, dim), (n_ff, rank); unread when dense */
    int64_t n_head, n_kv;               /* head_dim = dim / n_head */
    float eps, threshold;               /* already float32 values */
    double rope_base;
    int sparse;                         /* 1: predict and sparse_ffn; 0: dense_ffn */
} rs_layer_args;

/* x (t, dim) -> x_out (t, dim); also the FFN input h (t, dim) and, when sparse,
 * the predicted mask (t, n_ff).  The caches are rs_attention's: row r's
 * rotated key and value are stored at cache row positions[r] of sequence
 * seq[r] before any row attends.  Shapes are the caller's to check (the pyx
 * does); positions and sequence indices are checked again here. */
int rs_layer(int isa, const rs_layer_args *L, const float *x, int64_t t, float *const *k, float *const *v,
             const int64_t *cache_len, int64_t n_seq, const int64_t *seq, const int64_t *positions,
             float *x_out, float *h, uint8_t *mask, int fast, int threads);

#endif
