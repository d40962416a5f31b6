/* SPDX-License-Identifier: MIT */
/* loader.c - tokenizer.json -> mh_tokenizer: reading the file, the id
 * tables, and the JSON helpers each stage's loader uses. */
#include "text/tokenizer/internal.h"
#include "base/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

__attribute__((format(printf, 2, 3)))
bool fail(loadctx *L, const char *fmt, ...)
{
	if (L->failed)
		return false;
	L->failed = true;
	if (!L->err || !L->errlen)
		return false;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(L->err, L->errlen, "%s: %s", L->path, msg);
	for (char *p = L->err; *p; p++) /* keep it one line */
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	return false;
}

/* A short, printable excerpt of a string from the file for messages. */
const char *shown(const char *s, char buf[48])
{
	size_t i = 0;
	for (; s && s[i] && i < 40; i++)
		buf[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
	buf[i] = 0;
	if (s && s[i])
		strcpy(buf + (i > 40 ? 40 : i), "...");
	return buf;
}

const cJSON *jget(const cJSON *o, const char *key)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

const char *jstr(const cJSON *o, const char *key)
{
	const cJSON *v = jget(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool jbool(const cJSON *o, const char *key, bool def)
{
	const cJSON *v = jget(o, key);
	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

bool jid(const cJSON *v, int32_t *out)
{
	if (!cJSON_IsNumber(v))
		return false;
	double d = v->valuedouble;
	if (!(d >= 0 && d < MAX_TOKEN_ID) || d != (double)(int32_t)d)
		return false;
	*out = (int32_t)d;
	return true;
}

char *xstrdup(const char *s, size_t *len)
{
	size_t n = strlen(s);
	char *p = malloc(n + 1);
	if (p)
		memcpy(p, s, n + 1);
	if (len)
		*len = n;
	return p;
}

/* One character given as a JSON string (Metaspace replacement, Strip content). */
bool load_char(loadctx *L, const char *s, uint32_t *cp, const char *what)
{
	size_t n = s ? strlen(s) : 0, l;
	if (!n)
		return fail(L, "%s must be a one-character string", what);
	*cp = u8cp(s, n, &l);
	if (l != n)
		return fail(L, "%s must be a one-character string", what);
	return true;
}

int load_prepend_scheme(const cJSON *j)
{
	const char *s = jstr(j, "prepend_scheme");
	if (s)
		return !strcmp(s, "first") ? PREPEND_FIRST :
		       !strcmp(s, "never") ? PREPEND_NEVER :
		       !strcmp(s, "always") ? PREPEND_ALWAYS : -1;
	return jbool(j, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
}

void *load_list(loadctx *L, const cJSON *arr, size_t elsz, const char *what)
{
	if (!cJSON_IsArray(arr))
		return fail(L, "%s must be a list", what), NULL;
	int cnt = cJSON_GetArraySize(arr);
	void *p = calloc(cnt ? (size_t)cnt : 1, elsz);
	if (!p)
		fail(L, "out of memory");
	return p;
}

void tree_free(const stage *st, void *node)
{
	if (!node)
		return;
	void **kids = *(void ***)((char *)node + st->kids);
	size_t n = *(size_t *)((char *)node + st->nkids);
	for (size_t i = 0; i < n; i++)
		tree_free(st, kids[i]);
	free(kids);
	st->fields_free(node);
	free(node);
}

void *load_tree(loadctx *L, const cJSON *j, const stage *st, int depth)
{
	if (L->failed || !j || cJSON_IsNull(j))
		return NULL;
	const char *type = jstr(j, "type");
	if (!type)
		return fail(L, "%s without a type", st->what), NULL;
	if (depth > 32)
		return fail(L, "%s nested too deeply", st->what), NULL;
	char *node = calloc(1, st->size);
	if (!node)
		return fail(L, "out of memory"), NULL;
	if (!strcmp(type, "Sequence")) {
		const cJSON *arr = jget(j, st->list), *it;
		void ***kids = (void ***)(node + st->kids);
		size_t *n = (size_t *)(node + st->nkids);
		if (!cJSON_IsArray(arr))
			return fail(L, "%s: Sequence without a list", st->what), node;
		if (!(*kids = load_list(L, arr, sizeof(void *), st->list)))
			return node;
		cJSON_ArrayForEach(it, arr) {
			void *kid = load_tree(L, it, st, depth + 1);
			if (kid) /* freed with the parent, even half built */
				(*kids)[(*n)++] = kid;
			if (L->failed)
				return node;
		}
	}
	if (!st->setup(L, j, type, node) && !L->failed) {
		char b[48];
		fail(L, "%s type '%s' is not supported", st->what, shown(type, b));
	}
	return node;
}

/* id -> string tables: model vocab first, added tokens override. */
static bool build_id_tables(loadctx *L, int32_t max_id)
{
	mh_tokenizer *t = L->t;
	if (max_id < 0)
		return fail(L, "the vocabulary is empty");
	size_t entries = t->bpe.vocab.n + t->n_added;
	if ((size_t)max_id > 4 * entries + 65536)
		return fail(L, "token ids are too sparse (max id %d for %zu tokens)",
			    (int)max_id, entries);
	t->n_ids = max_id + 1;
	t->id_str = calloc((size_t)t->n_ids, sizeof *t->id_str);
	t->id_len = calloc((size_t)t->n_ids, sizeof *t->id_len);
	t->id_flags = calloc((size_t)t->n_ids, 1);
	if (!t->id_str || !t->id_len || !t->id_flags)
		return fail(L, "out of memory");
	const strmap *v = &t->bpe.vocab;
	for (size_t i = 0; i <= v->mask; i++) {
		const sm_ent *e = &v->e[i];
		if (e->key) {
			t->id_str[e->val] = e->key;
			t->id_len[e->val] = e->len;
		}
	}
	for (size_t i = 0; i < t->n_added; i++) {
		const added_tok *a = &t->added[i];
		t->id_str[a->id] = a->content;
		t->id_len[a->id] = (uint32_t)a->len;
		t->id_flags[a->id] = (uint8_t)(F_ADDED | (a->special ? F_SPECIAL : 0));
	}
	return true;
}

/* Regular files only, capped (base/util.c): /dev/zero or a FIFO named as
 * the tokenizer would otherwise read forever or block. */
static char *read_file(loadctx *L, size_t *len)
{
	char why[256];
	char *text = mh_slurp(L->path, MH_READ_MAX, 1, len, why, sizeof why);
	if (!text)
		fail(L, "%s", why);
	return text;
}

mh_tokenizer *tokenizer_load(const char *path, char *err, size_t errlen)
{
	loadctx L = { path ? path : "(null)", err, errlen, false, NULL };
	if (err && errlen)
		err[0] = 0;
	if (!path) {
		fail(&L, "no path");
		return NULL;
	}
	bytelevel_init();
	size_t len = 0;
	char *text = read_file(&L, &len);
	if (!text)
		return NULL;
	cJSON *root = cJSON_ParseWithLength(text, len);
	free(text);
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		fail(&L, "not valid JSON");
		return NULL;
	}
	mh_tokenizer *t = calloc(1, sizeof *t);
	if (!t) {
		cJSON_Delete(root);
		fail(&L, "out of memory");
		return NULL;
	}
	L.t = t;
	int32_t max_id = -1;
	bool ok = load_model(&L, jget(root, "model"), &max_id) &&
		  load_added(&L, jget(root, "added_tokens"), &max_id) &&
		  build_id_tables(&L, max_id);
	/* each load_tree does nothing once loading has failed */
	t->norm = load_tree(&L, jget(root, "normalizer"), &normalizer_stage, 0);
	t->pre = load_tree(&L, jget(root, "pre_tokenizer"), &pretok_stage, 0);
	t->post = load_tree(&L, jget(root, "post_processor"), &post_stage, 0);
	t->dec = load_tree(&L, jget(root, "decoder"), &decoder_stage, 0);
	ok = ok && !L.failed && build_tries(&L);
	cJSON_Delete(root);
	if (!ok) {
		tokenizer_free(t);
		return NULL;
	}
	return t;
}
