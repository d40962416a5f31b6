/* SPDX-License-Identifier: MIT */
/* gemm.h - the host's GEMM: the rows of a matmul that are prompt tokens
 * (ops.c routes them), against weights of any dtype, converted to F32 as
 * they are packed.  Every result is one chain of fused multiply-adds in
 * column order (kern_gemm_tile), so its bits depend on its own row of x
 * and of weights alone: not on the other rows, their count, the threads
 * or how the work is cut.  That makes it batch-invariant by construction,
 * and lets the prompts of a batch share one pass over the weights. */
#ifndef MH_GEMM_H
#define MH_GEMM_H

#include "compute/threadpool.h"
#include <modelhost/plugin.h>

/* Whether gemm_rows takes weights w with the kernels in use. */
int gemm_ok(const mh_tensor *w);
/* y[i] + row[t] * rows_i = (x + row[t] * cols) * w[i]^T for t < m and
 * i < count, where w[i] is rows_i x cols (count <= GEMM_WEIGHTS_MAX); -1
 * when memory ran out (the rows then hold anything). */
#define GEMM_WEIGHTS_MAX 8
int gemm_rows(mh_pool *pool, float *const *y, const float *x, const int *row, int m,
	      const mh_tensor *const *w, int count, int64_t cols);
void gemm_cleanup(void); /* free scratch memory */

#endif
