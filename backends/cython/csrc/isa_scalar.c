/* The kernels for scalar; setup.py compiles this file with that ISA's flags only. */
#define RS_V16_SCALAR
#define RS_ISA_TABLE rs_isa_scalar
#define RS_ISA_NAME "scalar"
#include "rs_isa_impl.h"
