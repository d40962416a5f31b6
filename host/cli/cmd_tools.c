/* SPDX-License-Identifier: MIT */
/* cmd_tools.c - the commands for operators and plugin authors: plugins,
 * info, tokenize, detokenize, logits, verify. */
#include "cli/cli.h"
#include "compute/kernels.h"
#include "model/modeldir.h"
#include "plugin/paths.h"
#include "plugin/quantize.h"
#include "model/safetensors.h"
#include "plugin/services.h"
#include "base/util.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- plugins --------------------------------------------------------------- */

static const char *status_word(plugin_status s)
{
	return s == PLUGIN_ACTIVE ? "active" : s == PLUGIN_SHADOWED ? "shadowed" : "rejected";
}

static int plugins_opt(void *ctx, int c, const char *arg)
{
	if (c != OPT_JSON)
		return -1;
	*(int *)ctx = 1;
	return 0;
}

void cli_print_plugins(FILE *f, const mh_registry *r)
{
	int n;
	const plugin_entry *e = registry_entries(r, &n);
	if (n == 0)
		fprintf(f, "no plugins found\n");
	for (int i = 0; i < n; i++) {
		fprintf(f, "%-10s %-8s ABI %u.%u  %-8s %s\n", e[i].name && *e[i].name ? e[i].name : "-",
			e[i].version && *e[i].version ? e[i].version : "-", e[i].abi_major, e[i].abi_minor,
			status_word(e[i].status), e[i].path);
		if (e[i].n_archs) {
			fprintf(f, "           architectures:");
			for (int k = 0; k < e[i].n_archs; k++)
				fprintf(f, " %s", e[i].archs[k]);
			fprintf(f, "\n");
		}
		if (e[i].status != PLUGIN_ACTIVE)
			fprintf(f, "           %s: %s\n", status_word(e[i].status), e[i].reason);
	}
	fprintf(f, "search path:");
	for (int i = 0; i < registry_n_dirs(r); i++)
		fprintf(f, " %s", registry_dir(r, i));
	fprintf(f, "\n");
}

int cmd_plugins(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS, { "json", no_argument, NULL, OPT_JSON },
					    { 0 } };
	static const char help[] =
		"Usage: modelhost plugins [--json] [--plugin-dir DIR]...\n"
		"List every plugin found in the search path with its name, version, ABI,\n"
		"architectures, path and status (active, shadowed, or rejected: reason).\n";
	cli_common o = { .cmd = "plugins" };
	int json = 0;
	int status = cli_parse_dir(&o, argc, argv, "", lo, plugins_opt, &json, help, NULL);
	if (status != CLI_CONTINUE)
		return status;
	mh_registry *r = cli_registry(&o);
	if (!r)
		return 1;
	int n;
	const plugin_entry *e = registry_entries(r, &n);
	if (json) {
		cJSON *root = cJSON_CreateObject();
		cJSON *dirs = cJSON_AddArrayToObject(root, "search_path");
		for (int i = 0; i < registry_n_dirs(r); i++)
			cJSON_AddItemToArray(dirs, cJSON_CreateString(registry_dir(r, i)));
		cJSON *arr = cJSON_AddArrayToObject(root, "plugins");
		for (int i = 0; i < n; i++) {
			cJSON *p = cJSON_CreateObject();
			cJSON_AddStringToObject(p, "name", e[i].name ? e[i].name : "");
			cJSON_AddStringToObject(p, "version", e[i].version ? e[i].version : "");
			char abi[32];
			snprintf(abi, sizeof abi, "%u.%u", e[i].abi_major, e[i].abi_minor);
			cJSON_AddStringToObject(p, "abi", abi);
			cJSON_AddStringToObject(p, "description", e[i].description ? e[i].description : "");
			cJSON_AddStringToObject(p, "license", e[i].license ? e[i].license : "");
			cJSON *a = cJSON_AddArrayToObject(p, "architectures");
			for (int k = 0; k < e[i].n_archs; k++)
				cJSON_AddItemToArray(a, cJSON_CreateString(e[i].archs[k]));
			cJSON_AddStringToObject(p, "path", e[i].path);
			cJSON_AddStringToObject(p, "status", status_word(e[i].status));
			if (e[i].status != PLUGIN_ACTIVE)
				cJSON_AddStringToObject(p, "reason", e[i].reason);
			cJSON_AddItemToArray(arr, p);
		}
		char *s = cJSON_Print(root);
		if (s)
			puts(s);
		free(s);
		cJSON_Delete(root);
	} else {
		cli_print_plugins(stdout, r);
	}
	registry_free(r);
	return 0;
}

/* ---- info --------------------------------------------------------------------- */

static void human_bytes(char *buf, size_t len, double b)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;
	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.2f %s" : "%.0f %s", b, u[i]);
}

static int model_opt(void *ctx, int c, const char *arg)
{
	if (c != 'm')
		return -1;
	*(const char **)ctx = arg;
	return 0;
}

/* With --quant: every matrix, and what it became or why it stayed. */
static void print_quantized(const mh_dir *d)
{
	int n = 0;
	for (int i = 0; i < d->n_conv; i++)
		n += mh_dtype_is_quant(d->conv[i].t->dtype);
	printf("quantized:      %d tensors; the matrices:\n", n);
	for (int i = 0; i < d->n_tensors; i++) {
		const mh_tensor *t = d->index[i], *l = quantize_loaded(d, t);
		if (t->ndim != 2)
			continue;
		int tr = l == modeldir_conv(d, i, 1);
		const char *why = tr ? (mh_dtype_is_quant(l->dtype) ? " (transposed)"
					: l->shape[1] % MH_QBLOCK ? " (transposed; rows not a multiple of 32)"
					: " (transposed, kept)")
				  : l != t ? "" : t->shape[1] % MH_QBLOCK ? " (rows not a multiple of 32)"
				  : mh_dtype_is_quant(t->dtype) ? " (stored so)"
				  : " (kept)";
		printf("  %-48s %-5s [%lld, %lld]%s\n", t->name, mh_dtype_name(l->dtype),
		       (long long)l->shape[0], (long long)l->shape[1], why);
	}
}

int cmd_info(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS,
					    { "model", required_argument, NULL, 'm' }, { 0 } };
	static const char help[] =
		"Usage: modelhost info [-m] DIR\n"
		"Which plugin claims the model and why, its architecture, parameter count,\n"
		"dtypes, bytes, context length and KV cache size; with --quant, which\n"
		"matrices were quantized and which were not, and why.\n";
	cli_common o = { .cmd = "info" };
	const char *dir = NULL;
	int status = cli_parse_dir(&o, argc, argv, "m:", lo, model_opt, &dir, help, &dir);
	if (status != CLI_CONTINUE)
		return status;
	char *def = dir ? NULL : paths_default_model();
	mh_registry *r = cli_registry(&o);
	mh_session *s = r ? cli_open_model(&o, r, dir ? dir : def) : NULL;
	if (!s) {
		registry_free(r);
		free(def);
		return 1;
	}
	const mh_dir *d = s->dir;
	int64_t params = 0;
	size_t bytes = 0;
	int64_t per_dtype[MH_DTYPE_COUNT] = { 0 };
	for (int i = 0; i < d->n_tensors; i++) {
		const mh_tensor *t = quantize_loaded(d, d->index[i]);
		params += t->nelem;
		bytes += t->nbytes;
		per_dtype[t->dtype] += t->nelem;
	}
	const char *arch = modeldir_architecture(d);
	const cJSON *mt = modeldir_config(d, "model_type");
	char b1[32], b2[32];
	printf("model:          %s\n", d->path);
	printf("architecture:   %s%s%s%s\n", arch ? arch : "?", cJSON_IsString(mt) ? " (model_type " : "",
	       cJSON_IsString(mt) ? mt->valuestring : "", cJSON_IsString(mt) ? ")" : "");
	printf("plugin:         %s\n", s->why);
	printf("parameters:     %lld (%.2f M)\n", (long long)params, params / 1e6);
	printf("dtypes:        ");
	for (int t = 0; t < MH_DTYPE_COUNT; t++)
		if (per_dtype[t])
			printf(" %s %.1f%%", mh_dtype_name((mh_dtype)t), 100.0 * per_dtype[t] / params);
	printf("\n");
	human_bytes(b1, sizeof b1, (double)bytes);
	printf("weights:        %s in %d file%s, %d tensors\n", b1, d->n_shards,
	       d->n_shards == 1 ? "" : "s", d->n_tensors);
	printf("vocabulary:     %d\n", s->info->vocab_size);
	printf("context:        %d (model limit %d)\n", s->info->n_ctx, s->info->max_context);
	human_bytes(b2, sizeof b2, (double)s->info->kv_cache_bytes);
	printf("kv cache:       %s (F32, %d positions)\n", b2, s->info->n_ctx);
	printf("bos / eos:      %d /", s->info->bos_id);
	for (int i = 0; i < s->n_eos; i++)
		printf(" %d", s->eos[i]);
	printf("\n");
	if (d->quant != MH_F32 || d->quant_io != MH_F32)
		print_quantized(d);
	session_close(s);
	registry_free(r);
	free(def);
	return 0;
}

/* ---- tokenize / detokenize ---------------------------------------------------------- */

typedef struct {
	const char *model, *tokenizer;
	int special;
} tok_opts;

static int tok_opt(void *ctx, int c, const char *arg)
{
	tok_opts *t = ctx;
	if (c == 'm')
		t->model = arg;
	else if (c == OPT_TOKENIZER)
		t->tokenizer = arg;
	else if (c == OPT_FIRST_COMMAND_OPT)
		t->special = 1;
	else
		return -1;
	return 0;
}

static mh_tokenizer *tok_for(const tok_opts *t)
{
	char *def = NULL;
	const char *dir = t->model;
	if (!dir && !t->tokenizer)
		dir = def = paths_default_model();
	mh_tokenizer *tk = cli_tokenizer(dir, t->tokenizer);
	free(def);
	return tk;
}

int cmd_tokenize(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS,
					    { "model", required_argument, NULL, 'm' },
					    { "tokenizer", required_argument, NULL, OPT_TOKENIZER },
					    { "special", no_argument, NULL, OPT_FIRST_COMMAND_OPT },
					    { 0 } };
	static const char help[] =
		"Usage: modelhost tokenize (-m DIR | --tokenizer FILE) [--special] TEXT\n"
		"Print the token ids of TEXT as one JSON array.  --special applies the\n"
		"tokenizer's post-processor (BOS and the like).\n";
	cli_common o = { .cmd = "tokenize" };
	tok_opts t = { 0 };
	int first = cli_parse(&o, argc, argv, "m:", lo, tok_opt, &t, help);
	if (first < 0)
		return first == -2 ? 0 : 1;
	if (first != argc - 1)
		return cli_fail("tokenize: expected exactly one TEXT argument"), cli_usage("tokenize", help);
	mh_tokenizer *tk = tok_for(&t);
	if (!tk)
		return 1;
	int32_t *ids = NULL;
	size_t n = 0;
	const char *text = argv[first];
	size_t len = strlen(text), ok = tokenizer_utf8_valid_prefix(text, len);
	int rc = ok < len ? 0 : tokenizer_encode_n(tk, text, len, t.special, 0, &ids, &n);
	if (ok < len || rc != 0) {
		tokenizer_free(tk);
		if (ok < len)
			return cli_fail("tokenize: the text is not valid UTF-8 (byte %zu)", ok + 1);
		return cli_fail("tokenize: encoding the text: %s", tokenizer_strerror(rc));
	}
	putchar('[');
	for (size_t i = 0; i < n; i++)
		printf("%s%d", i ? ", " : "", ids[i]);
	printf("]\n");
	free(ids);
	tokenizer_free(tk);
	return 0;
}

int cmd_detokenize(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS,
					    { "model", required_argument, NULL, 'm' },
					    { "tokenizer", required_argument, NULL, OPT_TOKENIZER },
					    { "skip-special", no_argument, NULL, OPT_FIRST_COMMAND_OPT },
					    { 0 } };
	static const char help[] =
		"Usage: modelhost detokenize (-m DIR | --tokenizer FILE) [--skip-special] ID...\n"
		"Print the text of the token ids (given as separate arguments or 1,2,3).\n";
	cli_common o = { .cmd = "detokenize" };
	tok_opts t = { 0 };
	int first = cli_parse(&o, argc, argv, "m:", lo, tok_opt, &t, help);
	if (first < 0)
		return first == -2 ? 0 : 1;
	if (first >= argc)
		return cli_fail("detokenize: no token ids given"), cli_usage("detokenize", help);
	size_t n = 0;
	int32_t *ids = NULL;
	for (int i = first; i < argc; i++) {
		int32_t *part;
		size_t k;
		if (mh_parse_ids(argv[i], &part, &k) != 0) {
			free(ids);
			return cli_fail("detokenize: '%s' is not a token id list", argv[i]);
		}
		int32_t *grown = realloc(ids, (n + k) * sizeof *ids);
		if (!grown) {
			free(part);
			free(ids);
			return cli_fail("out of memory");
		}
		ids = grown;
		memcpy(ids + n, part, k * sizeof *ids);
		n += k;
		free(part);
	}
	mh_tokenizer *tk = tok_for(&t);
	if (!tk) {
		free(ids);
		return 1;
	}
	int rc = 0;
	for (size_t i = 0; i < n; i++)
		if (ids[i] >= tokenizer_vocab_size(tk)) {
			rc = cli_fail("detokenize: token id %d is outside the vocabulary (0..%d)", ids[i],
				      tokenizer_vocab_size(tk) - 1);
			break;
		}
	size_t len;
	char *text = rc ? NULL : tokenizer_decode(tk, ids, n, t.special, &len);
	if (text) {
		fwrite(text, 1, len, stdout); /* all of it, a decoded byte 0 too */
		putchar('\n');
	}
	else if (!rc)
		rc = cli_fail("detokenize: decoding failed: out of memory, or a decoder step of "
				     "tokenizer.json grows the text more than %d times",
				     TOKENIZER_MAX_GROWTH);
	free(text);
	free(ids);
	tokenizer_free(tk);
	return rc;
}

/* ---- logits ------------------------------------------------------------------------ */

/* Logits for ids, one batched pass or one token at a time. */
static float *run_logits(mh_session *s, const int32_t *ids, size_t n, int incremental, char *err)
{
	size_t vocab = (size_t)s->info->vocab_size;
	if (n > (size_t)s->info->n_ctx) { /* name the ids given, not the token that overflowed */
		mh_errf(err, "%s: %zu token ids exceed the context length of %d", s->dir->path, n,
			s->info->n_ctx);
		return NULL;
	}
	float *out = malloc(n * vocab * sizeof *out);
	if (!out) {
		mh_errf(err, "out of memory");
		return NULL;
	}
	session_reset(s);
	int rc = 0;
	if (!incremental)
		rc = session_forward(s, ids, (int)n, out, MH_LOGITS_ALL, err);
	for (size_t i = 0; incremental && i < n && rc == 0; i++)
		rc = session_forward(s, ids + i, 1, out + i * vocab, MH_LOGITS_LAST, err);
	if (rc) {
		free(out);
		return NULL;
	}
	return out;
}

typedef struct {
	const char *model, *ids, *out, *expected;
	int incremental;
	float atol;
} run_opts;

static int run_opt(void *ctx, int c, const char *arg)
{
	run_opts *r = ctx;
	switch (c) {
	case 'm': r->model = arg; return 0;
	case 'o': r->out = arg; return 0;
	case OPT_IDS: r->ids = arg; return 0;
	case OPT_FIRST_COMMAND_OPT: r->incremental = 1; return 0;
	case OPT_FIRST_COMMAND_OPT + 1: r->expected = arg; return 0;
	case OPT_FIRST_COMMAND_OPT + 2:
		return cli_float("verify", "--atol", arg, 0, 1e9, &r->atol);
	}
	return -1;
}

int cmd_logits(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS,
					    { "model", required_argument, NULL, 'm' },
					    { "ids", required_argument, NULL, OPT_IDS },
					    { "output", required_argument, NULL, 'o' },
					    { "incremental", no_argument, NULL, OPT_FIRST_COMMAND_OPT },
					    { 0 } };
	static const char help[] =
		"Usage: modelhost logits -m DIR --ids 1,2,3 -o OUT.safetensors [--incremental]\n"
		"Write an F32 tensor 'logits' [n_ids, vocab]: one batched forward pass, or with\n"
		"--incremental one token at a time through the KV cache.\n";
	cli_common o = { .cmd = "logits" };
	run_opts ro = { 0 };
	int status = cli_parse_dir(&o, argc, argv, "m:o:", lo, run_opt, &ro, help, NULL);
	if (status != CLI_CONTINUE)
		return status;
	if (!ro.model || !ro.ids || !ro.out)
		return cli_fail("logits: -m DIR, --ids and -o OUT are required"), cli_usage("logits", help);
	int32_t *ids;
	size_t n;
	if (mh_parse_ids(ro.ids, &ids, &n) != 0)
		return cli_fail("logits: --ids '%s' is not a comma-separated list of token ids", ro.ids);
	mh_registry *r = cli_registry(&o);
	mh_session *s = r ? cli_open_model(&o, r, ro.model) : NULL;
	char err[MH_ERRLEN] = "";
	int rc = 1;
	float *lg = s ? run_logits(s, ids, n, ro.incremental, err) : NULL;
	if (lg) {
		mh_tensor t = { .name = "logits", .dtype = MH_F32, .ndim = 2,
				.shape = { (int64_t)n, s->info->vocab_size },
				.nelem = (int64_t)n * s->info->vocab_size, .data = lg };
		t.nbytes = (size_t)t.nelem * sizeof(float);
		rc = st_write(ro.out, &t, 1, err) != 0;
	}
	if (err[0])
		cli_fail("%s", err);
	free(lg);
	free(ids);
	session_close(s);
	registry_free(r);
	return rc;
}

/* ---- verify ---------------------------------------------------------------------------- */

static int64_t *i64_tensor(const st_file *f, const char *name, int64_t *n, char *err)
{
	const mh_tensor *t = st_find(f, name);
	if (!t || t->dtype != MH_I64 || t->ndim != 1 || t->nelem < 1) {
		mh_errf(err, "%s: no I64 vector '%s'", f->path, name);
		return NULL;
	}
	*n = t->nelem;
	return (int64_t *)t->data;
}

static int32_t *to_ids(const int64_t *v, int64_t n)
{
	int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
	for (int64_t i = 0; ids && i < n; i++) {
		if (v[i] < 0 || v[i] > INT32_MAX) {
			free(ids);
			return NULL;
		}
		ids[i] = (int32_t)v[i];
	}
	return ids;
}

static double max_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (!(d <= m)) /* NaN counts as a mismatch */
			m = isnan(d) ? INFINITY : d;
	}
	return m;
}

static int verify_run(mh_session *s, st_file *ex, float atol, char *err)
{
	int64_t n_in, n_prompt, n_greedy;
	const int64_t *in = i64_tensor(ex, "input_ids", &n_in, err);
	const int64_t *prompt = in ? i64_tensor(ex, "greedy_prompt", &n_prompt, err) : NULL;
	const int64_t *greedy = prompt ? i64_tensor(ex, "greedy_ids", &n_greedy, err) : NULL;
	if (!greedy)
		return -1;
	size_t vocab = (size_t)s->info->vocab_size;
	const mh_tensor *lt = st_find(ex, "logits");
	if (!lt || lt->dtype != MH_F32 || lt->ndim != 2 || lt->shape[0] != n_in ||
	    lt->shape[1] != (int64_t)vocab) {
		mh_errf(err, "%s: no F32 'logits' of shape [%lld, %zu]", ex->path, (long long)n_in, vocab);
		return -1;
	}
	if (n_greedy <= n_prompt || memcmp(greedy, prompt, n_prompt * sizeof *prompt) != 0) {
		mh_errf(err, "%s: greedy_ids does not start with greedy_prompt", ex->path);
		return -1;
	}
	int32_t *ids = to_ids(in, n_in), *gids = to_ids(greedy, n_greedy);
	int failed = 0, rc = -1;
	float *batched = NULL, *inc = NULL, *last = NULL;
	if (!ids || !gids) {
		mh_errf(err, "%s: token ids out of range", ex->path);
		goto out;
	}
	batched = run_logits(s, ids, n_in, 0, err);
	inc = batched ? run_logits(s, ids, n_in, 1, err) : NULL;
	last = malloc(vocab * sizeof *last);
	if (!inc || !last)
		goto out;
	double db = max_diff(batched, lt->data, n_in * vocab);
	double di = max_diff(inc, lt->data, n_in * vocab);
	printf("batched:      max |diff| %.3g over %lld x %zu logits  %s\n", db, (long long)n_in, vocab,
	       db <= atol ? "ok" : "MISMATCH");
	printf("incremental:  max |diff| %.3g  %s\n", di, di <= atol ? "ok" : "MISMATCH");
	failed = !(db <= atol) + !(di <= atol);
	/* greedy: the prompt in one pass, then one token at a time */
	session_reset(s);
	int64_t match = n_prompt;
	int32_t next = -1;
	if (session_forward(s, gids, (int)n_prompt, last, MH_LOGITS_LAST, err) != 0)
		goto out;
	for (int64_t i = n_prompt; i < n_greedy; i++) {
		next = (int32_t)kern_argmax(last, vocab);
		if (next != gids[i])
			break;
		match++;
		if (i + 1 < n_greedy && session_forward(s, &next, 1, last, MH_LOGITS_LAST, err) != 0)
			goto out;
	}
	if (match == n_greedy) {
		printf("greedy:       %lld of %lld tokens match  ok\n", (long long)(n_greedy - n_prompt),
		       (long long)(n_greedy - n_prompt));
	} else {
		printf("greedy:       first difference at position %lld: got %d, expected %d  MISMATCH\n",
		       (long long)match, next, gids[match]);
		failed++;
	}
	rc = failed ? 1 : 0;
out:
	free(ids);
	free(gids);
	free(batched);
	free(inc);
	free(last);
	return rc;
}

int cmd_verify(int argc, char **argv)
{
	static const struct option lo[] = { COMMON_LONG_OPTIONS,
					    { "model", required_argument, NULL, 'm' },
					    { "expected", required_argument, NULL, OPT_FIRST_COMMAND_OPT + 1 },
					    { "atol", required_argument, NULL, OPT_FIRST_COMMAND_OPT + 2 },
					    { 0 } };
	static const char help[] =
		"Usage: modelhost verify -m DIR [--expected FILE] [--atol X]\n"
		"Check a model against reference logits: input_ids, logits, greedy_prompt and\n"
		"greedy_ids in FILE (default DIR/expected.safetensors).  The logits must agree\n"
		"within X (default 1e-4) both from one batched pass and one token at a time,\n"
		"and greedy decoding must reproduce greedy_ids.  Exits 1 on any mismatch.\n";
	cli_common o = { .cmd = "verify" };
	run_opts ro = { .atol = 1e-4f };
	int status = cli_parse_dir(&o, argc, argv, "m:", lo, run_opt, &ro, help, &ro.model);
	if (status != CLI_CONTINUE)
		return status;
	if (!ro.model)
		return cli_fail("verify: -m DIR is required"), cli_usage("verify", help);
	char *exp_path = ro.expected ? strdup(ro.expected) : mh_path_join(ro.model, "expected.safetensors");
	char err[MH_ERRLEN] = "";
	st_file ex;
	if (st_open(&ex, exp_path, err) != 0) {
		free(exp_path);
		return cli_fail("%s", err);
	}
	free(exp_path);
	mh_registry *r = cli_registry(&o);
	mh_session *s = r ? cli_open_model(&o, r, ro.model) : NULL;
	int rc = 1;
	if (s) {
		printf("model:        %s\nplugin:       %s\n", ro.model, s->why);
		rc = verify_run(s, &ex, ro.atol, err);
		if (rc < 0) {
			cli_fail("%s", err);
			rc = 1;
		}
	}
	session_close(s);
	registry_free(r);
	st_close(&ex);
	return rc;
}
