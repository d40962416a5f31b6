/* SPDX-License-Identifier: MIT */
/* host/compute/: tensors and compute (ops, kernels, rope, thread pool, the
 * decoder scaffold).  May include base/, model/ and the SDK header. */
/* ops.h - the tensor operations the host lends to plugins (see the
 * mh_services documentation in modelhost/plugin.h for their contracts).
 * Activations are row-major F32; weights may be F32, BF16, F16, Q8_0 or
 * Q4_0 (quant.h) and are
 * read where they lie in the mapped checkpoint.  Ops are called from one
 * thread at a time and use the process's thread pool inside. */
#ifndef MH_OPS_H
#define MH_OPS_H

#include "compute/threadpool.h"
#include <modelhost/plugin.h>

/* Use this pool (and as many OpenBLAS threads) from now on. */
void ops_set_pool(mh_pool *pool);
mh_pool *ops_pool(void);
void ops_cleanup(void); /* free scratch memory */
/* Set how many threads OpenBLAS itself uses; returns the previous count
 * (the ops normally keep it at 1 and split products over the pool). */
int ops_blas_threads(int n);
/* How large products are parallelised: "pool" or "blas-threads". */
const char *ops_describe(void);
/* The core OpenBLAS runs its kernels for, e.g. "SkylakeX", "Haswell". */
const char *ops_blas_core(void);

/* The rows of the next matmuls come in independent runs (one per sequence
 * of a batch): len[0..count) rows each, in order.  A matmul over exactly
 * that many rows routes each run by its own length, so that a row's result
 * does not depend on the other runs (ops.c, docs/batching.md); any other
 * row count is one run.  count 0: none.  len must stay valid until reset. */
void ops_set_rows(const int *len, int count);
void ops_matmul(float *y, const float *x, const mh_tensor *w, const float *bias, int n);
void ops_matmul_n(float *const *y, const float *x, const mh_tensor *const *w,
		  const float *const *bias, int count, int n);
int ops_embed(float *out, const mh_tensor *table, const int32_t *ids, int n);
/* Convert count elements of a float tensor from element `first` to F32. */
void ops_to_f32(float *dst, const mh_tensor *t, int64_t first, int64_t count);
void ops_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps);
void ops_layernorm(float *y, const float *x, const float *w, const float *b, int n, int dim,
		   float eps);
void ops_attention(float *out, const float *q, const float *k_cache, const float *v_cache, int n,
		   int pos0, int n_heads, int n_kv_heads, int head_dim, int window, float scale);
/* The same over a (possibly ring) KV cache: see mh_services.attention_kv. */
void ops_attention_kv(float *out, const float *q, const mh_kv_cache *c, int layer, int n, int pos0,
		      int n_heads, int head_dim, int window, float scale);
/* ops_attention_kv over several runs of rows at once (one pool job), each
 * run over a cache of its own: the sequences of a batch. */
typedef struct {
	float *out;
	const float *q;
	const mh_kv_cache *c;
	int n, pos0;
} ops_attn_run;
void ops_attention_runs(const ops_attn_run *runs, int count, int layer, int n_heads, int head_dim,
			int window, float scale);
void ops_silu_mul(float *gate, const float *up, size_t n);
void ops_gelu(float *x, size_t n);
void ops_gelu_tanh(float *x, size_t n);
void ops_add(float *y, const float *x, size_t n);
void ops_softmax(float *x, int n);

#endif
