/* SPDX-License-Identifier: MIT */
/* quantize.h - the weights converted once at load: --quant's Q8_0 / Q4_0
 * (or, for a plugin that predates them, floats), and weight_t's transposed
 * copies. */
#ifndef MH_QUANTIZE_H
#define MH_QUANTIZE_H

#include "model/modeldir.h"

/* 1 for the embedding table and the output layer by their usual names
 * (embed_tokens, wte, lm_head, output.weight): --quant-io's tensors. */
int quantize_is_io(const char *name);
/* The dtype --quant gives tensor t in d (t's own when it stays). */
mh_dtype quantize_target(const mh_dir *d, const mh_tensor *t);
/* What weight() hands the plugin for t, which it checked: t itself, or a
 * copy converted once (quantized, or dequantized to F32 for a plugin
 * older than ABI 1.2), owned by d; the mapped pages of a converted tensor
 * are given back.  NULL + an error on d when out of memory. */
const mh_tensor *quantize_weight(mh_dir *d, const mh_tensor *t);
/* weight_t: the tensor `name`, stored [cols, rows] (a Conv1D's [in, out]),
 * as [rows, cols]: a copy transposed once (and quantized if --quant asks),
 * owned by d, the stored pages given back.  A quantized stored tensor is
 * already [rows, cols] (`modelhost quantize` wrote the copy).  NULL + an
 * error naming the tensor when it is missing, of another dtype or shape,
 * or out of memory. */
const mh_tensor *quantize_weight_t(mh_dir *d, const char *name, int64_t rows, int64_t cols);
/* t (an index entry) as the plugin got it: its converted copy (the
 * transposed one if weight_t made only that), or t itself. */
const mh_tensor *quantize_loaded(const mh_dir *d, const mh_tensor *t);
/* The block scales of every Q8_0/Q4_0 tensor stored in d (opened with
 * ST_DEFER_SCALES), checked over the thread pool once per dir: before any
 * kernel reads them.  0, or -1 + an error on d naming the first tensor
 * with a scale that is Inf or NaN. */
int quantize_check_scales(mh_dir *d);
/* The same for one stored tensor (a no-op for other dtypes, and once the
 * whole dir is checked). */
int quantize_check_tensor(mh_dir *d, const mh_tensor *t);
/* Convert rows x cols of t into dst as dtype q (a block dtype, or F32),
 * over the thread pool. */
void quantize_into(void *dst, mh_dtype q, const mh_tensor *t);

#endif
