/* The kernels for sse2; setup.py compiles this file with that ISA's flags only. */
#define RS_V16_SSE2
#define RS_ISA_TABLE rs_isa_sse2
#define RS_ISA_NAME "sse2"
#include "rs_isa_impl.h"
