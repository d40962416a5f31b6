/* SPDX-License-Identifier: MIT */
/* check_constrain.c - constrained replies: each token's bytes
 * (tokenizer_pieces), the JSON and tool-call shapes followed token by
 * token through real tokenizers, and the mask against the token-by-token
 * check it stands for. */
#include "text/constrain.h"
#include "text/sampler.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mh_tokenizer *tok(const char *name)
{
	char rel[128], err[256];
	snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", name);
	char *path = tu_data_path(rel);
	mh_tokenizer *t = tokenizer_load(path, err, sizeof err);
	ck_assert_msg(t != NULL, "%s: %s", path, err);
	free(path);
	return t;
}

/* ---- pieces ------------------------------------------------------------------- */

static void piece_is(const char *blob, const uint32_t *off, int32_t id, const char *want,
		     size_t n)
{
	ck_assert_int_ge(id, 0);
	ck_assert_uint_eq(off[id + 1] - off[id], n);
	ck_assert_msg(memcmp(blob + off[id], want, n) == 0, "id %d", id);
}

START_TEST(pieces_as_added_mid_text)
{
	char *blob;
	uint32_t *off;
	/* SentencePiece with byte fallback: the ▁ is a space even on a first
	 * token (the piece follows other text); a byte token is its raw byte */
	mh_tokenizer *t = tok("mistral");
	ck_assert_int_eq(tokenizer_pieces(t, 0, &blob, &off), 0);
	piece_is(blob, off, tokenizer_token_id(t, "▁the"), " the", 4);
	piece_is(blob, off, tokenizer_token_id(t, "the"), "the", 3);
	piece_is(blob, off, tokenizer_token_id(t, "<0x0A>"), "\n", 1);
	piece_is(blob, off, tokenizer_token_id(t, "<0xC3>"), "\xC3", 1);
	piece_is(blob, off, tokenizer_token_id(t, "</s>"), "", 0); /* special */
	free(blob);
	free(off);
	/* as a text's first token, the ▁ is dropped */
	ck_assert_int_eq(tokenizer_pieces(t, 1, &blob, &off), 0);
	piece_is(blob, off, tokenizer_token_id(t, "▁the"), "the", 3);
	piece_is(blob, off, tokenizer_token_id(t, "<0x0A>"), "\n", 1);
	free(blob);
	free(off);
	tokenizer_free(t);
	/* byte-level BPE: Ġ is a space, a part of a character its bytes; an
	 * added token that is not special (Qwen's <tool_call>) its text */
	t = tok("qwen3");
	ck_assert_int_eq(tokenizer_pieces(t, 0, &blob, &off), 0);
	piece_is(blob, off, tokenizer_token_id(t, "Ġthe"), " the", 4);
	piece_is(blob, off, tokenizer_token_id(t, "Ã"), "\xC3", 1);
	piece_is(blob, off, tokenizer_token_id(t, "<tool_call>"), "<tool_call>", 11);
	piece_is(blob, off, tokenizer_token_id(t, "<|im_end|>"), "", 0);
	free(blob);
	free(off);
	tokenizer_free(t);
}
END_TEST

/* ---- shapes, fed a text token by token ------------------------------------------- */

/* One constraint at a time, with its grammar (freed together by cfree). */
static cn_grammar *the_g;

static mh_constraint *json_c(const cn_vocab *v, const char *schema)
{
	char err[256] = "";
	cJSON *j = schema ? cJSON_Parse(schema) : NULL;
	ck_assert_msg(!schema || j, "test schema: %s", schema);
	the_g = cn_grammar_json(j, err, sizeof err);
	cJSON_Delete(j);
	ck_assert_msg(the_g != NULL, "%s", err);
	mh_constraint *c = constraint_new(v, the_g);
	ck_assert_ptr_nonnull(c);
	return c;
}

static mh_constraint *tools_c(const cn_vocab *v, const char *const *names,
			      const char *const *params, int n, int many)
{
	char err[256] = "";
	cJSON *j[8] = { 0 };
	for (int i = 0; params && i < n; i++)
		j[i] = params[i] ? cJSON_Parse(params[i]) : NULL;
	the_g = cn_grammar_tools(names, (const cJSON *const *)j, n, many, err, sizeof err);
	for (int i = 0; i < n; i++)
		cJSON_Delete(j[i]);
	ck_assert_msg(the_g != NULL, "%s", err);
	mh_constraint *c = constraint_new(v, the_g);
	ck_assert_ptr_nonnull(c);
	return c;
}

static void cfree(mh_constraint *c)
{
	constraint_free(c);
	cn_grammar_free(the_g);
	the_g = NULL;
}

/* Feed text's tokens: the index of the first one refused, or -1 when all
 * are taken; *last gets constraint_feed's value for the last one taken. */
static int feed(const mh_tokenizer *t, mh_constraint *c, const char *text, int *last)
{
	int32_t *ids;
	size_t n;
	ck_assert_int_eq(tokenizer_encode(t, text, strlen(text), 0, &ids, &n), 0);
	int at = -1;
	*last = 0;
	for (size_t i = 0; i < n && at < 0; i++) {
		int allowed = constraint_allows(c, ids[i]);
		int r = constraint_feed(c, ids[i]);
		ck_assert_int_eq(allowed, r >= 0);
		if (r < 0)
			at = (int)i;
		else
			*last = r;
		/* only the last token of a complete shape may end it */
		if (r == 1 && i + 1 < n)
			at = (int)i + 1;
	}
	free(ids);
	return at;
}

static const char *const good_json[] = {
	"{}",
	"{\"a\": 1}",
	"{\"city\": \"Zürich\", \"days\": 2, \"ok\": true, \"no\": false, \"x\": null}",
	"{\"n\": [-0.5e+10, 0, 12.25, 3E-2, -7], \"o\": {\"p\": []}, \"q\": [{}, [[]]]}",
	"{\"big\": [12345678901234567, -0.12345678901234567e-308]}",
	"{\"esc\": \"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\uD83D\\ude00\"}",
	"{\"emoji\": \"😀 日本語 ü\"}",
	"{\n  \"pretty\": [\n    1,\n\t\t2\n  ]\n}",
};

static const char *const bad_json[] = {
	"[1]",                 /* the reply must be an object */
	"{\"a\": 1,}",         /* trailing comma */
	"{'a': 1}",            /* single quotes */
	"{\"a\": 01}",         /* leading zero */
	"{\"a\": 1.}",         /* no fraction digits */
	"{\"a\": tru}",        /* not a word */
	"{\"a\" 1}",           /* no colon */
	"{a: 1}",              /* unquoted key */
	"{\"a\": \"\\x\"}",    /* no such escape */
	"{\"a\": \"\\u0000\"}", /* NUL */
	"{\"a\": \"\\uD83D\"}", /* half a surrogate pair */
	"{\"a\": \"\\uDE00\\uD83D\"}", /* the halves the wrong way round */
	"{\"a\": \"\\uD83Dx\"}",
	"{\"a\": \"tab\there\"}", /* a control character in a string */
	"{\"a\": 1} more",     /* text after the object */
	"{\"a\": 1]",          /* the wrong close */
	" {}",                 /* whitespace first */
	"{\"a\": 123456789012345678}", /* 18 digits */
	"{\"a\": 1.123456789012345678}",
	"{\"a\": 1e1234}",
	"{\"a\":  1}",         /* two spaces */
	"{\"a\":\n\n1}",       /* two newlines */
	"{\"a\": \n1}",        /* a space, then a newline */
	"{\"a\":\r\n1}",       /* a carriage return */
};

START_TEST(json_shape)
{
	const char *names[] = { "qwen3", "gpt2", "mistral" };
	for (size_t k = 0; k < 3; k++) {
		mh_tokenizer *t = tok(names[k]);
		cn_vocab *v = cn_vocab_new(t);
		ck_assert_ptr_nonnull(v);
		int last;
		for (size_t i = 0; i < sizeof good_json / sizeof *good_json; i++) {
			mh_constraint *c = json_c(v, NULL);
			ck_assert_ptr_nonnull(c);
			ck_assert_msg(feed(t, c, good_json[i], &last) < 0 && last == 1,
				      "%s: refused or not complete: %s", names[k], good_json[i]);
			cfree(c);
		}
		for (size_t i = 0; i < sizeof bad_json / sizeof *bad_json; i++) {
			mh_constraint *c = json_c(v, NULL);
			ck_assert_msg(feed(t, c, bad_json[i], &last) >= 0, "%s: taken: %s", names[k],
				      bad_json[i]);
			cfree(c);
		}
		cn_vocab_free(v);
		tokenizer_free(t);
	}
}
END_TEST

/* A text of n repeats of s. */
static char *repeat(const char *a, const char *s, int n, const char *z)
{
	size_t len = strlen(a) + strlen(s) * (size_t)n + strlen(z) + 1;
	char *out = malloc(len);
	ck_assert_ptr_nonnull(out);
	strcpy(out, a);
	for (int i = 0; i < n; i++)
		strcat(out, s);
	strcat(out, z);
	return out;
}

START_TEST(json_limits)
{
	mh_tokenizer *t = tok("gpt2");
	cn_vocab *v = cn_vocab_new(t);
	int last;
	struct {
		char *text;
		int ok;
	} cases[] = {
		{ repeat("{\"a\": ", "[", CN_MAX_DEPTH - 1, ""), 1 },
		{ repeat("{\"a\": ", "[", CN_MAX_DEPTH, ""), 0 },
		{ repeat("{\n", " ", CN_MAX_INDENT, "}"), 1 },
		{ repeat("{\n", " ", CN_MAX_INDENT + 1, "}"), 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		mh_constraint *c = json_c(v, NULL);
		ck_assert_int_eq(feed(t, c, cases[i].text, &last) < 0, cases[i].ok);
		cfree(c);
		free(cases[i].text);
	}
	/* UTF-8 byte by byte (Mistral's byte tokens): overlong, surrogate and
	 * lone continuation bytes are refused, a whole character is not */
	tokenizer_free(t);
	cn_vocab_free(v);
	t = tok("mistral");
	v = cn_vocab_new(t);
	const char *const seqs[][4] = {
		{ "<0xC3>", "<0xBC>", NULL, "ok" },     /* ü */
		{ "<0xC0>", "<0x80>", NULL, NULL },     /* overlong NUL */
		{ "<0xED>", "<0xA0>", "<0x80>", NULL }, /* a surrogate half */
		{ "<0x80>", NULL, NULL, NULL },         /* a continuation first */
		{ "<0xF4>", "<0x90>", NULL, NULL },     /* past U+10FFFF */
	};
	for (size_t i = 0; i < sizeof seqs / sizeof *seqs; i++) {
		mh_constraint *c = json_c(v, NULL);
		ck_assert_int_lt(feed(t, c, "{\"a\": \"", &last), 0);
		int taken = 1;
		for (int k = 0; k < 3 && seqs[i][k] && taken; k++)
			taken = constraint_feed(c, tokenizer_token_id(t, seqs[i][k])) == 0;
		ck_assert_msg(taken == (seqs[i][3] != NULL), "case %zu", i);
		cfree(c);
	}
	cn_vocab_free(v);
	tokenizer_free(t);
}
END_TEST

#define CALL(name, args) "<tool_call>\n{\"name\": \"" name "\", \"arguments\": " args "}\n</tool_call>"

START_TEST(tool_shape)
{
	mh_tokenizer *t = tok("qwen3");
	cn_vocab *v = cn_vocab_new(t);
	const char *names[] = { "get_weather", "get", "get_time" };
	int last;
	/* one call to any of the names; the reply ends with it */
	mh_constraint *c = tools_c(v, names, NULL, 3, 0);
	ck_assert_int_lt(feed(t, c, CALL("get_weather", "{\"city\": \"Zürich\", \"days\": 2}"), &last), 0);
	ck_assert_int_eq(last, 1);
	cfree(c);
	c = tools_c(v, names, NULL, 3, 0);
	ck_assert_int_lt(feed(t, c, CALL("get", "{}"), &last), 0);
	ck_assert_int_eq(last, 1);
	cfree(c);
	const char *refused[] = {
		CALL("get_wind", "{}"),        /* not a name */
		CALL("ge", "{}"),              /* a name's prefix only */
		CALL("get_time", "[]"),        /* arguments must be an object */
		"Sure! " CALL("get", "{}"),     /* text before the call */
		"<tool_call>\n{\"arguments\": {}, \"name\": \"get\"}\n</tool_call>",
	};
	for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
		c = tools_c(v, names, NULL, 3, 0);
		ck_assert_msg(feed(t, c, refused[i], &last) >= 0, "taken: %s", refused[i]);
		cfree(c);
	}
	/* with many: after a call the reply may end (the end tokens are let
	 * through) or another call follows */
	c = tools_c(v, names, NULL, 3, 1);
	ck_assert_int_lt(feed(t, c, CALL("get_time", "{}"), &last), 0);
	ck_assert_int_eq(last, 0);
	ck_assert(constraint_may_end(c));
	ck_assert_int_lt(feed(t, c, "\n" CALL("get", "{\"x\": [1, 2]}"), &last), 0);
	ck_assert(constraint_may_end(c));
	ck_assert_int_ge(feed(t, c, "\nSure", &last), 0);
	cfree(c);
	/* a single name */
	c = tools_c(v, names + 2, NULL, 1, 0);
	ck_assert_int_ge(feed(t, c, CALL("get", "{}"), &last), 0);
	cfree(c);
	/* names that are not function names */
	const char *bad[] = { "has space", "", "quote\"d" };
	char err[256];
	for (int i = 0; i < 3; i++) {
		ck_assert_ptr_null(cn_grammar_tools(bad + i, NULL, 1, 0, err, sizeof err));
		ck_assert_ptr_nonnull(strstr(err, "name must be 1 to 64"));
	}
	cn_vocab_free(v);
	tokenizer_free(t);
}
END_TEST

/* ---- JSON Schema ------------------------------------------------------------------- */

#define WEATHER                                                                              \
	"{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", "             \
	"\"maxLength\": 8}, \"days\": {\"type\": \"integer\"}, \"unit\": {\"enum\": [\"c\", "     \
	"\"f\"]}, \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, "            \
	"\"maxItems\": 2}, \"opt\": {\"type\": [\"number\", \"null\"]}}, \"required\": "            \
	"[\"city\", \"days\"], \"additionalProperties\": false}"
#define TREE                                                                                 \
	"{\"$defs\": {\"node\": {\"type\": \"object\", \"properties\": {\"v\": {\"type\": "       \
	"\"integer\"}, \"kids\": {\"type\": \"array\", \"items\": {\"$ref\": "                    \
	"\"#/$defs/node\"}}}, \"required\": [\"v\"]}}, \"$ref\": \"#/$defs/node\"}"
#define ENUMS "{\"properties\": {\"x\": {\"enum\": [1, 12, \"a\", true, null]}}}"

static const struct {
	const char *schema, *text;
	int ok;
} schema_cases[] = {
	{ WEATHER, "{\"city\": \"Zürich\", \"days\": 2}", 1 },
	{ WEATHER, "{\"city\": \"Bern\", \"days\": 10, \"unit\": \"c\", \"tags\": [\"a\", \"b\"], "
		   "\"opt\": null}", 1 },
	{ WEATHER, "{\"city\": \"\", \"days\": -3, \"opt\": 1.5e3}", 1 },
	{ WEATHER, "{\n  \"city\": \"Bern\",\n  \"days\": 0\n}", 1 },
	{ WEATHER, "{\"days\": 2, \"city\": \"Bern\"}", 0 },              /* the schema's order */
	{ WEATHER, "{\"city\": \"Bern\"}", 0 },                           /* days is required */
	{ WEATHER, "{\"city\": \"Bern\", \"days\": 2.5}", 0 },             /* an integer */
	{ WEATHER, "{\"city\": \"Bern\", \"days\": 2, \"unit\": \"k\"}", 0 }, /* not in the enum */
	{ WEATHER, "{\"city\": \"Bern\", \"days\": 2, \"tags\": [\"a\", \"b\", \"c\"]}", 0 },
	{ WEATHER, "{\"city\": \"Zürich-Nord\", \"days\": 2}", 0 },       /* maxLength 8 */
	{ WEATHER, "{\"city\": \"Bern\", \"days\": 2, \"wind\": 1}", 0 }, /* not a property */
	{ WEATHER, "{\"city\": 5, \"days\": 1}", 0 },                     /* a string */
	{ WEATHER, "{\"city\": \"Bern\", \"days\": 2, \"opt\": \"x\"}", 0 }, /* number or null */
	{ TREE, "{\"v\": 1, \"kids\": [{\"v\": 2}, {\"v\": 3, \"kids\": []}]}", 1 },
	{ TREE, "{\"v\": 1, \"kids\": [{\"w\": 2}]}", 0 },
	{ TREE, "{\"kids\": []}", 0 },
	{ ENUMS, "{\"x\": 12}", 1 },
	{ ENUMS, "{\"x\": 1}", 1 },
	{ ENUMS, "{\"x\": \"a\"}", 1 },
	{ ENUMS, "{\"x\": true}", 1 },
	{ ENUMS, "{\"x\": null}", 1 },
	{ ENUMS, "{}", 1 },
	{ ENUMS, "{\"x\": 2}", 0 },
	{ ENUMS, "{\"x\": 123}", 0 },
	{ ENUMS, "{\"x\": \"b\"}", 0 },
	{ ENUMS, "{\"x\": false}", 0 },
	{ "{\"properties\": {\"a\": {\"const\": \"k\"}, \"b\": {\"anyOf\": [{\"type\": "
	  "\"string\"}, {\"type\": \"object\"}]}}, \"required\": [\"a\", \"b\"]}",
	  "{\"a\": \"k\", \"b\": {\"free\": [1, {}]}}", 1 },
	{ "{\"properties\": {\"n\": {\"type\": [\"integer\", \"number\"]}}}", "{\"n\": 1.5}", 1 },
	{ "{\"properties\": {\"n\": {\"anyOf\": [{\"type\": \"integer\"}, {\"type\": \"string\"}]}}}",
	  "{\"n\": 1.5}", 0 },
	{ "{\"type\": \"object\", \"properties\": {}}", "{}", 1 },
	{ "{\"type\": \"object\", \"properties\": {}}", "{\"a\": 1}", 0 },
	{ "{\"type\": \"object\", \"additionalProperties\": {\"type\": \"integer\"}}",
	  "{\"a\": 1, \"b\": 2}", 1 },
	{ "{\"type\": \"object\", \"additionalProperties\": {\"type\": \"integer\"}}",
	  "{\"a\": \"x\"}", 0 },
	{ "{\"properties\": {\"l\": {\"items\": {\"type\": \"boolean\"}, \"minItems\": 1}}}",
	  "{\"l\": []}", 0 },
	{ "{\"properties\": {\"l\": {\"items\": {\"type\": \"boolean\"}, \"minItems\": 1}}}",
	  "{\"l\": [false, true]}", 1 },
	{ "{\"properties\": {\"s\": {\"type\": \"string\", \"minLength\": 2}}}",
	  "{\"s\": \"ü\"}", 0 },
	{ "{\"properties\": {\"s\": {\"type\": \"string\", \"minLength\": 2}}}",
	  "{\"s\": \"\\uD83D\\uDE00ü\"}", 1 },
};

START_TEST(schema_shape)
{
	mh_tokenizer *t = tok("gpt2");
	cn_vocab *v = cn_vocab_new(t);
	int last;
	for (size_t i = 0; i < sizeof schema_cases / sizeof *schema_cases; i++) {
		mh_constraint *c = json_c(v, schema_cases[i].schema);
		int at = feed(t, c, schema_cases[i].text, &last);
		ck_assert_msg((at < 0 && last == 1) == schema_cases[i].ok, "%s %s: %s",
			      schema_cases[i].ok ? "refused" : "taken", schema_cases[i].text,
			      schema_cases[i].schema);
		cfree(c);
	}
	/* a function's parameters hold its arguments; no parameters, any object */
	const char *names[] = { "get_weather", "get_time" }, *params[] = { WEATHER, NULL };
	mh_constraint *c = tools_c(v, names, params, 2, 0);
	ck_assert_int_lt(feed(t, c, CALL("get_weather", "{\"city\": \"Bern\", \"days\": 1}"), &last), 0);
	ck_assert_int_eq(last, 1);
	cfree(c);
	c = tools_c(v, names, params, 2, 0);
	ck_assert_int_ge(feed(t, c, CALL("get_weather", "{\"tz\": \"UTC\"}"), &last), 0);
	cfree(c);
	c = tools_c(v, names, params, 2, 0);
	ck_assert_int_lt(feed(t, c, CALL("get_time", "{\"tz\": \"UTC\"}"), &last), 0);
	cfree(c);
	cn_vocab_free(v);
	tokenizer_free(t);
}
END_TEST

/* What cannot be held is an error naming it, not a form held loosely. */
START_TEST(schema_refused)
{
	static const struct {
		const char *schema, *says;
	} cases[] = {
		{ "{\"allOf\": [{\"type\": \"object\"}]}", "'allOf' cannot be held" },
		{ "{\"properties\": {\"a\": {\"not\": {}}}}", "'not' cannot be held" },
		{ "{\"properties\": {\"a\": {\"anyOf\": [{\"type\": \"object\"}, {\"properties\": "
		  "{\"b\": true}}]}}}", "two branches for objects" },
		{ "{\"type\": \"string\"}", "must be one for an object" },
		{ "{\"enum\": [{\"a\": 1}]}", "cannot be the whole reply" },
		{ "{\"$ref\": \"#\"}", "nests too deeply" },
		{ "{\"type\": [\"object\", \"null\"]}", NULL }, /* takes objects (and null) */
		{ "{\"$ref\": \"#/$defs/missing\"}", "is not \"#\" or one of its $defs" },
		{ "{\"properties\": {\"a\": true}, \"required\": [\"b\"]}", "names 'b'" },
		{ "{\"properties\": {\"a\": {\"type\": \"string\", \"minLength\": 3, "
		  "\"maxLength\": 2}}}", "a minimum above its maximum" },
		{ "{\"properties\": {\"a\": {\"type\": \"date\"}}}", "'date' is not a JSON Schema type" },
		{ "{\"properties\": {\"a\": {\"items\": [{}, {}]}}}", "(a tuple)" },
		{ "{\"properties\": {\"a\": {\"enum\": []}}}", "non-empty list" },
		{ "{\"properties\": {\"a\": 5}}", "must be an object" },
		{ "{\"properties\": {\"a\": {\"pattern\": \"^x$\", \"format\": \"date\"}}}", NULL },
	};
	char err[256];
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		cJSON *j = cJSON_Parse(cases[i].schema);
		ck_assert_ptr_nonnull(j);
		cn_grammar *g = cn_grammar_json(j, err, sizeof err);
		cJSON_Delete(j);
		if (!cases[i].says) {
			ck_assert_msg(g != NULL, "%s: %s", cases[i].schema, err);
		} else {
			ck_assert_msg(g == NULL, "taken: %s", cases[i].schema);
			ck_assert_msg(strstr(err, cases[i].says) != NULL, "%s: '%s'", cases[i].schema, err);
		}
		cn_grammar_free(g);
	}
}
END_TEST

/* ---- the mask ------------------------------------------------------------------- */

/* At each state a prefix leads to, the mask keeps exactly the tokens
 * constraint_allows takes, plus the end tokens where the shape may end. */
static void mask_is_allows(const char *name, int tools, const char *schema,
			   const char *const *prefixes, int n)
{
	mh_tokenizer *t = tok(name);
	cn_vocab *v = cn_vocab_new(t);
	int32_t nv = tokenizer_vocab_size(t) + 7; /* a model's vocabulary may be padded */
	float *l = malloc((size_t)nv * sizeof *l);
	const char *fns[] = { "get_weather", "get_time" };
	int32_t end[] = { tokenizer_token_id(t, "</s>") };
	if (end[0] < 0)
		end[0] = tokenizer_token_id(t, "<|endoftext|>");
	if (end[0] < 0)
		end[0] = tokenizer_token_id(t, "<|im_end|>");
	int last;
	for (int i = 0; i < n; i++) {
		mh_constraint *c = tools ? tools_c(v, fns, NULL, 2, 1) : json_c(v, schema);
		ck_assert_int_lt(feed(t, c, prefixes[i], &last), 0);
		for (int32_t id = 0; id < nv; id++)
			l[id] = 1.0f;
		int left = constraint_mask(c, l, nv, end, 1), count = 0;
		for (int32_t id = 0; id < nv; id++) {
			int want = constraint_allows(c, id) || (id == end[0] && constraint_may_end(c));
			if ((l[id] == 1.0f) != want) /* (not ck_assert: it logs every pass) */
				ck_abort_msg("%s after '%s': id %d", name, prefixes[i], id);
			count += want;
		}
		ck_assert_int_eq(left, count);
		ck_assert_int_gt(left, 0);
		cfree(c);
	}
	free(l);
	cn_vocab_free(v);
	tokenizer_free(t);
}

START_TEST(mask_matches_token_check)
{
	const char *json[] = { "", "{", "{\"k", "{\"k\": ", "{\"k\": -1", "{\"k\": [tr",
			       "{\"k\": \"\\u00", "{\"k\": \"Zü" };
	const char *tools[] = { "", "<tool_call>\n{\"name\": \"get_", "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"a\": 1",
				CALL("get_time", "{}"), CALL("get_time", "{}") "\n<tool" };
	mask_is_allows("gpt2", 0, NULL, json, 8);
	mask_is_allows("mistral", 0, NULL, json, 8);
	mask_is_allows("qwen3", 1, NULL, tools, 5);
	const char *schema[] = { "", "{", "{\"city\": \"Be", "{\"city\": \"Bern\", \"days\": 1",
				 "{\"city\": \"Bern\", \"days\": 1, \"unit\": \"",
				 "{\"city\": \"Bern\", \"days\": 1, \"tags\": [\"a\", \"b\"" };
	mask_is_allows("gpt2", 0, WEATHER, schema, 6);
}
END_TEST

/* A random walk through the shapes, a token drawn among those the mask
 * leaves at each step (escapes, characters split over byte tokens, nesting,
 * calls after calls): the mask stays the token-by-token check, and what was
 * fed never stops being followed. */
START_TEST(random_walks)
{
	mh_tokenizer *t = tok("mistral");
	cn_vocab *v = cn_vocab_new(t);
	int32_t nv = tokenizer_vocab_size(t), end = tokenizer_token_id(t, "</s>");
	float *l = malloc((size_t)nv * sizeof *l);
	int32_t *left = malloc((size_t)nv * sizeof *left);
	const char *fns[] = { "get_weather", "get_time", "f" };
	uint64_t rng = 42;
	for (int walk = 0; walk < 15; walk++) {
		const char *params[] = { WEATHER, NULL, TREE };
		mh_constraint *c = walk % 3 == 0   ? json_c(v, NULL)
				   : walk % 3 == 1 ? tools_c(v, fns, params, 3, 1)
						   : json_c(v, TREE);
		for (int step = 0; step < 30; step++) {
			for (int32_t id = 0; id < nv; id++)
				l[id] = 0.0f;
			int n = constraint_mask(c, l, nv, &end, 1), k = 0;
			for (int32_t id = 0; id < nv; id++) {
				int ends = id == end && constraint_may_end(c);
				if ((l[id] == 0.0f) != (constraint_allows(c, id) || ends))
					ck_abort_msg("walk %d, step %d: id %d", walk, step, id);
				if (l[id] == 0.0f && !ends)
					left[k++] = id;
			}
			ck_assert_int_eq(n, k + constraint_may_end(c));
			if (k == 0)
				break;
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			int r = constraint_feed(c, left[(rng >> 33) % (uint64_t)k]);
			ck_assert_int_ge(r, 0);
			if (r == 1)
				break;
		}
		cfree(c);
	}
	free(left);
	free(l);
	cn_vocab_free(v);
	tokenizer_free(t);
}
END_TEST

/* Greedy decoding under the mask takes the best token the shape allows:
 * here a model that would rather end, or say " no", than close a brace. */
START_TEST(greedy_under_the_mask)
{
	mh_tokenizer *t = tok("gpt2");
	cn_vocab *v = cn_vocab_new(t);
	int32_t nv = tokenizer_vocab_size(t), end = tokenizer_token_id(t, "<|endoftext|>");
	int32_t no = tokenizer_token_id(t, "Ġno"), close = tokenizer_token_id(t, "}");
	mh_sampler_params p;
	sampler_params_default(&p);
	p.temperature = 0;
	mh_sampler *s = sampler_new(&p, nv);
	float *l = malloc((size_t)nv * sizeof *l);
	mh_constraint *c = json_c(v, NULL);
	char out[64] = "";
	int r = 0, steps = 0;
	for (; r == 0 && steps < 8; steps++) {
		for (int32_t id = 0; id < nv; id++)
			l[id] = 0.0f;
		l[end] = 5.0f;
		l[no] = 4.0f;
		l[close] = 3.0f;
		ck_assert_int_gt(constraint_mask(c, l, nv, &end, 1), 0);
		int32_t id = sampler_sample(s, l, NULL, 0);
		char *piece = tokenizer_decode(t, &id, 1, 0, NULL);
		strncat(out, piece, sizeof out - strlen(out) - 1);
		free(piece);
		r = constraint_feed(c, id);
		ck_assert_int_ge(r, 0);
	}
	/* first '{' (the lowest id of the tied tokens that can start), then '}' */
	ck_assert_str_eq(out, "{}");
	ck_assert_int_eq(r, 1);
	cfree(c);
	free(l);
	sampler_free(s);
	cn_vocab_free(v);
	tokenizer_free(t);
}
END_TEST

static Suite *constrain_suite(void)
{
	Suite *s = suite_create("constrain");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, pieces_as_added_mid_text);
	tcase_add_test(t, json_shape);
	tcase_add_test(t, json_limits);
	tcase_add_test(t, tool_shape);
	tcase_add_test(t, schema_shape);
	tcase_add_test(t, schema_refused);
	tcase_add_test(t, mask_matches_token_check);
	tcase_add_test(t, random_walks);
	tcase_add_test(t, greedy_under_the_mask);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return tu_run(constrain_suite());
}
