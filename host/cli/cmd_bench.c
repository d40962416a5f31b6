/* SPDX-License-Identifier: MIT */
/* cmd_bench.c - `modelhost bench`: prompt processing and generation speed in
 * the style of llama-bench, next to this machine's limits measured in the
 * same run (memory read bandwidth for decoding, the cores' multiply-add
 * rate for prefill). */
#include "cli/cli.h"
#include "plugin/quantize.h"
#include "compute/kernels.h"
#include "model/modeldir.h"
#include "compute/ops.h"
#include "compute/readprobe.h"
#include "plugin/services.h"
#include "compute/threadpool.h"
#include "base/util.h"

#include <cJSON.h>
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { OPT_BW_MB = OPT_FIRST_COMMAND_OPT + 1, OPT_NO_LIMITS, OPT_PARALLEL };

#define PARALLEL_MAX 16

typedef struct bench_opts {
	const char *model;
	int n_prompt, n_gen, reps, json, bw_mb, no_limits;
	int n_par, par[PARALLEL_MAX]; /* --parallel: sequence counts */
} bench_opts;

/* "1,2,4,8": 1..256 sequences each, at most PARALLEL_MAX counts. */
static int parse_parallel(const char *arg, bench_opts *b)
{
	const char *p = arg;
	b->n_par = 0;
	while (*p) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 1 || v > 256 || (*end && *end != ',') ||
		    b->n_par == PARALLEL_MAX) {
			cli_fail("bench: --parallel takes up to %d comma-separated counts of 1..256 "
				 "sequences, not '%s'", PARALLEL_MAX, arg);
			return -1;
		}
		b->par[b->n_par++] = (int)v;
		p = *end ? end + 1 : end;
	}
	if (b->n_par == 0) {
		cli_fail("bench: --parallel takes a list such as 1,2,4,8, not '%s'", arg);
		return -1;
	}
	return 0;
}

static int bench_opt(void *ctx, int c, const char *arg)
{
	bench_opts *b = ctx;
	switch (c) {
	case 'm': b->model = arg; return 0;
	case 'p': return cli_int("bench", "-p", arg, 1, 1 << 20, &b->n_prompt);
	case 'n': return cli_int("bench", "-n", arg, 1, 1 << 20, &b->n_gen);
	case 'r': return cli_int("bench", "-r", arg, 1, 1000, &b->reps);
	case 'o':
		if (strcmp(arg, "md") != 0 && strcmp(arg, "json") != 0)
			return cli_fail("bench: -o takes md or json, not '%s'", arg), -1;
		b->json = strcmp(arg, "json") == 0;
		return 0;
	case OPT_BW_MB: return cli_int("bench", "--bw-size", arg, 16, 1 << 20, &b->bw_mb);
	case OPT_NO_LIMITS: b->no_limits = 1; return 0;
	case OPT_PARALLEL: return parse_parallel(arg, b);
	}
	return -1;
}

/* ---- machine limits ------------------------------------------------------------- */

/* Best of several multi-threaded reads of a buffer far larger than any
 * cache, in GB/s. */
static double probe_bandwidth(size_t mb)
{
	size_t bytes = mb << 20;
	char *buf = NULL;
	readprobe *p = readprobe_new();
	if (!p || posix_memalign((void **)&buf, 64, bytes) != 0 ||
	    readprobe_add(p, buf, (int64_t)bytes) != 0) {
		readprobe_free(p);
		free(buf);
		return 0;
	}
	memset(buf, 1, bytes);
	double best = 0;
	for (int rep = 0; rep < 5; rep++) {
		double gbs = (double)bytes / readprobe_pass(p) / 1e9;
		if (gbs > best)
			best = gbs;
	}
	readprobe_free(p);
	free(buf);
	return best;
}

typedef struct {
	int64_t rows, cols;
	int count;
} mat_shape;

static void fma_task(void *ctx, int64_t b, int64_t e, int thread)
{
	(void)thread;
	kern_flops(*(const int64_t *)ctx * (e - b));
}

/* GFLOP/s of every thread of the pool running independent FMA chains in
 * registers at once (best of 5): what no product of matrices can beat.
 * Many small items, so that a thread slow to wake (the pool steals) does
 * not leave the work to the others. */
static double probe_fma(void)
{
	mh_pool *p = ops_pool();
	int64_t items = 256 * (int64_t)pool_size(p), iters = 1 << 14;
	double per = kern_flops(1), best = 0;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = mh_now();
		pool_run_chunks(p, items, 1, (int)items, fma_task, &iters);
		double rate = per * (double)(iters * items) / (mh_now() - t0) / 1e9;
		if (rate > best)
			best = rate;
	}
	return best;
}

/* GFLOP/s of the BLAS itself (with as many threads of its own as the pool
 * has) on M x rows x cols products, each weighted by count. */
static double probe_sgemm(const mat_shape *sh, int n_sh, int m)
{
	int64_t maxa = 0, maxw = 0, maxc = 0;
	for (int i = 0; i < n_sh; i++) {
		if (sh[i].cols > maxa)
			maxa = sh[i].cols;
		if (sh[i].rows * sh[i].cols > maxw)
			maxw = sh[i].rows * sh[i].cols;
		if (sh[i].rows > maxc)
			maxc = sh[i].rows;
	}
	float *a = malloc((size_t)m * maxa * sizeof(float));
	float *w = malloc((size_t)maxw * sizeof(float));
	float *c = malloc((size_t)m * maxc * sizeof(float));
	double rate = 0;
	if (a && w && c) {
		for (int64_t i = 0; i < (int64_t)m * maxa; i++)
			a[i] = (float)((i * 7) % 13) * 0.01f;
		for (int64_t i = 0; i < maxw; i++)
			w[i] = (float)((i * 5) % 11) * 0.01f;
		int old = ops_blas_threads(pool_size(ops_pool()));
		double flops = 0, secs = 0;
		for (int i = 0; i < n_sh; i++) {
			double best = 1e30;
			for (int rep = 0; rep < 4; rep++) { /* first one warms up */
				double t0 = mh_now();
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)sh[i].rows,
					    (int)sh[i].cols, 1.0f, a, (int)sh[i].cols, w, (int)sh[i].cols,
					    0.0f, c, (int)sh[i].rows);
				double dt = mh_now() - t0;
				if (rep && dt < best)
					best = dt;
			}
			flops += 2.0 * m * sh[i].rows * sh[i].cols * sh[i].count;
			secs += best * sh[i].count;
		}
		ops_blas_threads(old);
		rate = flops / secs / 1e9;
	}
	free(a);
	free(w);
	free(c);
	return rate;
}

/* ---- the model ---------------------------------------------------------------------- */

typedef struct {
	double bytes, params;
	double decode_bytes;     /* weight bytes read per generated token (decode_spans) */
	double matrix_flops;     /* 2 x non-vocabulary matrix parameters */
	double head_flops;       /* 2 x the output layer (once per forward) */
	const char *dtype;
	mat_shape shapes[32];
	int n_shapes;
} model_stats;

static void model_survey(const mh_dir *d, int64_t vocab, model_stats *ms)
{
	memset(ms, 0, sizeof *ms);
	double by_dtype[MH_DTYPE_COUNT] = { 0 };
	double vocab_params = 0;
	for (int i = 0; i < d->n_tensors; i++) {
		const mh_tensor *t = quantize_loaded(d, d->index[i]);
		ms->bytes += (double)t->nbytes;
		ms->params += (double)t->nelem;
		by_dtype[t->dtype] += (double)t->nbytes;
		if (t->ndim != 2)
			continue;
		if (t->shape[0] == vocab) {
			vocab_params = (double)t->nelem;
			continue;
		}
		ms->matrix_flops += 2.0 * (double)t->nelem;
		int k;
		for (k = 0; k < ms->n_shapes; k++)
			if (ms->shapes[k].rows == t->shape[0] && ms->shapes[k].cols == t->shape[1])
				break;
		if (k == ms->n_shapes && k < 32)
			ms->shapes[ms->n_shapes++] = (mat_shape){ t->shape[0], t->shape[1], 0 };
		if (k < 32)
			ms->shapes[k].count++;
	}
	ms->head_flops = 2.0 * vocab_params;
	int best = MH_F32;
	for (int t = 0; t < MH_DTYPE_COUNT; t++)
		if (by_dtype[t] > by_dtype[best])
			best = t;
	ms->dtype = mh_dtype_name((mh_dtype)best);
}

/* The bytes one decoded token reads, as spans of what holds each weight
 * now (modeldir_resident: the mapping, or the copies that --quant and
 * weight_t made in its place), for the read probe.  Untied, the embedding
 * table is read one row per token and the output layer in full; tied, the
 * one table is read in full. */
static int decode_spans(readprobe *p, const mh_dir *d, int64_t vocab)
{
	int n_vocab = 0;
	for (int i = 0; i < d->n_tensors; i++)
		n_vocab += d->index[i]->ndim == 2 && d->index[i]->shape[0] == vocab;
	int skipped = n_vocab < 2; /* tied: the one table is read in full */
	for (int i = 0; i < d->n_tensors; i++) {
		const mh_tensor *in[3];
		int n = modeldir_resident(d, i, in);
		for (int k = 0; k < n; k++) {
			const mh_tensor *t = in[k];
			int64_t bytes = (int64_t)t->nbytes;
			if (!skipped && t->ndim == 2 && t->shape[0] == vocab) {
				bytes /= vocab;
				skipped = 1;
			}
			if (readprobe_add(p, t->data, bytes) != 0)
				return -1;
		}
	}
	return 0;
}

/* The share of the process's file pages mapped as 2 MiB pages (Linux), or
 * -1.  A checkpoint whose page cache was filled by write() may sit in 4 KiB
 * pages and read markedly slower than one faulted in through the map. */
static double pmd_mapped_fraction(double bytes)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	if (!f)
		return -1;
	char line[256];
	double kb = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "FilePmdMapped: %lf kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 || bytes <= 0 ? -1 : kb * 1024 / bytes > 1 ? 1 : kb * 1024 / bytes;
}

typedef struct {
	const char *test;
	double avg, sd;
	double limit; /* t/s the machine's limit allows */
} bench_row;

static void stats(const double *v, int n, double *avg, double *sd)
{
	double s = 0, q = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	*avg = s / n;
	for (int i = 0; i < n; i++)
		q += (v[i] - *avg) * (v[i] - *avg);
	*sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* One prompt-processing run: n tokens in one batched forward; t/s. */
static double run_pp(mh_session *s, const int32_t *ids, int n, float *logits, char *err)
{
	session_reset(s);
	double t0 = mh_now();
	if (session_forward(s, ids, n, logits, MH_LOGITS_LAST, err) != 0)
		return -1;
	return n / (mh_now() - t0);
}

/* One generation run: a short prompt, then n tokens one at a time; t/s of
 * the generated tokens. */
static double run_tg(mh_session *s, const int32_t *ids, int n_short, int n, float *logits,
		     char *err)
{
	session_reset(s);
	if (session_forward(s, ids, n_short, logits, MH_LOGITS_LAST, err) != 0)
		return -1;
	int vocab = s->info->vocab_size;
	double t0 = mh_now();
	for (int i = 0; i < n; i++) {
		int32_t id = (int32_t)kern_argmax(logits, vocab);
		if (session_forward(s, &id, 1, logits, MH_LOGITS_LAST, err) != 0)
			return -1;
	}
	return n / (mh_now() - t0);
}

/* --parallel: B sequences at once.  Prefill: their B prompts of n tokens in
 * one session_batch (t/s over all B * n tokens).  Decode: n_gen steps of
 * one token from each of the B sequences in one batch (aggregate t/s). */
typedef struct {
	double pp[2], tg[2]; /* mean, stddev over the repetitions */
} par_row;

static int run_parallel(mh_session *s, const int32_t *ids, int n, int n_gen, int B, int reps,
			par_row *row, char *err)
{
	int vocab = s->info->vocab_size;
	mh_batch_item *it = malloc((size_t)B * n * sizeof *it);
	float *lg = malloc((size_t)B * vocab * sizeof *lg);
	double *pp = calloc((size_t)reps + 1, sizeof *pp), *tg = calloc((size_t)reps + 1, sizeof *tg);
	int rc = -1;
	if (!it || !lg || !pp || !tg) {
		snprintf(err, MH_ERRLEN, "out of memory");
		goto out;
	}
	for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up */
		for (int q = 0; q < B; q++)
			session_seq_rewind(s, q, 0);
		int k = 0;
		for (int q = 0; q < B; q++)
			for (int i = 0; i < n; i++) /* each prompt its own rotation of ids */
				it[k++] = (mh_batch_item){ q, i, ids[(i + q) % n], i == n - 1 };
		double t0 = mh_now();
		if (session_batch(s, it, k, lg, err) != 0)
			goto out;
		pp[rep] = (double)k / (mh_now() - t0);
		t0 = mh_now();
		for (int g = 0; g < n_gen; g++) {
			for (int q = 0; q < B; q++)
				it[q] = (mh_batch_item){ q, n + g,
							 (int32_t)kern_argmax(lg + (size_t)q * vocab, vocab),
							 1 };
			if (session_batch(s, it, B, lg, err) != 0)
				goto out;
		}
		tg[rep] = (double)B * n_gen / (mh_now() - t0);
	}
	stats(pp + 1, reps, &row->pp[0], &row->pp[1]);
	stats(tg + 1, reps, &row->tg[0], &row->tg[1]);
	rc = 0;
out:
	free(it);
	free(lg);
	free(pp);
	free(tg);
	return rc;
}

static void fmt_params(char *b, size_t n, double p)
{
	if (p >= 1e9)
		snprintf(b, n, "%.2f B", p / 1e9);
	else if (p >= 1e6)
		snprintf(b, n, "%.2f M", p / 1e6);
	else
		snprintf(b, n, "%.0f", p);
}

static const char *base_name(const char *p)
{
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		n--;
	static char b[256];
	size_t s = n;
	while (s > 0 && p[s - 1] != '/')
		s--;
	snprintf(b, sizeof b, "%.*s", (int)(n - s), p + s);
	return b;
}

int cmd_bench(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS,
					    { "model", required_argument, NULL, 'm' },
					    { "n-prompt", required_argument, NULL, 'p' },
					    { "n-gen", required_argument, NULL, 'n' },
					    { "repetitions", required_argument, NULL, 'r' },
					    { "output", required_argument, NULL, 'o' },
					    { "bw-size", required_argument, NULL, OPT_BW_MB },
					    { "no-limits", no_argument, NULL, OPT_NO_LIMITS },
					    { "parallel", required_argument, NULL, OPT_PARALLEL },
					    { 0 } };
	static const char help[] =
		"Usage: modelhost bench -m DIR [-p N] [-n N] [-r N] [-t THREADS] [-c CTX] [-o md|json]\n"
		"Measure prompt processing (ppN: one batched forward of N tokens, default 128)\n"
		"and generation (tgN: N tokens one at a time after a short prompt, default 32),\n"
		"each averaged over -r repetitions (default 3) after a warm-up, and compare\n"
		"them with this machine's limits measured in the same run: memory read\n"
		"bandwidth (decoding reads every weight once per token) and the BLAS's SGEMM\n"
		"rate on the model's matrix shapes (prefill).\n"
		"\n"
		"  -m, --model DIR         Hugging Face model directory\n"
		"  -p, --n-prompt N        prompt tokens for the pp test (default 128)\n"
		"  -n, --n-gen N           tokens for the tg test (default 32)\n"
		"  -r, --repetitions N     runs of each test (default 3)\n"
		"  -o, --output FMT        md (a table, default) or json\n"
		"  -t, --threads N         threads (default: all cores); BLAS uses the same\n"
		"  -c, --ctx-size N        KV cache positions (default: what the tests need)\n"
		"      --bw-size MB        buffer for the bandwidth probe (default 512)\n"
		"      --no-limits         skip the bandwidth and SGEMM probes\n"
		"      --parallel LIST     also B sequences at once for each B of LIST (1,2,4,8):\n"
		"                          B prompts of -p tokens in one batch, then -n steps\n"
		"                          of one token from each (aggregate t/s)\n"
		"      --plugin NAME       force a plugin; --plugin-dir DIR adds a plugin directory\n";
	cli_common o = { .cmd = "bench" };
	readprobe *wj = NULL;
	bench_opts b = { .n_prompt = 128, .n_gen = 32, .reps = 3, .bw_mb = 512 };
	int status = cli_parse_dir(&o, argc, argv, "m:p:n:r:o:", lo, bench_opt, &b, help, &b.model);
	if (status != CLI_CONTINUE)
		return status;
	if (!b.model)
		return cli_fail("bench: -m DIR is required"), cli_usage("bench", help);
	int n_short = b.n_prompt < 4 ? b.n_prompt : 4;
	if (o.n_ctx == 0) {
		int need = b.n_prompt > n_short + b.n_gen ? b.n_prompt : n_short + b.n_gen;
		if (b.n_par > 0)
			need = b.n_prompt + b.n_gen;
		o.n_ctx = (need + 255) / 256 * 256;
	}

	mh_registry *r = cli_registry(&o);
	if (!r)
		return 1;
	int threads = pool_size(ops_pool());
	/* limits first, before the model is mapped: the probes' buffers do not
	 * add to the run's peak memory */
	double bw = 0, gemm_big = 0, fma = 0;
	char err[MH_ERRLEN] = "";
	if (!b.no_limits) {
		bw = probe_bandwidth((size_t)b.bw_mb);
		fma = probe_fma();
		mat_shape big = { 2048, 2048, 1 };
		gemm_big = probe_sgemm(&big, 1, 2048);
	}
	double t_load = mh_now();
	mh_session *s = cli_open_model(&o, r, b.model);
	if (!s) {
		registry_free(r);
		return 1;
	}
	t_load = mh_now() - t_load;
	model_stats ms;
	model_survey(s->dir, s->info->vocab_size, &ms);
	double gemm_model = 0;
	if (!b.no_limits && ms.n_shapes > 0)
		gemm_model = probe_sgemm(ms.shapes, ms.n_shapes, b.n_prompt);

	int rc = 1;
	int32_t *ids = malloc((size_t)b.n_prompt * sizeof *ids);
	float *logits = malloc((size_t)s->info->vocab_size * sizeof *logits);
	double *pp = calloc(b.reps, sizeof *pp), *tg = calloc(b.reps, sizeof *tg);
	double *wr = calloc(b.reps + 1, sizeof *wr);
	if (!ids || !logits || !pp || !tg || !wr ||
	    !(wj = readprobe_new()) || decode_spans(wj, s->dir, s->info->vocab_size) != 0) {
		cli_fail("out of memory");
		goto out;
	}
	ms.decode_bytes = readprobe_bytes(wj);
	/* a deterministic spread of ids, starting with BOS if the model has one */
	uint32_t st = 12345;
	for (int i = 0; i < b.n_prompt; i++) {
		st = st * 1103515245u + 12345u;
		ids[i] = (int32_t)((st >> 8) % (uint32_t)s->info->vocab_size);
	}
	if (s->info->bos_id >= 0)
		ids[0] = s->info->bos_id;

	/* warm-up: pages of the mapping and the KV cache, scratch buffers */
	double t_first = mh_now();
	session_reset(s);
	if (session_forward(s, ids, 1, logits, MH_LOGITS_LAST, err) != 0)
		goto fail;
	t_first = mh_now() - t_first;
	if (run_pp(s, ids, b.n_prompt, logits, err) < 0 ||
	    run_tg(s, ids, n_short, b.n_gen < 4 ? b.n_gen : 4, logits, err) < 0)
		goto fail;
	for (int i = 0; i < b.reps; i++)
		if ((pp[i] = run_pp(s, ids, b.n_prompt, logits, err)) < 0)
			goto fail;
	/* each generation run between two passes that only read its weights:
	 * this VM's memory speed drifts by half within minutes, so the limit is
	 * sampled on both sides of what it limits, and a run's limit is the
	 * mean of its two */
	if (!b.no_limits)
		readprobe_pass(wj);
	for (int i = 0; i <= b.reps; i++) {
		if (!b.no_limits)
			wr[i] = ms.decode_bytes / readprobe_pass(wj) / 1e9;
		if (i < b.reps && (tg[i] = run_tg(s, ids, n_short, b.n_gen, logits, err)) < 0)
			goto fail;
	}
	double wr_avg = 0, wr_sd = 0, wr_lim = 0;
	stats(wr, b.reps + 1, &wr_avg, &wr_sd);
	for (int i = 0; i < b.reps; i++)
		wr_lim += (wr[i] + wr[i + 1]) / 2 / b.reps;
	double pmd = b.no_limits ? -1 : pmd_mapped_fraction(ms.bytes);

	par_row par[PARALLEL_MAX];
	int max_b = 0;
	for (int i = 0; i < b.n_par; i++)
		max_b = b.par[i] > max_b ? b.par[i] : max_b;
	for (int q = 1; q < max_b; q++)
		if (session_seq_open(s, err) != q)
			goto fail;
	if (b.n_par > 0 && b.n_prompt + b.n_gen > s->info->n_ctx) {
		snprintf(err, sizeof err, "bench: --parallel needs -p + -n = %d positions, the "
			 "context is %d", b.n_prompt + b.n_gen, s->info->n_ctx);
		goto fail;
	}
	for (int i = 0; i < b.n_par; i++)
		if (run_parallel(s, ids, b.n_prompt, b.n_gen, b.par[i], b.reps, &par[i], err) != 0)
			goto fail;
	/* the ratio to one sequence: against B = 1 of the list, else tg above */
	double tg1 = 0;
	for (int i = 0; i < b.n_par; i++)
		if (b.par[i] == 1)
			tg1 = par[i].tg[0];

	bench_row rows[2];
	char tn[2][32];
	snprintf(tn[0], sizeof tn[0], "pp%d", b.n_prompt);
	snprintf(tn[1], sizeof tn[1], "tg%d", b.n_gen);
	rows[0].test = tn[0];
	rows[1].test = tn[1];
	stats(pp, b.reps, &rows[0].avg, &rows[0].sd);
	stats(tg, b.reps, &rows[1].avg, &rows[1].sd);
	double pp_flops_tok = ms.matrix_flops + ms.head_flops / b.n_prompt;
	rows[0].limit = fma > 0 ? fma * 1e9 / pp_flops_tok : 0;
	rows[1].limit = wr_lim > 0 ? wr_lim * 1e9 / ms.decode_bytes : 0;

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double rss_mb = ru.ru_maxrss / 1024.0;
	double kv_mb = (double)s->info->kv_cache_bytes / (1 << 20);
	char params[32];
	fmt_params(params, sizeof params, ms.params);
	const char *name = base_name(b.model);
	const char *arch = modeldir_architecture(s->dir);

	if (b.json) {
		cJSON *root = cJSON_CreateObject();
		cJSON_AddStringToObject(root, "model", name);
		cJSON_AddStringToObject(root, "path", b.model);
		cJSON_AddStringToObject(root, "architecture", arch ? arch : "");
		cJSON_AddStringToObject(root, "plugin", s->lib->desc->name);
		cJSON_AddNumberToObject(root, "size_bytes", ms.bytes);
		cJSON_AddNumberToObject(root, "params", ms.params);
		cJSON_AddStringToObject(root, "dtype", ms.dtype);
		cJSON_AddNumberToObject(root, "threads", threads);
		cJSON_AddStringToObject(root, "kernels", kern_name());
		cJSON_AddStringToObject(root, "gemm", ops_describe());
		cJSON_AddStringToObject(root, "blas_core", ops_blas_core());
		cJSON_AddNumberToObject(root, "n_ctx", s->info->n_ctx);
		cJSON_AddNumberToObject(root, "kv_cache_bytes", (double)s->info->kv_cache_bytes);
		cJSON_AddNumberToObject(root, "load_seconds", t_load);
		cJSON_AddNumberToObject(root, "first_token_seconds", t_first);
		cJSON_AddNumberToObject(root, "peak_rss_bytes", ru.ru_maxrss * 1024.0);
		cJSON *lim = cJSON_AddObjectToObject(root, "limits");
		cJSON_AddNumberToObject(lim, "mem_read_gbs", bw);
		cJSON_AddNumberToObject(lim, "weights_read_gbs", wr_avg);
		cJSON_AddNumberToObject(lim, "weights_read_stddev_gbs", wr_sd);
		cJSON *wsamp = cJSON_AddArrayToObject(lim, "weights_read_samples_gbs");
		for (int k = 0; k <= b.reps && !b.no_limits; k++)
			cJSON_AddItemToArray(wsamp, cJSON_CreateNumber(wr[k]));
		if (pmd >= 0)
			cJSON_AddNumberToObject(lim, "weights_in_2mib_pages", pmd);
		cJSON_AddNumberToObject(lim, "fma_peak_gflops", fma);
		cJSON_AddNumberToObject(lim, "sgemm_2048_gflops", gemm_big);
		cJSON_AddNumberToObject(lim, "sgemm_model_gflops", gemm_model);
		cJSON_AddNumberToObject(lim, "decode_bytes_per_token", ms.decode_bytes);
		cJSON_AddNumberToObject(lim, "prefill_flops_per_token", pp_flops_tok);
		if (b.n_par > 0) {
			cJSON *pa = cJSON_AddArrayToObject(root, "parallel");
			for (int i = 0; i < b.n_par; i++) {
				cJSON *e = cJSON_CreateObject();
				cJSON_AddNumberToObject(e, "sequences", b.par[i]);
				cJSON_AddNumberToObject(e, "n_prompt", b.n_prompt);
				cJSON_AddNumberToObject(e, "n_gen", b.n_gen);
				cJSON_AddNumberToObject(e, "pp_ts", par[i].pp[0]);
				cJSON_AddNumberToObject(e, "pp_stddev_ts", par[i].pp[1]);
				cJSON_AddNumberToObject(e, "tg_ts", par[i].tg[0]);
				cJSON_AddNumberToObject(e, "tg_stddev_ts", par[i].tg[1]);
				cJSON_AddNumberToObject(e, "tg_ratio_to_one",
							(tg1 > 0 ? tg1 : rows[1].avg) > 0
								? par[i].tg[0] / (tg1 > 0 ? tg1 : rows[1].avg)
								: 0);
				cJSON_AddItemToArray(pa, e);
			}
		}
		cJSON *arr = cJSON_AddArrayToObject(root, "results");
		for (int i = 0; i < 2; i++) {
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "model", name);
			cJSON_AddNumberToObject(e, "size", ms.bytes);
			cJSON_AddNumberToObject(e, "params", ms.params);
			cJSON_AddStringToObject(e, "dtype", ms.dtype);
			cJSON_AddNumberToObject(e, "threads", threads);
			cJSON_AddStringToObject(e, "test", rows[i].test);
			cJSON_AddNumberToObject(e, "avg_ts", rows[i].avg);
			cJSON_AddNumberToObject(e, "stddev_ts", rows[i].sd);
			cJSON *samples = cJSON_AddArrayToObject(e, "samples_ts");
			for (int k = 0; k < b.reps; k++)
				cJSON_AddItemToArray(samples, cJSON_CreateNumber(i ? tg[k] : pp[k]));
			cJSON_AddNumberToObject(e, "limit_ts", rows[i].limit);
			cJSON_AddNumberToObject(e, "fraction_of_limit",
						rows[i].limit > 0 ? rows[i].avg / rows[i].limit : 0);
			cJSON_AddItemToArray(arr, e);
		}
		char *txt = cJSON_Print(root);
		if (txt)
			puts(txt);
		free(txt);
		cJSON_Delete(root);
	} else {
		printf("model %s (%s, plugin %s), kernels %s, gemm %s (BLAS kernels: %s)\n", b.model,
		       arch ? arch : "?", s->lib->desc->name, kern_name(), ops_describe(),
		       ops_blas_core());
		printf("context %d, KV cache %.1f MiB, load %.3f s, first token %.3f s, peak RSS %.0f MiB\n",
		       s->info->n_ctx, kv_mb, t_load, t_first, rss_mb);
		if (!b.no_limits) {
			char pages[48] = "";
			if (pmd >= 0)
				snprintf(pages, sizeof pages, ", %.0f%% in 2 MiB pages", 100 * pmd);
			printf("limits: memory read %.1f GB/s (%d threads, %d MiB buffer, best of 5); "
			       "multiply-adds %.1f GFLOP/s\n"
			       "        decode reads %.3f GB/token, and read alone it went at %.1f ± %.1f GB/s "
			       "before and after each tg run%s -> %.2f t/s\n"
			       "        prefill %.3f GFLOP/token -> %.2f t/s; for comparison, OpenBLAS's "
			       "SGEMM %.1f GFLOP/s on 2048^3, %.1f on the model's M=%d products\n",
			       bw, threads, b.bw_mb, fma, ms.decode_bytes / 1e9, wr_avg, wr_sd, pages,
			       rows[1].limit, pp_flops_tok / 1e9, rows[0].limit, gemm_big, gemm_model,
			       b.n_prompt);
			if (pmd >= 0 && pmd < 0.5 && ms.bytes >= 256.0 * (1 << 20))
				printf("note: most weights are in 4 KiB pages (a page cache filled by writing "
				       "the file?);\n      decoding reads them more slowly than once they are "
				       "read back in through the map\n");
		}
		printf("\n| model | size | params | dtype | threads | test | t/s | of limit |\n");
		printf("| ----- | ---: | -----: | ----- | ------: | ---- | --: | -------: |\n");
		for (int i = 0; i < 2; i++) {
			char frac[16] = "-";
			if (rows[i].limit > 0)
				snprintf(frac, sizeof frac, "%.0f%%", 100 * rows[i].avg / rows[i].limit);
			printf("| %s | %.2f GiB | %s | %s | %d | %s | %.2f ± %.2f | %s |\n", name,
			       ms.bytes / (1 << 30), params, ms.dtype, threads, rows[i].test, rows[i].avg,
			       rows[i].sd, frac);
		}
		if (b.n_par > 0) {
			double base = tg1 > 0 ? tg1 : rows[1].avg;
			printf("\n| sequences | pp%d t/s (all prompts in one batch) | tg%d t/s (aggregate) "
			       "| tg vs one sequence |\n", b.n_prompt, b.n_gen);
			printf("| --------: | ---: | ---: | ---: |\n");
			for (int i = 0; i < b.n_par; i++)
				printf("| %d | %.2f ± %.2f | %.2f ± %.2f | %.2fx |\n", b.par[i],
				       par[i].pp[0], par[i].pp[1], par[i].tg[0], par[i].tg[1],
				       base > 0 ? par[i].tg[0] / base : 0);
			getrusage(RUSAGE_SELF, &ru);
			printf("peak RSS with %d sequences: %.0f MiB\n", max_b, ru.ru_maxrss / 1024.0);
		}
	}
	rc = 0;
	goto out;
fail:
	cli_fail("%s", err);
out:
	free(ids);
	free(logits);
	free(pp);
	free(tg);
	free(wr);
	readprobe_free(wj);
	session_close(s);
	registry_free(r);
	return rc;
}
