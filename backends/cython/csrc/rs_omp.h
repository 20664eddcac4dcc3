/* The one OpenMP shim (after scikit-learn's _openmp_helpers): every file that
 * needs OpenMP includes this, so a compiler without OpenMP still builds the
 * extension and it runs on one thread (and says so through RS_OPENMP_ENABLED). */
#ifndef RS_OMP_H
#define RS_OMP_H

#ifdef _OPENMP
#include <omp.h>
#define RS_OPENMP_ENABLED 1
static inline int rs_omp_max_threads(void) { return omp_get_max_threads(); }
static inline int rs_omp_num_threads(void) { return omp_get_num_threads(); }
static inline int rs_omp_thread_num(void) { return omp_get_thread_num(); }
#else
#define RS_OPENMP_ENABLED 0
static inline int rs_omp_max_threads(void) { return 1; }
static inline int rs_omp_num_threads(void) { return 1; }
static inline int rs_omp_thread_num(void) { return 0; }
#endif

#endif
