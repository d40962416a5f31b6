/* session.c - see session.h. */
#include "plugin/session.h"
#include "model/modeldir.h"

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
	s->model = s->lib->desc->load(registry_services(r), s->dir, n_ctx);
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
	for (int i = 0; i < s->info->n_eos && i < MH_MAX_EOS; i++)
		add_eos(s, s->info->eos_ids[i]);
	/* generation_config.json may name more end-of-sequence ids */
	const cJSON *g = s->dir->generation ? cJSON_GetObjectItemCaseSensitive(s->dir->generation,
									       "eos_token_id")
					    : NULL;
	int64_t id;
	if (cJSON_IsNumber(g) && mh_whole(g->valuedouble, 0, INT32_MAX, &id) == 0) {
		add_eos(s, (int32_t)id);
	} else if (cJSON_IsArray(g)) {
		const cJSON *e;
		cJSON_ArrayForEach(e, g)
			if (cJSON_IsNumber(e) && mh_whole(e->valuedouble, 0, INT32_MAX, &id) == 0)
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
	if (s->model)
		s->lib->desc->free(s->model);
	plugin_lib_unref(s->lib);
	modeldir_close(s->dir);
	free(s);
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
	if (!s->populated) { /* info and friends never get here */
		modeldir_populate(s->dir);
		s->populated = 1;
	}
	s->dir->err[0] = 0;
	if (s->lib->desc->forward(s->model, ids, n, s->pos, logits, flags) != 0) {
		mh_errf(err, "%s", s->dir->err[0] ? s->dir->err : "forward pass failed");
		return -1;
	}
	s->pos += n;
	return 0;
}

void session_reset(mh_session *s)
{
	s->lib->desc->reset(s->model);
	s->pos = 0;
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
	return pos;
}

int session_is_eos(const mh_session *s, int32_t id)
{
	for (int i = 0; i < s->n_eos; i++)
		if (s->eos[i] == id)
			return 1;
	return 0;
}
