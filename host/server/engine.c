/* SPDX-License-Identifier: MIT */
/* engine.c - see engine.h.
 *
 * The model: one mh_session, each slot a sequence of it (its own KV cache).
 * step() is the one place that runs forward passes: one session_batch over
 * every busy slot, a token each for those decoding and at most CHUNK prompt
 * tokens in all for those starting, so a new prompt holds the others back
 * by one chunk at most; the first chunk of new prompts runs alone, the
 * next step has everyone again.  After a plugin swap the
 * old model stays loaded for the requests it runs, a second batch per step,
 * until the last of them ends. */
#include "server/engine.h"
#include "server/metrics.h"
#include "model/modeldir.h"
#include "plugin/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Prompt tokens per step, all slots together. */
#define CHUNK 512

typedef struct esess {
	mh_session *s;
	unsigned gen;           /* swaps seen when it was loaded */
	int users;              /* slots running on it */
	int alone;              /* its last step ran new prompts alone */
	struct esess *next;
} esess;

typedef struct slot {
	esess *es;              /* the model its request runs on */
	int seq;                /* its sequence there */
	int take;               /* tokens in this step's batch */
	engine_req *r;          /* NULL: free */
	int32_t *hist;          /* prompt + generated */
	int n_hist, cap;
	int fed;                /* tokens of hist in the KV cache */
	mh_sampler *sm;
	mh_detok_stream *ds;
	mh_constraint *cn;      /* the request's shape, or NULL */
	float *scratch;         /* with cn: a copy of the logits */
} slot;

struct engine {
	engine_config c;
	engine_info info;
	char *path;
	mh_dir *dir;            /* for registry_choose on reloads */
	esess *cur;             /* what new requests run on */
	esess *old;             /* swapped-out models still finishing requests */
	unsigned gen;
	mh_batch_item *items;   /* a step's batch */
	float *logits;          /* its rows */
	cn_vocab *cnv;          /* the tokenizer's pieces, from the first shaped request */

	pthread_mutex_t mu;
	pthread_cond_t wake;    /* the engine thread waits on it */
	pthread_cond_t changed; /* loading, reloads and draining wait on it */
	pthread_t th;
	int started;

	/* under mu */
	int ready, failed, quit, stopping;
	char load_err[MH_ERRLEN];
	engine_req **queue;     /* ring of c.queue */
	int q_head, q_n;
	int busy;
	unsigned reload_asked, reload_done;
	int reload_rc;
	char reload_msg[MH_ERRLEN + 400];
	char plugin_name[64], plugin_version[64];

	slot slots[ENGINE_MAX_PARALLEL];
};

static void lib_names(engine *e)
{
	snprintf(e->plugin_name, sizeof e->plugin_name, "%s", e->cur->s->lib->desc->name);
	snprintf(e->plugin_version, sizeof e->plugin_version, "%s", e->cur->s->lib->desc->version);
}

/* ---- requests ----------------------------------------------------------------- */

engine_req *engine_req_new(int32_t *prompt, int n_prompt)
{
	engine_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &a);
	pthread_condattr_destroy(&a);
	r->prompt = prompt;
	r->n_prompt = n_prompt;
	r->refs = 1;
	r->hold_at = -1;
	return r;
}

static void req_free(engine_req *r)
{
	free(r->prompt);
	for (int i = 0; i < r->n_stop; i++)
		free(r->stop[i]);
	free(r->text);
	free(r->ends);
	cn_grammar_free(r->shape);
	pthread_cond_destroy(&r->cond);
	free(r);
}

/* Under mu. */
static void req_unref(engine_req *r)
{
	if (--r->refs == 0)
		req_free(r);
}

void engine_release(engine *e, engine_req *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&e->mu);
	req_unref(r);
	pthread_mutex_unlock(&e->mu);
}

void engine_lock(engine *e)
{
	pthread_mutex_lock(&e->mu);
}

void engine_unlock(engine *e)
{
	pthread_mutex_unlock(&e->mu);
}

/* Under mu: the request ends; wake its HTTP thread. */
static void req_finish(engine_req *r, const char *finish, int status, const char *err)
{
	if (r->done)
		return;
	r->done = 1;
	r->finish = finish;
	if (err) {
		r->status = status;
		snprintf(r->err, sizeof r->err, "%s", err);
	}
	r->safe = r->held = r->len;
	pthread_cond_broadcast(&r->cond);
}

int engine_submit(engine *e, engine_req *r)
{
	pthread_mutex_lock(&e->mu);
	if (e->stopping || !e->ready || e->q_n >= e->c.queue) {
		pthread_mutex_unlock(&e->mu);
		return -1;
	}
	r->refs++;
	r->t_submit = mh_now();
	e->queue[(e->q_head + e->q_n++) % e->c.queue] = r;
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->mu);
	return 0;
}

void engine_cancel(engine *e, engine_req *r)
{
	pthread_mutex_lock(&e->mu);
	r->cancelled = 1;
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->mu);
}

size_t engine_readable(const engine_req *r)
{
	return r->hold_at >= 0 ? r->held : r->safe;
}

void engine_wait(engine *e, engine_req *r, size_t have, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&e->mu);
	while (!r->done && engine_readable(r) <= have)
		if (pthread_cond_timedwait(&r->cond, &e->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&e->mu);
}

/* ---- text out ------------------------------------------------------------------ */

static int text_reserve(engine_req *r, size_t more)
{
	if (r->len + more + 1 <= r->cap)
		return 0;
	size_t cap = r->cap ? r->cap : 256;
	while (cap < r->len + more + 1)
		cap *= 2;
	char *t = realloc(r->text, cap);
	if (!t)
		return -1;
	r->text = t;
	r->cap = cap;
	return 0;
}

/* Append a piece of decoded text, as valid UTF-8 without NULs: a byte that
 * starts no valid character, or a NUL (which JSON strings through cJSON
 * cannot carry), becomes U+FFFD. */
static int text_append(engine_req *r, const char *p, size_t n)
{
	if (text_reserve(r, n * 3) != 0)
		return -1;
	while (n) {
		size_t ok = tokenizer_utf8_valid_prefix(p, n);
		const char *nul = memchr(p, 0, ok);
		if (nul)
			ok = (size_t)(nul - p);
		memcpy(r->text + r->len, p, ok);
		r->len += ok;
		p += ok;
		n -= ok;
		if (n) {
			memcpy(r->text + r->len, "\xEF\xBF\xBD", 3);
			r->len += 3;
			p++;
			n--;
		}
	}
	r->text[r->len] = 0;
	return 0;
}

/* Mark the end of a token's text (nothing when it added none). */
static int text_mark(engine_req *r)
{
	if (r->n_ends && r->ends[r->n_ends - 1] >= r->len)
		return 0;
	if (r->n_ends == r->cap_ends) {
		int cap = r->cap_ends ? 2 * r->cap_ends : 64;
		size_t *e = realloc(r->ends, (size_t)cap * sizeof *e);
		if (!e)
			return -1;
		r->ends = e;
		r->cap_ends = cap;
	}
	r->ends[r->n_ends++] = r->len;
	return 0;
}

/* How many trailing bytes of text could start s (a proper prefix of s). */
static size_t partial_suffix(const char *text, size_t len, const char *s)
{
	size_t n = strlen(s);
	for (size_t k = n - 1 < len ? n - 1 : len; k > 0; k--)
		if (memcmp(text + len - k, s, k) == 0)
			return k;
	return 0;
}

/* After text grew from `from` bytes: cut at a stop string (1 if one
 * matched), find the hold text, and move `safe` to what can be sent. */
static int text_scan(engine_req *r, size_t from)
{
	for (int i = 0; i < r->n_stop; i++) {
		size_t n = strlen(r->stop[i]);
		size_t start = from >= n ? from - n + 1 : 0;
		char *hit = strstr(r->text + start, r->stop[i]);
		if (hit) {
			r->len = (size_t)(hit - r->text);
			r->text[r->len] = 0;
			return 1;
		}
	}
	if (r->hold && r->hold_at < 0) {
		size_t n = strlen(r->hold);
		size_t start = from >= n ? from - n + 1 : 0;
		char *hit = strstr(r->text + start, r->hold);
		if (hit)
			r->hold_at = hit - r->text;
	}
	size_t safe = r->len;
	for (int i = 0; i < r->n_stop; i++) {
		size_t k = partial_suffix(r->text, r->len, r->stop[i]);
		if (r->len - k < safe)
			safe = r->len - k;
	}
	r->held = safe;
	if (r->hold_at >= 0 && (size_t)r->hold_at < safe)
		safe = (size_t)r->hold_at;
	if (r->hold && r->hold_at < 0) {
		size_t k = partial_suffix(r->text, r->len, r->hold);
		if (r->len - k < safe)
			safe = r->len - k;
	}
	r->safe = safe;
	return 0;
}

/* ---- slots ---------------------------------------------------------------------- */

/* ---- sessions and slots ------------------------------------------------------------ */

/* A loaded model: the current one, or an older plugin's that slots still use. */
static esess *esess_open(engine *e, char *err)
{
	esess *es = calloc(1, sizeof *es);
	if (!es) {
		mh_errf(err, "out of memory");
		return NULL;
	}
	es->s = session_open_quant(e->c.registry, e->path, e->c.force_plugin, e->c.n_ctx,
				   e->c.quant, err);
	if (!es->s) {
		free(es);
		return NULL;
	}
	es->gen = e->gen;
	return es;
}

/* Close es when it is no longer current and its last slot has let go. */
static void esess_drop(engine *e, esess *es)
{
	if (es == e->cur || es->users > 0)
		return;
	for (esess **p = &e->old; *p; p = &(*p)->next)
		if (*p == es) {
			*p = es->next;
			break;
		}
	session_close(es->s); /* the old plugin's code goes with its last session */
	free(es);
}

/* What slot_admit allocated for a request: the sampler, the stream, the
 * history (whichever got that far). */
static void slot_free_buffers(slot *sl)
{
	sampler_free(sl->sm);
	sl->sm = NULL;
	tokenizer_stream_free(sl->ds);
	sl->ds = NULL;
	free(sl->hist);
	sl->hist = NULL;
	constraint_free(sl->cn);
	sl->cn = NULL;
	free(sl->scratch);
	sl->scratch = NULL;
}

/* Engine thread: end the slot's request (under mu) and free what it used. */
static void slot_end(engine *e, slot *sl, const char *finish, int status, const char *err)
{
	engine_req *r = sl->r;
	pthread_mutex_lock(&e->mu);
	if (!err && !r->cancelled && sl->ds) { /* the text the stream still holds */
		size_t n, from = r->len;
		const char *rest = tokenizer_stream_flush(sl->ds, &n);
		if (n && text_append(r, rest, n) == 0 && text_scan(r, from))
			finish = "stop";
		text_mark(r);
	}
	if (!err)
		metrics_tokens(r->n_prompt, r->n_gen);
	req_finish(r, finish, status, err);
	req_unref(r);
	sl->r = NULL; /* drain and free read it under mu */
	e->busy--;
	pthread_cond_broadcast(&e->changed);
	pthread_mutex_unlock(&e->mu);
	slot_free_buffers(sl);
	if (sl->es) {
		session_seq_close(sl->es->s, sl->seq);
		sl->es->users--;
		esess *es = sl->es;
		sl->es = NULL;
		esess_drop(e, es);
	}
}

/* Engine thread: the constraint a shaped request's reply follows. */
static int slot_shape(engine *e, slot *sl, const engine_req *r, char *err)
{
	if (!e->c.tk) {
		mh_errf(err, "a reply held to a form needs the model's tokenizer.json");
		return -1;
	}
	if (!e->cnv && !(e->cnv = cn_vocab_new(e->c.tk)))
		goto oom;
	sl->cn = constraint_new(e->cnv, r->shape);
	sl->scratch = malloc((size_t)e->info.vocab_size * sizeof *sl->scratch);
	if (sl->cn && sl->scratch)
		return 0;
oom:
	mh_errf(err, "out of memory");
	return -1;
}

/* Engine thread, mu held: move a queued request into the slot, as a new
 * sequence of the current model. */
static int slot_admit(engine *e, slot *sl, engine_req *r, char *err)
{
	sl->cap = r->n_prompt + r->max_tokens + 1;
	sl->hist = malloc((size_t)sl->cap * sizeof *sl->hist);
	sl->sm = sampler_new(&r->sp, e->info.vocab_size);
	sl->ds = e->c.tk ? tokenizer_stream_new(e->c.tk, 1) : NULL;
	if (!sl->hist || !sl->sm || (e->c.tk && !sl->ds)) {
		mh_errf(err, "out of memory");
		return -1;
	}
	if (r->shape && slot_shape(e, sl, r, err) != 0)
		return -1;
	sl->seq = session_seq_open(e->cur->s, err);
	if (sl->seq < 0)
		return -1;
	sl->es = e->cur;
	sl->es->users++;
	memcpy(sl->hist, r->prompt, (size_t)r->n_prompt * sizeof *sl->hist);
	sl->n_hist = r->n_prompt;
	sl->fed = 0;
	sl->r = r;
	/* which code ran it: the plugin, and how many swaps the server had seen */
	snprintf(r->plugin, sizeof r->plugin, "modelhost-%s-%s-r%u", sl->es->s->lib->desc->name,
		 sl->es->s->lib->desc->version, sl->es->gen);
	return 0;
}

/* The next token: the sampler's, or with a form the sampler's among the
 * tokens it allows (-1 when there is none). */
static int32_t slot_pick(engine *e, slot *sl, float *logits)
{
	if (!sl->cn)
		return sampler_sample(sl->sm, logits, sl->hist, (size_t)sl->n_hist);
	const mh_session *s = sl->es->s;
	return constraint_sample(sl->cn, sl->sm, logits, sl->scratch, e->info.vocab_size, sl->hist,
				 (size_t)sl->n_hist, s->eos, sl->r->ignore_eos ? 0 : s->n_eos);
}

/* Engine thread: the slot's logits are fresh; pick a token and publish. */
static void slot_sample(engine *e, slot *sl, float *logits)
{
	engine_req *r = sl->r;
	int32_t id = slot_pick(e, sl, logits);
	if (id < 0) {
		slot_end(e, sl, NULL, 500, "no token of the vocabulary can continue the reply's form");
		return;
	}
	double now = mh_now();
	const char *finish = NULL;
	size_t n = 0;
	const char *piece = NULL;
	int eos = !r->ignore_eos && session_is_eos(sl->es->s, id), complete = 0;
	if (!eos) {
		sl->hist[sl->n_hist++] = id;
		if (sl->ds)
			piece = tokenizer_stream_push(sl->ds, id, &n);
		complete = sl->cn && constraint_feed(sl->cn, id) == 1;
	}
	pthread_mutex_lock(&e->mu);
	r->n_gen++;
	if (r->n_gen == 1) {
		r->t_first = now;
		metrics_ttft(now - r->t_submit);
	} else {
		metrics_token_latency(now - r->t_last);
	}
	r->t_last = now;
	if (eos) {
		finish = "stop";
	} else {
		size_t from = r->len;
		if (!sl->ds) { /* no tokenizer: the ids, space-separated */
			char b[16];
			int k = snprintf(b, sizeof b, "%s%d", r->len ? " " : "", id);
			if (text_append(r, b, (size_t)k) != 0)
				finish = "oom";
		} else if (n && text_append(r, piece, n) != 0) {
			finish = "oom";
		}
		if (!finish && text_scan(r, from))
			finish = "stop";
		if (!finish && text_mark(r) != 0)
			finish = "oom";
	}
	if (!finish && complete) /* the form is whole and nothing may follow */
		finish = "stop";
	if (!finish && r->n_gen >= r->max_tokens)
		finish = "length";
	if (!finish && sl->fed >= e->info.n_ctx)
		finish = "length";
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&e->mu);
	if (finish && strcmp(finish, "oom") == 0)
		slot_end(e, sl, NULL, 500, "out of memory");
	else if (finish)
		slot_end(e, sl, finish, 0, NULL);
}

/* One forward over the busy slots of es: one token each for those
 * decoding, and prompt tokens (CHUNK at most in all, so a new prompt holds
 * the others back by one chunk) for those starting; a step that starts
 * new prompts runs them alone (never two such steps in a row). */
static void step_one(engine *e, esess *es)
{
	char err[MH_ERRLEN];
	slot *in[ENGINE_MAX_PARALLEL];
	int n_in = 0, n = 0, rows = 0, budget = CHUNK;
	/* prompts that have not started go first, alone: a new request's
	 * first token then comes as on an idle server, and the others wait one
	 * step (the next is theirs again, with any later chunks of the prompt) */
	int alone = 0;
	for (int i = 0; !es->alone && i < e->c.parallel; i++)
		alone |= e->slots[i].r && e->slots[i].es == es && e->slots[i].fed == 0;
	es->alone = alone;
	for (int i = 0; i < e->c.parallel; i++) {
		slot *sl = &e->slots[i];
		if (!sl->r || sl->es != es || (alone && sl->fed > 0))
			continue;
		int k = sl->n_hist - sl->fed;
		if (k > 1) { /* prompt */
			if (budget == 0)
				continue;
			if (k > budget)
				k = budget;
			budget -= k;
		}
		for (int j = 0; j < k; j++)
			e->items[n++] = (mh_batch_item){ .seq = sl->seq, .pos = sl->fed + j,
							 .id = sl->hist[sl->fed + j],
							 .logits = sl->fed + k == sl->n_hist && j == k - 1 };
		sl->take = k;
		rows += sl->fed + k == sl->n_hist;
		in[n_in++] = sl;
	}
	if (!n)
		return;
	err[0] = 0;
	if (session_batch(es->s, e->items, n, e->logits, err) != 0) {
		for (int i = 0; i < n_in; i++)
			slot_end(e, in[i], NULL, 500, err);
		return;
	}
	for (int i = 0, row = 0; i < n_in; i++) {
		slot *sl = in[i];
		sl->fed += sl->take;
		if (sl->fed == sl->n_hist)
			slot_sample(e, sl, e->logits + (size_t)row++ * (size_t)e->info.vocab_size);
	}
	(void)rows;
}

/* One step: drop the slots whose clients went away, then one batched
 * forward per loaded model (two only while a swapped-out plugin finishes). */
static void step(engine *e)
{
	for (int i = 0; i < e->c.parallel; i++) {
		slot *sl = &e->slots[i];
		if (!sl->r)
			continue;
		pthread_mutex_lock(&e->mu);
		int cancelled = sl->r->cancelled;
		pthread_mutex_unlock(&e->mu);
		if (cancelled)
			slot_end(e, sl, "cancelled", 499, "the client went away");
	}
	step_one(e, e->cur);
	for (esess *es = e->old, *next; es; es = next) {
		next = es->next; /* step_one may free es */
		es->users++;
		step_one(e, es);
		es->users--;
		esess_drop(e, es);
	}
}

/* ---- reloads ---------------------------------------------------------------------- */

static void reload(engine *e, char *msg, size_t msglen, int *rc)
{
	char err[MH_ERRLEN] = "", why[320];
	mh_registry *reg = e->c.registry;
	registry_scan(reg);
	plugin_lib *l = registry_choose(reg, e->dir, e->c.force_plugin, why, sizeof why, err);
	if (l == e->cur->s->lib) {
		plugin_lib_unref(l);
		snprintf(msg, msglen, "plugins rescanned; %s %s still serves %s", e->plugin_name,
			 e->plugin_version, e->path);
		*rc = 0;
		return;
	}
	esess *ns = NULL;
	if (l) { /* session_open makes the same choice and takes its own reference */
		plugin_lib_unref(l);
		e->gen++;
		ns = esess_open(e, err);
		if (!ns)
			e->gen--;
	}
	if (!ns) {
		snprintf(msg, msglen, "reload: %s; %s %s keeps serving %s", err, e->plugin_name,
			 e->plugin_version, e->path);
		*rc = -1;
		return;
	}
	/* new requests go to ns; the old model stays while its requests finish */
	esess *old = e->cur;
	old->next = e->old;
	e->old = old;
	e->cur = ns;
	esess_drop(e, old);
	pthread_mutex_lock(&e->mu);
	lib_names(e);
	pthread_mutex_unlock(&e->mu);
	snprintf(msg, msglen, "%s is now served by %s %s (%s)", e->path, e->plugin_name,
		 e->plugin_version, ns->s->lib->path);
	*rc = 0;
}

/* ---- the thread --------------------------------------------------------------------- */

static int load(engine *e, char *err)
{
	e->dir = modeldir_open(e->path, err);
	if (!e->dir || !(e->cur = esess_open(e, err)))
		return -1;
	mh_session *s = e->cur->s;
	e->info.vocab_size = s->info->vocab_size;
	e->info.bos_id = s->info->bos_id;
	e->info.n_ctx = s->info->n_ctx;
	e->items = malloc((size_t)(CHUNK + e->c.parallel) * sizeof *e->items);
	e->logits = malloc((size_t)e->c.parallel * (size_t)e->info.vocab_size * sizeof *e->logits);
	if (!e->items || !e->logits) {
		mh_errf(err, "out of memory");
		return -1;
	}
	return 0;
}

/* Engine thread, mu held: move queued requests into free slots. */
static void admit(engine *e)
{
	char err[MH_ERRLEN];
	for (int i = 0; i < e->c.parallel && e->q_n > 0; i++) {
		slot *sl = &e->slots[i];
		if (sl->r)
			continue;
		engine_req *r = e->queue[e->q_head];
		e->q_head = (e->q_head + 1) % e->c.queue;
		e->q_n--;
		if (r->cancelled) {
			req_finish(r, "cancelled", 499, "the client went away");
			req_unref(r);
			continue;
		}
		err[0] = 0;
		if (slot_admit(e, sl, r, err) == 0) {
			e->busy++;
			continue;
		}
		sl->r = NULL;
		slot_free_buffers(sl);
		req_finish(r, NULL, 500, err);
		req_unref(r);
	}
}

static void *run(void *arg)
{
	engine *e = arg;
	char err[MH_ERRLEN] = "";
	int ok = load(e, err) == 0;
	pthread_mutex_lock(&e->mu);
	if (ok) {
		lib_names(e);
		e->ready = 1;
	} else {
		e->failed = 1;
		snprintf(e->load_err, sizeof e->load_err, "%s", err);
	}
	pthread_cond_broadcast(&e->changed);
	while (ok) {
		if (e->reload_asked != e->reload_done) {
			unsigned want = e->reload_asked;
			pthread_mutex_unlock(&e->mu);
			char msg[sizeof e->reload_msg];
			int rc = 0;
			reload(e, msg, sizeof msg, &rc);
			fprintf(stderr, "modelhost: %s\n", mh_one_line(msg));
			metrics_reload(rc == 0);
			pthread_mutex_lock(&e->mu);
			e->reload_done = want;
			e->reload_rc = rc;
			snprintf(e->reload_msg, sizeof e->reload_msg, "%s", msg);
			pthread_cond_broadcast(&e->changed);
		}
		admit(e);
		if (e->busy == 0) {
			pthread_cond_broadcast(&e->changed);
			if (e->quit)
				break;
			if (e->reload_asked == e->reload_done && e->q_n == 0)
				pthread_cond_wait(&e->wake, &e->mu);
			continue;
		}
		pthread_mutex_unlock(&e->mu);
		step(e);
		pthread_mutex_lock(&e->mu);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* ---- the interface ------------------------------------------------------------------ */

engine *engine_start(const engine_config *c, char *err)
{
	if (c->parallel < 1 || c->parallel > ENGINE_MAX_PARALLEL || c->queue < 1) {
		mh_errf(err, "serve: bad slot or queue count");
		return NULL;
	}
	engine *e = calloc(1, sizeof *e);
	if (!e || !(e->path = strdup(c->model_dir)) ||
	    !(e->queue = calloc((size_t)c->queue, sizeof *e->queue))) {
		if (e)
			free(e->path);
		free(e);
		mh_errf(err, "out of memory");
		return NULL;
	}
	e->c = *c;
	e->c.model_dir = e->path;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->wake, NULL);
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&e->changed, &a);
	pthread_condattr_destroy(&a);
	if (pthread_create(&e->th, NULL, run, e) != 0) {
		mh_errf(err, "serve: cannot start the engine thread");
		engine_free(e);
		return NULL;
	}
	e->started = 1;
	return e;
}

/* Wait on e->changed until `deadline` (monotonic seconds); mu held. */
static int wait_changed(engine *e, double deadline)
{
	double left = deadline - mh_now();
	if (left <= 0)
		return ETIMEDOUT;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double t = ts.tv_sec + ts.tv_nsec / 1e9 + left;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	return pthread_cond_timedwait(&e->changed, &e->mu, &ts);
}

int engine_wait_ready(engine *e, char *err)
{
	pthread_mutex_lock(&e->mu);
	while (!e->ready && !e->failed)
		pthread_cond_wait(&e->changed, &e->mu);
	int rc = e->ready ? 0 : -1;
	if (rc)
		snprintf(err, MH_ERRLEN, "%s", e->load_err);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

const engine_info *engine_model(engine *e)
{
	pthread_mutex_lock(&e->mu);
	int ready = e->ready;
	pthread_mutex_unlock(&e->mu);
	return ready ? &e->info : NULL;
}

void engine_drain(engine *e, double deadline)
{
	pthread_mutex_lock(&e->mu);
	e->stopping = 1;
	while ((e->busy || e->q_n) && !e->failed)
		if (wait_changed(e, deadline) == ETIMEDOUT)
			break;
	/* past the deadline: cancel the rest, each gone within a step */
	for (int i = 0; i < e->q_n; i++) {
		engine_req *r = e->queue[(e->q_head + i) % e->c.queue];
		req_finish(r, NULL, 503, "the server is shutting down");
		req_unref(r);
	}
	e->q_n = 0;
	for (int i = 0; i < e->c.parallel; i++)
		if (e->slots[i].r)
			e->slots[i].r->cancelled = 1;
	e->quit = 1;
	pthread_cond_signal(&e->wake);
	while (e->busy && !e->failed)
		pthread_cond_wait(&e->changed, &e->mu);
	pthread_mutex_unlock(&e->mu);
}

void engine_free(engine *e)
{
	if (!e)
		return;
	if (e->started) {
		pthread_mutex_lock(&e->mu);
		e->quit = 1;
		e->stopping = 1;
		for (int i = 0; i < e->c.parallel; i++)
			if (e->slots[i].r)
				e->slots[i].r->cancelled = 1;
		pthread_cond_signal(&e->wake);
		pthread_mutex_unlock(&e->mu);
		pthread_join(e->th, NULL);
	}
	for (int i = 0; i < e->q_n; i++)
		req_unref(e->queue[(e->q_head + i) % e->c.queue]);
	while (e->old) {
		esess *es = e->old;
		e->old = es->next;
		session_close(es->s);
		free(es);
	}
	if (e->cur)
		session_close(e->cur->s);
	free(e->cur);
	free(e->items);
	free(e->logits);
	cn_vocab_free(e->cnv);
	modeldir_close(e->dir);
	pthread_cond_destroy(&e->changed);
	pthread_cond_destroy(&e->wake);
	pthread_mutex_destroy(&e->mu);
	free(e->queue);
	free(e->path);
	free(e);
}

int engine_reload(engine *e, char *msg, size_t msglen, int ms)
{
	pthread_mutex_lock(&e->mu);
	if (!e->ready || e->stopping) {
		snprintf(msg, msglen, "the server is not ready");
		pthread_mutex_unlock(&e->mu);
		return -1;
	}
	unsigned want = ++e->reload_asked;
	pthread_cond_signal(&e->wake);
	double deadline = mh_now() + ms / 1e3;
	while ((int)(e->reload_done - want) < 0)
		if (wait_changed(e, deadline) == ETIMEDOUT)
			break;
	int rc;
	if ((int)(e->reload_done - want) < 0) {
		snprintf(msg, msglen, "the reload is still running; see the server's log");
		rc = -1;
	} else {
		snprintf(msg, msglen, "%s", e->reload_msg);
		rc = e->reload_done == want ? e->reload_rc : 0;
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}

void engine_reload_async(engine *e)
{
	pthread_mutex_lock(&e->mu);
	e->reload_asked++;
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->mu);
}

void engine_get_stats(engine *e, engine_stats *st)
{
	pthread_mutex_lock(&e->mu);
	st->queued = e->q_n;
	st->busy = e->busy;
	st->parallel = e->c.parallel;
	st->ready = e->ready && !e->stopping;
	snprintf(st->plugin, sizeof st->plugin, "%s", e->plugin_name);
	snprintf(st->version, sizeof st->version, "%s", e->plugin_version);
	pthread_mutex_unlock(&e->mu);
}
