/* The kernels for avx2; setup.py compiles this file with that ISA's flags only. */
#define RS_V16_AVX2
#define RS_ISA_TABLE rs_isa_avx2
#define RS_ISA_NAME "avx2"
#include "rs_isa_impl.h"
