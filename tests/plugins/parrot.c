/* SPDX-License-Identifier: MIT */
/* parrot.c - a test plugin whose greedy reply is known in advance, so that
 * the server's tests can make a model say exactly what they need (a tool
 * call, a broken one, text) through a real tokenizer and chat template.
 *
 * Architecture "ParrotForCausalLM", for ChatML-style conversations: the
 * reply to a conversation is the content of its previous turn, token for
 * token, then the end of the turn.  In ids: a turn is TURN_START, a header
 * up to the first NEWLINE, the content, TURN_END; the turn being written is
 * the one after the last TURN_START.  At every position the plugin puts a
 * logit of 30 (0 elsewhere) on the token that continues the copy: the
 * previous turn's content token k when k tokens of the reply are written,
 * TURN_END after the last; TURN_END too when there is nothing to copy.
 * Greedy decoding follows the copy, and so large is the margin that sampling
 * at ordinary temperatures does too.  The ids come from config.json
 * ("parrot_turn_start", "parrot_turn_end", "parrot_newline"); the
 * checkpoint holds no weights.  "parrot_delay_ms" makes every forward pass
 * that long, so that a test can watch a reply being written. */
#include <modelhost/plugin.h>

#include <string.h>
#include <time.h>

#define SURE 30.0f

struct mh_model {
	const mh_services *svc;
	int32_t *hist;          /* the ids at each position */
	int32_t start, end, nl;
	int64_t delay_ms;
	mh_model_info info;
};

static int config_id(const mh_services *svc, mh_dir *dir, const char *key, int64_t vocab,
		     int32_t *out)
{
	int64_t v;
	if (svc->config_int(dir, key, -1, &v) <= 0 || v < 0 || v >= vocab) {
		svc->error(dir, "config.json", "'%s' is missing or not a token id", key);
		return -1;
	}
	*out = (int32_t)v;
	return 0;
}

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	int64_t vocab, max_pos;
	if (svc->config_int(dir, "vocab_size", 0, &vocab) <= 0 || vocab <= 0 || vocab > 1 << 20) {
		svc->error(dir, "config.json", "'vocab_size' is missing or invalid");
		return NULL;
	}
	if (svc->config_int(dir, "max_position_embeddings", 4096, &max_pos) < 0 || max_pos <= 0 ||
	    max_pos > 1 << 20) {
		svc->error(dir, "config.json", "'max_position_embeddings' is invalid");
		return NULL;
	}
	if (n_ctx <= 0)
		n_ctx = (int32_t)max_pos;
	mh_model *m = svc->alloc(sizeof *m);
	if (!m)
		return NULL;
	m->svc = svc;
	if (config_id(svc, dir, "parrot_turn_start", vocab, &m->start) != 0 ||
	    config_id(svc, dir, "parrot_turn_end", vocab, &m->end) != 0 ||
	    config_id(svc, dir, "parrot_newline", vocab, &m->nl) != 0 ||
	    !(m->hist = svc->alloc((size_t)n_ctx * sizeof *m->hist))) {
		svc->free(m);
		return NULL;
	}
	if (svc->config_int(dir, "parrot_delay_ms", 0, &m->delay_ms) <= 0 || m->delay_ms < 0 ||
	    m->delay_ms > 10000)
		m->delay_ms = 0;
	m->info = (mh_model_info){ .struct_size = sizeof m->info, .vocab_size = (int32_t)vocab,
				   .n_ctx = n_ctx, .max_context = (int32_t)max_pos, .bos_id = -1,
				   .n_eos = 1, .eos_ids = { m->end } };
	return m;
}

static void model_free(mh_model *m)
{
	m->svc->free(m->hist);
	m->svc->free(m);
}

static const mh_model_info *info(const mh_model *m)
{
	return &m->info;
}

/* The first position after the header of the turn that starts at `at`
 * (its first NEWLINE), or -1 when the header does not end before `upto`. */
static int content_start(const mh_model *m, int at, int upto)
{
	for (int i = at + 1; i < upto; i++)
		if (m->hist[i] == m->nl)
			return i + 1;
	return -1;
}

/* The token that follows hist[0..n-1]. */
static int32_t next_token(const mh_model *m, int n)
{
	int cur = n - 1, prev;
	while (cur >= 0 && m->hist[cur] != m->start)
		cur--;
	if (cur < 0)
		return m->end;
	for (prev = cur - 1; prev >= 0 && m->hist[prev] != m->start; prev--)
		;
	int at = content_start(m, cur, n), from = prev >= 0 ? content_start(m, prev, cur) : -1;
	if (at < 0 || from < 0)
		return m->end;
	int len = 0; /* the previous turn's content */
	while (from + len < cur && m->hist[from + len] != m->end)
		len++;
	int k = n - at; /* reply tokens written */
	return k < len ? m->hist[from + k] : m->end;
}

static int forward(mh_model *m, const int32_t *ids, int n, int pos, float *logits, int flags)
{
	if (n < 1 || pos < 0 || pos > m->info.n_ctx - n)
		return -1;
	int vocab = m->info.vocab_size;
	if (m->delay_ms) {
		struct timespec ts = { m->delay_ms / 1000, (long)(m->delay_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < n; i++)
		m->hist[pos + i] = ids[i] >= 0 && ids[i] < vocab ? ids[i] : m->end;
	int first = (flags & MH_LOGITS_ALL) ? 0 : n - 1;
	for (int r = first; r < n; r++) {
		float *row = logits + (size_t)(r - first) * (size_t)vocab;
		memset(row, 0, (size_t)vocab * sizeof *row);
		row[next_token(m, pos + r + 1)] = SURE;
	}
	return 0;
}

static void reset(mh_model *m)
{
	(void)m;
}

static const char *const archs[] = { "ParrotForCausalLM", NULL };

MODELHOST_PLUGIN_DEFINE("parrot", "1.0.0", "repeats the previous turn (test suite)", "MIT", archs,
			.load = load, .free = model_free, .info = info, .forward = forward,
			.reset = reset);
