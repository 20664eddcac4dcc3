/* Exact float16 -> float32, shared by the weight kernels (rs_isa_impl.h) and
 * the runtime kernels (rs_runtime.c). */
#ifndef RS_HALF_H
#define RS_HALF_H

#include <stdint.h>
#include <string.h>

/* With integers only: subnormals normalised, Inf and NaN kept (and immune to
 * DAZ, unlike a multiply by 2^112). */
static inline float rs_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    float f;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        uint32_t e = 113;
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

#endif
