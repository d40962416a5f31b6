/* SPDX-License-Identifier: MIT */
/* quantize.c - see quantize.h. */
#include "plugin/quantize.h"
#include "compute/kernels.h"
#include "compute/ops.h"
#include "compute/quant.h"
#include "compute/threadpool.h"

#include <stdlib.h>
#include <string.h>

int quantize_is_io(const char *name)
{
	size_t n = strlen(name);
	return strstr(name, "embed_tokens") || strstr(name, "wte") || strstr(name, "lm_head") ||
	       strcmp(name, "output.weight") == 0 ||
	       (n > 14 && strcmp(name + n - 14, ".output.weight") == 0 && !strstr(name, "layers"));
}

mh_dtype quantize_target(const mh_dir *d, const mh_tensor *t)
{
	if ((d->quant == MH_F32 && d->quant_io == MH_F32) || !mh_dtype_is_float(t->dtype) || t->ndim != 2 ||
	    t->shape[1] % MH_QBLOCK != 0 || t->shape[1] == 0)
		return t->dtype;
	mh_dtype q = quantize_is_io(t->name) ? d->quant_io : d->quant;
	return q == MH_F32 ? t->dtype : q;
}

typedef struct {
	char *dst;
	mh_dtype q;
	const mh_tensor *t;
	int64_t cols;
} q_job;

static void q_rows(void *ctx, int64_t b, int64_t e, int thread)
{
	const q_job *j = ctx;
	size_t rb = mh_row_bytes(j->q, j->cols);
	if (j->q == MH_F32) {
		ops_to_f32((float *)j->dst + b * j->cols, j->t, b * j->cols, (e - b) * j->cols);
		return;
	}
	float *buf = malloc((size_t)j->cols * sizeof *buf);
	for (int64_t r = b; r < e; r++) {
		if (!buf) { /* no room for a row: NaN scales, which matmul turns into NaN */
			memset(j->dst + r * rb, 0xff, rb);
			continue;
		}
		ops_to_f32(buf, j->t, r * j->cols, j->cols);
		kern_quant_row(j->q, j->dst + r * rb, buf, j->cols);
	}
	free(buf);
}

void quantize_into(void *dst, mh_dtype q, const mh_tensor *t)
{
	q_job j = { dst, q, t, t->shape[1] };
	pool_run(ops_pool(), t->shape[0], q_rows, &j);
}

const mh_tensor *quantize_loaded(const mh_dir *d, const mh_tensor *t)
{
	for (int i = 0; i < d->n_conv; i++)
		if (strcmp(d->conv[i]->name, t->name) == 0)
			return d->conv[i];
	return t;
}

const mh_tensor *quantize_weight(mh_dir *d, const mh_tensor *t)
{
	mh_dtype q = mh_dtype_is_quant(t->dtype) && !d->quant_ok ? MH_F32
		     : d->quant_ok ? quantize_target(d, t) : t->dtype;
	if (q == t->dtype)
		return t;
	const mh_tensor *had = quantize_loaded(d, t);
	if (had != t)
		return had;
	size_t bytes = mh_row_bytes(q, t->shape[1]) * (size_t)t->shape[0];
	mh_tensor *c = calloc(1, sizeof *c);
	void *data = NULL;
	mh_tensor **nc = realloc(d->conv, (d->n_conv + 1) * sizeof *nc);
	if (nc)
		d->conv = nc;
	if (!c || !nc || posix_memalign(&data, 64, bytes ? bytes : 64) != 0) {
		free(c);
		modeldir_error(d, modeldir_file_of(d, t), "out of memory converting tensor '%s' to %s",
			       t->name, mh_dtype_name(q));
		return NULL;
	}
	*c = *t;
	c->dtype = q;
	c->data = data;
	c->nbytes = bytes;
	quantize_into(data, q, t);
	d->conv[d->n_conv++] = c;
	int i = modeldir_find(d, t->name);
	if (i >= 0 && d->index[i] == t)
		modeldir_drop(d, i);
	return c;
}
