/* GGML Q8_0 and Q4_0 weights, dequantized in registers (docs/spec.md §13).
 * Included by rs_isa_impl.h after its v16 definitions, so each ISA gets its
 * own copy.  A block is 32 weights of one row: a little-endian float16 scale
 * d, then 32 int8 (Q8_0) or 16 bytes of nibbles (Q4_0: byte i holds element i
 * low and element i + 16 high, each biased by 8).
 *
 * Each weight is float(q) * float(d), one product that is exact (an 11-bit
 * significand times at most 7 bits, far from underflow and overflow), so it
 * has the same bits in every ISA and in fast mode: the kernels then use it as
 * they use a converted float16 weight, in the spec's lane order. */
#ifndef RS_QUANT_IMPL_H
#define RS_QUANT_IMPL_H

#define RS_QBLOCK 32
#define RS_Q8_0_BYTES 34
#define RS_Q4_0_BYTES 18

/* Bytes from a row's start to column k (k a multiple of 32 for quantized
 * weights: every kernel starts rows and column tiles on block boundaries). */
RS_INLINE size_t w_offset(int64_t k, const int WT) {
    switch (WT) {
    case RS_W_F16: return (size_t)k * 2;
    case RS_W_Q8_0: return (size_t)(k / RS_QBLOCK) * RS_Q8_0_BYTES;
    case RS_W_Q4_0: return (size_t)(k / RS_QBLOCK) * RS_Q4_0_BYTES;
    default: return (size_t)k * 4;
    }
}

RS_INLINE float q_scale(const uint8_t *block) { return rs_half_to_float((uint16_t)(block[0] | block[1] << 8)); }

/* Element j (0..31) of a block, as its integer q. */
RS_INLINE int q_at(const uint8_t *block, int j, const int WT) {
    if (WT == RS_W_Q8_0) return (int)(int8_t)block[2 + j];
    return (j < 16 ? block[2 + j] & 15 : block[2 + j - 16] >> 4) - 8;
}

/* Weights k .. k+15 (k a multiple of 16) of a quantized row: half k/16 % 2 of block k/32. */
#if defined(RS_V16_AVX512) || defined(RS_V16_AVX2)
/* sixteen int8 -> v16, times d */
RS_INLINE v16 q16_scaled(__m128i q, float d) {
#if defined(RS_V16_AVX512)
    return v_mul(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), v_set1(d));
#else
    v16 r = {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)))};
    return v_mul(r, v_set1(d));
#endif
}

RS_INLINE float q_scale_f16c(const uint8_t *block) {
    return _cvtsh_ss((unsigned short)(block[0] | block[1] << 8)); /* F16C: exact, subnormals too */
}

/* Half `half` (elements 16*half ..) of a block whose scale is d. */
RS_INLINE v16 q_half(const uint8_t *block, int half, float d, const int WT) {
    if (WT == RS_W_Q8_0) return q16_scaled(_mm_loadu_si128((const __m128i *)(block + 2 + 16 * half)), d);
    __m128i packed = _mm_loadu_si128((const __m128i *)(block + 2));
    __m128i nib = _mm_and_si128(half ? _mm_srli_epi16(packed, 4) : packed, _mm_set1_epi8(15));
    return q16_scaled(_mm_sub_epi8(nib, _mm_set1_epi8(8)), d);
}
#define RS_Q_SCALE q_scale_f16c
#else
RS_INLINE v16 q_half(const uint8_t *block, int half, float d, const int WT) {
    RS_ALIGN64 float buf[16];
    for (int i = 0; i < 16; i++) buf[i] = (float)q_at(block, 16 * half + i, WT) * d;
    return v_ld(buf);
}
#define RS_Q_SCALE q_scale
#endif

RS_INLINE v16 ld_q(const void *row, int64_t k, const int WT) {
    const uint8_t *block = (const uint8_t *)row + w_offset(k, WT);
    return q_half(block, (int)(k >> 4) & 1, RS_Q_SCALE(block), WT);
}

/* Both halves of the block holding weights k .. k+31 (k a multiple of 32): the
 * scale is converted and the bytes loaded once for the two. */
RS_INLINE void ld_q_block(const void *row, int64_t k, const int WT, v16 *lo, v16 *hi) {
    const uint8_t *block = (const uint8_t *)row + w_offset(k, WT);
    const float d = RS_Q_SCALE(block);
    *lo = q_half(block, 0, d, WT);
    *hi = q_half(block, 1, d, WT);
}

/* Weight k of a quantized row, alone. */
RS_INLINE float q_w_at(const void *row, int64_t k, const int WT) {
    const uint8_t *block = (const uint8_t *)row + w_offset(k, WT);
    return (float)q_at(block, (int)(k % RS_QBLOCK), WT) * q_scale(block);
}

#endif
