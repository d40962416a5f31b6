/* SPDX-License-Identifier: MIT */
/* readprobe.c - see readprobe.h. */
#include "compute/readprobe.h"
#include "compute/kernels.h"
#include "compute/ops.h"
#include "base/util.h"

#include <stdlib.h>

#define BLOCK ((int64_t)256 << 10)
/* ranges per thread at the smallest, as decoding's SMALL_CHUNKS_PER_THREAD:
 * with one fixed half per thread, a thread the VM slowed left the other
 * idle, and decoding beat its own "limit" */
#define CHUNKS_PER_THREAD 16

struct readprobe {
	const char **ptr;
	int64_t *bytes, *first; /* first[k]: span k's first block; first[n]: all */
	int n, cap;
	double total;
	int way; /* of kern_read, for the pass running */
	uint64_t part[256]; /* per-thread sums, so the reads are not elided */
};

readprobe *readprobe_new(void)
{
	readprobe *p = calloc(1, sizeof *p);
	if (p && !(p->first = calloc(1, sizeof *p->first))) {
		free(p);
		return NULL;
	}
	return p;
}

void readprobe_free(readprobe *p)
{
	if (!p)
		return;
	free(p->ptr);
	free(p->bytes);
	free(p->first);
	free(p);
}

int readprobe_add(readprobe *p, const void *ptr, int64_t bytes)
{
	if (bytes <= 0)
		return 0;
	if (p->n == p->cap) {
		int cap = p->cap ? 2 * p->cap : 64;
		const char **np = realloc(p->ptr, cap * sizeof *np);
		if (np)
			p->ptr = np;
		int64_t *nb = realloc(p->bytes, cap * sizeof *nb);
		if (nb)
			p->bytes = nb;
		int64_t *nf = realloc(p->first, (cap + 1) * sizeof *nf);
		if (nf)
			p->first = nf;
		if (!np || !nb || !nf)
			return -1;
		p->cap = cap;
	}
	p->ptr[p->n] = ptr;
	p->bytes[p->n] = bytes;
	p->first[p->n + 1] = p->first[p->n] + (bytes + BLOCK - 1) / BLOCK;
	p->n++;
	p->total += (double)bytes;
	return 0;
}

double readprobe_bytes(const readprobe *p)
{
	return p->total;
}

static void read_task(void *ctx, int64_t b, int64_t e, int thread)
{
	readprobe *p = ctx;
	int way = p->way;
	int k = 0;
	uint64_t s = 0;
	for (int64_t i = b; i < e; i++) {
		while (p->first[k + 1] <= i)
			k++;
		int64_t off = (i - p->first[k]) * BLOCK;
		int64_t len = p->bytes[k] - off < BLOCK ? p->bytes[k] - off : BLOCK;
		s += kern_read(p->ptr[k] + off, len, way);
	}
	p->part[thread & 255] += s;
}

double readprobe_pass(readprobe *p)
{
	double best = 0;
	for (p->way = 0; p->way < KERN_READ_WAYS; p->way++) {
		double t0 = mh_now();
		pool_run_chunks(ops_pool(), p->first[p->n], 1,
				CHUNKS_PER_THREAD * pool_size(ops_pool()), read_task, p);
		double t = mh_now() - t0;
		best = best == 0 || t < best ? t : best;
	}
	return best;
}
