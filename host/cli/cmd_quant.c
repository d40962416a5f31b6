/* SPDX-License-Identifier: MIT */
/* cmd_quant.c - the commands that judge and make quantized models:
 * perplexity (with KL divergence from a saved run, as llama.cpp's
 * llama-perplexity) and quantize. */
#include "cli/cli.h"
#include "model/modeldir.h"
#include "model/safetensors.h"
#include "plugin/quantize.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- perplexity ----------------------------------------------------------------------- */

typedef struct {
	const char *model, *text, *save_base, *kl_base;
} ppl_opts;

enum { OPT_SAVE_BASE = OPT_FIRST_COMMAND_OPT, OPT_KL_BASE };

static int ppl_opt(void *ctx, int c, const char *arg)
{
	ppl_opts *p = ctx;
	switch (c) {
	case 'm': p->model = arg; return 0;
	case 'f': p->text = arg; return 0;
	case OPT_SAVE_BASE: p->save_base = arg; return 0;
	case OPT_KL_BASE: p->kl_base = arg; return 0;
	}
	return -1;
}

/* lp[0..vocab) = log-softmax of logits, in double; returns the argmax. */
static int log_softmax(double *lp, const float *logits, int vocab)
{
	int best = 0;
	double m = -INFINITY, s = 0;
	for (int v = 0; v < vocab; v++)
		if (logits[v] > m) {
			m = logits[v];
			best = v;
		}
	for (int v = 0; v < vocab; v++)
		s += exp(logits[v] - m);
	double ls = m + log(s);
	for (int v = 0; v < vocab; v++)
		lp[v] = logits[v] - ls;
	return best;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The base run's file: the token ids, the window, and the log-probs of
 * every scored position.  NULL + message on a file that does not fit. */
static const float *open_base(st_file *f, const char *path, const int32_t *ids, int64_t n_ids,
			      int ctx, int64_t scored, int vocab)
{
	char err[MH_ERRLEN];
	if (st_open(f, path, err) != 0) {
		cli_fail("%s", err);
		return NULL;
	}
	const mh_tensor *ti = st_find(f, "ids"), *tc = st_find(f, "ctx"),
			*tl = st_find(f, "logprobs");
	if (!ti || !tc || !tl || ti->dtype != MH_I32 || tc->dtype != MH_I32 || tc->nelem != 1 ||
	    tl->dtype != MH_F32 || tl->ndim != 2) {
		cli_fail("perplexity: %s: not a file saved with --save-kl-base", path);
		return NULL;
	}
	if (ti->nelem != n_ids || memcmp(ti->data, ids, (size_t)n_ids * sizeof *ids) != 0 ||
	    *(const int32_t *)tc->data != ctx) {
		cli_fail("perplexity: %s: saved for another text, tokenizer or window (-c %d)", path,
			 *(const int32_t *)tc->data);
		return NULL;
	}
	if (tl->shape[0] != scored || tl->shape[1] != vocab) {
		cli_fail("perplexity: %s: saved for a vocabulary of %lld, the model has %d", path,
			 (long long)tl->shape[1], vocab);
		return NULL;
	}
	return tl->data;
}

int cmd_perplexity(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS,
					    { "model", required_argument, NULL, 'm' },
					    { "file", required_argument, NULL, 'f' },
					    { "save-kl-base", required_argument, NULL, OPT_SAVE_BASE },
					    { "kl-base", required_argument, NULL, OPT_KL_BASE },
					    { 0 } };
	static const char help[] =
		"Usage: modelhost perplexity -m DIR -f TEXT [-c CTX] [--quant q8_0|q4_0]\n"
		"                            [--save-kl-base FILE | --kl-base FILE]\n"
		"Perplexity of the model over a text: the text is tokenized whole (with BOS),\n"
		"cut into consecutive windows of CTX tokens (default: the model's context, at\n"
		"most 512; the last one may be shorter), each window run from an empty cache,\n"
		"and every token after a window's first scored.\n"
		"  --save-kl-base FILE  save every scored position's log-probabilities\n"
		"  --kl-base FILE       also report the KL divergence from that run (mean and\n"
		"                       99th percentile) and how often both pick the same top token\n";
	cli_common o = { .cmd = "perplexity" };
	ppl_opts p = { 0 };
	int status = cli_parse_dir(&o, argc, argv, "m:f:", lo, ppl_opt, &p, help, NULL);
	if (status != CLI_CONTINUE)
		return status;
	if (!p.model || !p.text)
		return cli_fail("perplexity: -m DIR and -f TEXT are required"),
		       cli_usage("perplexity", help);
	if (p.save_base && p.kl_base)
		return cli_fail("perplexity: --save-kl-base and --kl-base do not go together");
	char err[MH_ERRLEN] = "";
	size_t len;
	char *text = mh_read_file(p.text, &len, err);
	if (!text)
		return cli_fail("%s", err);
	int rc = 1;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	float *logits = NULL, *save = NULL;
	double *lp = NULL, *lq = NULL, *kls = NULL;
	st_file base = { 0 };
	mh_registry *r = cli_registry(&o);
	mh_session *s = r ? cli_open_model(&o, r, p.model) : NULL;
	mh_tokenizer *tk = s ? cli_tokenizer(p.model, NULL) : NULL;
	if (!tk)
		goto out;
	if (tokenizer_encode(tk, text, len, 1, &ids, &n_ids) != 0) {
		cli_fail("perplexity: %s: cannot be tokenized", p.text);
		goto out;
	}
	int vocab = s->info->vocab_size;
	int ctx = o.n_ctx ? o.n_ctx : s->info->n_ctx < 512 ? s->info->n_ctx : 512;
	/* windows of ctx tokens; the last one shorter, left out if it
	 * scores nothing */
	int64_t windows = ((int64_t)n_ids + ctx - 1) / ctx, n_used = (int64_t)n_ids;
	if (n_ids % ctx == 1) {
		windows--;
		n_used--;
	}
	int64_t scored = n_used - windows;
	if (ctx < 2 || scored < 1) {
		cli_fail("perplexity: %s: %zu tokens, nothing to score with windows of %d", p.text,
			 n_ids, ctx);
		goto out;
	}
	const float *bl = p.kl_base ? open_base(&base, p.kl_base, ids, n_used, ctx, scored, vocab)
				    : NULL;
	if (p.kl_base && !bl)
		goto out;
	logits = malloc((size_t)ctx * vocab * sizeof *logits);
	lp = malloc((size_t)vocab * sizeof *lp);
	lq = malloc((size_t)vocab * sizeof *lq);
	kls = malloc((size_t)scored * sizeof *kls);
	save = p.save_base ? malloc((size_t)scored * vocab * sizeof *save) : NULL;
	if (!logits || !lp || !lq || !kls || (p.save_base && !save)) {
		cli_fail("perplexity: out of memory for %d x %d logits", ctx, vocab);
		goto out;
	}
	double nll = 0;
	int64_t k = 0, same = 0;
	for (int64_t w = 0; w < windows; w++) {
		int wl = n_used - w * ctx < ctx ? (int)(n_used - w * ctx) : ctx;
		session_reset(s);
		if (session_forward(s, ids + w * ctx, wl, logits, MH_LOGITS_ALL, err) != 0) {
			cli_fail("%s", err);
			goto out;
		}
		for (int i = 0; i + 1 < wl; i++, k++) {
			int top = log_softmax(lp, logits + (size_t)i * vocab, vocab);
			nll -= lp[ids[w * ctx + i + 1]];
			if (save)
				for (int v = 0; v < vocab; v++)
					save[k * vocab + v] = (float)lp[v];
			if (bl) {
				const float *b = bl + k * vocab;
				double kl = 0;
				int btop = 0;
				for (int v = 0; v < vocab; v++) {
					if (b[v] > b[btop])
						btop = v;
					kl += exp(b[v]) * (b[v] - lp[v]);
				}
				kls[k] = kl;
				same += btop == top;
			}
		}
	}
	printf("windows:         %lld of up to %d tokens (%lld tokens scored)\n", (long long)windows,
	       ctx, (long long)scored);
	printf("perplexity:      %.4f\n", exp(nll / scored));
	if (bl) {
		double mean = 0;
		for (int64_t i = 0; i < scored; i++)
			mean += kls[i];
		qsort(kls, scored, sizeof *kls, cmp_double);
		int64_t at = (int64_t)ceil(0.99 * scored) - 1;
		printf("mean KL:         %.6f\n", mean / scored);
		printf("99%% KL:          %.6f\n", kls[at < 0 ? 0 : at]);
		printf("top-1 agreement: %.2f%%\n", 100.0 * same / scored);
	}
	if (save) {
		int32_t c32 = ctx;
		mh_tensor t[3] = {
			{ .name = "ctx", .dtype = MH_I32, .ndim = 1, .shape = { 1 }, .nelem = 1,
			  .data = &c32, .nbytes = 4 },
			{ .name = "ids", .dtype = MH_I32, .ndim = 1, .shape = { n_used }, .nelem = n_used,
			  .data = ids, .nbytes = (size_t)n_used * 4 },
			{ .name = "logprobs", .dtype = MH_F32, .ndim = 2, .shape = { scored, vocab },
			  .nelem = scored * vocab, .data = save, .nbytes = (size_t)scored * vocab * 4 },
		};
		if (st_write(p.save_base, t, 3, err) != 0) {
			cli_fail("%s", err);
			goto out;
		}
	}
	rc = 0;
out:
	st_close(&base);
	free(save);
	free(kls);
	free(lq);
	free(lp);
	free(logits);
	free(ids);
	tokenizer_free(tk);
	session_close(s);
	registry_free(r);
	free(text);
	return rc;
}

/* ---- quantize ---------------------------------------------------------------------------- */

typedef struct {
	const char *model, *out;
} qz_opts;

static int qz_opt(void *ctx, int c, const char *arg)
{
	qz_opts *q = ctx;
	switch (c) {
	case 'm': q->model = arg; return 0;
	case 'o': q->out = arg; return 0;
	}
	return -1;
}

/* How a tensor's data must be aligned in the file: the output puts the
 * most demanding first, so that no tensor needs an aligned copy at load. */
static size_t align_of(const mh_tensor *t)
{
	return mh_dtype_is_quant(t->dtype) ? 2 : mh_dtype_size(t->dtype);
}

static int by_alignment(const void *a, const void *b)
{
	const mh_tensor *x = a, *y = b;
	size_t ax = align_of(x), ay = align_of(y);
	return ax != ay ? (ax > ay ? -1 : 1) : strcmp(x->name, y->name);
}

static int copy_file(const char *from, const char *to, char *err)
{
	size_t len;
	char *data = mh_read_file_max(from, MH_READ_MAX, &len, err); /* regular files only */
	if (!data)
		return -1;
	FILE *f = fopen(to, "wb");
	int ok = f && fwrite(data, 1, len, f) == len;
	ok = (f && fclose(f) == 0) && ok;
	free(data);
	if (!ok)
		mh_errf(err, "%s: cannot write: %s", to, strerror(errno));
	return ok ? 0 : -1;
}

/* Every file of the model's directory but its weights (config, tokenizer,
 * generation settings, licence...) into out. */
static int copy_side_files(const char *dir, const char *out, char *err)
{
	DIR *d = opendir(dir);
	if (!d) {
		mh_errf(err, "%s: %s", dir, strerror(errno));
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (e->d_name[0] == '.' || (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0) ||
		    strcmp(e->d_name, "model.safetensors.index.json") == 0)
			continue;
		char *from = mh_path_join(dir, e->d_name), *to = mh_path_join(out, e->d_name);
		if (!from || !to) {
			mh_errf(err, "%s: out of memory", out);
			rc = -1;
		} else if (mh_is_file(from)) {
			rc = copy_file(from, to, err);
		}
		free(from);
		free(to);
	}
	closedir(d);
	return rc;
}

int cmd_quantize(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS,
					    { "model", required_argument, NULL, 'm' },
					    { "output", required_argument, NULL, 'o' },
					    { 0 } };
	static const char help[] =
		"Usage: modelhost quantize -m DIR -o OUTDIR --quant q8_0|q4_0 [--quant-io T]\n"
		"Write a copy of the model whose weights are quantized as --quant would at load\n"
		"(one model.safetensors, quantized tensors stored as bytes in ggml's block\n"
		"layout; the other files copied), so that loading it converts nothing.\n";
	cli_common o = { .cmd = "quantize" };
	qz_opts q = { 0 };
	int status = cli_parse_dir(&o, argc, argv, "m:o:", lo, qz_opt, &q, help, NULL);
	if (status != CLI_CONTINUE)
		return status;
	if (!q.model || !q.out || o.quant.quant == MH_F32)
		return cli_fail("quantize: -m DIR, -o OUTDIR and --quant are required"),
		       cli_usage("quantize", help);
	char err[MH_ERRLEN] = "";
	if (mkdir(q.out, 0755) != 0 && errno != EEXIST)
		return cli_fail("quantize: %s: %s", q.out, strerror(errno));
	char *st_out = mh_path_join(q.out, "model.safetensors");
	if (!st_out)
		return cli_fail("out of memory");
	if (mh_is_file(st_out)) {
		free(st_out);
		return cli_fail("quantize: %s already holds a model.safetensors; not overwriting it",
				q.out);
	}
	int rc = 1;
	mh_tensor *all = NULL;
	o.n_ctx = o.n_ctx ? o.n_ctx : 1; /* no forward pass: no cache needed */
	mh_registry *r = cli_registry(&o);
	mh_session *s = r ? cli_open_model(&o, r, q.model) : NULL;
	if (!s)
		goto out;
	mh_dir *d = s->dir;
	if (!d->quant_ok) {
		cli_fail("quantize: plugin '%s' predates quantized weights (ABI 1.2)",
			 s->lib->desc->name);
		goto out;
	}
	/* stored quantized tensors are copied as they are: their scales first */
	d->err[0] = 0;
	if (quantize_check_scales(d) != 0) {
		cli_fail("%s", d->err);
		goto out;
	}
	/* the tensors as the plugin got them: the loaded ones converted */
	all = calloc(d->n_tensors ? d->n_tensors : 1, sizeof *all);
	if (!all) {
		cli_fail("out of memory");
		goto out;
	}
	int n_quant = 0;
	for (int i = 0; i < d->n_tensors; i++) {
		/* a weight_t copy is written only quantized (stored [rows,
		 * cols], as weight_t takes it back); a float one would have to
		 * be stored transposed again: the original is */
		const mh_tensor *c = quantize_loaded(d, d->index[i]);
		if (modeldir_conv(d, i, 1) == c && !mh_dtype_is_quant(c->dtype))
			c = d->index[i];
		all[i] = *c;
		all[i].name = d->index[i]->name;
		n_quant += mh_dtype_is_quant(c->dtype) && !mh_dtype_is_quant(d->index[i]->dtype);
	}
	qsort(all, d->n_tensors, sizeof *all, by_alignment);
	if (st_write(st_out, all, d->n_tensors, err) != 0 || copy_side_files(q.model, q.out, err) != 0) {
		cli_fail("%s", err);
		goto out;
	}
	fprintf(stderr, "modelhost: %s: %d of %d tensors quantized\n", st_out, n_quant,
		d->n_tensors);
	rc = 0;
out:
	free(all);
	free(st_out);
	session_close(s);
	registry_free(r);
	return rc;
}
