/* SPDX-License-Identifier: MIT */
/* post_processors.c - post-processors, all reduced to templates of ids
 * around $A (tokenizers' processors), and loading them. */
#include "text/tokenizer/internal.h"

#include <stddef.h>

typedef struct {
	bool is_seq;
	int32_t *ids;
	size_t n;
} tmpl_item;

struct postproc {
	bool is_seq; /* Sequence of kids; else a template (possibly empty = no-op) */
	struct postproc **kids;
	size_t nkids;
	tmpl_item *items;
	size_t nitems;
	bool noop;
};

static void post_fields_free(void *node)
{
	postproc *p = node;
	for (size_t i = 0; i < p->nitems; i++)
		free(p->items[i].ids);
	free(p->items);
}

int post_run(const postproc *p, i32vec *ids)
{
	if (p->is_seq) {
		for (size_t i = 0; i < p->nkids; i++)
			if (post_run(p->kids[i], ids) < 0)
				return -1;
		return 0;
	}
	if (p->noop)
		return 0;
	i32vec out = { 0 };
	for (size_t i = 0; i < p->nitems; i++) {
		if (p->items[i].is_seq)
			iv_put(&out, ids->v, ids->n);
		else
			iv_put(&out, p->items[i].ids, p->items[i].n);
	}
	if (out.oom) {
		free(out.v);
		return -1;
	}
	free(ids->v);
	*ids = out;
	return 0;
}

static bool one_id(loadctx *L, tmpl_item *it, int32_t id)
{
	it->ids = malloc(sizeof *it->ids);
	if (!it->ids)
		return fail(L, "out of memory");
	it->ids[0] = id;
	it->n = 1;
	return true;
}

/* Ids of a special token named in a post-processor: TemplateProcessing's
 * special_tokens map, else the vocabulary. */
static bool template_ids(loadctx *L, const cJSON *specials, const char *name, tmpl_item *it)
{
	char b[48];
	const cJSON *sp = jget(specials, name);
	const cJSON *ids = jget(sp, "ids");
	if (cJSON_IsArray(ids)) {
		if (!(it->ids = load_list(L, ids, sizeof *it->ids, "post_processor: ids")))
			return false;
		const cJSON *x;
		cJSON_ArrayForEach(x, ids) {
			int32_t id;
			if (!jid(x, &id))
				return fail(L, "post_processor: bad id for '%s'", shown(name, b));
			it->ids[it->n++] = id;
		}
		return true;
	}
	int32_t id = tokenizer_token_id(L->t, name);
	if (id < 0)
		return fail(L, "post_processor: special token '%s' is unknown", shown(name, b));
	return one_id(L, it, id);
}

static bool load_template(loadctx *L, const cJSON *j, postproc *p)
{
	const cJSON *single = jget(j, "single");
	const cJSON *specials = jget(j, "special_tokens");
	if (!(p->items = load_list(L, single, sizeof *p->items, "TemplateProcessing: 'single'")))
		return false;
	const cJSON *it;
	bool seen = false;
	cJSON_ArrayForEach(it, single) {
		tmpl_item *ti = &p->items[p->nitems++];
		const cJSON *st = jget(it, "SpecialToken");
		if (jget(it, "Sequence")) {
			/* twice would double the ids at each template of a chain */
			if (seen)
				return fail(L, "TemplateProcessing: 'single' names the sequence "
					    "more than once");
			ti->is_seq = seen = true;
		} else if (st) {
			const char *name = jstr(st, "id");
			if (!name)
				return fail(L, "TemplateProcessing: SpecialToken without id");
			if (!template_ids(L, specials, name, ti))
				return false;
		} else {
			return fail(L, "TemplateProcessing: unknown template piece");
		}
	}
	return true;
}

/* Roberta/Bert: [cls] $A [sep], with "cls": ["<s>", 0] pairs. */
static bool load_cls_sep(loadctx *L, const cJSON *j, postproc *p)
{
	const char *keys[2] = { "cls", "sep" };
	p->items = calloc(3, sizeof *p->items);
	if (!p->items)
		return fail(L, "out of memory");
	p->nitems = 3;
	p->items[1].is_seq = true;
	for (int i = 0; i < 2; i++) {
		const cJSON *pair = jget(j, keys[i]);
		int32_t id;
		if (!cJSON_IsArray(pair) || !jid(cJSON_GetArrayItem(pair, 1), &id))
			return fail(L, "post_processor: '%s' must be [token, id]", keys[i]);
		if (!one_id(L, &p->items[i ? 2 : 0], id))
			return false;
	}
	return true;
}

static bool setup_post(loadctx *L, const cJSON *j, const char *type, void *node)
{
	postproc *p = node;
	if (!strcmp(type, "Sequence")) {
		p->is_seq = true; /* the children are loaded */
		return true;
	}
	if (!strcmp(type, "ByteLevel")) {
		p->noop = true; /* only adjusts offsets */
		return true;
	}
	if (!strcmp(type, "TemplateProcessing"))
		return load_template(L, j, p);
	if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))
		return load_cls_sep(L, j, p);
	return false; /* not a type of this stage */
}

const stage post_stage =
	STAGE(postproc, "post_processor", "processors", setup_post, post_fields_free);
