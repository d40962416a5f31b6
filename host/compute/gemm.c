/* SPDX-License-Identifier: MIT */
/* gemm.c - see gemm.h.  The loops of a GEMM in the manner of BLIS, for
 * few rows of activations (a prompt: up to a few hundred) against large
 * weights:
 *
 *   x is packed once, KERN_GEMM_MR rows interleaved column by column;
 *   each thread takes blocks of NC weight rows (the pool's ranges), and
 *   for each KC columns of them packs KERN_GEMM_NR rows at a time into a
 *   panel (converted to F32 as it is packed: BF16, F16 and the block
 *   formats need no pass of their own) that stays in L1 while every tile
 *   of x goes by it; the x panel (rows x KC) stays in L2, and so does the
 *   output block.
 *
 * Measured against OpenBLAS's SGEMM (with the conversion pass it needs)
 * in DEVELOPERS.md's way: see docs/performance.md. */
#include "compute/gemm.h"
#include "compute/kernels.h"
#include "base/util.h"

#include <stdlib.h>

#define MR KERN_GEMM_MR
#define NR KERN_GEMM_NR
/* Columns per panel: NR x KC floats of weights (16 KiB) in L1 beside a
 * tile's x (MR x KC). */
#ifndef KC
#define KC 256
#endif
/* Weight rows per block: the output block (rows x NC floats) stays in L2
 * across the KC steps. */
#ifndef NC
#define NC 128
#endif

#define MAX_THREADS 256
static float *xpack[MAX_THREADS]; /* the caller's packed x */
static size_t xpack_len[MAX_THREADS];
static float *panel[MAX_THREADS]; /* a worker's weight panel */
static size_t panel_len[MAX_THREADS];

void gemm_cleanup(void)
{
	for (int i = 0; i < MAX_THREADS; i++) {
		free(xpack[i]);
		free(panel[i]);
		xpack[i] = panel[i] = NULL;
		xpack_len[i] = panel_len[i] = 0;
	}
}

int gemm_ok(const mh_tensor *w)
{
	switch (w->dtype) {
	case MH_F32:
	case MH_F16:
	case MH_BF16:
		break;
	case MH_Q8_0:
	case MH_Q4_0:
		if (w->shape[1] % 32 != 0) /* panels start at whole blocks */
			return 0;
		break;
	default:
		return 0;
	}
	return w->ndim == 2 && kern_gemm_ok();
}

typedef struct {
	float *const *y;
	const mh_tensor *const *w;
	const int *row;
	const float *xp;
	int m, count;
	int64_t cols;
	int64_t start[GEMM_WEIGHTS_MAX + 1]; /* weight i owns [start[i], start[i + 1]) */
	int bad;
} gemm_job;

/* Weight rows [n0, n0 + nr) of w, columns [k0, k0 + kc), as a panel. */
static void pack_w(float *wp, const mh_tensor *w, int64_t n0, int nr, int64_t k0, int kc,
		   int64_t cols)
{
	kern_gemm_pack(w->dtype, wp, (const char *)w->data + mh_row_bytes(w->dtype, n0 * cols + k0),
		       cols, nr, kc);
}

/* Weight rows [lo, hi) of weight i for every row of x.  The next panel's
 * weights are fetched from memory while this one's tiles run, a few lines
 * a tile (without it, converting them stalled on every line: 9% of a
 * BF16 pp128's samples). */
static void gemm_block(const gemm_job *j, int i, int64_t lo, int64_t hi, float *wp)
{
	const mh_tensor *w = j->w[i];
	int64_t rows = w->shape[0], cols = j->cols;
	size_t stride = mh_row_bytes(w->dtype, cols);
	int tiles = (j->m + MR - 1) / MR;
	for (int64_t k0 = 0; k0 < cols; k0 += KC) {
		int kc = cols - k0 < KC ? (int)(cols - k0) : KC;
		for (int64_t n0 = lo; n0 < hi; n0 += NR) {
			int nr = hi - n0 < NR ? (int)(hi - n0) : NR;
			pack_w(wp, w, n0, nr, k0, kc, cols);
			int64_t pn = n0 + NR < hi ? n0 + NR : lo, pk = n0 + NR < hi ? k0 : k0 + KC;
			int pr = pk < cols ? (hi - pn < NR ? (int)(hi - pn) : NR) : 0;
			size_t pbytes = pk < cols ? mh_row_bytes(w->dtype, cols - pk < KC ? cols - pk : KC)
						  : 0;
			const char *pf = pr ? (const char *)w->data + pn * stride +
						      mh_row_bytes(w->dtype, pk)
					    : NULL;
			int per = (int)((pr * ((pbytes + 63) / 64) + tiles - 1) / tiles), prow = 0;
			size_t pat = 0;
			for (int t = 0; t < j->m; t += MR) {
				for (int q = 0; q < per && prow < pr; q++) {
					__builtin_prefetch(pf + prow * stride + pat, 0, 2);
					if ((pat += 64) >= pbytes)
						pat = 0, prow++;
				}
				int mr = j->m - t < MR ? j->m - t : MR;
				float *y[MR];
				for (int q = 0; q < mr; q++)
					y[q] = j->y[i] + (size_t)j->row[t + q] * rows + n0;
				kern_gemm_tile(y, mr, nr, k0 > 0, j->xp + (size_t)t * cols + k0 * MR,
					       wp, kc);
			}
		}
	}
}

static void gemm_task(void *ctx, int64_t b, int64_t e, int thread)
{
	gemm_job *j = ctx;
	float *wp = mh_scratch(&panel[thread], &panel_len[thread], (size_t)NR * KC);
	if (!wp) {
		__atomic_store_n(&j->bad, 1, __ATOMIC_RELAXED); /* any thread may */
		return;
	}
	for (int i = 0; i < j->count; i++) {
		int64_t lo = b > j->start[i] ? b : j->start[i];
		int64_t hi = e < j->start[i + 1] ? e : j->start[i + 1];
		for (int64_t a = lo; a < hi; a += NC)
			gemm_block(j, i, a - j->start[i], (hi - a < NC ? hi : a + NC) - j->start[i], wp);
	}
}

/* x's rows row[0..m) as tiles: xp[t * cols + k * MR + q] = x[row[t + q]][k]
 * for each tile t (a multiple of MR), the rows past m zero; a pool job
 * over the tiles (done serially, it was ~1% of a pp128's samples, the
 * other threads waiting meanwhile). */
typedef struct {
	float *xp;
	const float *x;
	const int *row;
	int m;
	int64_t cols;
} xpack_job;

static void pack_x(void *ctx, int64_t b, int64_t e, int thread)
{
	const xpack_job *j = ctx;
	(void)thread;
	for (int64_t t = b * MR; t < e * MR; t += MR) {
		float *d = j->xp + t * j->cols;
		for (int q = 0; q < MR; q++) {
			if (t + q >= j->m) {
				for (int64_t k = 0; k < j->cols; k++)
					d[k * MR + q] = 0.0f;
				continue;
			}
			const float *s = j->x + (size_t)j->row[t + q] * j->cols;
			for (int64_t k = 0; k < j->cols; k++)
				d[k * MR + q] = s[k];
		}
	}
}

int gemm_rows(mh_pool *pool, float *const *y, const float *x, const int *row, int m,
	      const mh_tensor *const *w, int count, int64_t cols)
{
	int64_t tiles = (m + MR - 1) / MR;
	int th = pool_thread();
	float *xp = mh_scratch(&xpack[th], &xpack_len[th], (size_t)(tiles * MR * cols));
	if (!xp)
		return -1;
	gemm_job j = { y, w, row, xp, m, count, cols, { 0 }, 0 };
	for (int i = 0; i < count; i++)
		j.start[i + 1] = j.start[i] + w[i]->shape[0];
	xpack_job xj = { xp, x, row, m, cols };
	pool_run(pool, tiles, pack_x, &xj);
	pool_run_chunks(pool, j.start[count], NR, 4 * pool_size(pool), gemm_task, &j);
	return j.bad ? -1 : 0;
}
