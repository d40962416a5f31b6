/* SPDX-License-Identifier: MIT */
/* bigram.c - a complete modelhost plugin for a toy architecture, BigramLM.
 *
 * The model is one table, `bigram.logits` [vocab, vocab]: row t holds the
 * logits of the token that follows token t.  There is nothing to compute,
 * so this file shows only what every plugin does:
 *
 *   - include <modelhost/plugin.h> and nothing of the host;
 *   - read config.json and the weights through the services (svc);
 *   - allocate through svc->alloc / svc->free;
 *   - report failures with svc->error and return NULL / -1;
 *   - keep svc and dir in the model: free, info, forward and reset do not
 *     receive them;
 *   - describe itself with MODELHOST_PLUGIN_DEFINE, the only exported symbol
 *     (build with -fvisibility=hidden).
 *
 * Checkpoint: config.json with
 *   {"architectures": ["BigramForCausalLM"], "model_type": "bigram",
 *    "vocab_size": V, "max_position_embeddings": M,
 *    "bos_token_id": B, "eos_token_id": E}
 * and model.safetensors holding bigram.logits as F32, F16 or BF16.
 */
#include <modelhost/plugin.h>

#include <stdint.h>

struct mh_model {
	const mh_services *svc;
	mh_dir *dir;              /* for error messages; outlives the model */
	const mh_tensor *table;   /* bigram.logits [vocab, vocab] */
	mh_model_info info;
	int32_t n_past;           /* positions already run (our "KV cache") */
};

static const char *const architectures[] = {
	"BigramForCausalLM", "bigram", NULL
};

/* Optional.  The registry already matched "architectures" or "model_type";
 * a probe can look closer.  Claim the directory strongly when it holds our
 * tensor and weakly otherwise, so that load() gets to say what is missing. */
static int bigram_probe(const mh_services *svc, mh_dir *dir)
{
	return svc->tensor(dir, "bigram.logits") ? 100 : 10;
}

/* A config.json integer that must be present and in [lo, hi]. */
static int required_int(const mh_services *svc, mh_dir *dir, const char *key,
			int64_t lo, int64_t hi, int32_t *out)
{
	int64_t v;
	int r = svc->config_int(dir, key, 0, &v);
	if (r < 0)
		return -1; /* wrong type: the service recorded the error */
	if (r == 0) {
		svc->error(dir, "config.json", "%s is missing", key);
		return -1;
	}
	if (v < lo || v > hi) {
		svc->error(dir, "config.json", "%s is %lld, expected %lld to %lld",
			   key, (long long)v, (long long)lo, (long long)hi);
		return -1;
	}
	*out = (int32_t)v;
	return 0;
}

static mh_model *bigram_load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	int32_t vocab, max_ctx, bos = -1, eos[MH_MAX_EOS];

	/* the table has vocab * vocab entries: keep that product sane */
	if (required_int(svc, dir, "vocab_size", 1, 1 << 16, &vocab) != 0)
		return NULL;
	if (required_int(svc, dir, "max_position_embeddings", 1, INT32_MAX,
			 &max_ctx) != 0)
		return NULL;
	if (n_ctx < 0) {
		svc->error(dir, NULL, "context size %d is negative", (int)n_ctx);
		return NULL;
	}
	if (n_ctx == 0)
		n_ctx = max_ctx; /* 0: the model's own limit */
	else if (n_ctx > max_ctx)
		svc->log(MH_LOG_WARN, "bigram: context %d exceeds "
			 "max_position_embeddings %d", (int)n_ctx, (int)max_ctx);

	int n_bos = svc->config_ids(dir, "bos_token_id", &bos, 1);
	int n_eos = svc->config_ids(dir, "eos_token_id", eos, MH_MAX_EOS);
	if (n_bos < 0 || n_eos < 0)
		return NULL; /* wrong type: the service recorded the error */
	if (n_bos == 0)
		bos = -1;
	if (bos < -1 || bos >= vocab) {
		svc->error(dir, "config.json", "bos_token_id %d is not in the "
			   "vocabulary of %d", (int)bos, (int)vocab);
		return NULL;
	}
	for (int i = 0; i < n_eos; i++)
		if (eos[i] < 0 || eos[i] >= vocab) {
			svc->error(dir, "config.json", "eos_token_id %d is not "
				   "in the vocabulary of %d", (int)eos[i],
				   (int)vocab);
			return NULL;
		}

	/* F32, F16 or BF16 of exactly this shape, or an error naming the
	 * file and the tensor */
	const mh_tensor *table = svc->weight(dir, "bigram.logits", 2, vocab, vocab);
	if (!table)
		return NULL;

	mh_model *m = svc->alloc(sizeof *m);
	if (!m) {
		svc->error(dir, NULL, "out of memory");
		return NULL;
	}
	m->svc = svc;
	m->dir = dir;
	m->table = table;
	m->info.struct_size = sizeof m->info;
	m->info.vocab_size = vocab;
	m->info.n_ctx = n_ctx;
	m->info.max_context = max_ctx;
	m->info.bos_id = bos;
	m->info.n_eos = n_eos;
	for (int i = 0; i < n_eos; i++)
		m->info.eos_ids[i] = eos[i];
	m->info.kv_cache_bytes = 0; /* a bigram model remembers nothing */
	m->n_past = 0;
	svc->log(MH_LOG_DEBUG, "bigram: vocab %d, context %d", (int)vocab,
		 (int)n_ctx);
	return m;
}

static void bigram_free(mh_model *m)
{
	if (m)
		m->svc->free(m);
}

static const mh_model_info *bigram_info(const mh_model *m)
{
	return &m->info;
}

static int bigram_forward(mh_model *m, const int32_t *ids, int n, int pos,
			  float *logits, int flags)
{
	const mh_services *svc = m->svc;

	if (flags != MH_LOGITS_LAST && flags != MH_LOGITS_ALL) {
		svc->error(m->dir, NULL, "bigram: unknown forward flags %#x", flags);
		return -1;
	}
	if (n <= 0 || pos < 0) {
		svc->error(m->dir, NULL, "bigram: bad forward of %d tokens at "
			   "position %d", n, pos);
		return -1;
	}
	/* the cache holds 0..n_past-1: running at pos <= n_past rewinds,
	 * beyond it would skip positions */
	if (pos > m->n_past) {
		svc->error(m->dir, NULL, "bigram: position %d follows a cache "
			   "of only %d", pos, (int)m->n_past);
		return -1;
	}
	if (n > m->info.n_ctx - pos) {
		svc->error(m->dir, NULL, "bigram: positions %d..%d exceed the "
			   "context of %d", pos, pos + n - 1, (int)m->info.n_ctx);
		return -1;
	}
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= m->info.vocab_size) {
			svc->error(m->dir, NULL, "bigram: token id %d is not in "
				   "the vocabulary of %d", (int)ids[i],
				   (int)m->info.vocab_size);
			return -1;
		}

	/* The logits after token t are row t of the table: exactly what
	 * embed() does (it gathers rows of any float dtype as F32). */
	int r = flags == MH_LOGITS_ALL
		? svc->embed(logits, m->table, ids, n)
		: svc->embed(logits, m->table, ids + n - 1, 1);
	if (r != 0) {
		svc->error(m->dir, NULL, "bigram: embedding lookup failed");
		return -1;
	}
	m->n_past = pos + n;
	return 0;
}

static void bigram_reset(mh_model *m)
{
	m->n_past = 0;
}

MODELHOST_PLUGIN_DEFINE("bigram", "1.0.0",
	"BigramLM: next-token logits looked up from a [vocab, vocab] table "
	"(the SDK example)", "MIT", architectures,
	.probe = bigram_probe,
	.load = bigram_load,
	.free = bigram_free,
	.info = bigram_info,
	.forward = bigram_forward,
	.reset = bigram_reset);
