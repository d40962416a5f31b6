/* SPDX-License-Identifier: MIT */
/* blas.h - what the host asks of its BLAS beyond cblas_sgemm, for each BLAS
 * configure can pick (--with-blas): OpenBLAS, FlexiBLAS and BLIS can be held
 * to a thread count (found at run time unless linked to OpenBLAS directly);
 * any other CBLAS is taken as it is. */
#ifndef MH_BLAS_H
#define MH_BLAS_H

/* Run the BLAS's own routines on n threads.  0 when this BLAS has no such
 * control: it must then be single-threaded, or pinned to one thread through
 * its environment (OMP_NUM_THREADS=1, BLIS_NUM_THREADS=1, ...), for results
 * not to depend on it. */
int blas_set_threads(int n);
/* The BLAS and, where it says, the kernels it runs: "SkylakeX", "Haswell"
 * (OpenBLAS), a FlexiBLAS backend name, else the pkg-config module linked. */
const char *blas_describe(void);

#endif
