/* SPDX-License-Identifier: MIT */
/* check_models.c - every first-party plugin against Hugging Face
 * transformers: logits at every position (one batched pass, and one token
 * at a time through the KV cache) within 1e-4 of expected.safetensors,
 * greedy decoding token for token; the same weights stored as BF16/F16;
 * and the load-time errors a user can run into. */
#include "model/modeldir.h"
#include "compute/ops.h"
#include "plugin/registry.h"
#include "model/safetensors.h"
#include "plugin/quantize.h"
#include "plugin/services.h"
#include "plugin/session.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct fixture {
	const char *dir;       /* model directory, relative to a data root */
	const char *expected;  /* expected.safetensors, relative to a data root */
	const char *plugin;    /* the plugin that must claim it */
	int stored_16bit;      /* weights already BF16 */
} fixtures[] = {
	{ "fixtures/models/llama", "fixtures/models/llama/expected.safetensors", "llama", 0 },
	{ "fixtures/models/llama-bf16", "fixtures/models/llama-bf16/expected.safetensors", "llama", 1 },
	{ "models/stories260K", "fixtures/models/stories260K/expected.safetensors", "llama", 0 },
	{ "fixtures/models/mistral-swa-sharded",
	  "fixtures/models/mistral-swa-sharded/expected.safetensors", "mistral", 0 },
	{ "fixtures/models/phi2", "fixtures/models/phi2/expected.safetensors", "phi", 0 },
	{ "fixtures/models/phi3", "fixtures/models/phi3/expected.safetensors", "phi", 0 },
	{ "fixtures/models/qwen2-tied", "fixtures/models/qwen2-tied/expected.safetensors", "qwen", 0 },
	{ "fixtures/models/qwen3-headdim", "fixtures/models/qwen3-headdim/expected.safetensors",
	  "qwen", 0 },
};
#define N_FIXTURES (int)(sizeof fixtures / sizeof *fixtures)
#define ATOL 1e-4

static mh_registry *reg;
static char err[MH_ERRLEN];

static void setup(void)
{
	reg = tu_registry(0);
}

static void teardown(void)
{
	registry_free(reg);
	services_shutdown();
}

static mh_session *open_model(const char *path)
{
	mh_session *s = session_open(reg, path, NULL, 0, err);
	ck_assert_msg(s != NULL, "%s", err);
	return s;
}

static const mh_tensor *get(const st_file *f, const char *name, mh_dtype dt)
{
	const mh_tensor *t = st_find(f, name);
	ck_assert_msg(t && t->dtype == dt, "%s: no %s", f->path, name);
	return t;
}

static int32_t *ids_of(const mh_tensor *t)
{
	int32_t *ids = malloc(t->nelem * sizeof *ids);
	for (int64_t i = 0; i < t->nelem; i++)
		ids[i] = (int32_t)((const int64_t *)t->data)[i];
	return ids;
}

/* Logits for ids: batched (one pass) or incremental (token by token). */
static float *logits_of(mh_session *s, const int32_t *ids, int n, int incremental)
{
	int vocab = s->info->vocab_size;
	float *out = malloc((size_t)n * vocab * sizeof *out);
	session_reset(s);
	if (!incremental) {
		ck_assert_msg(session_forward(s, ids, n, out, MH_LOGITS_ALL, err) == 0, "%s", err);
	} else {
		for (int i = 0; i < n; i++)
			ck_assert_msg(session_forward(s, ids + i, 1, out + (size_t)i * vocab,
						      MH_LOGITS_LAST, err) == 0, "%s", err);
	}
	return out;
}

static double max_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (!(d <= m))
			m = isnan(d) ? INFINITY : d;
	}
	return m;
}

static int argmax(const float *v, int n)
{
	int b = 0;
	for (int i = 1; i < n; i++)
		if (v[i] > v[b])
			b = i;
	return b;
}

START_TEST(matches_transformers)
{
	const struct fixture *fx = &fixtures[_i];
	char *dir = tu_data_path(fx->dir), *exp = tu_data_path(fx->expected);
	st_file ex;
	ck_assert_msg(st_open(&ex, exp, err) == 0, "%s", err);
	mh_session *s = open_model(dir);
	ck_assert_str_eq(s->lib->desc->name, fx->plugin);
	const mh_tensor *in = get(&ex, "input_ids", MH_I64), *lt = get(&ex, "logits", MH_F32);
	int n = (int)in->nelem, vocab = s->info->vocab_size;
	ck_assert_int_eq(lt->shape[1], vocab);
	int32_t *ids = ids_of(in);
	for (int inc = 0; inc <= 1; inc++) {
		float *lg = logits_of(s, ids, n, inc);
		double d = max_diff(lg, lt->data, (size_t)n * vocab);
		ck_assert_msg(d <= ATOL, "%s %s: max |diff| %g > %g", fx->dir,
			      inc ? "incremental" : "batched", d, ATOL);
		free(lg);
	}
	/* greedy: prompt in one pass, then token by token */
	const mh_tensor *gp = get(&ex, "greedy_prompt", MH_I64), *gi = get(&ex, "greedy_ids", MH_I64);
	int32_t *want = ids_of(gi);
	float *last = malloc(vocab * sizeof *last);
	session_reset(s);
	ck_assert_int_eq(session_forward(s, want, (int)gp->nelem, last, MH_LOGITS_LAST, err), 0);
	for (int64_t i = gp->nelem; i < gi->nelem; i++) {
		int32_t next = argmax(last, vocab);
		ck_assert_msg(next == want[i], "%s: greedy step %lld: got %d, expected %d", fx->dir,
			      (long long)i, next, want[i]);
		if (i + 1 < gi->nelem)
			ck_assert_int_eq(session_forward(s, &next, 1, last, MH_LOGITS_LAST, err), 0);
	}
	free(last);
	free(want);
	free(ids);
	session_close(s);
	st_close(&ex);
	free(dir);
	free(exp);
}
END_TEST

/* Prompts longer than a forward chunk (256 tokens) and than the sliding
 * window: one batched pass must agree with token-by-token decoding. */
START_TEST(long_prompts_agree_with_decoding)
{
	const struct fixture *fx = &fixtures[_i];
	enum { N = 300 };
	char *dir = tu_data_path(fx->dir);
	mh_session *s = session_open(reg, dir, NULL, N, err);
	ck_assert_msg(s != NULL, "%s", err);
	int32_t ids[N];
	for (int i = 0; i < N; i++)
		ids[i] = (int32_t)((i * 37 + 11) % s->info->vocab_size);
	size_t total = (size_t)N * s->info->vocab_size;
	float *batched = logits_of(s, ids, N, 0), *inc = logits_of(s, ids, N, 1);
	double d = max_diff(batched, inc, total);
	ck_assert_msg(d <= ATOL, "%s: %d-token prompt, batched vs incremental max |diff| %g", fx->dir,
		      N, d);
	free(batched);
	free(inc);
	session_close(s);
	free(dir);
}
END_TEST

/* Write dir's weights converted to dtype into a new directory. */
static char *convert(const char *dir, mh_dtype dtype)
{
	char *out = tu_tmpdir(), from[4200], to[4200];
	snprintf(from, sizeof from, "%s/config.json", dir);
	snprintf(to, sizeof to, "%s/config.json", out);
	tu_copy(from, to);
	mh_dir *d = modeldir_open(dir, err);
	ck_assert_msg(d != NULL, "%s", err);
	mh_tensor *ts = calloc(d->n_tensors, sizeof *ts);
	for (int i = 0; i < d->n_tensors; i++) {
		const mh_tensor *t = d->index[i];
		ts[i] = *t;
		ts[i].dtype = dtype;
		ts[i].nbytes = t->nelem * 2;
		uint16_t *v = malloc(ts[i].nbytes ? ts[i].nbytes : 2);
		float *f = malloc((t->nelem ? t->nelem : 1) * sizeof *f);
		ops_to_f32(f, t, 0, t->nelem);
		for (int64_t k = 0; k < t->nelem; k++)
			v[k] = dtype == MH_BF16 ? mh_f32_to_bf16(f[k]) : mh_f32_to_f16(f[k]);
		free(f);
		ts[i].data = v;
	}
	snprintf(to, sizeof to, "%s/model.safetensors", out);
	ck_assert_msg(st_write(to, ts, d->n_tensors, err) == 0, "%s", err);
	for (int i = 0; i < d->n_tensors; i++)
		free((void *)ts[i].data);
	free(ts);
	modeldir_close(d);
	return out;
}

/* The same weights rounded to 16 bits: the logits move by about what the
 * rounding explains, and the forward pass really read the 16-bit data. */
START_TEST(half_precision_weights)
{
	const struct fixture *fx = &fixtures[_i / 2];
	mh_dtype dt = _i % 2 ? MH_F16 : MH_BF16;
	/* relative to the largest logit: BF16 keeps 8 bits of mantissa, F16 11 */
	double rel = dt == MH_BF16 ? 0.03 : 0.005;
	if (fx->stored_16bit)
		return;
	char *dir = tu_data_path(fx->dir), *exp = tu_data_path(fx->expected);
	st_file ex;
	ck_assert_msg(st_open(&ex, exp, err) == 0, "%s", err);
	const mh_tensor *in = get(&ex, "input_ids", MH_I64), *lt = get(&ex, "logits", MH_F32);
	int32_t *ids = ids_of(in);
	int n = (int)in->nelem;
	char *conv = convert(dir, dt);
	mh_session *s = open_model(conv);
	size_t total = (size_t)n * s->info->vocab_size;
	double absmax = 0;
	for (size_t k = 0; k < total; k++)
		absmax = fmax(absmax, fabs(((const float *)lt->data)[k]));
	double tol = rel * absmax;
	for (int inc = 0; inc <= 1; inc++) {
		float *lg = logits_of(s, ids, n, inc);
		double d = max_diff(lg, lt->data, total);
		ck_assert_msg(d <= tol, "%s as %s: max |diff| %g > %g", fx->dir, mh_dtype_name(dt), d, tol);
		ck_assert_msg(d > 1e-7, "%s as %s: identical to F32, conversion not exercised", fx->dir,
			      mh_dtype_name(dt));
		free(lg);
	}
	session_close(s);
	tu_rmtree(conv);
	free(conv);
	free(ids);
	st_close(&ex);
	free(dir);
	free(exp);
}
END_TEST

/* The phi2 fixture with qk_layernorm set to qk and a LayerNorm (weight
 * ln_w + small ripples, bias 0.05 ripples) on each head of q and k; the
 * rows of head h in q_proj and k_proj (weight and bias) scaled by scale[h]. */
static char *phi2_qk_variant(int qk, float ln_w, const float scale[4])
{
	char *out = tu_tmpdir(), path[4200];
	char *dir = tu_data_path("fixtures/models/phi2");
	mh_dir *d = modeldir_open(dir, err);
	ck_assert_msg(d != NULL, "%s", err);
	cJSON *cfg = cJSON_Duplicate(d->config, 1);
	cJSON_ReplaceItemInObject(cfg, "qk_layernorm", cJSON_CreateBool(qk));
	char *text = cJSON_Print(cfg);
	tu_write(out, "config.json", text);
	free(text);
	cJSON_Delete(cfg);
	int hd = 16, layers = 2, n = d->n_tensors;
	mh_tensor *ts = calloc(n + 4 * layers, sizeof *ts);
	char (*names)[96] = calloc(4 * layers, sizeof *names);
	for (int i = 0; i < n; i++) {
		const mh_tensor *t = d->index[i];
		ck_assert(t->dtype == MH_F32);
		float *v = malloc(t->nbytes);
		memcpy(v, t->data, t->nbytes);
		if (strstr(t->name, "self_attn.q_proj.") || strstr(t->name, "self_attn.k_proj."))
			for (int64_t r = 0; r < t->shape[0]; r++) {
				int64_t cols = t->ndim > 1 ? t->shape[1] : 1;
				for (int64_t c = 0; c < cols; c++)
					v[r * cols + c] *= scale[r / hd];
			}
		ts[i] = *t;
		ts[i].data = v;
	}
	for (int k = 0; k < 4 * layers; k++) {
		static const char *const which[] = { "q_layernorm.weight", "q_layernorm.bias",
						     "k_layernorm.weight", "k_layernorm.bias" };
		snprintf(names[k], sizeof names[k], "model.layers.%d.self_attn.%s", k / 4, which[k % 4]);
		float *v = malloc(hd * sizeof *v);
		for (int j = 0; j < hd; j++)
			v[j] = k % 2 ? 0.05f * cosf((float)(7 * k + j)) : ln_w + 0.2f * sinf((float)(k + j));
		ts[n + k] = (mh_tensor){ .name = names[k], .dtype = MH_F32, .ndim = 1,
					 .shape = { hd }, .nelem = hd, .nbytes = hd * sizeof(float),
					 .data = v };
	}
	snprintf(path, sizeof path, "%s/model.safetensors", out);
	ck_assert_msg(st_write(path, ts, n + 4 * layers, err) == 0, "%s", err);
	for (int i = 0; i < n + 4 * layers; i++)
		free((void *)ts[i].data);
	free(ts);
	free(names);
	modeldir_close(d);
	free(dir);
	return out;
}

static float *phi2_qk_logits(int qk, float ln_w, const float scale[4], int n)
{
	static const int32_t ids[] = { 1, 17, 230, 5, 499, 42, 42, 7, 300, 12 };
	char *dir = phi2_qk_variant(qk, ln_w, scale);
	mh_session *s = open_model(dir);
	float *lg = logits_of(s, ids, n, 0);
	session_close(s);
	tu_rmtree(dir);
	free(dir);
	return lg;
}

/* Phi's qk_layernorm, which no reference checkpoint has: a LayerNorm over
 * each head of q and of k takes out that head's scale, so scaling each
 * head's rows of q_proj and k_proj by its own factor leaves the logits
 * where they were with the norms, and moves them without.  The norms'
 * weights still count.  (Both scalings are >= 10: LayerNorm's eps then
 * weighs ~1e-5 of each head's variance.) */
START_TEST(phi_qk_layernorm_takes_out_each_heads_scale)
{
	const int n = 10;
	const size_t total = (size_t)n * 512;
	const float even[4] = { 10, 10, 10, 10 }, uneven[4] = { 10, 40, 15, 25 };
	float *a = phi2_qk_logits(1, 1.0f, even, n), *b = phi2_qk_logits(1, 1.0f, uneven, n);
	double absmax = 0;
	for (size_t k = 0; k < total; k++)
		absmax = fmax(absmax, fabs(a[k]));
	double same = max_diff(a, b, total);
	ck_assert_msg(same <= 1e-4 * absmax + 1e-5, "with qk_layernorm, per-head scales moved the "
		      "logits by %g (largest %g)", same, absmax);
	float *c = phi2_qk_logits(0, 1.0f, even, n), *d = phi2_qk_logits(0, 1.0f, uneven, n);
	double moved = max_diff(c, d, total);
	ck_assert_msg(moved > 1e-2 * absmax, "without qk_layernorm the scales should matter: %g",
		      moved);
	double normed = max_diff(a, c, total);
	ck_assert_msg(normed > 1e-2 * absmax, "qk_layernorm changed nothing: %g", normed);
	float *e = phi2_qk_logits(1, 2.0f, even, n);
	double weighted = max_diff(a, e, total);
	ck_assert_msg(weighted > 1e-2 * absmax, "the LayerNorm weights changed nothing: %g",
		      weighted);
	free(a);
	free(b);
	free(c);
	free(d);
	free(e);
}
END_TEST

/* The llama fixture with attention_bias and mlp_bias on and every bias of
 * every layer written: zero, but layer 0's `which` ("v_proj", "down_proj"...)
 * set to bias (which NULL: all zero). */
static char *llama_with_biases(const char *which, const float *bias)
{
	static const char *const name[7] = { "self_attn.q_proj", "self_attn.k_proj",
					     "self_attn.v_proj", "self_attn.o_proj",
					     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
	enum { LAYERS = 2, NB = 7 * LAYERS };
	char *out = tu_tmpdir(), path[4200];
	char *dir = tu_data_path("fixtures/models/llama");
	mh_dir *d = modeldir_open(dir, err);
	ck_assert_msg(d != NULL, "%s", err);
	cJSON *cfg = cJSON_Duplicate(d->config, 1);
	cJSON_ReplaceItemInObject(cfg, "attention_bias", cJSON_CreateBool(1));
	cJSON_ReplaceItemInObject(cfg, "mlp_bias", cJSON_CreateBool(1));
	char *text = cJSON_Print(cfg);
	tu_write(out, "config.json", text);
	free(text);
	cJSON_Delete(cfg);
	int n = d->n_tensors;
	mh_tensor *ts = calloc(n + NB, sizeof *ts);
	char (*names)[96] = calloc(NB, sizeof *names);
	for (int i = 0; i < n; i++)
		ts[i] = *d->index[i];
	for (int k = 0; k < NB; k++) {
		char w[96];
		snprintf(w, sizeof w, "model.layers.%d.%s.weight", k / 7, name[k % 7]);
		snprintf(names[k], sizeof names[k], "model.layers.%d.%s.bias", k / 7, name[k % 7]);
		const mh_tensor *t = modeldir_tensor(d, w);
		ck_assert_msg(t != NULL, "no %s", w);
		int64_t len = t->shape[0];
		float *v = calloc(len, sizeof *v);
		if (which && k < 7 && strstr(name[k], which))
			memcpy(v, bias, len * sizeof *v);
		ts[n + k] = (mh_tensor){ .name = names[k], .dtype = MH_F32, .ndim = 1,
					 .shape = { len }, .nelem = len, .nbytes = len * sizeof(float),
					 .data = v };
	}
	snprintf(path, sizeof path, "%s/model.safetensors", out);
	ck_assert_msg(st_write(path, ts, n + NB, err) == 0, "%s", err);
	for (int k = 0; k < NB; k++)
		free((void *)ts[n + k].data);
	free(ts);
	free(names);
	modeldir_close(d);
	free(dir);
	return out;
}

static float *short_logits(const char *dir, int n)
{
	static const int32_t ids[] = { 1, 17, 230, 5, 499, 42, 42, 7, 300, 12 };
	mh_session *s = open_model(dir);
	float *lg = logits_of(s, ids, n, 0);
	session_close(s);
	return lg;
}

static float *llama_bias_logits(const char *which, const float *bias, int n)
{
	char *dir = llama_with_biases(which, bias);
	float *lg = short_logits(dir, n);
	tu_rmtree(dir);
	free(dir);
	return lg;
}

/* Llama's attention_bias and mlp_bias, which no reference checkpoint has:
 * zero biases change nothing; every bias moves the logits; and each is added
 * where it belongs.  Attention weights sum to 1, so a v_proj bias b adds b
 * (each kv head's part, to the query heads that share it) to the attention
 * output, which is what an o_proj bias of wo * b adds after it. */
START_TEST(llama_biases_are_added_where_they_belong)
{
	enum { N = 10, DIM = 64, HD = 16, HEADS = 4, KV = 32, FFN = 176 };
	const size_t total = (size_t)N * 512;
	float b[FFN], att[HEADS * HD], ob[DIM];
	for (int j = 0; j < FFN; j++)
		b[j] = 0.5f * sinf((float)(3 * j + 1));
	char *dir = tu_data_path("fixtures/models/llama");
	float *plain = short_logits(dir, N);
	float *zero = llama_bias_logits(NULL, NULL, N);
	ck_assert_msg(max_diff(plain, zero, total) == 0, "zero biases moved the logits by %g",
		      max_diff(plain, zero, total));
	static const char *const each[] = { "q_proj", "k_proj", "gate_proj", "up_proj",
					    "down_proj" };
	for (int k = 0; k < 5; k++) {
		float *lg = llama_bias_logits(each[k], b, N);
		ck_assert_msg(max_diff(plain, lg, total) > 1e-3, "the %s bias changed nothing: %g",
			      each[k], max_diff(plain, lg, total));
		free(lg);
	}
	float *v = llama_bias_logits("v_proj", b, N);
	mh_dir *d = modeldir_open(dir, err);
	ck_assert_msg(d != NULL, "%s", err);
	const mh_tensor *wo = modeldir_tensor(d, "model.layers.0.self_attn.o_proj.weight");
	ck_assert(wo && wo->dtype == MH_F32 && wo->shape[0] == DIM && wo->shape[1] == HEADS * HD);
	for (int h = 0; h < HEADS; h++) /* 4 query heads, 2 kv heads */
		for (int i = 0; i < HD; i++)
			att[h * HD + i] = b[(h / (HEADS * HD / KV)) * HD + i];
	for (int r = 0; r < DIM; r++) {
		double sum = 0;
		for (int c = 0; c < HEADS * HD; c++)
			sum += (double)((const float *)wo->data)[r * HEADS * HD + c] * att[c];
		ob[r] = (float)sum;
	}
	modeldir_close(d);
	free(dir);
	float *o = llama_bias_logits("o_proj", ob, N);
	double moved = max_diff(plain, v, total), apart = max_diff(v, o, total);
	ck_assert_msg(moved > 1e-2, "the v_proj bias changed nothing: %g", moved);
	ck_assert_msg(apart <= ATOL, "a v_proj bias and the o_proj bias it makes differ by %g",
		      apart);
	free(plain);
	free(zero);
	free(v);
	free(o);
}
END_TEST

/* A copy of the llama fixture with config.json replaced. */
static char *llama_with_config(const char *config)
{
	char *out = tu_tmpdir(), to[4200];
	char *w = tu_data_path("fixtures/models/llama/model.safetensors");
	snprintf(to, sizeof to, "%s/model.safetensors", out);
	tu_copy(w, to);
	free(w);
	tu_write(out, "config.json", config);
	return out;
}

static void expect_load_error(const char *config, const char *what)
{
	char *dir = llama_with_config(config);
	mh_session *s = session_open(reg, dir, NULL, 0, err);
	ck_assert_msg(s == NULL, "loaded despite: %s", what);
	ck_assert_msg(strstr(err, what) != NULL, "error '%s' lacks '%s'", err, what);
	ck_assert_msg(strstr(err, dir) != NULL, "error '%s' does not name the directory", err);
	tu_rmtree(dir);
	free(dir);
}

/* The llama fixture's config with some keys changed (cJSON keeps the first
 * of two equal keys, so every key that a test changes is a parameter). */
#define LLAMA_CONFIG_KV(kv, extra)                                                        \
	"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "               \
	"\"num_hidden_layers\": 2, \"num_attention_heads\": 4, "                          \
	"\"num_key_value_heads\": " kv ", \"max_position_embeddings\": 32, "              \
	"\"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": false" extra "}"
#define LLAMA_CONFIG(extra) \
	LLAMA_CONFIG_KV("2", ", \"intermediate_size\": 176, \"vocab_size\": 512" extra)

START_TEST(load_errors_name_the_problem)
{
	expect_load_error(LLAMA_CONFIG(", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}"),
			  "config.json: rope type 'yarn'");
	expect_load_error(LLAMA_CONFIG(", \"hidden_act\": \"relu\""), "hidden_act 'relu'");
	/* far outside int64_t: refused by its range, never converted (found by fuzzing) */
	expect_load_error(LLAMA_CONFIG_KV("6.4e54", ", \"intermediate_size\": 176, \"vocab_size\": 512"),
			  "'num_key_value_heads' should be an integer");
	expect_load_error(LLAMA_CONFIG(", \"attention_bias\": true"),
			  "tensor 'model.layers.0.self_attn.q_proj.bias' is missing");
	expect_load_error(LLAMA_CONFIG_KV("3", ", \"intermediate_size\": 176, \"vocab_size\": 512"),
			  "not a multiple of num_key_value_heads 3");
	expect_load_error(LLAMA_CONFIG_KV("2", ", \"intermediate_size\": 100, \"vocab_size\": 512"),
			  "model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight' has shape "
			  "[176, 64], expected [100, 64]");
	expect_load_error(LLAMA_CONFIG_KV("2", ", \"intermediate_size\": 176, \"vocab_size\": \"many\""),
			  "'vocab_size' should be an integer");
}
END_TEST

START_TEST(context_and_ids_are_checked)
{
	char *dir = llama_with_config(LLAMA_CONFIG(""));
	mh_session *s = open_model(dir);
	ck_assert_int_eq(s->info->n_ctx, 32);
	int32_t ids[40] = { 0 };
	float *lg = malloc(512 * sizeof *lg);
	ck_assert_int_eq(session_forward(s, ids, 30, lg, MH_LOGITS_LAST, err), 0);
	ck_assert_int_eq(session_forward(s, ids, 3, lg, MH_LOGITS_LAST, err), -1);
	ck_assert_msg(strstr(err, "33 tokens exceed the context length of 32") != NULL, "%s", err);
	session_reset(s);
	ids[1] = 512;
	ck_assert_int_eq(session_forward(s, ids, 2, lg, MH_LOGITS_LAST, err), -1);
	ck_assert_ptr_nonnull(strstr(err, "token id 512 is outside the vocabulary"));
	free(lg);
	session_close(s);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

/* session_rewind keeps a prefix of the cache: a different continuation from
 * there gives the logits of a fresh run over prefix + continuation.  A model
 * with a sliding window shorter than its context resets instead. */
START_TEST(rewind_keeps_a_prefix)
{
	char *dir = tu_data_path("fixtures/models/llama");
	mh_session *s = open_model(dir);
	int vocab = s->info->vocab_size;
	int32_t a[12], b[12];
	for (int i = 0; i < 12; i++) {
		a[i] = (i * 7 + 3) % vocab;
		b[i] = i < 5 ? a[i] : (i * 11 + 1) % vocab;
	}
	float *want = malloc((size_t)vocab * sizeof *want), *got = malloc((size_t)vocab * sizeof *got);
	ck_assert_int_eq(session_forward(s, b, 12, want, MH_LOGITS_LAST, err), 0);
	session_reset(s);
	ck_assert_int_eq(session_forward(s, a, 12, got, MH_LOGITS_LAST, err), 0);
	ck_assert_int_eq(session_rewind(s, 5), 5);
	ck_assert_int_eq(s->pos, 5);
	ck_assert_int_eq(session_forward(s, b + 5, 7, got, MH_LOGITS_LAST, err), 0);
	for (int v = 0; v < vocab; v++)
		ck_assert_msg(fabsf(got[v] - want[v]) <= 1e-4f * (1 + fabsf(want[v])), "logit %d: %g vs %g",
			      v, got[v], want[v]);
	ck_assert_int_eq(session_rewind(s, 13), 0); /* past the end: a reset */
	ck_assert_int_eq(s->pos, 0);
	session_close(s);
	free(dir);
	dir = tu_data_path("fixtures/models/mistral-swa-sharded");
	s = session_open(reg, dir, NULL, 64, err);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert_int_eq(session_forward(s, a, 12, got, MH_LOGITS_LAST, err), 0);
	ck_assert_int_eq(session_rewind(s, 12), 12);
	ck_assert_int_eq(session_rewind(s, 5), 0);
	ck_assert_int_eq(s->pos, 0);
	session_close(s);
	free(dir);
	free(want);
	free(got);
}
END_TEST

/* Sliding-window attention keeps only the cache slots it can still see (a
 * ring of window + 255 for Mistral's window of 8), and positions stored in
 * reused slots are right: with 2 layers of window 8, position i sees tokens
 * i-14..i only, and rotary embeddings are relative, so its logits equal
 * those of a fresh run over just those 15 tokens. */
START_TEST(sliding_window_cache_is_a_ring)
{
	char *dir = tu_data_path("fixtures/models/mistral-swa-sharded");
	uint64_t bytes[3];
	const int ctx[3] = { 100, 300, 600 };
	for (int k = 0; k < 3; k++) {
		mh_session *s = session_open(reg, dir, NULL, ctx[k], err);
		ck_assert_msg(s != NULL, "%s", err);
		bytes[k] = s->info->kv_cache_bytes;
		session_close(s);
	}
	ck_assert_uint_eq(bytes[0] / 100, bytes[1] / 263); /* 100 slots, then 8 + 255 */
	ck_assert_uint_eq(bytes[1], bytes[2]);

	enum { N = 300, SPAN = 15 };
	mh_session *s = session_open(reg, dir, NULL, N, err);
	ck_assert_msg(s != NULL, "%s", err);
	int vocab = s->info->vocab_size;
	int32_t ids[N];
	for (int i = 0; i < N; i++)
		ids[i] = (int32_t)((i * 53 + 7) % vocab);
	float *all = logits_of(s, ids, N, 0), *last = malloc(vocab * sizeof *last);
	const int at[] = { 262, 263, 270, 299 }; /* around and past the ring's wrap */
	for (int k = 0; k < 4; k++) {
		int i = at[k];
		session_reset(s);
		ck_assert_int_eq(session_forward(s, ids + i - SPAN + 1, SPAN, last, MH_LOGITS_LAST, err), 0);
		double d = max_diff(last, all + (size_t)i * vocab, vocab);
		ck_assert_msg(d <= ATOL, "position %d: %g from a fresh run over its window", i, d);
		/* and the span is not wider than what the model sees: its
		 * first token does matter */
		int32_t alt[SPAN];
		memcpy(alt, ids + i - SPAN + 1, sizeof alt);
		alt[0] = (alt[0] + 1) % vocab;
		session_reset(s);
		ck_assert_int_eq(session_forward(s, alt, SPAN, last, MH_LOGITS_LAST, err), 0);
		ck_assert_msg(max_diff(last, all + (size_t)i * vocab, vocab) > 1e-3,
			      "position %d does not depend on token %d", i, i - SPAN + 1);
	}
	free(all);
	free(last);
	session_close(s);
	free(dir);
}
END_TEST

/* ---- weight_t: matrices stored [in, out] (GPT-2's Conv1D) ------------------ */

/* A checkpoint of dtype dt holding each matrix twice: "w.X" stored [out,
 * in] as weight() takes it, and "c.X" its transpose (a Conv1D's layout).
 * a: 45 x 320 (whole blocks of 32: --quant applies; two slabs of the
 * transposition, the last short); b: 37 x 300 (no whole blocks). */
static const struct { const char *w, *c; int out, in; } tmats[] = {
	{ "w.a", "c.a", 45, 320 },
	{ "w.b", "c.b", 37, 300 },
};

static char *transposed_checkpoint(mh_dtype dt)
{
	char *dir = tu_tmpdir(), path[4200];
	tu_write(dir, "config.json", "{}");
	mh_tensor ts[5] = { 0 };
	uint32_t st = 7;
	for (int m = 0; m < 2; m++) {
		int out = tmats[m].out, in = tmats[m].in;
		size_t es = mh_dtype_size(dt), n = (size_t)out * in;
		char *w = malloc(n * es), *c = malloc(n * es);
		for (int o = 0; o < out; o++)
			for (int i = 0; i < in; i++) {
				st = st * 1103515245u + 12345u;
				float f = ((int)(st >> 9) % 2001 - 1000) / 997.0f;
				uint16_t h = dt == MH_BF16 ? mh_f32_to_bf16(f) : mh_f32_to_f16(f);
				const void *v = dt == MH_F32 ? (const void *)&f : (const void *)&h;
				memcpy(w + ((size_t)o * in + i) * es, v, es);
				memcpy(c + ((size_t)i * out + o) * es, v, es);
			}
		ts[2 * m] = (mh_tensor){ .name = tmats[m].w, .dtype = dt, .ndim = 2,
					  .shape = { out, in }, .nelem = (int64_t)n, .data = w,
					  .nbytes = n * es };
		ts[2 * m + 1] = ts[2 * m];
		ts[2 * m + 1].name = tmats[m].c;
		ts[2 * m + 1].shape[0] = in;
		ts[2 * m + 1].shape[1] = out;
		ts[2 * m + 1].data = c;
	}
	static const int32_t ids[2] = { 1, 2 };
	ts[4] = (mh_tensor){ .name = "ids", .dtype = MH_I32, .ndim = 1, .shape = { 2 },
			     .nelem = 2, .data = ids, .nbytes = sizeof ids };
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	ck_assert_msg(st_write(path, ts, 5, err) == 0, "%s", err);
	for (int k = 0; k < 4; k++)
		free((void *)ts[k].data);
	return dir;
}

/* y = x w^T through svc->matmul for n rows, compared bit for bit.  The
 * one-token kernels take a 16-bit row's head apart by its address modulo
 * 32 bytes (kernels.c, peel()), so a sum depends on where the weight sits:
 * b is read from a 64-byte aligned copy of its bytes, as the host's own
 * copies are (a file may align a tensor to 8 bytes only). */
static void same_products(const mh_services *svc, const mh_tensor *a, const mh_tensor *stored,
			  const char *what)
{
	int in = (int)a->shape[1], out = (int)a->shape[0];
	mh_tensor bt = *stored, *b = &bt;
	void *copy = NULL;
	ck_assert_int_eq(posix_memalign(&copy, 64, stored->nbytes), 0);
	memcpy(copy, stored->data, stored->nbytes);
	bt.data = copy;
	for (int n = 1; n <= 41; n += 20) { /* the row kernels, then the GEMM at 41 */
		float *x = malloc((size_t)n * in * sizeof *x), *ya = malloc((size_t)n * out * sizeof *ya),
		      *yb = malloc((size_t)n * out * sizeof *yb);
		for (int k = 0; k < n * in; k++)
			x[k] = sinf(0.37f * k) + 0.1f;
		svc->matmul(ya, x, a, NULL, n);
		svc->matmul(yb, x, b, NULL, n);
		ck_assert_msg(memcmp(ya, yb, (size_t)n * out * sizeof *ya) == 0,
			      "%s: %d-row products differ", what, n);
		free(x);
		free(ya);
		free(yb);
	}
	free(copy);
}

/* weight_t hands out the transpose of a tensor stored [in, out] (F32, BF16,
 * F16; with --quant, quantized as the same weight stored [out, in] is):
 * the same bytes, and so matmul results bit for bit the same; once (a
 * second call gets the same copy), with the stored pages no longer counted
 * as read (modeldir_resident, what bench's decode limit counts). */
START_TEST(weight_t_equals_the_weight_stored_out_in)
{
	static const mh_dtype dts[3] = { MH_F32, MH_BF16, MH_F16 };
	mh_dtype dt = dts[_i % 3];
	int quant = _i >= 3;
	const mh_services *svc = services_init(2);
	char *dir = transposed_checkpoint(dt);
	mh_dir *d = modeldir_open(dir, err);
	ck_assert_msg(d != NULL, "%s", err);
	d->quant = d->quant_io = quant ? MH_Q8_0 : MH_F32;
	d->quant_ok = 1;
	for (int m = 0; m < 2; m++) {
		int out = tmats[m].out, in = tmats[m].in;
		const mh_tensor *w = svc->weight(d, tmats[m].w, 2, out, in);
		const mh_tensor *c = svc->weight_t(d, tmats[m].c, out, in);
		ck_assert_msg(w && c, "%s", d->err);
		mh_dtype want = quant && in % MH_QBLOCK == 0 ? MH_Q8_0 : dt;
		ck_assert_int_eq(c->dtype, want);
		ck_assert_int_eq(w->dtype, want);
		ck_assert(c->ndim == 2 && c->shape[0] == out && c->shape[1] == in);
		ck_assert_uint_eq(c->nbytes, w->nbytes);
		ck_assert_msg(memcmp(c->data, w->data, w->nbytes) == 0, "%s: bytes differ", tmats[m].c);
		same_products(svc, c, w, tmats[m].c);
		ck_assert_ptr_eq(svc->weight_t(d, tmats[m].c, out, in), c);
		const mh_tensor *in_use[3];
		ck_assert_int_eq(modeldir_resident(d, modeldir_find(d, tmats[m].c), in_use), 1);
		ck_assert_ptr_eq(in_use[0], c);
	}
	ck_assert_str_eq(d->err, "");
	modeldir_close(d);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

/* A tensor missing, of another shape (including the [out, in] that weight()
 * takes) or dtype: NULL and one line naming it. */
START_TEST(weight_t_errors_name_the_tensor)
{
	const mh_services *svc = services_init(2);
	char *dir = transposed_checkpoint(MH_BF16);
	static const struct { const char *name; int rows, cols; const char *want; } cases[] = {
		{ "c.nope", 45, 320, "tensor 'c.nope' is missing" },
		{ "c.a", 320, 45, "tensor 'c.a' has shape [320, 45], expected [45, 320] (stored [in, out]" },
		{ "c.a", 45, 321, "tensor 'c.a' has shape [320, 45], expected [321, 45]" },
		{ "ids", 2, 1, "tensor 'ids' has dtype I32, expected F32, F16 or BF16" },
	};
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		mh_dir *d = modeldir_open(dir, err);
		ck_assert_msg(d != NULL, "%s", err);
		d->quant_ok = 1;
		ck_assert_ptr_null(svc->weight_t(d, cases[k].name, cases[k].rows, cases[k].cols));
		ck_assert_msg(strstr(d->err, cases[k].want) && !strchr(d->err, '\n'), "%s", d->err);
		modeldir_close(d);
	}
	tu_rmtree(dir);
	free(dir);
}
END_TEST

/* A quantized checkpoint with one NaN block scale, in a matrix (matmul_n)
 * or in the embedding table (the decoder's embed): it opens (only headers
 * are read at load), and every forward pass is refused with one line naming
 * the tensor, the first and any retry: the NaN never reaches a kernel. */
START_TEST(nan_scale_refused_before_any_forward)
{
	const char *which = _i ? "embed_tokens" : "layers.1.mlp.up_proj";
	char *src = tu_data_path("fixtures/models/llama"), *dir = tu_tmpdir(), from[4200], to[4200];
	session_quant q = { MH_Q8_0, MH_Q8_0 };
	mh_session *s = session_open_quant(reg, src, NULL, 0, &q, err);
	ck_assert_msg(s != NULL, "%s", err);
	mh_dir *d = s->dir;
	mh_tensor *ts = calloc(d->n_tensors, sizeof *ts);
	void *bad = NULL;
	const char *bad_name = NULL;
	for (int i = 0; i < d->n_tensors; i++) {
		ts[i] = *quantize_loaded(d, d->index[i]);
		if (!bad && ts[i].dtype == MH_Q8_0 && strstr(ts[i].name, which)) {
			bad = malloc(ts[i].nbytes);
			memcpy(bad, ts[i].data, ts[i].nbytes);
			((mh_block_q8_0 *)bad)[5].d = 0x7e00; /* an F16 NaN */
			ts[i].data = bad;
			bad_name = ts[i].name;
		}
	}
	ck_assert_ptr_nonnull(bad);
	snprintf(to, sizeof to, "%s/model.safetensors", dir);
	ck_assert_msg(st_write(to, ts, d->n_tensors, err) == 0, "%s", err);
	char want[256];
	snprintf(want, sizeof want, "tensor '%s' has a block scale that is not a finite number",
		 bad_name);
	free(ts);
	free(bad);
	session_close(s);
	snprintf(from, sizeof from, "%s/config.json", src);
	snprintf(to, sizeof to, "%s/config.json", dir);
	tu_copy(from, to);
	s = open_model(dir);
	int32_t ids[2] = { 1, 2 };
	float *lg = malloc((size_t)s->info->vocab_size * sizeof *lg);
	for (int k = 0; k < 2; k++) {
		err[0] = 0;
		ck_assert_int_eq(session_forward(s, ids, 2, lg, MH_LOGITS_LAST, err), -1);
		ck_assert_msg(strstr(err, want) && strstr(err, "model.safetensors: "), "%s", err);
	}
	free(lg);
	session_close(s);
	tu_rmtree(dir);
	free(dir);
	free(src);
}
END_TEST

START_TEST(first_party_plugins_are_listed)
{
	const char *want[] = { "llama", "mistral", "phi", "qwen" };
	int n;
	const plugin_entry *e = registry_entries(reg, &n);
	for (int k = 0; k < 4; k++) {
		int found = 0;
		for (int i = 0; i < n; i++)
			found |= e[i].status == PLUGIN_ACTIVE && strcmp(e[i].name, want[k]) == 0;
		ck_assert_msg(found, "plugin %s not active", want[k]);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("models");
	TCase *tc = tcase_create("reference");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, first_party_plugins_are_listed);
	tcase_add_loop_test(tc, matches_transformers, 0, N_FIXTURES);
	tcase_add_loop_test(tc, long_prompts_agree_with_decoding, 0, N_FIXTURES);
	/* F32 fixtures only (llama-bf16 is stored as BF16 already) */
	tcase_add_loop_test(tc, half_precision_weights, 0, 2 * N_FIXTURES);
	tcase_add_test(tc, sliding_window_cache_is_a_ring);
	tcase_add_test(tc, phi_qk_layernorm_takes_out_each_heads_scale);
	tcase_add_test(tc, llama_biases_are_added_where_they_belong);
	tcase_add_test(tc, load_errors_name_the_problem);
	tcase_add_test(tc, context_and_ids_are_checked);
	tcase_add_test(tc, rewind_keeps_a_prefix);
	tcase_add_loop_test(tc, weight_t_equals_the_weight_stored_out_in, 0, 6);
	tcase_add_test(tc, weight_t_errors_name_the_tensor);
	tcase_add_loop_test(tc, nan_scale_refused_before_any_forward, 0, 2);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
