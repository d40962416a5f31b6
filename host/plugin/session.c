/* SPDX-License-Identifier: MIT */
/* session.c - see session.h. */
#include "plugin/session.h"
#include "model/modeldir.h"
#include "plugin/quantize.h"
#include "compute/scales.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_eos(mh_session *s, int32_t id)
{
	for (int i = 0; i < s->n_eos; i++)
		if (s->eos[i] == id)
			return;
	if (s->n_eos < (int)(sizeof s->eos / sizeof s->eos[0]))
		s->eos[s->n_eos++] = id;
}

mh_session *session_open(mh_registry *r, const char *path, const char *force, int n_ctx,
			 char *err)
{
	return session_open_quant(r, path, force, n_ctx, NULL, err);
}

/* Quantized tensors go only to plugins built for ABI 1.2 or later (they
 * know to check a weight's dtype before reading its data); older ones get
 * floats, and the user one line saying so. */
static void set_quant(mh_session *s, const session_quant *q)
{
	mh_dir *d = s->dir;
	const struct model_plugin *p = s->lib->desc;
	d->quant = q ? q->quant : MH_F32;
	d->quant_io = q ? q->quant_io : MH_F32;
	d->quant_ok = p->abi_major == MODELHOST_ABI_MAJOR && p->abi_minor >= 2;
	int stored = 0;
	for (int i = 0; i < d->n_tensors; i++)
		stored |= mh_dtype_is_quant(d->index[i]->dtype);
	if (!d->quant_ok && (d->quant != MH_F32 || d->quant_io != MH_F32 || stored))
		fprintf(stderr, "modelhost: plugin '%s' is built for ABI %u.%u, older than quantized "
				"weights (1.2): it gets float weights\n",
			p->name, (unsigned)p->abi_major, (unsigned)p->abi_minor);
}

mh_session *session_open_quant(mh_registry *r, const char *path, const char *force, int n_ctx,
			       const session_quant *q, char *err)
{
	mh_session *s = calloc(1, sizeof *s);
	if (!s) {
		mh_errf(err, "%s: out of memory", path);
		return NULL;
	}
	s->dir = modeldir_open(path, err);
	if (!s->dir)
		goto fail;
	s->lib = registry_choose(r, s->dir, force, s->why, sizeof s->why, err);
	if (!s->lib)
		goto fail;
	s->dir->err[0] = 0;
	set_quant(s, q);
	s->svc = registry_services(r);
	s->n_ctx_asked = n_ctx;
	s->model = s->lib->desc->load(s->svc, s->dir, n_ctx);
	if (!s->model) {
		mh_errf(err, "%s", s->dir->err[0] ? s->dir->err : "plugin failed to load the model");
		goto fail;
	}
	s->info = s->lib->desc->info(s->model);
	if (!s->info || s->info->struct_size < offsetof(mh_model_info, kv_cache_bytes) ||
	    s->info->vocab_size <= 0 || s->info->n_ctx <= 0) {
		mh_errf(err, "%s: plugin '%s' reported no usable model info", path, s->lib->desc->name);
		goto fail;
	}
	const struct model_plugin *d = s->lib->desc;
	s->batched = d->abi_minor >= 2 && d->struct_size > offsetof(struct model_plugin, batch) &&
		     d->seq_new && d->seq_free && d->batch;
	s->seq = calloc(1, sizeof *s->seq);
	if (!s->seq) {
		mh_errf(err, "%s: out of memory", path);
		goto fail;
	}
	s->seq[0] = (mh_seq){ .open = 1, .model = s->model };
	s->n_seq = 1;
	for (int i = 0; i < s->info->n_eos && i < MH_MAX_EOS; i++)
		add_eos(s, s->info->eos_ids[i]);
	/* generation_config.json may name more end-of-sequence ids */
	const cJSON *g = s->dir->generation ? cJSON_GetObjectItemCaseSensitive(s->dir->generation,
									       "eos_token_id")
					    : NULL;
	if (cJSON_IsNull(g))
		g = NULL;
	int64_t id, vocab = s->info->vocab_size;
	if (s->info->bos_id < -1 || s->info->bos_id >= vocab) {
		mh_errf(err, "%s: plugin '%s' reported BOS id %d, outside the vocabulary (0..%lld)",
			path, s->lib->desc->name, s->info->bos_id, (long long)vocab - 1);
		goto fail;
	}
	const cJSON *e = g;
	if (cJSON_IsArray(g))
		e = g->child;
	for (; e; e = cJSON_IsArray(g) ? e->next : NULL) {
		if (!cJSON_IsNumber(e) || mh_whole(e->valuedouble, 0, vocab - 1, &id) != 0) {
			mh_errf(err, "%s/generation_config.json: 'eos_token_id' should be token ids "
				"in the vocabulary (0..%lld)", path, (long long)vocab - 1);
			goto fail;
		}
		add_eos(s, (int32_t)id);
	}
	return s;
fail:
	session_close(s);
	return NULL;
}

void session_close(mh_session *s)
{
	if (!s)
		return;
	for (int i = 1; i < s->n_seq; i++)
		session_seq_close(s, i);
	free(s->seq);
	free(s->items);
	free(s->scratch);
	if (s->model)
		s->lib->desc->free(s->model);
	plugin_lib_unref(s->lib);
	modeldir_close(s->dir);
	free(s);
}

/* Before the first forward pass: the weights' pages faulted in, and the
 * stored quantized tensors watched, so that each is checked on its first
 * use (compute/scales.c). */
static int populate(mh_session *s, char *err)
{
	if (s->populated)
		return 0;
	modeldir_populate(s->dir);
	s->dir->err[0] = 0;
	if (scales_watch(s->dir) != 0 && quantize_check_scales(s->dir) != 0) {
		mh_errf(err, "%s", s->dir->err);
		return -1;
	}
	s->populated = 1;
	return 0;
}

int session_forward(mh_session *s, const int32_t *ids, int n, float *logits, int flags, char *err)
{
	if (n <= 0)
		return 0;
	if (s->pos + n > s->info->n_ctx) {
		mh_errf(err, "%s: %d tokens exceed the context length of %d", s->dir->path,
			s->pos + n, s->info->n_ctx);
		return -1;
	}
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= s->info->vocab_size) {
			mh_errf(err, "%s: token id %d is outside the vocabulary (0..%d)", s->dir->path,
				ids[i], s->info->vocab_size - 1);
			return -1;
		}
	if (modeldir_changed(s->dir, err)) /* a stat per shard: cheap next to a forward */
		return -1;
	if (populate(s, err) != 0) /* info and friends never get here */
		return -1;
	s->dir->err[0] = 0;
	/* an op that refused a weight (a bad block scale) recorded why and
	 * did not run: the plugin may not know */
	if (s->lib->desc->forward(s->model, ids, n, s->pos, logits, flags) != 0 || s->dir->err[0]) {
		mh_errf(err, "%s", s->dir->err[0] ? s->dir->err : "forward pass failed");
		return -1;
	}
	s->pos += n;
	s->seq[0].open = 1;
	s->seq[0].len = s->pos;
	return 0;
}

void session_reset(mh_session *s)
{
	s->lib->desc->reset(s->model);
	s->pos = 0;
	s->seq[0].len = 0;
}

/* ---- sequences ---------------------------------------------------------------- */

static int seq_ok(const mh_session *s, int seq)
{
	return seq >= 0 && seq < s->n_seq && s->seq[seq].open;
}

int session_seq_open(mh_session *s, char *err)
{
	int id = 0;
	while (id < s->n_seq && s->seq[id].open)
		id++;
	if (id == s->n_seq) {
		mh_seq *ns = realloc(s->seq, (size_t)(s->n_seq + 1) * sizeof *ns);
		if (!ns) {
			mh_errf(err, "%s: out of memory for another sequence", s->dir->path);
			return -1;
		}
		s->seq = ns;
		s->seq[s->n_seq++] = (mh_seq){ 0 };
	}
	mh_seq *q = &s->seq[id];
	if (id == 0) { /* the model's own sequence, closed before */
		*q = (mh_seq){ .open = 1, .model = s->model };
		s->lib->desc->reset(s->model);
		s->pos = 0;
		return 0;
	}
	s->dir->err[0] = 0;
	if (s->batched) {
		int pid = s->lib->desc->seq_new(s->model);
		if (pid <= 0) {
			mh_errf(err, "%s", s->dir->err[0] ? s->dir->err : "no room for another sequence");
			return -1;
		}
		*q = (mh_seq){ .open = 1, .id = pid };
		return id;
	}
	/* 1.0/1.1: the model again over the same directory, so the same mapped
	 * weights; only its own buffers and cache are new */
	mh_model *m = s->lib->desc->load(s->svc, s->dir, s->n_ctx_asked);
	const mh_model_info *mi = m ? s->lib->desc->info(m) : NULL;
	if (!mi || mi->vocab_size != s->info->vocab_size || mi->n_ctx != s->info->n_ctx) {
		mh_errf(err, "%s", s->dir->err[0] ? s->dir->err
				  : "plugin failed to load the model for another sequence");
		if (m)
			s->lib->desc->free(m);
		return -1;
	}
	*q = (mh_seq){ .open = 1, .model = m };
	return id;
}

void session_seq_close(mh_session *s, int seq)
{
	if (!seq_ok(s, seq))
		return;
	mh_seq *q = &s->seq[seq];
	if (seq == 0) {
		s->pos = 0;
	} else if (s->batched) {
		s->lib->desc->seq_free(s->model, q->id);
	} else {
		s->lib->desc->free(q->model);
	}
	*q = (mh_seq){ 0 };
}

int session_seq_rewind(mh_session *s, int seq, int pos)
{
	if (!seq_ok(s, seq) || pos < 0 || pos > s->seq[seq].len)
		return -1;
	s->seq[seq].len = pos;
	if (seq == 0)
		s->pos = pos;
	return 0;
}

int session_seq_len(const mh_session *s, int seq)
{
	return seq_ok(s, seq) ? s->seq[seq].len : -1;
}

static void *grow_buf(void **p, size_t *len, size_t want)
{
	if (*len < want) {
		void *np = realloc(*p, want);
		if (!np)
			return NULL;
		*p = np;
		*len = want;
	}
	return *p;
}

/* The items against the sequences: open, each one's items consecutive,
 * positions contiguous from its length and inside the context, ids known. */
static int check_batch(mh_session *s, const mh_batch_item *it, int n, char *err)
{
	const char *path = s->dir->path;
	if (n <= 0) {
		mh_errf(err, "%s: an empty batch", path);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int q = it[i].seq;
		if (!seq_ok(s, q)) {
			mh_errf(err, "%s: batch item %d: sequence %d is not open", path, i, q);
			return -1;
		}
		int first = i == 0 || it[i - 1].seq != q;
		if (first)
			for (int j = 0; j < i; j++)
				if (it[j].seq == q) {
					mh_errf(err, "%s: batch item %d: sequence %d's items are not "
						"consecutive", path, i, q);
					return -1;
				}
		int want = first ? s->seq[q].len : it[i - 1].pos + 1;
		if (it[i].pos != want) {
			mh_errf(err, "%s: batch item %d: sequence %d's next position is %d, not %d",
				path, i, q, want, it[i].pos);
			return -1;
		}
		if (it[i].pos >= s->info->n_ctx) {
			mh_errf(err, "%s: batch item %d: position %d of sequence %d is past the "
				"context length of %d", path, i, it[i].pos, q, s->info->n_ctx);
			return -1;
		}
		if (it[i].id < 0 || it[i].id >= s->info->vocab_size) {
			mh_errf(err, "%s: batch item %d: token id %d is outside the vocabulary "
				"(0..%d)", path, i, it[i].id, s->info->vocab_size - 1);
			return -1;
		}
	}
	return 0;
}

/* 1.0/1.1 plugins: each sequence's run of items through its own model. */
static int batch_serial(mh_session *s, const mh_batch_item *it, int n, float *logits)
{
	size_t vocab = (size_t)s->info->vocab_size;
	int32_t *ids = grow_buf((void **)&s->items, &s->items_len, (size_t)n * sizeof *ids);
	if (!ids)
		return -1;
	float *out = logits;
	for (int i = 0; i < n;) {
		int e = i + 1, want = it[i].logits != 0;
		while (e < n && it[e].seq == it[i].seq)
			want += it[e++].logits != 0;
		for (int k = i; k < e; k++)
			ids[k - i] = it[k].id;
		mh_model *m = s->seq[it[i].seq].model;
		int only_last = want == 0 || (want == 1 && it[e - 1].logits);
		size_t rows = only_last ? 1 : (size_t)(e - i);
		float *dst = want == 1 && it[e - 1].logits ? out : NULL;
		if (!dst) {
			dst = grow_buf((void **)&s->scratch, &s->scratch_len,
				       rows * vocab * sizeof(float));
			if (!dst)
				return -1;
		}
		if (s->lib->desc->forward(m, ids, e - i, it[i].pos, dst,
					  only_last ? MH_LOGITS_LAST : MH_LOGITS_ALL) != 0)
			return -1;
		if (dst == out) {
			out += vocab;
		} else if (!only_last) {
			for (int k = i; k < e; k++)
				if (it[k].logits) {
					memcpy(out, dst + (size_t)(k - i) * vocab, vocab * sizeof *out);
					out += vocab;
				}
		}
		i = e;
	}
	return 0;
}

int session_batch(mh_session *s, const mh_batch_item *it, int n, float *logits, char *err)
{
	if (check_batch(s, it, n, err) != 0)
		return -1;
	if (populate(s, err) != 0)
		return -1;
	s->dir->err[0] = 0;
	int rc;
	if (s->batched) {
		mh_batch_item *pi = grow_buf((void **)&s->items, &s->items_len, (size_t)n * sizeof *pi);
		if (!pi) {
			mh_errf(err, "%s: out of memory", s->dir->path);
			return -1;
		}
		for (int i = 0; i < n; i++) {
			pi[i] = it[i];
			pi[i].seq = s->seq[it[i].seq].id;
		}
		rc = s->lib->desc->batch(s->model, pi, n, logits);
	} else {
		rc = batch_serial(s, it, n, logits);
	}
	if (rc != 0 || s->dir->err[0]) {
		mh_errf(err, "%s", s->dir->err[0] ? s->dir->err : "forward pass failed");
		return -1;
	}
	for (int i = 0; i < n; i++)
		s->seq[it[i].seq].len = it[i].pos + 1;
	s->pos = s->seq[0].len;
	return 0;
}

int session_rewind(mh_session *s, int pos)
{
	const cJSON *w = modeldir_config(s->dir, "sliding_window");
	const cJSON *use = modeldir_config(s->dir, "use_sliding_window");
	int windowed = cJSON_IsNumber(w) && w->valuedouble > 0 && w->valuedouble < s->info->n_ctx &&
		       !cJSON_IsFalse(use);
	if (pos < 0 || pos > s->pos || (windowed && pos < s->pos)) {
		session_reset(s);
		return 0;
	}
	s->pos = pos;
	s->seq[0].len = pos;
	return pos;
}

int session_is_eos(const mh_session *s, int32_t id)
{
	for (int i = 0; i < s->n_eos; i++)
		if (s->eos[i] == id)
			return 1;
	return 0;
}
