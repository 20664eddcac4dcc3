/* The kernels for avx512; setup.py compiles this file with that ISA's flags only. */
#define RS_V16_AVX512
#define RS_ISA_TABLE rs_isa_avx512
#define RS_ISA_NAME "avx512"
#include "rs_isa_impl.h"
