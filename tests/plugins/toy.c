/* SPDX-License-Identifier: MIT */
/* toy.c - the smallest real plugin, built several ways by the test suite:
 * good versions 1 and 2 (for runtime replacement) and deliberately broken
 * ones (wrong ABI major, newer minor, no descriptor, empty name).
 *
 * Architecture "ToyForCausalLM": the logits at every position are the
 * tensor "toy.logits" [vocab] plus TOY_BIAS, so a test can tell which build
 * computed them.  "toy_delay_ms" in config.json makes every forward pass
 * take that long, for the server's tests of queues, disconnects and stops.
 * A tensor "toy.proj" stored [h, vocab] (a Conv1D's [in, out]) is read
 * through weight_t, and every forward pass adds its row sums (the matmul
 * of the [vocab, h] copy with ones) to the logits. */
#include <modelhost/plugin.h>

#include <string.h>
#include <time.h>

#ifndef TOY_VERSION
#define TOY_VERSION "1.0.0"
#endif
#ifndef TOY_BIAS
#define TOY_BIAS 0
#endif
#ifndef TOY_NAME
#define TOY_NAME "toy"
#endif

struct mh_model {
	const mh_services *svc;
	mh_dir *dir;
	const float *logits;
	int64_t delay_ms;
	const mh_tensor *proj;  /* [vocab, h], or NULL */
	float *ones, *sums;
	mh_model_info info;
};

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	int64_t vocab;
	if (svc->config_int(dir, "vocab_size", 0, &vocab) <= 0 || vocab <= 0 || vocab > 1 << 20) {
		svc->error(dir, "config.json", "'vocab_size' is missing or invalid");
		return NULL;
	}
	const mh_tensor *t = svc->weight(dir, "toy.logits", 1, vocab, 0);
	if (!t)
		return NULL;
	mh_model *m = svc->alloc(sizeof *m);
	if (!m)
		return NULL;
	m->svc = svc;
	m->dir = dir;
	m->logits = svc->vec_f32(dir, t);
	const mh_tensor *p = svc->weight_t ? svc->tensor(dir, "toy.proj") : NULL;
	if (p) {
		/* a real plugin has h from config.json; `modelhost quantize`
		 * stores the copy, already [vocab, h] */
		int64_t h = p->ndim != 2 ? 0 : p->dtype == MH_Q8_0 || p->dtype == MH_Q4_0 ? p->shape[1]
										      : p->shape[0];
		m->proj = svc->weight_t(dir, "toy.proj", vocab, h);
		m->ones = m->proj ? svc->alloc((size_t)h * sizeof(float)) : NULL;
		m->sums = m->ones ? svc->alloc((size_t)vocab * sizeof(float)) : NULL;
		if (!m->sums) {
			svc->free(m->ones);
			svc->free(m);
			return NULL;
		}
		for (int64_t i = 0; i < h; i++)
			m->ones[i] = 1;
	}
	if (svc->config_int(dir, "toy_delay_ms", 0, &m->delay_ms) <= 0 || m->delay_ms < 0 ||
	    m->delay_ms > 10000)
		m->delay_ms = 0;
	m->info = (mh_model_info){ .struct_size = sizeof m->info, .vocab_size = (int32_t)vocab,
				   .n_ctx = n_ctx > 0 ? n_ctx : 64, .max_context = 64, .bos_id = 0 };
	m->info.n_eos = svc->config_ids(dir, "eos_token_id", m->info.eos_ids, MH_MAX_EOS);
	return m;
}

static void model_free(mh_model *m)
{
	m->svc->free(m->ones);
	m->svc->free(m->sums);
	m->svc->free(m);
}

static const mh_model_info *info(const mh_model *m)
{
	return &m->info;
}

static int forward(mh_model *m, const int32_t *ids, int n, int pos, float *logits, int flags)
{
	int rows = (flags & MH_LOGITS_ALL) ? n : 1;
	if (m->delay_ms) {
		struct timespec ts = { m->delay_ms / 1000, (long)(m->delay_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (m->proj)
		m->svc->matmul(m->sums, m->ones, m->proj, NULL, 1);
	for (int r = 0; r < rows; r++)
		for (int i = 0; i < m->info.vocab_size; i++)
			logits[(size_t)r * m->info.vocab_size + i] =
				m->logits[i] + TOY_BIAS + (m->proj ? m->sums[i] : 0);
	return 0;
}

static void reset(mh_model *m)
{
	(void)m;
}

#ifdef TOY_SCORE
static int probe(const mh_services *svc, mh_dir *dir)
{
	(void)svc;
	(void)dir;
	return TOY_SCORE;
}
#define TOY_PROBE probe
#else
#define TOY_PROBE NULL
#endif

#ifndef TOY_NO_DESCRIPTOR
static const char *const archs[] = { "ToyForCausalLM", NULL };

#if defined(TOY_ABI_MAJOR) || defined(TOY_ABI_MINOR)
/* Hand-written descriptor with the ABI fields a wrong-version build has. */
#ifndef TOY_ABI_MAJOR
#define TOY_ABI_MAJOR MODELHOST_ABI_MAJOR
#endif
#ifndef TOY_ABI_MINOR
#define TOY_ABI_MINOR MODELHOST_ABI_MINOR
#endif
MODELHOST_EXPORT extern const struct model_plugin model_plugin;
const struct model_plugin model_plugin = {
	.abi_major = TOY_ABI_MAJOR,
	.abi_minor = TOY_ABI_MINOR,
	.struct_size = sizeof(struct model_plugin),
	.name = TOY_NAME,
	.version = TOY_VERSION,
	.architectures = archs,
	.load = load,
	.free = model_free,
	.info = info,
	.forward = forward,
	.reset = reset,
};
#else
MODELHOST_PLUGIN_DEFINE(TOY_NAME, TOY_VERSION, "toy model for the test suite", "MIT", archs,
			.probe = TOY_PROBE, .load = load, .free = model_free, .info = info,
			.forward = forward, .reset = reset);
#endif
#else
/* no descriptor: export something else so the library is not empty */
MODELHOST_EXPORT int toy_not_a_plugin = 1;
#endif
