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

typedef struct {
	const char *ptr;
	int64_t bytes;
	int64_t first; /* its first block */
} span;

struct readprobe {
	span *s;
	int n, cap;
	int64_t blocks; /* of all the spans */
	double total;
	int way; /* of kern_read, for the pass running */
	uint64_t part[256]; /* per-thread sums, so the reads are not elided */
};

readprobe *readprobe_new(void)
{
	return calloc(1, sizeof(readprobe));
}

void readprobe_free(readprobe *p)
{
	if (p)
		free(p->s);
	free(p);
}

int readprobe_add(readprobe *p, const void *ptr, int64_t bytes)
{
	if (bytes <= 0)
		return 0;
	if (p->n == p->cap) {
		int cap = p->cap ? 2 * p->cap : 64;
		span *ns = realloc(p->s, cap * sizeof *ns);
		if (!ns)
			return -1;
		p->s = ns;
		p->cap = cap;
	}
	p->s[p->n++] = (span){ ptr, bytes, p->blocks };
	p->blocks += (bytes + BLOCK - 1) / BLOCK;
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
		while (k + 1 < p->n && p->s[k + 1].first <= i)
			k++;
		const span *sp = &p->s[k];
		int64_t off = (i - sp->first) * BLOCK;
		int64_t len = sp->bytes - off < BLOCK ? sp->bytes - off : BLOCK;
		s += kern_read(sp->ptr + off, len, way);
	}
	p->part[thread & 255] += s;
}

double readprobe_pass(readprobe *p)
{
	double best = 0;
	for (p->way = 0; p->way < KERN_READ_WAYS; p->way++) {
		double t0 = mh_now();
		pool_run_chunks(ops_pool(), p->blocks, 1,
				CHUNKS_PER_THREAD * pool_size(ops_pool()), read_task, p);
		double t = mh_now() - t0;
		best = best == 0 || t < best ? t : best;
	}
	return best;
}
