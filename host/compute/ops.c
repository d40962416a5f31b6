/* SPDX-License-Identifier: MIT */
/* ops.c - see ops.h.  The numeric core: each step a small named function,
 * written to match Hugging Face transformers' float32 computation.  The
 * inner loops live in kernels.c (vectorised per stored dtype). */
#include "compute/ops.h"
#include "compute/blas.h"
#include "compute/gemm.h"
#include "compute/kernels.h"
#include "base/util.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static mh_pool *pool;

/* Per-thread scratch, grown on demand and kept: no allocation per token
 * once the longest context has been seen. */
#define MAX_THREADS 256
static float *scratch[MAX_THREADS];   /* attention scores */
static size_t scratch_len[MAX_THREADS];
static float *wscratch[MAX_THREADS];  /* converted weight blocks */
static size_t wscratch_len[MAX_THREADS];
static float *wblock;
static size_t wblock_len;
static float *xprep[MAX_THREADS];     /* x as the few-token kernels read it */
static size_t xprep_len[MAX_THREADS];
/* Per-thread scratch of the few-row path (a plugin may call matmul from
 * inside parallel_for): the prepared x pointers and the output rows. */
static const float **xr_bufs[MAX_THREADS];
static int *row_bufs[MAX_THREADS];
static size_t xr_lens[MAX_THREADS];
static int *gemm_row_bufs[MAX_THREADS]; /* the rows of the GEMM path */
static size_t gemm_row_lens[MAX_THREADS];

/* How prompts' matmuls are done: by default the host's GEMM (gemm.c) where
 * the kernel set has one, else each pool thread runs a single-threaded
 * SGEMM over its share of the rows (OpenBLAS's own threads stay asleep, so
 * they never compete with ours for the cores).  For comparison,
 * MH_GEMM=sgemm takes the second way always, and MH_GEMM=blas hands whole
 * products to OpenBLAS's threads. */
enum { GEMM_HOST, GEMM_POOL, GEMM_BLAS_THREADS };
static int gemm_mode = -1;
static int blas_threads_now = -1;

static void set_blas_threads(int n)
{
	if (n != blas_threads_now) {
		blas_set_threads(n);
		blas_threads_now = n;
	}
}

/* The core OpenBLAS picked for its kernels at load: its own CPU detection,
 * or the OPENBLAS_CORETYPE environment variable (bench prints it: on the
 * same CPU its AVX-512 and AVX2 kernels differ 1.5-2.5x in SGEMM rate). */
const char *ops_blas_core(void)
{
	return blas_describe();
}

void ops_set_pool(mh_pool *p)
{
	pool = p;
	if (gemm_mode < 0) {
		const char *e = getenv("MH_GEMM");
		gemm_mode = !e                       ? GEMM_HOST
			    : strcmp(e, "blas") == 0  ? GEMM_BLAS_THREADS
			    : strcmp(e, "sgemm") == 0 ? GEMM_POOL
						      : GEMM_HOST;
	}
	set_blas_threads(gemm_mode == GEMM_BLAS_THREADS ? pool_size(p) : 1);
}

mh_pool *ops_pool(void)
{
	return pool;
}

int ops_blas_threads(int n)
{
	int old = blas_threads_now;
	set_blas_threads(n);
	return old;
}

const char *ops_describe(void)
{
	return gemm_mode == GEMM_BLAS_THREADS ? "blas-threads"
	       : gemm_mode == GEMM_POOL	      ? "pool"
	       : kern_gemm_ok()		      ? "host"
					      : "pool";
}

void ops_cleanup(void)
{
	for (int i = 0; i < MAX_THREADS; i++) {
		free(scratch[i]);
		scratch[i] = NULL;
		scratch_len[i] = 0;
		free(wscratch[i]);
		wscratch[i] = NULL;
		wscratch_len[i] = 0;
		free(xprep[i]);
		xprep[i] = NULL;
		xprep_len[i] = 0;
	}
	free(wblock);
	wblock = NULL;
	wblock_len = 0;
	for (int i = 0; i < MAX_THREADS; i++) {
		free(xr_bufs[i]);
		free(row_bufs[i]);
		free(gemm_row_bufs[i]);
		xr_bufs[i] = NULL;
		row_bufs[i] = NULL;
		gemm_row_bufs[i] = NULL;
		xr_lens[i] = gemm_row_lens[i] = 0;
	}
	gemm_cleanup();
}

typedef struct {
	float *dst;
	const mh_tensor *w;
	int64_t r0, cols;
} cv_job;

static void convert_rows(void *ctx, int64_t b, int64_t e, int thread)
{
	const cv_job *j = ctx;
	ops_to_f32(j->dst + b * j->cols, j->w, (j->r0 + b) * j->cols, (e - b) * j->cols);
}

/* ---- dtype conversion ------------------------------------------------------ */

void ops_to_f32(float *dst, const mh_tensor *t, int64_t first, int64_t count)
{
	if (mh_dtype_is_quant(t->dtype)) { /* first and count are whole blocks */
		kern_to_f32(t->dtype, dst, (const char *)t->data + mh_row_bytes(t->dtype, first),
			    count);
		return;
	}
	if (!mh_dtype_is_float(t->dtype) || t->dtype == MH_F64) {
		memset(dst, 0, count * sizeof(float));
		return;
	}
	kern_to_f32(t->dtype, dst, (const char *)t->data + first * mh_dtype_size(t->dtype), count);
}

/* ---- matmul ------------------------------------------------------------------ */

/* Up to this many rows a run (a sequence's rows in a matmul) is a set of
 * dot products that reads each weight byte once (decode is bound by memory
 * bandwidth); beyond it the weights go through SGEMM (prefill is bound by
 * arithmetic).  SGEMM has to convert 16-bit and quantized weights to F32
 * first, which a short prompt does not amortise, so those take the row
 * kernels for longer runs.  bench -p N -n 1, TinyLlama's shape, 2 threads,
 * alternating (2026-12-07), row kernels against SGEMM: BF16 pp16 37-42 vs
 * 26-28 t/s, pp32 35-40 vs 27-34, pp64 34-41 vs 37-40; Q8_0 pp32 47-48 vs
 * 34-36, pp64 43 vs 41; Q4_0 pp32 44-47 vs 35-39; F32 pp16 26-28 vs 28,
 * pp32 29-30 vs 33-38. */
#ifndef SMALL_N
#define SMALL_N 8
#endif
#ifndef SMALL_N_CONVERTED
#define SMALL_N_CONVERTED 32
#endif

/* the longest run of rows that takes the row kernels for weights w */
static int small_n(const mh_tensor *w)
{
	return w->dtype == MH_F32 ? SMALL_N : SMALL_N_CONVERTED;
}

/* 16-bit weights are converted to F32 in blocks of about this many bytes
 * per thread before each SGEMM: large enough to amortise SGEMM's packing of
 * the activations, small enough to stay in L2 and keep scratch small. */
#define BLOCK_BYTES (1 << 20)
/* The smallest range of a matmul, as 1 / (these x threads) of it (the pool
 * hands out shrinking ranges down to that).  SGEMM's ranges stay large, as
 * each call packs the activations again.  The few-token kernel costs
 * almost nothing per range, and small last ranges let the threads finish
 * a matmul together, so its ranges also go down to SMALL_RANGE_BYTES of
 * weights: with 1/32 of a matrix as the floor (8.5 MB of Qwen2.5-0.5B's
 * output layer), the two threads of decode waited for each other 0.7-0.8
 * ms a token, and with 64 KiB 0.25 ms. */
#ifndef CHUNKS_PER_THREAD
#define CHUNKS_PER_THREAD 4
#endif
#ifndef SMALL_CHUNKS_PER_THREAD
#define SMALL_CHUNKS_PER_THREAD 16
#endif
#define SMALL_RANGE_BYTES (64 << 10)

/* pool_run_chunks' chunks for few-token matmuls reading `bytes` of weights */
static int small_chunks(int64_t bytes)
{
	int64_t c = SMALL_CHUNKS_PER_THREAD * pool_size(pool);
	if (bytes / SMALL_RANGE_BYTES > c)
		c = bytes / SMALL_RANGE_BYTES;
	return c < INT32_MAX ? (int)c : INT32_MAX;
}

/* One weight times the prompt pieces of a batch: the runs of len[0..runs)
 * rows longer than small, their rows of x (cols apart) and of y (rows
 * apart) from the start of x and y. */
typedef struct {
	const mh_tensor *w;
	int64_t rows, cols;
	const float *x;
	float *y;
	const int *len;
	int runs, small;
} mm_job;

/* SGEMM of one prompt piece against weight rows [r0, r0 + nr) held at w:
 * the same call whatever else is in the batch. */
static void mm_pieces(const mm_job *j, const float *w, int64_t r0, int64_t nr)
{
	for (int r = 0, at = 0; r < j->runs; at += j->len[r++])
		if (j->len[r] > j->small)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->len[r], (int)nr,
				    (int)j->cols, 1.0f, j->x + (size_t)at * j->cols, (int)j->cols, w,
				    (int)j->cols, 0.0f, j->y + (size_t)at * j->rows + r0,
				    (int)j->rows);
}

/* SGEMM's blocks of weight rows: a matrix is cut into GEMM_BLOCKS blocks
 * of a multiple of 16 rows (whole panels), fixed by its shape alone, each
 * block one SGEMM call (per conversion block for 16-bit weights).
 * OpenBLAS rounds a row's sums differently with the number of rows in the
 * call (a split at any 16-row boundary changed some bits, every time), so
 * the calls must not follow the pool's ranges, which change from run to
 * run and with the thread count.  16 blocks share out evenly among 2 or 4
 * threads. */
#define GEMM_BLOCKS 16

static int64_t gemm_block(int64_t rows)
{
	int64_t block = (rows + GEMM_BLOCKS - 1) / GEMM_BLOCKS;
	return (block + 15) / 16 * 16;
}

/* Rows [b, e) of the output for every piece, whole blocks (gemm_block):
 * every pool thread runs its own single-threaded SGEMM, block by block,
 * 16-bit rows converted into its scratch about BLOCK_BYTES at a time.  Each
 * piece is one SGEMM call per block, the call it would be alone (so its
 * bits are); the pieces of a batch share the conversion, and the block
 * stays in cache between them.  Converting once for eight 16-token prompts
 * instead of once each: eight BF16 TinyLlama pp16 prompts in one batch
 * 26.8-30.4 -> 33.2-35.5 t/s (bench -p 16 --parallel 1,8, three rounds
 * alternating, 2026-12-07). */
static void mm_gemm(void *ctx, int64_t b, int64_t e, int thread)
{
	const mm_job *j = ctx;
	int64_t block = gemm_block(j->rows), step = block;
	float *buf = NULL;
	if (j->w->dtype != MH_F32) {
		step = BLOCK_BYTES / (j->cols * (int64_t)sizeof(float));
		step = step < 16 ? 16 : step / 16 * 16;
		if (step > block)
			step = block;
		buf = mh_scratch(&wscratch[thread], &wscratch_len[thread], (size_t)(step * j->cols));
		if (!buf)
			return;
	}
	for (int64_t b0 = b; b0 < e; b0 += block) {
		int64_t e0 = e - b0 < block ? e : b0 + block;
		for (int64_t r0 = b0; r0 < e0; r0 += step) {
			int64_t nr = e0 - r0 < step ? e0 - r0 : step;
			const float *w = (const float *)j->w->data + r0 * j->cols;
			if (buf) {
				ops_to_f32(buf, j->w, r0 * j->cols, nr * j->cols);
				w = buf;
			}
			mm_pieces(j, w, r0, nr);
		}
	}
}

/* The same with OpenBLAS's own threads (MH_GEMM=blas, for comparison),
 * piece by piece. */
static void mm_gemm_blas(const mm_job *j)
{
	if (j->w->dtype == MH_F32) {
		mm_pieces(j, j->w->data, 0, j->rows);
		return;
	}
	int64_t block = (4 << 20) / (j->cols * (int64_t)sizeof(float));
	if (block < 16)
		block = 16;
	if (block > j->rows)
		block = j->rows;
	float *buf = mh_scratch(&wblock, &wblock_len, (size_t)(block * j->cols));
	if (!buf)
		return;
	for (int64_t r0 = 0; r0 < j->rows; r0 += block) {
		int64_t nr = j->rows - r0 < block ? j->rows - r0 : block;
		cv_job cj = { buf, j->w, r0, j->cols };
		pool_run(pool, nr, convert_rows, &cj);
		mm_pieces(j, buf, r0, nr);
	}
}

/* Out of memory in an op that cannot report it: the result is NaN, which
 * the sampler and every comparison downstream notice, never stale data. */
static void fill_nan(float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = NAN;
}

#define MATMUL_N_MAX 8

/* ---- batch-invariant routing ------------------------------------------------- *
 *
 * The rule (docs/batching.md): a row's result must not depend on the other
 * rows of the call.  The rows of a matmul come in runs, one per sequence
 * (ops_set_rows; without it, all n rows are one run), and each run is routed
 * by its own length alone:
 *  - a run of at most small_n() rows (a decode token, a short prompt piece;
 *    how short depends on the weights' dtype, so ops_matmul_n groups
 *    weights by it)
 *    goes through the row kernels, each row's bits those of a one-token
 *    call, whatever else is in the batch (kern_rows' promise, which
 *    check_ops tests on every kernel set); the rows of all such runs share
 *    one pass over the weights, block by block (ROW_BLOCK_BYTES of weights,
 *    read from memory once, from cache for the other rows), ROWS_AT_ONCE
 *    of them in one kern_rows call;
 *  - a longer run (a prompt piece) is an SGEMM of its own, as if alone
 *    (OpenBLAS rounds a row's sums by the shape of the call). */

static const int *run_len; /* ops_set_rows */
static int run_count, run_total;

void ops_set_rows(const int *len, int count)
{
	run_len = count > 0 ? len : NULL;
	run_count = count > 0 ? count : 0;
	run_total = 0;
	for (int i = 0; i < run_count; i++)
		run_total += len[i];
}

/* Weight bytes a block of the few-row path reads from memory before every
 * row takes it from cache (L1/L2).  The kernel's first group of tokens
 * prefetches the next block as it goes (kernels.c, rows_dt).  16 KiB
 * blocks without that prefetch -> 64 KiB with it: eight BF16 TinyLlama
 * sequences decoding together 31.2 -> 35.0 t/s (bench -p 16 -n 32
 * --parallel 1,8, four rounds alternating, 2026-12-08); one thread,
 * 8 x 5632 x 2048 BF16, 41 -> 54-58 GFLOP/s.  Prefetching two blocks
 * ahead was no better than none (40-43). */
#define ROW_BLOCK_BYTES (64 << 10)
#define ROWS_AT_ONCE KERN_ROWS_MAX

typedef struct {
	float *const *y;
	const mh_tensor *const *w;
	const float *const *xr; /* [i * nr + t]: row t's x as weight i's kernel reads it */
	const int *row;         /* [nr] the output row of each few-row row */
	int count, nr;
	int64_t cols, start[MATMUL_N_MAX + 1]; /* weight i owns rows [start[i], start[i+1]) */
} rows_job;

static void rows_task(void *ctx, int64_t b, int64_t e, int thread)
{
	const rows_job *j = ctx;
	for (int i = 0; i < j->count; i++) {
		int64_t lo = b > j->start[i] ? b : j->start[i];
		int64_t hi = e < j->start[i + 1] ? e : j->start[i + 1];
		if (lo >= hi)
			continue;
		const mh_tensor *w = j->w[i];
		int64_t rows = w->shape[0], r0 = lo - j->start[i], r1 = hi - j->start[i];
		int64_t blk = j->nr == 1 ? r1 - r0
					 : ROW_BLOCK_BYTES / (int64_t)mh_row_bytes(w->dtype, j->cols);
		if (blk < 8)
			blk = 8;
		for (int64_t a = r0; a < r1; a += blk) {
			int64_t z = r1 - a < blk ? r1 : a + blk;
			for (int t = 0; t < j->nr; t += ROWS_AT_ONCE) {
				int m = j->nr - t < ROWS_AT_ONCE ? j->nr - t : ROWS_AT_ONCE;
				float *y[ROWS_AT_ONCE];
				for (int k = 0; k < m; k++)
					y[k] = j->y[i] + (size_t)j->row[t + k] * rows;
				kern_rows(w->dtype, y, j->xr + (size_t)i * j->nr + t, m, w->data, a, z,
					  j->cols);
			}
		}
	}
}


/* y[i] = x * w[i]^T for count (<= MATMUL_N_MAX) weights of cols columns, n
 * rows, by the rule above. */
static void route(float *const *y, const float *x, const mh_tensor *const *w, int count, int n,
		  int64_t cols)
{
	int one = n, *len = &one, runs = 1;
	if (run_count > 0 && run_total == n) {
		len = (int *)run_len;
		runs = run_count;
	}
	int small = small_n(w[0]), nr = 0; /* the same for all: ops_matmul_n */
	for (int r = 0; r < runs; r++)
		if (len[r] <= small)
			nr += len[r];
	if (nr > 0) {
		size_t need = (size_t)count * nr;
		int th = pool_thread();
		if (xr_lens[th] < need) {
			free(xr_bufs[th]);
			free(row_bufs[th]);
			xr_bufs[th] = malloc(need * sizeof **xr_bufs);
			row_bufs[th] = malloc(need * sizeof **row_bufs);
			xr_lens[th] = xr_bufs[th] && row_bufs[th] ? need : 0;
		}
		const float **xr_buf = xr_bufs[th];
		int *row_buf = row_bufs[th];
		size_t xr_len = xr_lens[th];
		size_t slot = (size_t)cols + KERN_X_SLACK;
		float *buf = xr_len ? mh_scratch(&xprep[th], &xprep_len[th], need * slot) : NULL;
		if (!buf) {
			for (int i = 0; i < count; i++)
				fill_nan(y[i], (size_t)n * w[i]->shape[0]);
			return;
		}
		rows_job j = { y, w, xr_buf, row_buf, count, nr, cols, { 0 } };
		int64_t bytes = 0;
		for (int i = 0; i < count; i++) {
			j.start[i + 1] = j.start[i] + w[i]->shape[0];
			bytes += (int64_t)w[i]->nbytes;
		}
		int t = 0, at = 0;
		for (int r = 0; r < runs; at += len[r++])
			for (int k = 0; len[r] <= small && k < len[r]; k++, t++) {
				row_buf[t] = at + k;
				const float *xt = x + (size_t)(at + k) * cols;
				/* each row once per weight (kern_x_key: shared where alike) */
				for (int i = 0; i < count; i++) {
					int s = 0;
					while (s < i && kern_x_key(w[s]->dtype, w[s]->data, cols) !=
								kern_x_key(w[i]->dtype, w[i]->data, cols))
						s++;
					xr_buf[(size_t)i * nr + t] =
						s < i ? xr_buf[(size_t)s * nr + t]
						      : kern_prepare_x(w[i]->dtype, w[i]->data, xt, cols,
								       buf + ((size_t)i * nr + t) * slot);
				}
			}
		pool_run_chunks(pool, j.start[count], 8, small_chunks(bytes), rows_task, &j);
	}
	if (nr == n)
		return;
	/* the prompt pieces: the host's GEMM, all of them in one pass */
	int host = gemm_mode == GEMM_HOST;
	for (int i = 0; i < count; i++)
		host = host && gemm_ok(w[i]);
	if (host) {
		int th = pool_thread(), m = 0;
		if (gemm_row_lens[th] < (size_t)n) {
			free(gemm_row_bufs[th]);
			gemm_row_bufs[th] = malloc((size_t)n * sizeof **gemm_row_bufs);
			gemm_row_lens[th] = gemm_row_bufs[th] ? (size_t)n : 0;
		}
		int *rows = gemm_row_bufs[th];
		if (rows) {
			for (int r = 0, at = 0; r < runs; at += len[r++])
				for (int k = 0; len[r] > small && k < len[r]; k++)
					rows[m++] = at + k;
			if (gemm_rows(pool, y, x, rows, m, w, count, cols) == 0)
				return;
		}
		for (int i = 0; i < count; i++)
			fill_nan(y[i], (size_t)n * w[i]->shape[0]);
		return;
	}
	/* else one SGEMM job per weight over all of them */
	for (int i = 0; i < count; i++) {
		int64_t rows = w[i]->shape[0];
		mm_job j = { w[i], rows, cols, x, y[i], len, runs, small };
		if (gemm_mode == GEMM_BLAS_THREADS)
			mm_gemm_blas(&j);
		else
			pool_run_chunks(pool, rows, gemm_block(rows),
					CHUNKS_PER_THREAD * pool_size(pool), mm_gemm, &j);
	}
}

void ops_matmul(float *y, const float *x, const mh_tensor *w, const float *bias, int n)
{
	int64_t rows = w->shape[0], cols = w->ndim > 1 ? w->shape[1] : 1;
	route(&y, x, &w, 1, n, cols);
	if (bias)
		for (int t = 0; t < n; t++)
			kern_add(y + (size_t)t * rows, bias, rows);
}

/* Several matmuls of one input: the few-row rows of all the weights form
 * one index space, cut into ranges as one matrix's would be, so the threads
 * meet once instead of once per weight (at most MATMUL_N_MAX weights of the
 * same width and small_n a job). */
void ops_matmul_n(float *const *y, const float *x, const mh_tensor *const *w,
		  const float *const *bias, int count, int n)
{
	while (count > 0) {
		int k = 0;
		int64_t cols = w[0]->ndim > 1 ? w[0]->shape[1] : 1;
		while (k < count && k < MATMUL_N_MAX &&
		       (w[k]->ndim > 1 ? w[k]->shape[1] : 1) == cols &&
		       small_n(w[k]) == small_n(w[0]))
			k++;
		route(y, x, w, k, n, cols);
		for (int i = 0; i < k; i++)
			if (bias && bias[i])
				for (int t = 0; t < n; t++)
					kern_add(y[i] + (size_t)t * w[i]->shape[0], bias[i],
						 w[i]->shape[0]);
		y += k;
		w += k;
		if (bias)
			bias += k;
		count -= k;
	}
}

int ops_embed(float *out, const mh_tensor *table, const int32_t *ids, int n)
{
	int64_t vocab = table->shape[0], dim = table->ndim > 1 ? table->shape[1] : 1;
	for (int i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= vocab)
			return -1;
		ops_to_f32(out + (size_t)i * dim, table, (int64_t)ids[i] * dim, dim);
	}
	return 0;
}

/* ---- norms ---------------------------------------------------------------------- */

void ops_rmsnorm(float *y, const float *x, const float *w, int n, int dim, float eps)
{
	for (int t = 0; t < n; t++) {
		const float *xt = x + (size_t)t * dim;
		float *yt = y + (size_t)t * dim;
		double ss = kern_sumsq(xt, dim, 0.0);
		float r = 1.0f / sqrtf((float)(ss / dim) + eps);
		for (int i = 0; i < dim; i++)
			yt[i] = w ? w[i] * (xt[i] * r) : xt[i] * r;
	}
}

void ops_layernorm(float *y, const float *x, const float *w, const float *b, int n, int dim,
		   float eps)
{
	for (int t = 0; t < n; t++) {
		const float *xt = x + (size_t)t * dim;
		float *yt = y + (size_t)t * dim;
		double mean = kern_sum(xt, dim) / dim;
		double var = kern_sumsq(xt, dim, mean) / dim;
		float r = 1.0f / sqrtf((float)var + eps);
		for (int i = 0; i < dim; i++) {
			float v = (float)(xt[i] - mean) * r;
			yt[i] = (w ? v * w[i] : v) + (b ? b[i] : 0.0f);
		}
	}
}

/* ---- attention -------------------------------------------------------------------- */

/* Grouped-query attention reads each cached key and value row once per
 * group of query heads sharing it, not once per head: a task is one
 * token's KV head with some or all of its query heads, and the rows go
 * through in blocks small enough to stay in L1 while every head of the
 * task uses them.  Generating 2000 tokens, attention with the rows read
 * once per head took 15-16% of decoding, 9-10% grouped (with wsum's
 * accumulators in registers).  Per head the arithmetic and its order are
 * unchanged. */
#define ATTN_BLOCK_BYTES (16 << 10)

typedef struct {
	float *out;
	const float *q, *k, *v;
	int n, pos0, n_heads, n_kv, hd, window;
	int slots; /* position p is in row p % slots of k and v (0: row p) */
	int splits; /* tasks per KV head and token, each a share of its query heads */
	float scale;
} attn_job;

/* Scores of heads q[0..g) (each hd apart) against rows [0, cnt) of k,
 * into s[h * lds + i]; then the same rows of v weighted by them, added to
 * o[h * hd ...].  Rows go by blocks: a block is read from memory once and
 * from L1 by the other heads. */
static void attn_scores(float *s, int64_t lds, const float *q, int g, const float *k,
			int64_t ldk, int64_t cnt, int hd, int64_t block, float scale)
{
	for (int64_t b = 0; b < cnt; b += block) {
		int64_t nb = cnt - b < block ? cnt - b : block;
		for (int h = 0; h < g; h++)
			kern_dots(s + h * lds + b, q + (size_t)h * hd, k + b * ldk, ldk, nb, hd, scale);
	}
}

static void attn_values(float *o, const float *s, int64_t lds, int g, const float *v,
			int64_t ldv, int64_t cnt, int hd, int64_t block)
{
	for (int64_t b = 0; b < cnt; b += block) {
		int64_t nb = cnt - b < block ? cnt - b : block;
		for (int h = 0; h < g; h++)
			kern_wsum(o + (size_t)h * hd, s + h * lds + b, v + b * ldv, ldv, nb, hd);
	}
}

static void attn_task(void *ctx, int64_t b, int64_t e, int thread)
{
	const attn_job *j = ctx;
	int kv_dim = j->n_kv * j->hd, group = j->n_heads / j->n_kv;
	int64_t lds = j->pos0 + j->n; /* scores per head */
	int64_t block = ATTN_BLOCK_BYTES / ((int64_t)j->hd * (int64_t)sizeof(float));
	if (block < 4)
		block = 4;
	int most = (group + j->splits - 1) / j->splits;
	/* scores of up to `most` heads, then their softmax denominators */
	float *sc = mh_scratch(&scratch[thread], &scratch_len[thread], (size_t)(most * lds + most));
	int64_t per_tok = (int64_t)j->n_kv * j->splits; /* tasks per token */
	for (int64_t task = b; task < e; task++) {
		int t = (int)(task / per_tok), kvh = (int)(task % per_tok / j->splits);
		int part = (int)(task % j->splits);
		int h0 = kvh * group + part * group / j->splits;
		int g = kvh * group + (part + 1) * group / j->splits - h0;
		const float *q = j->q + ((size_t)t * j->n_heads + h0) * j->hd;
		float *o = j->out + ((size_t)t * j->n_heads + h0) * j->hd;
		if (!sc) {
			fill_nan(o, (size_t)g * j->hd);
			continue;
		}
		int i = j->pos0 + t;
		int lo = j->window > 0 && i - j->window + 1 > 0 ? i - j->window + 1 : 0;
		const float *kb = j->k + (size_t)kvh * j->hd, *vb = j->v + (size_t)kvh * j->hd;
		/* positions lo..i are rows first.. of the cache, wrapping at slots:
		 * one or two contiguous runs */
		int first = j->slots ? lo % j->slots : lo;
		int64_t cnt = i - lo + 1, run = cnt;
		if (j->slots && first + run > j->slots)
			run = j->slots - first;
		attn_scores(sc, lds, q, g, kb + (size_t)first * kv_dim, kv_dim, run, j->hd, block,
			    j->scale);
		if (run < cnt)
			attn_scores(sc + run, lds, q, g, kb, kv_dim, cnt - run, j->hd, block, j->scale);
		memset(o, 0, (size_t)g * j->hd * sizeof(float));
		float *inv = sc + most * lds;
		for (int h = 0; h < g; h++)
			inv[h] = 1.0f / kern_exp_sum(sc + h * lds, cnt);
		attn_values(o, sc, lds, g, vb + (size_t)first * kv_dim, kv_dim, run, j->hd, block);
		if (run < cnt)
			attn_values(o, sc + run, lds, g, vb, kv_dim, cnt - run, j->hd, block);
		for (int h = 0; h < g; h++)
			for (int d = 0; d < j->hd; d++)
				o[(size_t)h * j->hd + d] *= inv[h];
	}
}

/* Tasks per KV head and token: one when there are enough to share out,
 * else the query heads of a KV head split so that every thread has work. */
static void attn_run(attn_job *j)
{
	int group = j->n_heads / j->n_kv, threads = pool_size(pool);
	int64_t tasks = (int64_t)j->n * j->n_kv;
	j->splits = tasks >= threads ? 1 : (int)((threads + tasks - 1) / tasks);
	if (j->splits > group)
		j->splits = group;
	pool_run(pool, tasks * j->splits, attn_task, j);
}

/* Several runs of rows, each over a cache of its own (a batch's sequences),
 * as one pool job: the runs' tasks form one index space.  A head's sums do
 * not depend on how tasks are split, so each run's rows get the bits they
 * would get alone. */
typedef struct {
	attn_job *jobs;
	int64_t *start; /* run r owns tasks [start[r], start[r + 1]) */
} attn_multi;

static void attn_multi_task(void *ctx, int64_t b, int64_t e, int thread)
{
	const attn_multi *m = ctx;
	int r = 0;
	while (m->start[r + 1] <= b)
		r++;
	for (; b < e; r++) {
		int64_t hi = e < m->start[r + 1] ? e : m->start[r + 1];
		attn_task(&m->jobs[r], b - m->start[r], hi - m->start[r], thread);
		b = hi;
	}
}

void ops_attention_runs(const ops_attn_run *runs, int count, int layer, int n_heads, int head_dim,
			int window, float scale)
{
	attn_multi m = { malloc((size_t)count * sizeof *m.jobs),
			 malloc((size_t)(count + 1) * sizeof *m.start) };
	if (!m.jobs || !m.start) { /* one run at a time, without the index */
		for (int r = 0; r < count; r++)
			ops_attention_kv(runs[r].out, runs[r].q, runs[r].c, layer, runs[r].n,
					 runs[r].pos0, n_heads, head_dim, window, scale);
		free(m.jobs);
		free(m.start);
		return;
	}
	int64_t tasks = 0;
	for (int r = 0; r < count; r++) {
		const mh_kv_cache *c = runs[r].c;
		m.jobs[r] = (attn_job){ runs[r].out, runs[r].q, mh_kv_k(c, layer), mh_kv_v(c, layer),
					runs[r].n, runs[r].pos0, n_heads, c->kv_dim / head_dim,
					head_dim, window, c->n_ctx, 1, scale };
		tasks += (int64_t)runs[r].n * m.jobs[r].n_kv;
	}
	int threads = pool_size(pool), group = count ? n_heads / m.jobs[0].n_kv : 1;
	int splits = tasks >= threads ? 1 : (int)((threads + tasks - 1) / tasks);
	if (splits > group)
		splits = group;
	m.start[0] = 0;
	for (int r = 0; r < count; r++) {
		m.jobs[r].splits = splits;
		m.start[r + 1] = m.start[r] + (int64_t)runs[r].n * m.jobs[r].n_kv * splits;
	}
	pool_run(pool, m.start[count], attn_multi_task, &m);
	free(m.jobs);
	free(m.start);
}

void ops_attention(float *out, const float *q, const float *k_cache, const float *v_cache, int n,
		   int pos0, int n_heads, int n_kv_heads, int head_dim, int window, float scale)
{
	attn_job j = { out, q, k_cache, v_cache, n, pos0, n_heads, n_kv_heads, head_dim, window,
		       0, 1, scale };
	attn_run(&j);
}

void ops_attention_kv(float *out, const float *q, const mh_kv_cache *c, int layer, int n, int pos0,
		      int n_heads, int head_dim, int window, float scale)
{
	attn_job j = { out, q, mh_kv_k(c, layer), mh_kv_v(c, layer), n, pos0, n_heads,
		       c->kv_dim / head_dim, head_dim, window, c->n_ctx, 1, scale };
	attn_run(&j);
}

/* ---- activations ------------------------------------------------------------------- */

typedef struct {
	float *a;
	const float *b;
} ew_job;

static void silu_task(void *ctx, int64_t b, int64_t e, int thread)
{
	const ew_job *j = ctx;
	kern_silu_mul(j->a + b, j->b + b, e - b);
}

/* Element-wise ops go through the pool only when large enough (prefill),
 * in ranges of whole 64-element runs: the kernels' vector loop and their
 * scalar tail round differently, so a range's end must not decide which
 * elements take the tail (the pool's ranges change from run to run). */
#define EW_PARALLEL 32768
#define EW_ALIGN 64

/* The last n % 8 elements padded to a whole vector: an element takes the
 * vector loop wherever it sits, so a row's bits do not depend on whether
 * it is the last row of a batch. */
void ops_silu_mul(float *gate, const float *up, size_t n)
{
	ew_job j = { gate, up };
	size_t body = n / 8 * 8;
	if (body >= EW_PARALLEL)
		pool_run_aligned(pool, (int64_t)body, EW_ALIGN, silu_task, &j);
	else
		kern_silu_mul(gate, up, (int64_t)body);
	if (body < n) {
		float g[8] = { 0 }, u[8] = { 0 };
		memcpy(g, gate + body, (n - body) * sizeof *g);
		memcpy(u, up + body, (n - body) * sizeof *u);
		kern_silu_mul(g, u, 8);
		memcpy(gate + body, g, (n - body) * sizeof *g);
	}
}

void ops_gelu(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void ops_gelu_tanh(float *x, size_t n)
{
	const float c = 0.7978845608028654f; /* sqrt(2/pi) */
	for (size_t i = 0; i < n; i++) {
		float v = x[i];
		x[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
	}
}

void ops_add(float *y, const float *x, size_t n)
{
	kern_add(y, x, (int64_t)n);
}

void ops_softmax(float *x, int n)
{
	if (n <= 0)
		return;
	float inv = 1.0f / kern_exp_sum(x, n);
	for (int i = 0; i < n; i++)
		x[i] *= inv;
}
