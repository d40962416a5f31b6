/* SPDX-License-Identifier: MIT */
/* quantize.c - see quantize.h. */
#include "plugin/quantize.h"
#include "compute/kernels.h"
#include "compute/ops.h"
#include "compute/quant.h"
#include "compute/threadpool.h"
#include "model/safetensors.h"

#include <stdio.h>
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
	int i = modeldir_find(d, t->name);
	const mh_tensor *c = NULL;
	if (i >= 0 && d->index[i] == t && !(c = modeldir_conv(d, i, 0)))
		c = modeldir_conv(d, i, 1);
	return c ? c : t;
}

/* A new tensor like t (name, shape) of dtype q, its data allocated, or
 * NULL + an error naming t. */
static mh_tensor *conv_new(mh_dir *d, const mh_tensor *t, mh_dtype q, const char *doing)
{
	size_t bytes = mh_row_bytes(q, t->shape[1]) * (size_t)t->shape[0];
	mh_tensor *c = calloc(1, sizeof *c);
	void *data = NULL;
	if (!c || posix_memalign(&data, 64, bytes ? bytes : 64) != 0) {
		free(c);
		modeldir_error(d, modeldir_file_of(d, t), "out of memory %s tensor '%s'", doing, t->name);
		return NULL;
	}
	*c = *t;
	c->dtype = q;
	c->data = data;
	c->nbytes = bytes;
	return c;
}

static const mh_tensor *conv_keep(mh_dir *d, mh_tensor *c, int src, int transposed)
{
	if (modeldir_add_conv(d, c, src, transposed) == 0)
		return c;
	modeldir_error(d, modeldir_file_of(d, d->index[src]), "out of memory converting tensor '%s'",
		       d->index[src]->name);
	free((void *)c->data);
	free(c);
	return NULL;
}

/* ---- the block scales of stored Q8_0/Q4_0 tensors ----------------------------
 * A NaN or infinite scale turns every product with its block into NaN, so
 * no kernel may read one.  Checking them at open read the whole file (a
 * scale in every 34 bytes touches every cache line): 0.2-0.3 s for
 * TinyLlama Q8_0, more than the rest of loading, at memory speed whatever
 * the thread count on this VM.  The ops check each tensor on its first use
 * (compute/scales.c); here, the whole dir at once, over the thread pool in
 * chunks of CHECK_BLOCKS blocks, for `quantize` (which copies them) and
 * when watching fails for want of memory, and one tensor before it is
 * dequantized for an old plugin or by vec_f32. */
#define CHECK_BLOCKS 4096

typedef struct {
	const mh_tensor *t;
	size_t from, to;
} check_chunk;

typedef struct {
	const check_chunk *c;
	unsigned char *bad;
} check_job;

static void check_chunks(void *ctx, int64_t b, int64_t e, int thread)
{
	const check_job *j = ctx;
	(void)thread;
	for (int64_t k = b; k < e; k++)
		j->bad[k] = st_bad_scale(j->c[k].t, j->c[k].from, j->c[k].to) != (size_t)-1;
}

static int scale_error(mh_dir *d, const mh_tensor *t)
{
	modeldir_error(d, modeldir_file_of(d, t), "tensor '%s' has a block scale that is not a "
		       "finite number", t->name);
	return -1;
}

int quantize_check_tensor(mh_dir *d, const mh_tensor *t)
{
	if (d->scales_checked || !mh_dtype_is_quant(t->dtype) ||
	    st_bad_scale(t, 0, t->nbytes) == (size_t)-1)
		return 0;
	return scale_error(d, t);
}

int quantize_check_scales(mh_dir *d)
{
	if (d->scales_checked)
		return 0;
	size_t n = 0;
	for (int i = 0; i < d->n_tensors; i++) {
		const mh_tensor *t = d->index[i];
		if (mh_dtype_is_quant(t->dtype)) {
			size_t step = CHECK_BLOCKS * mh_row_bytes(t->dtype, MH_QBLOCK);
			n += (t->nbytes + step - 1) / step;
		}
	}
	check_chunk *c = malloc((n ? n : 1) * sizeof *c);
	unsigned char *bad = calloc(n ? n : 1, 1);
	if (!c || !bad) {
		free(c);
		free(bad);
		modeldir_error(d, NULL, "out of memory");
		return -1;
	}
	n = 0;
	for (int i = 0; i < d->n_tensors; i++) {
		const mh_tensor *t = d->index[i];
		if (!mh_dtype_is_quant(t->dtype))
			continue;
		size_t step = CHECK_BLOCKS * mh_row_bytes(t->dtype, MH_QBLOCK);
		for (size_t b = 0; b < t->nbytes; b += step)
			c[n++] = (check_chunk){ t, b, t->nbytes - b < step ? t->nbytes : b + step };
	}
	check_job j = { c, bad };
	pool_run(ops_pool(), (int64_t)n, check_chunks, &j);
	int rc = 0;
	for (size_t k = 0; k < n && rc == 0; k++)
		if (bad[k])
			rc = scale_error(d, c[k].t);
	free(c);
	free(bad);
	d->scales_checked = rc == 0;
	return rc;
}

const mh_tensor *quantize_weight(mh_dir *d, const mh_tensor *t)
{
	mh_dtype q = mh_dtype_is_quant(t->dtype) && !d->quant_ok ? MH_F32
		     : d->quant_ok ? quantize_target(d, t) : t->dtype;
	int i = modeldir_find(d, t->name);
	if (q == t->dtype || i < 0 || d->index[i] != t)
		return t;
	const mh_tensor *had = modeldir_conv(d, i, 0);
	if (had)
		return had;
	if (quantize_check_tensor(d, t) != 0)
		return NULL;
	mh_tensor *c = conv_new(d, t, q, "converting");
	if (!c)
		return NULL;
	quantize_into((void *)c->data, q, t);
	return conv_keep(d, c, i, 0);
}

/* ---- weight_t: a weight stored [in, out] (Conv1D), transposed once ---------
 * The stored tensor is read in slabs of T_SLAB of its rows (T_SLAB columns
 * of the copy), each slab over the thread pool in tiles of T_TILE rows of
 * the copy, and the slab's mapped pages are given back as soon as it is
 * done: the process holds the copy plus one slab, never both whole (8192
 * x 5632 BF16: an 88 MB copy, peak RSS 96 MB).  A tile reads T_TILE
 * consecutive elements (one or two cache lines) of each of the slab's
 * stored rows into a per-thread scratch and writes T_TILE rows of the
 * copy, T_SLAB elements each.  When the copy is quantized, the slab's
 * columns are whole blocks (T_SLAB is a multiple of MH_QBLOCK), gathered
 * as floats and quantized straight into the copy, so no float copy of the
 * transposed weight is ever made. */
#define T_SLAB 256
#define T_TILE 32

typedef struct {
	const mh_tensor *t;     /* stored [cols, rows] */
	char *dst;              /* [rows, cols] of dtype q */
	mh_dtype q;
	int64_t rows, cols;
	int64_t i0, n;          /* the slab: stored rows [i0, i0 + n) */
	float *scratch;         /* per thread: a tile, T_TILE x T_SLAB floats */
} t_job;

/* The tile goes through scratch, T_SLAB elements a row: the copy's rows
 * are often a power of two bytes apart (4 KiB for 2048 BF16 columns), so
 * T_TILE of them share one L1 set, and writing them straight took 3x as
 * long.  Eight stored rows at a time, each scratch row in turn: user time
 * 0.13-0.17 s -> 0.05-0.08 s for 8192 x 5632 BF16 against one stored row
 * at a time (2 threads, 3 alternating runs, /usr/bin/time). */
#define T_GATHER(type)                                                                       \
	do {                                                                                 \
		type *f = scratch;                                                           \
		for (int64_t i0 = 0; i0 < j->n; i0 += 8) {                                   \
			int64_t ni = j->n - i0 < 8 ? j->n - i0 : 8;                          \
			for (int64_t k = 0; k < nr; k++)                                     \
				for (int64_t i = 0; i < ni; i++)                             \
					memcpy(&f[k * T_SLAB + i0 + i],                      \
					       src + (i0 + i) * ss + k * sizeof(type), sizeof(type)); \
		}                                                                            \
	} while (0)

static void t_copy(const t_job *j, int64_t r0, int64_t nr, void *scratch)
{
	size_t es = mh_dtype_size(j->t->dtype), ss = (size_t)j->rows * es;
	const char *src = (const char *)j->t->data + (j->i0 * j->rows + r0) * es;
	if (es == 2)
		T_GATHER(uint16_t);
	else
		T_GATHER(uint32_t);
	for (int64_t k = 0; k < nr; k++)
		memcpy(j->dst + ((r0 + k) * j->cols + j->i0) * es, (char *)scratch + k * T_SLAB * es,
		       (size_t)j->n * es);
}

static void t_quant(const t_job *j, int64_t r0, int64_t nr, float *f)
{
	float col[T_TILE];
	for (int64_t i = 0; i < j->n; i++) {
		ops_to_f32(col, j->t, (j->i0 + i) * j->rows + r0, nr);
		for (int64_t k = 0; k < nr; k++)
			f[k * T_SLAB + i] = col[k];
	}
	size_t rb = mh_row_bytes(j->q, j->cols), at = mh_row_bytes(j->q, j->i0);
	for (int64_t k = 0; k < nr; k++)
		kern_quant_row(j->q, j->dst + (r0 + k) * rb + at, f + k * T_SLAB, j->n);
}

static void t_tiles(void *ctx, int64_t b, int64_t e, int thread)
{
	const t_job *j = ctx;
	for (int64_t tile = b; tile < e; tile++) {
		int64_t r0 = tile * T_TILE, nr = j->rows - r0 < T_TILE ? j->rows - r0 : T_TILE;
		float *f = j->scratch + (size_t)thread * T_TILE * T_SLAB;
		if (j->q == j->t->dtype)
			t_copy(j, r0, nr, f);
		else
			t_quant(j, r0, nr, f);
	}
}

static void transpose_into(mh_dir *d, int src, mh_tensor *c, float *scratch)
{
	const mh_tensor *t = d->index[src];
	t_job j = { t, (char *)c->data, c->dtype, c->shape[0], c->shape[1], 0, 0, scratch };
	size_t es = mh_dtype_size(t->dtype), slab = (size_t)j.rows * es;
	int64_t tiles = (j.rows + T_TILE - 1) / T_TILE;
	for (j.i0 = 0; j.i0 < j.cols; j.i0 += T_SLAB) {
		j.n = j.cols - j.i0 < T_SLAB ? j.cols - j.i0 : T_SLAB;
		pool_run(ops_pool(), tiles, t_tiles, &j);
		modeldir_drop_part(d, src, (const char *)t->data + j.i0 * slab, (size_t)j.n * slab);
	}
}

static void shape_error(mh_dir *d, const mh_tensor *t, int64_t d0, int64_t d1, const char *why)
{
	char got[96] = "";
	size_t k = 0;
	for (int i = 0; i < t->ndim && k < sizeof got - 24; i++)
		k += snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
	modeldir_error(d, modeldir_file_of(d, t), "tensor '%s' has shape [%s], expected [%lld, %lld] "
		       "(%s, for weight_t)", t->name, got, (long long)d0, (long long)d1, why);
}

const mh_tensor *quantize_weight_t(mh_dir *d, const char *name, int64_t rows, int64_t cols)
{
	int i = modeldir_find(d, name);
	if (i < 0) {
		modeldir_error(d, modeldir_file_of(d, NULL), "tensor '%s' is missing", name);
		return NULL;
	}
	const mh_tensor *t = d->index[i];
	/* a quantize'd checkpoint stores the copy, blocks along its rows:
	 * [rows, cols] as matmul takes it */
	if (mh_dtype_is_quant(t->dtype)) {
		if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
			shape_error(d, t, rows, cols, "quantized: [out, in]");
			return NULL;
		}
		return quantize_weight(d, t);
	}
	if (!mh_dtype_is_float(t->dtype)) {
		modeldir_error(d, modeldir_file_of(d, t), "tensor '%s' has dtype %s, expected F32, F16 "
			       "or BF16", name, mh_dtype_name(t->dtype));
		return NULL;
	}
	if (rows <= 0 || cols <= 0 || t->ndim != 2 || t->shape[0] != cols || t->shape[1] != rows) {
		shape_error(d, t, cols, rows, "stored [in, out]");
		return NULL;
	}
	const mh_tensor *had = modeldir_conv(d, i, 1);
	if (had)
		return had;
	mh_tensor shape = *t;
	shape.shape[0] = rows;
	shape.shape[1] = cols;
	mh_dtype q = d->quant_ok ? quantize_target(d, &shape) : t->dtype;
	mh_tensor *c = conv_new(d, &shape, q, "transposing");
	float *scratch = malloc((size_t)pool_size(ops_pool()) * T_TILE * T_SLAB * sizeof *scratch);
	if (c && !scratch) {
		modeldir_error(d, modeldir_file_of(d, t), "out of memory transposing tensor '%s'", name);
		free((void *)c->data);
		free(c);
		c = NULL;
	}
	if (!c)
		return NULL;
	transpose_into(d, i, c, scratch);
	free(scratch);
	return conv_keep(d, c, i, 1);
}
