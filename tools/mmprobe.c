/* SPDX-License-Identifier: MIT */
/* mmprobe.c - how close the one-token matmul kernels come to a plain read
 * of the same bytes.  Every 2-D weight of a checkpoint goes through
 * ops_matmul with one token, one pool job each, in the order of the file's
 * index; in between, one pool job reads the same bytes with no arithmetic
 * (bench's decode limit, host/compute/readprobe.c).  Memory speed on a shared
 * machine drifts within seconds, so each matmul pass is compared with the
 * read pass next to it, and the report gives medians and quartiles of those
 * ratios.  Unlike bench, no model is run: the kernels, the pool and the
 * memory, nothing else.  -s adds a line per matrix shape: its share of
 * the bytes, and the rate its matmuls read at (summed over all passes)
 * against the read passes' rate.  Not installed.
 *
 * -q q8_0|q4_0 quantizes the weights first (as --quant does at load).
 * -n TOKENS (up to 8) multiplies that many tokens at once, as batched
 * decode of several sequences does: the weights are read once, and the
 * report adds the tokens a second through all the matrices (wall clock,
 * and per second of the process's CPU time, which a busy machine's other
 * processes disturb less).
 *
 *   mmprobe [-t THREADS] [-r REPS] [-n TOKENS] [-k scalar|avx2] [-q q8_0|q4_0] [-s] DIR
 */
#include "compute/kernels.h"
#include "model/modeldir.h"
#include "compute/ops.h"
#include "compute/readprobe.h"
#include "compute/threadpool.h"
#include "plugin/quantize.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* median, first and third quartile of v[0..n), sorted in place */
static void quartiles(double *v, int n, double q[3])
{
	qsort(v, n, sizeof *v, cmp_double);
	q[0] = v[n / 2];
	q[1] = v[n / 4];
	q[2] = v[(3 * n) / 4];
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int same_shape(const mh_tensor *a, const mh_tensor *b)
{
	return a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1];
}

int main(int argc, char **argv)
{
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), reps = 20, tokens = 1, opt;
	const char *kernels = NULL;
	int shapes = 0;
	mh_dtype quant = MH_F32;
	while ((opt = getopt(argc, argv, "t:r:n:k:q:s")) != -1) {
		if (opt == 't')
			threads = atoi(optarg);
		else if (opt == 'n')
			tokens = atoi(optarg);
		else if (opt == 'r')
			reps = atoi(optarg);
		else if (opt == 'k')
			kernels = optarg;
		else if (opt == 's')
			shapes = 1;
		else if (opt == 'q' && mh_quant_from_name(optarg, &quant) == 0)
			continue;
		else
			goto usage;
	}
	if (optind + 1 != argc || threads < 1 || reps < 1 || tokens < 1 || tokens > 8)
		goto usage;
	if (kernels && kern_select(kernels) != 0) {
		fprintf(stderr, "mmprobe: no kernel set '%s' on this CPU\n", kernels);
		return 1;
	}
	char err[MH_ERRLEN];
	mh_dir *d = modeldir_open(argv[optind], err);
	if (!d) {
		fprintf(stderr, "mmprobe: %s\n", err);
		return 1;
	}
	mh_pool *pool = pool_new(threads);
	ops_set_pool(pool);
	modeldir_populate(d);

	readprobe *rp = readprobe_new();
	const mh_tensor **w = calloc(d->n_tensors, sizeof *w);
	int n = 0;
	int64_t max_rows = 1, max_cols = 1;
	d->quant = d->quant_io = quant;
	d->quant_ok = 1;
	for (int i = 0; i < d->n_tensors; i++) {
		const mh_tensor *t = d->index[i];
		if (t->ndim != 2 || !mh_dtype_is_float(t->dtype) || t->dtype == MH_F64)
			continue;
		t = quantize_weight(d, t);
		if (!t) {
			fprintf(stderr, "mmprobe: out of memory\n");
			return 1;
		}
		w[n++] = t;
		if (rp && readprobe_add(rp, t->data, (int64_t)t->nbytes) != 0) {
			readprobe_free(rp);
			rp = NULL;
		}
		max_rows = t->shape[0] > max_rows ? t->shape[0] : max_rows;
		max_cols = t->shape[1] > max_cols ? t->shape[1] : max_cols;
	}
	float *x = malloc(tokens * max_cols * sizeof *x), *y = malloc(tokens * max_rows * sizeof *y);
	double *read = malloc(reps * sizeof *read), *ratio = malloc(reps * sizeof *ratio);
	double *rate = malloc(reps * sizeof *rate), *cpu_rate = malloc(reps * sizeof *cpu_rate);
	double *t_each = calloc(d->n_tensors, sizeof *t_each), t_reads = 0;
	if (!rp || !w || !x || !y || !read || !ratio || !rate || !cpu_rate || !t_each) {
		fprintf(stderr, "mmprobe: out of memory\n");
		return 1;
	}
	if (n == 0) {
		fprintf(stderr, "mmprobe: %s: no 2-D float weights\n", argv[optind]);
		return 1;
	}
	for (int64_t i = 0; i < max_cols; i++)
		x[i] = (float)(i % 7) * 0.01f;
	double bytes = readprobe_bytes(rp);
	readprobe_pass(rp); /* warm-up */
	for (int r = 0; r < reps; r++) {
		double t_read = readprobe_pass(rp);
		double t0 = mh_now(), c0 = cpu_now();
		for (int i = 0; i < n; i++) {
			double ti = mh_now();
			/* the calling thread writes x first, as decoding's serial
			 * steps (norms, residual adds) do: the other threads then
			 * fetch it from this core's cache */
			int64_t cols = w[i]->shape[1];
			for (int64_t c = 0; c < tokens * cols; c++)
				x[c] = (float)((c + r + i) % 7) * 0.01f;
			ops_matmul(y, x, w[i], NULL, tokens);
			t_each[i] += mh_now() - ti;
		}
		double t_mm = mh_now() - t0;
		cpu_rate[r] = tokens / (cpu_now() - c0);
		rate[r] = tokens / t_mm;
		read[r] = bytes / t_read / 1e9;
		t_reads += t_read;
		ratio[r] = t_read / t_mm;
	}
	double qr[3], qm[3], qt[3], qc[3];
	quartiles(read, reps, qr);
	quartiles(ratio, reps, qm);
	quartiles(rate, reps, qt);
	quartiles(cpu_rate, reps, qc);
	printf("%s: %d matrices, %.3f GB, %d threads, kernels %s\n", argv[optind], n, bytes / 1e9,
	       pool_size(pool), kern_name());
	printf("read alone: %.1f GB/s (quartiles %.1f-%.1f)\n", qr[0], qr[1], qr[2]);
	printf("matmuls, %d token%s: %.1f%% of the read next to them (quartiles %.1f-%.1f%%)\n",
	       tokens, tokens > 1 ? "s" : "", 100 * qm[0], 100 * qm[1], 100 * qm[2]);
	printf("tokens through every matrix: %.2f/s (quartiles %.2f-%.2f), "
	       "%.2f per CPU second (%.2f-%.2f)\n",
	       qt[0], qt[1], qt[2], qc[0], qc[1], qc[2]);
	for (int i = 0; shapes && i < n; i++) {
		int seen = 0;
		for (int k = 0; k < i && !seen; k++)
			seen = same_shape(w[k], w[i]);
		if (seen)
			continue;
		double b = 0, t = 0;
		for (int k = i; k < n; k++)
			if (same_shape(w[k], w[i])) {
				b += (double)w[k]->nbytes;
				t += t_each[k];
			}
		printf("  %7lld x %-7lld %5.1f%% of the bytes, read at %5.1f%% of the read rate\n",
		       (long long)w[i]->shape[0], (long long)w[i]->shape[1], 100 * b / bytes,
		       100 * (b / t) / (bytes / t_reads));
	}
	free(t_each);
	free(x);
	free(y);
	free(read);
	free(ratio);
	free(rate);
	free(cpu_rate);
	free(w);
	readprobe_free(rp);
	ops_cleanup();
	pool_free(pool);
	modeldir_close(d);
	return 0;
usage:
	fprintf(stderr, "usage: mmprobe [-t THREADS] [-r REPS] [-n TOKENS] [-k scalar|avx2] "
			"[-q q8_0|q4_0] [-s] DIR\n");
	return 1;
}
