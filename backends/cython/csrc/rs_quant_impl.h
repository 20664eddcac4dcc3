/* GGML Q8_0, Q4_0 and Q6_K weights, dequantized in registers (docs/spec.md §13).
 * Included by rs_isa_impl.h after its v16 definitions, so each ISA gets its
 * own copy.
 *
 * A Q8_0/Q4_0 block is 32 weights of one row: a little-endian float16 scale
 * d, then 32 int8 (Q8_0) or 16 bytes of nibbles (Q4_0: byte i holds element i
 * low and element i + 16 high, each biased by 8).  Each weight is
 * float(q) * float(d), one product that is exact (an 11-bit significand times
 * at most 7 bits, far from underflow and overflow).
 *
 * A Q6_K block is 256 weights: ql[128] (low 4 bits), qh[64] (high 2 bits),
 * sc[16] int8 sub-block scales, then d.  Element j = 128h + 32c + l takes the
 * low (c < 2) or high nibble of ql[64h + 32(c%2) + l], bits 2c..2c+1 of
 * qh[32h + l], minus 32; weights 16i..16i+15 share sc[i].  Each weight is
 * (float(d) * float(sc)) * float(q): every product exact (|m sc q| < 2^23),
 * so d * sc is formed once per 16 weights and the 16 then load as a Q8_0 half
 * does, with that product as their scale.
 *
 * Exact products have the same bits in every ISA and in fast mode: the
 * kernels then use a weight as they use a converted float16 one, in the
 * spec's lane order.  Every kernel reads quantized weights 16 at a time
 * (k a multiple of 16) or alone; k counts from a row's start or from a
 * column tile's, which starts on a whole block (rs_kernels.h). */
#ifndef RS_QUANT_IMPL_H
#define RS_QUANT_IMPL_H

#define RS_Q8_0_BYTES 34
#define RS_Q4_0_BYTES 18
#define RS_Q6_K_BYTES 210
#define RS_Q6_K_D 208 /* byte offset of d in a Q6_K block */

/* Bytes from a row's start to column k's block (the column itself for float types). */
RS_INLINE size_t w_offset(int64_t k, const int WT) {
    switch (WT) {
    case RS_W_F16: return (size_t)k * 2;
    case RS_W_Q8_0: return (size_t)(k / 32) * RS_Q8_0_BYTES;
    case RS_W_Q4_0: return (size_t)(k / 32) * RS_Q4_0_BYTES;
    case RS_W_Q6_K: return (size_t)(k / 256) * RS_Q6_K_BYTES;
    default: return (size_t)k * 4;
    }
}

/* About where column k's bytes lie (k a multiple of 32), for prefetching the
 * next rows: a Q6_K block spans four cache lines, its start alone would not do. */
RS_INLINE size_t w_prefetch_offset(int64_t k, const int WT) {
    return WT == RS_W_Q6_K ? (size_t)k * RS_Q6_K_BYTES / 256 : w_offset(k, WT);
}

RS_INLINE const uint8_t *q_block(const void *row, int64_t k, const int WT) {
    return (const uint8_t *)row + w_offset(k, WT);
}

RS_INLINE float q_scale(const uint8_t *block, const int WT) {
    const uint8_t *d = block + (WT == RS_W_Q6_K ? RS_Q6_K_D : 0);
    return rs_half_to_float((uint16_t)(d[0] | d[1] << 8));
}

/* Element j (0..RS_QK(WT)-1) of a block, as its integer q. */
RS_INLINE int q_at(const uint8_t *block, int j, const int WT) {
    if (WT == RS_W_Q8_0) return (int)(int8_t)block[2 + j];
    if (WT == RS_W_Q4_0) return (j < 16 ? block[2 + j] & 15 : block[2 + j - 16] >> 4) - 8;
    const int h = j >> 7, c = (j >> 5) & 3, l = j & 31;
    const int low = block[64 * h + 32 * (c & 1) + l] >> (4 * (c >> 1)) & 15;
    const int high = block[128 + 32 * h + l] >> (2 * c) & 3;
    return (low | high << 4) - 32;
}

/* The factor of weights j .. j+15 of a block (j a multiple of 16) whose scale is d:
 * d itself, or d times the Q6_K sub-block scale (an exact product, spec §13). */
RS_INLINE float q_factor(const uint8_t *block, int j, float d, const int WT) {
    return WT == RS_W_Q6_K ? d * (float)(int8_t)block[192 + (j >> 4)] : d;
}

/* Weights k .. k+15 (k a multiple of 16) of a quantized row. */
#if defined(RS_V16_AVX512) || defined(RS_V16_AVX2)
/* sixteen int8 -> v16, times f */
RS_INLINE v16 q16_scaled(__m128i q, float f) {
#if defined(RS_V16_AVX512)
    return v_mul(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), v_set1(f));
#else
    v16 r = {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)))};
    return v_mul(r, v_set1(f));
#endif
}

RS_INLINE float q_scale_f16c(const uint8_t *block, const int WT) {
    const uint8_t *d = block + (WT == RS_W_Q6_K ? RS_Q6_K_D : 0);
    return _cvtsh_ss((unsigned short)(d[0] | d[1] << 8)); /* F16C: exact, subnormals too */
}

/* The sixteen int8 codes of weights j .. j+15 of a block (j a multiple of 16). */
RS_INLINE __m128i q16_codes(const uint8_t *block, int j, const int WT) {
    if (WT == RS_W_Q8_0) return _mm_loadu_si128((const __m128i *)(block + 2 + j));
    const __m128i low4 = _mm_set1_epi8(15);
    if (WT == RS_W_Q4_0) {
        __m128i packed = _mm_loadu_si128((const __m128i *)(block + 2));
        return _mm_sub_epi8(_mm_and_si128(j ? _mm_srli_epi16(packed, 4) : packed, low4), _mm_set1_epi8(8));
    }
    /* Q6_K: j = 128h + 32c + l0, l0 = 0 or 16 */
    const int h = j >> 7, c = (j >> 5) & 3, l0 = j & 16;
    __m128i ql = _mm_loadu_si128((const __m128i *)(block + 64 * h + 32 * (c & 1) + l0));
    __m128i qh = _mm_loadu_si128((const __m128i *)(block + 128 + 32 * h + l0));
    __m128i low = _mm_and_si128(c >> 1 ? _mm_srli_epi16(ql, 4) : ql, low4);
    /* bits 2c, 2c+1 of each byte, to bits 4, 5: 16-bit shifts, masked per byte */
    __m128i high = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi8(32));
}

/* Weights j .. j+15 of a block whose scale is d. */
RS_INLINE v16 q_sixteen(const uint8_t *block, int j, float d, const int WT) {
    return q16_scaled(q16_codes(block, j, WT), q_factor(block, j, d, WT));
}
#define RS_Q_SCALE q_scale_f16c
#else
RS_INLINE v16 q_sixteen(const uint8_t *block, int j, float d, const int WT) {
    RS_ALIGN64 float buf[16];
    const float f = q_factor(block, j, d, WT);
    for (int i = 0; i < 16; i++) buf[i] = (float)q_at(block, j + i, WT) * f;
    return v_ld(buf);
}
#define RS_Q_SCALE q_scale
#endif

RS_INLINE v16 ld_q(const void *row, int64_t k, const int WT) {
    const uint8_t *block = q_block(row, k, WT);
    return q_sixteen(block, (int)(k % RS_QK(WT)), RS_Q_SCALE(block, WT), WT);
}

/* Weights k .. k+15 and k+16 .. k+31 (k a multiple of 32, so one block): the
 * scale is converted and the block found once for the two. */
RS_INLINE void ld_q_block(const void *row, int64_t k, const int WT, v16 *lo, v16 *hi) {
    const uint8_t *block = q_block(row, k, WT);
    const float d = RS_Q_SCALE(block, WT);
#if defined(RS_V16_AVX512)
    if (WT == RS_W_Q4_0) {
        /* The sixteen values (i - 8) * d, each the exact product the spec defines, made once per
         * block and picked by nibble (vpermps reads the low 4 bits of each index): one multiply
         * per 32 weights instead of two conversions and two multiplies, the same bits. */
        const __m512 table = _mm512_mul_ps(_mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm512_set1_ps(d));
        const __m512i packed = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(block + 2)));
        *lo = _mm512_permutexvar_ps(packed, table);
        *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(packed, 4), table);
        return;
    }
#endif
    const int j = (int)(k % RS_QK(WT));
    *lo = q_sixteen(block, j, d, WT);
    *hi = q_sixteen(block, j + 16, d, WT);
}

/* Weight k of a quantized row, alone. */
RS_INLINE float q_w_at(const void *row, int64_t k, const int WT) {
    const uint8_t *block = q_block(row, k, WT);
    const int j = (int)(k % RS_QK(WT));
    return (float)q_at(block, j, WT) * q_factor(block, j & ~15, q_scale(block, WT), WT);
}

#endif
