/* SPDX-License-Identifier: MIT */
/* services.c - the service table: thin wrappers that give plugins the
 * host's model directory, tensor ops and device services through one
 * versioned struct (plugins never link a host symbol). */
#include "plugin/services.h"
#include "compute/decoder.h"
#include "model/modeldir.h"
#include "compute/ops.h"
#include "plugin/quantize.h"
#include "compute/rope.h"
#include "compute/scales.h"
#include "compute/threadpool.h"
#include "base/util.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int verbosity = MH_LOG_WARN;
static mh_pool *pool;

void services_set_verbosity(int level)
{
	verbosity = level;
}

static void svc_log(int level, const char *fmt, ...)
{
	if (level > verbosity)
		return;
	static const char *names[] = { "error", "warning", "info", "debug" };
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "modelhost: %s: ", names[level < 0 ? 0 : level > 3 ? 3 : level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void svc_error(mh_dir *d, const char *file, const char *fmt, ...)
{
	char msg[MH_ERRLEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	modeldir_error(d, file, "%s", msg);
}

static int wrong_type(mh_dir *d, const char *key, const char *want)
{
	modeldir_error(d, "config.json", "'%s' should be %s", key, want);
	return -1;
}

/* The config.json value at key, in *j when it is there: 1 when is() takes
 * it, 0 when it is absent (the caller's default stands), -1 naming the
 * type wanted. */
static int config_item(mh_dir *d, const char *key, cJSON_bool (*is)(const cJSON *),
		       const char *want, const cJSON **j)
{
	*j = modeldir_config(d, key);
	if (!*j)
		return 0;
	return is(*j) ? 1 : wrong_type(d, key, want);
}

static int svc_config_int(mh_dir *d, const char *key, int64_t def, int64_t *out)
{
	const cJSON *j;
	*out = def;
	int rc = config_item(d, key, cJSON_IsNumber, "an integer", &j);
	if (rc == 1 && mh_whole(j->valuedouble, -(1LL << 53), 1LL << 53, out) != 0)
		return wrong_type(d, key, "an integer"); /* *out stays def */
	return rc;
}

/* An epsilon (rms_norm_eps, layer_norm_eps, layer_norm_epsilon, ...) is
 * added under a square root: zero or less gives NaN or infinity. */
static int is_epsilon(const char *key)
{
	const char *last = strrchr(key, '.');
	last = last ? last + 1 : key;
	size_t n = strlen(last);
	return (n >= 3 && strcmp(last + n - 3, "eps") == 0) ||
	       (n >= 7 && strcmp(last + n - 7, "epsilon") == 0);
}

/* No plugin has a use for an infinite or NaN config value (cJSON reads
 * -1e999 as -infinity), and an epsilon must be positive: refused by name
 * here, for every plugin, rather than turning into NaN logits. */
static int svc_config_float(mh_dir *d, const char *key, double def, double *out)
{
	const cJSON *j;
	*out = def;
	int rc = config_item(d, key, cJSON_IsNumber, "a number", &j);
	if (rc != 1)
		return rc;
	double v = j->valuedouble;
	if (!isfinite(v)) {
		modeldir_error(d, "config.json", "'%s' is %s, expected a finite number", key,
			       v > 0 ? "infinite" : v < 0 ? "minus infinity" : "not a number");
		return -1;
	}
	if (is_epsilon(key) && !(v > 0)) {
		modeldir_error(d, "config.json", "'%s' is %g, expected a positive number", key, v);
		return -1;
	}
	*out = v;
	return 1;
}

static int svc_config_bool(mh_dir *d, const char *key, int def, int *out)
{
	const cJSON *j;
	*out = def;
	int rc = config_item(d, key, cJSON_IsBool, "true or false", &j);
	if (rc == 1)
		*out = cJSON_IsTrue(j);
	return rc;
}

static int svc_config_string(mh_dir *d, const char *key, const char *def, const char **out)
{
	const cJSON *j;
	*out = def;
	int rc = config_item(d, key, cJSON_IsString, "a string", &j);
	if (rc == 1)
		*out = j->valuestring;
	return rc;
}

static int id_of(const cJSON *j, int32_t *out)
{
	int64_t v;
	if (!cJSON_IsNumber(j) || mh_whole(j->valuedouble, 0, INT32_MAX, &v) != 0)
		return -1;
	*out = (int32_t)v;
	return 0;
}

static int svc_config_ids(mh_dir *d, const char *key, int32_t *out, int max)
{
	const cJSON *j = modeldir_config(d, key);
	if (!j)
		return 0;
	if (cJSON_IsNumber(j)) {
		if (max < 1)
			return 0;
		return id_of(j, out) == 0 ? 1 : wrong_type(d, key, "a token id or a list of them");
	}
	if (!cJSON_IsArray(j))
		return wrong_type(d, key, "a token id or a list of them");
	int n = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, j) {
		int32_t id;
		if (id_of(e, &id) != 0)
			return wrong_type(d, key, "a token id or a list of them");
		if (n < max)
			out[n++] = id;
	}
	return n;
}

static const mh_tensor *svc_tensor(mh_dir *d, const char *name)
{
	return modeldir_tensor(d, name);
}

static const mh_tensor *check_weight(mh_dir *d, const char *name, int ndim, int64_t d0,
				     int64_t d1, int required)
{
	const mh_tensor *t = modeldir_tensor(d, name);
	if (!t) {
		if (required)
			modeldir_error(d, modeldir_file_of(d, NULL), "tensor '%s' is missing", name);
		return NULL;
	}
	const char *file = modeldir_file_of(d, t);
	if (!mh_dtype_is_float(t->dtype) && !(mh_dtype_is_quant(t->dtype) && ndim == 2)) {
		modeldir_error(d, file, "tensor '%s' has dtype %s, expected F32, F16 or BF16", name,
			       mh_dtype_name(t->dtype));
		return NULL;
	}
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim > 1 && t->shape[1] != d1)) {
		char got[96] = "", want[64];
		size_t k = 0;
		for (int i = 0; i < t->ndim && k < sizeof got - 24; i++)
			k += snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "",
				      (long long)t->shape[i]);
		if (ndim > 1)
			snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
		else
			snprintf(want, sizeof want, "%lld", (long long)d0);
		modeldir_error(d, file, "tensor '%s' has shape [%s], expected [%s]", name, got, want);
		return NULL;
	}
	return quantize_weight(d, t);
}

static const mh_tensor *svc_weight(mh_dir *d, const char *name, int ndim, int64_t d0, int64_t d1)
{
	return check_weight(d, name, ndim, d0, d1, 1);
}

static const mh_tensor *svc_weight_opt(mh_dir *d, const char *name, int ndim, int64_t d0,
				       int64_t d1)
{
	return check_weight(d, name, ndim, d0, d1, 0);
}

static int svc_rows(const mh_tensor *t, int64_t first, int64_t count, mh_tensor *view)
{
	if (t->ndim != 2 || first < 0 || count < 0 || first + count > t->shape[0])
		return -1;
	size_t row_bytes = mh_row_bytes(t->dtype, t->shape[1]);
	*view = *t;
	view->shape[0] = count;
	view->nelem = count * t->shape[1];
	view->data = (const char *)t->data + first * row_bytes;
	view->nbytes = count * row_bytes;
	return 0;
}

static const float *svc_vec_f32(mh_dir *d, const mh_tensor *t)
{
	if (!t)
		return NULL;
	if (t->dtype == MH_F32) /* st_open guarantees element alignment */
		return t->data;
	if (quantize_check_tensor(d, t) != 0)
		return NULL;
	void **nv = realloc(d->vec_copies, (d->n_vec_copies + 1) * sizeof *nv);
	if (!nv)
		return NULL;
	d->vec_copies = nv;
	float *f = NULL;
	if (posix_memalign((void **)&f, 64, (t->nelem ? t->nelem : 1) * sizeof *f) != 0)
		return NULL;
	ops_to_f32(f, t, 0, t->nelem);
	d->vec_copies[d->n_vec_copies++] = f;
	return f;
}

/* --- the ops that read weights: a stored quantized weight's block scales
 * are checked on its first use (compute/scales.c); a bad one is an error on
 * its dir, the op does not run and its output is NaN. -------------------- */

static void nan_fill(float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = NAN;
}

static void svc_matmul(float *y, const float *x, const mh_tensor *w, const float *bias, int n)
{
	if (scales_check_use(w) != 0)
		nan_fill(y, (size_t)n * (size_t)w->shape[0]);
	else
		ops_matmul(y, x, w, bias, n);
}

static void svc_matmul_n(float *const *y, const float *x, const mh_tensor *const *w,
			 const float *const *bias, int count, int n)
{
	for (int i = 0; i < count; i++)
		if (scales_check_use(w[i]) != 0) {
			for (int k = 0; k < count; k++)
				nan_fill(y[k], (size_t)n * (size_t)w[k]->shape[0]);
			return;
		}
	ops_matmul_n(y, x, w, bias, count, n);
}

static int svc_embed(float *out, const mh_tensor *table, const int32_t *ids, int n)
{
	return scales_check_use(table) != 0 ? -1 : ops_embed(out, table, ids, n);
}

static void *svc_alloc(size_t bytes)
{
	return mh_alloc(bytes);
}

static void svc_free(void *p)
{
	mh_free(p);
}

/* --- decoder building blocks ---------------------------------------------- */

#define MAX_DIM (1 << 20)

/* A dimension from config.json: 1..MAX_DIM, or def when absent. */
static int get_dim(mh_dir *d, const char *key, int64_t def, int32_t *out)
{
	int64_t v;
	int rc = svc_config_int(d, key, def, &v);
	if (rc < 0)
		return -1;
	if (v <= 0 || v > MAX_DIM) {
		if (rc == 0)
			modeldir_error(d, "config.json", "'%s' is missing", key);
		else
			modeldir_error(d, "config.json", "'%s' is %lld, expected 1..%d", key,
				       (long long)v, MAX_DIM);
		return -1;
	}
	*out = (int32_t)v;
	return 0;
}

/* The standard key names (mh_decoder_config's comments). */
static const mh_decoder_keys std_keys = {
	sizeof std_keys, "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
	"num_key_value_heads", "head_dim", "intermediate_size", "max_position_embeddings",
	"tie_word_embeddings", "bos_token_id", "eos_token_id", "hidden_act", 0
};

/* A plugin's key name, or the standard one when it gives none. */
#define KEY(k, f) ((k)->f ? (k)->f : std_keys.f)

static int read_decoder_config(mh_dir *d, int32_t n_ctx, const mh_decoder_keys *k,
			       mh_decoder_config *c)
{
	int64_t ffn;
	int has_ffn = k->ffn_mult > 0 ? svc_config_int(d, KEY(k, ffn_dim), 0, &ffn) : 1;
	if (has_ffn < 0 || get_dim(d, KEY(k, vocab), 0, &c->vocab) ||
	    get_dim(d, KEY(k, dim), 0, &c->dim) || get_dim(d, KEY(k, n_layers), 0, &c->n_layers) ||
	    get_dim(d, KEY(k, n_heads), 0, &c->n_heads) ||
	    get_dim(d, KEY(k, ffn_dim), has_ffn ? 0 : (int64_t)k->ffn_mult * c->dim, &c->ffn_dim) ||
	    get_dim(d, KEY(k, max_pos), c->max_pos > 0 ? c->max_pos : 0, &c->max_pos) ||
	    get_dim(d, KEY(k, n_kv_heads), c->n_heads, &c->n_kv_heads))
		return -1;
	/* Every layer has weights: a layer count the checkpoint cannot hold
	 * would otherwise size a KV cache (1048576 layers: 64 GiB) before the
	 * loader finds the first missing tensor. */
	if (c->n_layers > d->n_tensors) {
		modeldir_error(d, "config.json", "'num_hidden_layers' is %d, but the checkpoint has "
			       "only %d tensors", c->n_layers, d->n_tensors);
		return -1;
	}
	int64_t hd;
	int has_hd = svc_config_int(d, KEY(k, head_dim), 0, &hd);
	if (has_hd < 0)
		return -1;
	if (!has_hd && c->dim % c->n_heads != 0) {
		modeldir_error(d, "config.json", "%s %d is not a multiple of %s %d and %s is not "
			       "given", KEY(k, dim), c->dim, KEY(k, n_heads), c->n_heads,
			       KEY(k, head_dim));
		return -1;
	}
	if (get_dim(d, KEY(k, head_dim), c->dim / c->n_heads, &c->head_dim))
		return -1;
	if (c->head_dim > 1024 || c->head_dim % 2) {
		modeldir_error(d, "config.json", "%s %d is not supported (even, at most 1024)",
			       KEY(k, head_dim), c->head_dim);
		return -1;
	}
	if (c->n_heads % c->n_kv_heads != 0) {
		modeldir_error(d, "config.json", "%s %d is not a multiple of %s %d",
			       KEY(k, n_heads), c->n_heads, KEY(k, n_kv_heads), c->n_kv_heads);
		return -1;
	}
	int tied;
	int64_t bos;
	if (svc_config_bool(d, KEY(k, tied), 0, &tied) < 0 ||
	    svc_config_string(d, KEY(k, hidden_act), c->hidden_act ? c->hidden_act : "silu",
			      &c->hidden_act) < 0 ||
	    svc_config_int(d, KEY(k, bos), -1, &bos) < 0)
		return -1;
	c->tied = tied;
	/* an id is checked against the vocabulary before it is narrowed:
	 * 4294967297 must not become BOS 1, nor 2^31 "no BOS" */
	if (bos != -1 && !(bos >= 0 && bos < c->vocab)) {
		modeldir_error(d, "config.json", "'bos_token_id' is %lld, outside the vocabulary "
			       "(0..%d)", (long long)bos, c->vocab - 1);
		return -1;
	}
	c->bos = (int32_t)bos;
	c->n_eos = svc_config_ids(d, KEY(k, eos), c->eos, MH_MAX_EOS);
	if (c->n_eos < 0)
		return -1;
	for (int i = 0; i < c->n_eos; i++)
		if (c->eos[i] >= c->vocab) {
			modeldir_error(d, "config.json", "'eos_token_id' %d is outside the vocabulary "
				       "(0..%d)", c->eos[i], c->vocab - 1);
			return -1;
		}
	if (n_ctx > 0 && n_ctx > c->max_pos)
		svc_log(MH_LOG_WARN, "context %d is longer than the model was trained for (%d)",
			n_ctx, c->max_pos);
	c->n_ctx = n_ctx > 0 ? n_ctx : c->max_pos;
	return 0;
}

/* The struct of ABI 1.0; later minors may append fields, and the host then
 * writes only the caller's struct_size. */
#define DECODER_CONFIG_MIN (offsetof(mh_decoder_config, hidden_act) + sizeof(const char *))

static int svc_decoder_config_keys(mh_dir *d, int32_t n_ctx, const mh_decoder_keys *keys,
				   mh_decoder_config *out)
{
	/* fields past the caller's struct_size are the standard names */
	mh_decoder_keys k = std_keys;
	if (keys) {
		if (keys->struct_size < offsetof(mh_decoder_keys, ffn_mult) + sizeof(int32_t)) {
			modeldir_error(d, NULL, "decoder_config_keys: struct_size %u is too small",
				       (unsigned)keys->struct_size);
			return -1;
		}
		memcpy(&k, keys, keys->struct_size < sizeof k ? keys->struct_size : sizeof k);
		k.struct_size = sizeof k;
	}
	if (out->struct_size < DECODER_CONFIG_MIN) {
		modeldir_error(d, NULL, "decoder_config: struct_size %u is too small",
			       (unsigned)out->struct_size);
		return -1;
	}
	mh_decoder_config c = { .struct_size = out->struct_size,
				.max_pos = out->max_pos,
				.hidden_act = out->hidden_act };
	if (read_decoder_config(d, n_ctx, &k, &c) != 0)
		return -1;
	memcpy(out, &c, out->struct_size < sizeof c ? out->struct_size : sizeof c);
	return 0;
}

static int svc_decoder_config(mh_dir *d, int32_t n_ctx, mh_decoder_config *out)
{
	return svc_decoder_config_keys(d, n_ctx, NULL, out);
}

static int svc_n_threads(void)
{
	return pool_size(pool);
}

static void svc_parallel_for(int64_t n, mh_range_fn fn, void *ctx)
{
	pool_run(pool, n, fn, ctx);
}

static const mh_services table = {
	.abi_major = MODELHOST_ABI_MAJOR,
	.abi_minor = MODELHOST_ABI_MINOR,
	.struct_size = sizeof(mh_services),
	.log = svc_log,
	.error = svc_error,
	.config_int = svc_config_int,
	.config_float = svc_config_float,
	.config_bool = svc_config_bool,
	.config_string = svc_config_string,
	.config_ids = svc_config_ids,
	.tensor = svc_tensor,
	.weight = svc_weight,
	.weight_opt = svc_weight_opt,
	.rows = svc_rows,
	.vec_f32 = svc_vec_f32,
	.matmul = svc_matmul,
	.embed = svc_embed,
	.rmsnorm = ops_rmsnorm,
	.layernorm = ops_layernorm,
	.rope_new = rope_new,
	.rope_free = rope_free,
	.rope_apply = rope_apply,
	.attention = ops_attention,
	.silu_mul = ops_silu_mul,
	.gelu = ops_gelu,
	.gelu_tanh = ops_gelu_tanh,
	.add = ops_add,
	.softmax = ops_softmax,
	.alloc = svc_alloc,
	.free = svc_free,
	.n_threads = svc_n_threads,
	.parallel_for = svc_parallel_for,
	.decoder_config = svc_decoder_config,
	.kv_new = decoder_kv_new,
	.kv_free = decoder_kv_free,
	.decoder_new = decoder_new,
	.decoder_free = decoder_free,
	.decoder_forward = decoder_forward,
	.matmul_n = svc_matmul_n,
	.attention_kv = ops_attention_kv,
	.decoder_seq_new = decoder_seq_new,
	.decoder_seq_free = decoder_seq_free,
	.decoder_batch = decoder_batch,
	.decoder_attention = decoder_attention,
	.decoder_config_keys = svc_decoder_config_keys,
	.weight_t = quantize_weight_t,
};

const mh_services *services_init(int n_threads)
{
	if (n_threads <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = c > 0 ? (int)c : 1;
	}
	if (!pool || pool_size(pool) != n_threads) {
		pool_free(pool);
		pool = pool_new(n_threads);
		ops_set_pool(pool);
	}
	return &table;
}

int services_threads(void)
{
	return pool_size(pool);
}

void services_shutdown(void)
{
	pool_free(pool);
	pool = NULL;
	ops_set_pool(NULL);
	ops_cleanup();
}
