/* SPDX-License-Identifier: MIT */
/* chat_template.c - loading a model's chat template and rendering it with
 * the special tokens of its tokenizer_config.json and a request's context.
 * The parse and every render live in their own arena (template/tpl.h): a
 * render shares nothing writable with the template, so renders may run in
 * parallel. */
#include "text/chat_template.h"
#include "text/template/tpl.h"
#include "base/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mh_chat_template {
	tpl_env *env;         /* the parse arena: source, tokens, tree */
	node *root;
	char *name;
	cJSON *specials;      /* special tokens from tokenizer_config.json */
	char *eos;
};

void chat_template_free(mh_chat_template *t)
{
	if (!t)
		return;
	if (t->env) {
		tpl_arena_free(t->env);
		free(t->env);
	}
	free(t->name);
	cJSON_Delete(t->specials);
	free(t->eos);
	free(t);
}

/* A special token as tokenizer_config.json writes it: "text" or an
 * AddedToken object {"content": "text", ...}. */
static const char *token_text(const cJSON *v)
{
	if (cJSON_IsString(v))
		return v->valuestring;
	const cJSON *c = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "content") : NULL;
	return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* transformers' special_tokens_map: the tokens that are set. */
static cJSON *specials_of(const cJSON *cfg)
{
	static const char *names[] = { "bos_token", "eos_token", "unk_token", "sep_token",
				       "pad_token", "cls_token", "mask_token" };
	cJSON *out = cJSON_CreateObject();
	if (!out)
		return NULL;
	for (size_t i = 0; cfg && i < sizeof names / sizeof *names; i++) {
		const char *s = token_text(cJSON_GetObjectItemCaseSensitive(cfg, names[i]));
		if (s)
			cJSON_AddStringToObject(out, names[i], s);
	}
	const cJSON *extra = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens") : NULL;
	if (cJSON_IsArray(extra)) {
		cJSON *l = cJSON_AddArrayToObject(out, "additional_special_tokens");
		const cJSON *x;
		cJSON_ArrayForEach(x, extra) {
			const char *s = token_text(x);
			if (s && l)
				cJSON_AddItemToArray(l, cJSON_CreateString(s));
		}
	}
	return out;
}

/* mh_read_file, its message in err (errlen bytes: this file's callers' size). */
static char *read_text(const char *path, size_t *len, char *err, size_t errlen)
{
	char e[MH_ERRLEN];
	char *text = mh_read_file(path, len, e);
	if (!text)
		snprintf(err, errlen, "%s", e);
	return text;
}

static cJSON *read_config(const char *dir, char *path, size_t pathlen, char *err, size_t errlen)
{
	snprintf(path, pathlen, "%s/tokenizer_config.json", dir);
	size_t len;
	char *text = read_text(path, &len, err, errlen);
	if (!text)
		return NULL;
	cJSON *cfg = cJSON_ParseWithLength(text, len);
	free(text);
	if (!cfg || !cJSON_IsObject(cfg)) {
		snprintf(err, errlen, "%s: not a JSON object", path);
		cJSON_Delete(cfg);
		return NULL;
	}
	return cfg;
}

/* The text that ends a turn: a known end-of-turn marker the template writes,
 * else the eos token. */
static char *find_eos(const char *text, const cJSON *specials)
{
	static const char *markers[] = { "<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>",
					 "<|END_OF_TURN_TOKEN|>", "<|endofturn|>",
					 "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>" };
	for (size_t i = 0; i < sizeof markers / sizeof *markers; i++)
		if (strstr(text, markers[i]))
			return strdup(markers[i]);
	const cJSON *eos = cJSON_GetObjectItemCaseSensitive(specials, "eos_token");
	return cJSON_IsString(eos) && eos->valuestring[0] ? strdup(eos->valuestring) : NULL;
}

/* The tree of text, or NULL with e->err set. */
static node *parse(tpl_env *e, const char *text, size_t len)
{
	if (setjmp(e->jb))
		return NULL;
	tpl_tokens toks = { 0 };
	tpl_lex(e, text, len, &toks);
	return tpl_parse(e, &toks);
}

mh_chat_template *chat_template_from_string(const char *text, size_t len, const char *name,
					   const char *dir, char *err, size_t errlen)
{
	mh_chat_template *t = calloc(1, sizeof *t);
	if (!t || !(t->env = calloc(1, sizeof *t->env)) || !(t->name = strdup(name))) {
		snprintf(err, errlen, "%s: out of memory", name);
		chat_template_free(t);
		return NULL;
	}
	cJSON *cfg = NULL;
	if (dir) {
		char path[4200];
		if (!(cfg = read_config(dir, path, sizeof path, err, errlen))) {
			chat_template_free(t);
			return NULL;
		}
	}
	t->specials = specials_of(cfg);
	cJSON_Delete(cfg);
	if (!t->specials) {
		snprintf(err, errlen, "%s: out of memory", name);
		chat_template_free(t);
		return NULL;
	}
	tpl_env *e = t->env;
	e->lim = tpl_default_limits;
	e->name = t->name;
	e->err = err;
	e->errlen = errlen;
	if (!(t->root = parse(e, text, len))) {
		chat_template_free(t);
		return NULL;
	}
	e->err = NULL;
	/* the eos marker is looked for in the source with its line breaks as written */
	char *src = strndup(text, len);
	t->eos = src ? find_eos(src, t->specials) : NULL;
	free(src);
	return t;
}

mh_chat_template *chat_template_from_file(const char *path, const char *dir, char *err, size_t errlen)
{
	size_t len;
	char *text = read_text(path, &len, err, errlen);
	if (!text)
		return NULL;
	mh_chat_template *t = chat_template_from_string(text, len, path, dir, err, errlen);
	free(text);
	return t;
}

mh_chat_template *chat_template_from_dir(const char *dir, char *err, size_t errlen)
{
	char path[4200];
	cJSON *cfg = read_config(dir, path, sizeof path, err, errlen);
	if (!cfg)
		return NULL;
	const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
	const char *text = NULL;
	if (cJSON_IsString(ct))
		text = ct->valuestring;
	else if (cJSON_IsArray(ct)) {
		const cJSON *x;
		cJSON_ArrayForEach(x, ct) {
			const cJSON *nm = cJSON_GetObjectItemCaseSensitive(x, "name");
			const cJSON *tx = cJSON_GetObjectItemCaseSensitive(x, "template");
			if (!cJSON_IsString(tx))
				continue;
			if (!text || (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default")))
				text = tx->valuestring;
			if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default"))
				break;
		}
	}
	mh_chat_template *t = NULL;
	if (text) {
		char name[4300];
		snprintf(name, sizeof name, "%s: chat_template", path);
		t = chat_template_from_string(text, strlen(text), name, dir, err, errlen);
	} else {
		/* transformers 4.43+ may save it beside the config instead */
		char alt[4200];
		snprintf(alt, sizeof alt, "%s/chat_template.jinja", dir);
		if (mh_is_file(alt))
			t = chat_template_from_file(alt, dir, err, errlen);
		else if (ct && !cJSON_IsNull(ct))
			snprintf(err, errlen, "%s: chat_template is neither a string nor a list of "
				 "{\"name\", \"template\"}", path);
		else
			snprintf(err, errlen, "%s: the model has no chat template "
				 "(give one with --chat-template FILE)", path);
	}
	cJSON_Delete(cfg);
	return t;
}

const char *chat_template_eos(const mh_chat_template *t)
{
	return t ? t->eos : NULL;
}

/* JSON to template values; numbers without a fraction become ints (cJSON
 * does not keep whether the text had a decimal point). */
static val from_json(tpl_env *e, const cJSON *j, int depth)
{
	if (depth > 200)
		tpl_fail(e, 0, "the context is nested too deeply");
	if (cJSON_IsNull(j) || !j)
		return v_none();
	if (cJSON_IsBool(j))
		return v_bool(cJSON_IsTrue(j));
	if (cJSON_IsNumber(j)) {
		double d = j->valuedouble;
		if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0)
			return v_int((long long)d);
		return v_float(d);
	}
	if (cJSON_IsString(j))
		return v_cstr(e, j->valuestring);
	if (cJSON_IsArray(j)) {
		val l = v_list(e);
		const cJSON *x;
		cJSON_ArrayForEach(x, j)
			list_push(e, l.l, from_json(e, x, depth + 1));
		return l;
	}
	if (cJSON_IsObject(j)) {
		val d = v_dict(e);
		const cJSON *x;
		cJSON_ArrayForEach(x, j)
			dict_set(e, d.d, v_cstr(e, x->string ? x->string : ""), from_json(e, x, depth + 1));
		return d;
	}
	return v_none();
}

char *chat_template_render(const mh_chat_template *t, const cJSON *ctx, time_t now, char *err, size_t errlen)
{
	tpl_env *e = calloc(1, sizeof *e);
	if (!e) {
		snprintf(err, errlen, "%s: out of memory", t->name);
		return NULL;
	}
	e->lim = tpl_default_limits;
	e->name = t->name;
	e->err = err;
	e->errlen = errlen;
	if (setjmp(e->jb)) {
		tpl_arena_free(e);
		free(e);
		return NULL;
	}
	if (!cJSON_IsObject(ctx))
		tpl_fail(e, 0, "the context is not a JSON object");
	val vars = v_dict(e);
	const cJSON *x;
	cJSON_ArrayForEach(x, t->specials)
		dict_set(e, vars.d, v_cstr(e, x->string), from_json(e, x, 0));
	cJSON_ArrayForEach(x, ctx)
		if (x->string)
			dict_set(e, vars.d, v_cstr(e, x->string), from_json(e, x, 0));
	val out = tpl_render_tree(e, t->root, vars, now);
	char *s = malloc(out.s.n + 1);
	if (s) {
		memcpy(s, out.s.p, out.s.n);
		s[out.s.n] = 0;
	} else
		snprintf(err, errlen, "%s: out of memory", t->name);
	tpl_arena_free(e);
	free(e);
	return s;
}
