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
			mh_constraint *c = constraint_new(v, CN_JSON, NULL, 0, 0);
			ck_assert_ptr_nonnull(c);
			ck_assert_msg(feed(t, c, good_json[i], &last) < 0 && last == 1,
				      "%s: refused or not complete: %s", names[k], good_json[i]);
			constraint_free(c);
		}
		for (size_t i = 0; i < sizeof bad_json / sizeof *bad_json; i++) {
			mh_constraint *c = constraint_new(v, CN_JSON, NULL, 0, 0);
			ck_assert_msg(feed(t, c, bad_json[i], &last) >= 0, "%s: taken: %s", names[k],
				      bad_json[i]);
			constraint_free(c);
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
		mh_constraint *c = constraint_new(v, CN_JSON, NULL, 0, 0);
		ck_assert_int_eq(feed(t, c, cases[i].text, &last) < 0, cases[i].ok);
		constraint_free(c);
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
		mh_constraint *c = constraint_new(v, CN_JSON, NULL, 0, 0);
		ck_assert_int_lt(feed(t, c, "{\"a\": \"", &last), 0);
		int taken = 1;
		for (int k = 0; k < 3 && seqs[i][k] && taken; k++)
			taken = constraint_feed(c, tokenizer_token_id(t, seqs[i][k])) == 0;
		ck_assert_msg(taken == (seqs[i][3] != NULL), "case %zu", i);
		constraint_free(c);
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
	mh_constraint *c = constraint_new(v, CN_TOOLS, names, 3, 0);
	ck_assert_int_lt(feed(t, c, CALL("get_weather", "{\"city\": \"Zürich\", \"days\": 2}"), &last), 0);
	ck_assert_int_eq(last, 1);
	constraint_free(c);
	c = constraint_new(v, CN_TOOLS, names, 3, 0);
	ck_assert_int_lt(feed(t, c, CALL("get", "{}"), &last), 0);
	ck_assert_int_eq(last, 1);
	constraint_free(c);
	const char *refused[] = {
		CALL("get_wind", "{}"),        /* not a name */
		CALL("ge", "{}"),              /* a name's prefix only */
		CALL("get_time", "[]"),        /* arguments must be an object */
		"Sure! " CALL("get", "{}"),     /* text before the call */
		"<tool_call>\n{\"arguments\": {}, \"name\": \"get\"}\n</tool_call>",
	};
	for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
		c = constraint_new(v, CN_TOOLS, names, 3, 0);
		ck_assert_msg(feed(t, c, refused[i], &last) >= 0, "taken: %s", refused[i]);
		constraint_free(c);
	}
	/* with many: after a call the reply may end (the end tokens are let
	 * through) or another call follows */
	c = constraint_new(v, CN_TOOLS, names, 3, 1);
	ck_assert_int_lt(feed(t, c, CALL("get_time", "{}"), &last), 0);
	ck_assert_int_eq(last, 0);
	ck_assert(constraint_may_end(c));
	ck_assert_int_lt(feed(t, c, "\n" CALL("get", "{\"x\": [1, 2]}"), &last), 0);
	ck_assert(constraint_may_end(c));
	ck_assert_int_ge(feed(t, c, "\nSure", &last), 0);
	constraint_free(c);
	/* a single name */
	c = constraint_new(v, CN_TOOLS, names + 2, 1, 0);
	ck_assert_int_ge(feed(t, c, CALL("get", "{}"), &last), 0);
	constraint_free(c);
	/* names that are not function names */
	const char *bad[] = { "has space", "", "quote\"d" };
	for (int i = 0; i < 3; i++)
		ck_assert_ptr_null(constraint_new(v, CN_TOOLS, bad + i, 1, 0));
	cn_vocab_free(v);
	tokenizer_free(t);
}
END_TEST

/* ---- the mask ------------------------------------------------------------------- */

/* At each state a prefix leads to, the mask keeps exactly the tokens
 * constraint_allows takes, plus the end tokens where the shape may end. */
static void mask_is_allows(const char *name, int kind, const char *const *prefixes, int n)
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
		mh_constraint *c = constraint_new(v, kind, fns, 2, 1);
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
		constraint_free(c);
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
	mask_is_allows("gpt2", CN_JSON, json, 8);
	mask_is_allows("mistral", CN_JSON, json, 8);
	mask_is_allows("qwen3", CN_TOOLS, tools, 5);
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
	for (int walk = 0; walk < 12; walk++) {
		mh_constraint *c = constraint_new(v, walk % 2 ? CN_TOOLS : CN_JSON, fns, 3, 1);
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
		constraint_free(c);
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
	mh_constraint *c = constraint_new(v, CN_JSON, NULL, 0, 0);
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
	constraint_free(c);
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
