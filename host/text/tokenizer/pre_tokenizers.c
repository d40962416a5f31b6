/* SPDX-License-Identifier: MIT */
/* pre_tokenizers.c - pre-tokenizers over a list of pieces (tokenizers'
 * pre_tokenizers), the byte-level byte <-> character map, and loading them. */
#include "text/tokenizer/internal.h"

#include <stddef.h>

#include <pthread.h>

static const char GPT2_REGEX[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char WHITESPACE_REGEX[] = "\\w+|[^\\w\\s]+";

/* ========================================================================
 * Byte-level (GPT-2) byte <-> character mapping
 * ====================================================================== */

static char bl_enc[256][3];      /* UTF-8 of the char for each byte */
static uint8_t bl_enc_len[256];
int16_t bl_dec[324];      /* code point -> byte, -1 if none */

static void bytelevel_build(void)
{
	int n = 0;
	for (int i = 0; i < 324; i++)
		bl_dec[i] = -1;
	for (int b = 0; b < 256; b++) {
		uint32_t cp;
		if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
			cp = (uint32_t)b;
		else
			cp = 256 + (uint32_t)n++;
		bl_dec[cp] = (int16_t)b;
		if (cp < 0x80) {
			bl_enc[b][0] = (char)cp;
			bl_enc_len[b] = 1;
		} else {
			bl_enc[b][0] = (char)(0xC0 | (cp >> 6));
			bl_enc[b][1] = (char)(0x80 | (cp & 0x3F));
			bl_enc_len[b] = 2;
		}
	}
}

void bytelevel_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, bytelevel_build);
}

void bytelevel_map(sbuf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		sb_put(out, bl_enc[c], bl_enc_len[c]);
	}
}

/* ========================================================================
 * Pre-tokenizers
 * ====================================================================== */

enum { P_SEQ, P_SPLIT, P_BYTELEVEL, P_METASPACE };

struct pretok {
	int type;
	struct pretok **kids;
	size_t nkids;
	pattern pat;           /* Split; ByteLevel's regex */
	int behavior;
	bool invert;
	bool add_prefix_space; /* ByteLevel */
	bool use_regex;
	char rep[5];           /* Metaspace replacement (UTF-8) */
	size_t rep_len;
	int prepend_scheme;
	bool split;
};

static void pretok_fields_free(void *node)
{
	pretok *p = node;
	pat_free(&p->pat);
}

void pl_add(tlist *p, const char *s, size_t n, bool first)
{
	size_t at = p->n;
	if (n)
		tl_add(p, s, n);
	if (p->n > at)
		p->v[at].flag = first;
}

static int pretok_split_piece(const pretok *p, const char *s, size_t n, bool first,
			      tlist *out, ectx *c, bool bytelevel)
{
	if (pat_find(&p->pat, s, n, &c->m, &c->matches) < 0)
		return -1;
	if (split_by_behavior(&c->matches, n, p->behavior, p->invert, &c->spans, &c->keep) < 0)
		return -1;
	for (size_t i = 0; i < c->keep.n; i++) {
		const char *ps = s + c->keep.v[i].a;
		size_t pn = c->keep.v[i].b - c->keep.v[i].a;
		bool f = first && c->keep.v[i].a == 0;
		if (bytelevel) {
			sb_clear(&c->tmp2);
			bytelevel_map(&c->tmp2, ps, pn);
			pl_add(out, c->tmp2.p, c->tmp2.n, f);
		} else {
			pl_add(out, ps, pn, f);
		}
	}
	return 0;
}

static int pretok_bytelevel(const pretok *p, const char *s, size_t n, bool first,
			    tlist *out, ectx *c)
{
	sbuf *t = &c->tmp;
	sb_clear(t);
	if (p->add_prefix_space && s[0] != ' ')
		sb_putc(t, ' ');
	sb_put(t, s, n);
	if (t->oom)
		return -1;
	if (p->use_regex)
		return pretok_split_piece(p, t->p, t->n, first, out, c, true);
	sb_clear(&c->tmp2);
	bytelevel_map(&c->tmp2, t->p, t->n);
	pl_add(out, c->tmp2.p, c->tmp2.n, first);
	return 0;
}

static int pretok_metaspace(const pretok *p, const char *s, size_t n, bool first,
			    tlist *out, ectx *c)
{
	sbuf *t = &c->tmp;
	sb_clear(t);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ')
			sb_put(t, p->rep, p->rep_len);
		else
			sb_putc(t, s[i]);
	}
	bool starts = t->n >= p->rep_len && !memcmp(t->p, p->rep, p->rep_len);
	bool prepend = !starts && (p->prepend_scheme == PREPEND_ALWAYS ||
				   (p->prepend_scheme == PREPEND_FIRST && first));
	if (prepend) {
		sbuf *u = &c->tmp2;
		sb_clear(u);
		sb_put(u, p->rep, p->rep_len);
		sb_put(u, t->p, t->n);
		sbuf x = *t;
		*t = *u;
		*u = x;
	}
	if (t->oom)
		return -1;
	if (!p->split) {
		pl_add(out, t->p, t->n, first);
		return 0;
	}
	return pretok_split_piece(p, t->p, t->n, first, out, c, false);
}

/* Whether a step ran out of memory or past the growth cap (then says so). */
static bool pretok_failed(ectx *c, const tlist *out)
{
	if (out->b.over || c->tmp.over || c->tmp2.over)
		c->m.err = TOKENIZER_EGROWTH;
	return out->oom || out->b.oom || c->tmp.oom || c->tmp2.oom;
}

/* steps[0..ns) one after another over in, the last one's pieces in out. */
static int run_steps(pretok *const *steps, size_t ns, const tlist *in, tlist *out, ectx *c)
{
	tl_clear(out);
	/* each step reads the list the one before made; out ends up
	 * with the last (no copies in or out: the lists are large) */
	tlist a = { .b.max = c->max_text }, b = { .b.max = c->max_text };
	const tlist *from = in;
	int rc = 0;
	for (size_t k = 0; k < ns && rc == 0; k++) {
		tlist *to = from == &a ? &b : &a;
		rc = pretok_run(steps[k], from, to, c);
		from = to;
	}
	if (from == in) {
		for (size_t i = 0; i < in->n; i++)
			pl_add(out, TOK(in, i), TOKLEN(in, i), in->v[i].flag);
	} else {
		tlist t = *out; /* out takes the last list, keeping its cap */
		*out = *(tlist *)from;
		*(tlist *)from = t;
	}
	if (a.b.over || b.b.over)
		out->b.over = true;
	tl_free(&a);
	tl_free(&b);
	return pretok_failed(c, out) || rc < 0 ? -1 : 0;
}

int pretok_run(const pretok *p, const tlist *in, tlist *out, ectx *c)
{
	tl_clear(out);
	if (p->type == P_SEQ)
		return run_steps(p->kids, p->nkids, in, out, c);
	for (size_t i = 0; i < in->n; i++) {
		const char *s = TOK(in, i);
		size_t n = TOKLEN(in, i);
		bool first = in->v[i].flag;
		int rc = 0;
		switch (p->type) {
		case P_SPLIT:
			rc = pretok_split_piece(p, s, n, first, out, c, false);
			break;
		case P_BYTELEVEL:
			rc = pretok_bytelevel(p, s, n, first, out, c);
			break;
		case P_METASPACE:
			rc = pretok_metaspace(p, s, n, first, out, c);
			break;
		}
		if (rc < 0) {
			pretok_failed(c, out);
			return -1;
		}
	}
	return pretok_failed(c, out) ? -1 : 0;
}

static bool setup_pretok(loadctx *L, const cJSON *j, const char *type, void *node)
{
	char b[48];
	pretok *p = node;
	if (!strcmp(type, "Sequence")) {
		p->type = P_SEQ;
	} else if (!strcmp(type, "Split")) {
		p->type = P_SPLIT;
		p->behavior = load_behavior(jstr(j, "behavior"));
		if (p->behavior < 0)
			return fail(L, "pre_tokenizer Split: unknown behavior '%s'",
				    shown(jstr(j, "behavior"), b));
		p->invert = jbool(j, "invert", false);
		return load_pattern(L, jget(j, "pattern"), &p->pat, "pre_tokenizer Split");
	} else if (!strcmp(type, "ByteLevel")) {
		p->type = P_BYTELEVEL;
		p->add_prefix_space = jbool(j, "add_prefix_space", true);
		p->use_regex = jbool(j, "use_regex", true);
		p->behavior = SPLIT_ISOLATED;
		if (p->use_regex)
			return compile_regex(L, &p->pat, GPT2_REGEX);
	} else if (!strcmp(type, "Metaspace")) {
		p->type = P_METASPACE;
		const char *r = jstr(j, "replacement");
		uint32_t cp;
		if (!load_char(L, r ? r : "\xE2\x96\x81", &cp, "Metaspace replacement"))
			return false;
		p->rep_len = strlen(r ? r : "\xE2\x96\x81");
		memcpy(p->rep, r ? r : "\xE2\x96\x81", p->rep_len);
		p->prepend_scheme = load_prepend_scheme(j);
		if (p->prepend_scheme < 0)
			return fail(L, "Metaspace: unknown prepend_scheme");
		p->split = jbool(j, "split", true);
		p->behavior = SPLIT_MERGED_NEXT;
		p->pat.kind = PAT_LITERAL;
		p->pat.lit = xstrdup(p->rep, &p->pat.lit_len);
		if (!p->pat.lit)
			return fail(L, "out of memory");
	} else if (!strcmp(type, "Whitespace")) {
		p->type = P_SPLIT;
		p->behavior = SPLIT_REMOVED;
		p->invert = true;
		return compile_regex(L, &p->pat, WHITESPACE_REGEX);
	} else if (!strcmp(type, "WhitespaceSplit")) {
		p->type = P_SPLIT;
		p->behavior = SPLIT_REMOVED;
		p->pat.kind = PAT_CHAR;
		p->pat.pred = is_ws;
	} else if (!strcmp(type, "Digits")) {
		p->type = P_SPLIT;
		p->behavior = jbool(j, "individual_digits", false) ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
		p->pat.kind = PAT_CHAR;
		p->pat.pred = is_numeric;
	} else if (!strcmp(type, "Punctuation")) {
		p->type = P_SPLIT;
		p->behavior = load_behavior(jstr(j, "behavior"));
		if (p->behavior < 0)
			return fail(L, "pre_tokenizer Punctuation: unknown behavior");
		p->pat.kind = PAT_CHAR;
		p->pat.pred = is_punct;
	} else if (!strcmp(type, "BertPreTokenizer")) {
		p->type = P_SEQ;
		p->kids = calloc(2, sizeof *p->kids);
		if (!p->kids)
			return fail(L, "out of memory");
		for (int i = 0; i < 2; i++) {
			pretok *k = calloc(1, sizeof *k);
			if (!k)
				return fail(L, "out of memory");
			p->kids[p->nkids++] = k;
			k->type = P_SPLIT;
			k->behavior = i ? SPLIT_ISOLATED : SPLIT_REMOVED;
			k->pat.kind = PAT_CHAR;
			k->pat.pred = i ? is_punct : is_ws;
		}
	} else {
		return false; /* not a type of this stage */
	}
	return true;
}

/* A long text pre-tokenized in batches: see pretok_stream in internal.h. */
#define STREAM_BATCH 1024

int pretok_stream(const pretok *p, const char *s, size_t n, bool first, ectx *c,
		  int (*fn)(void *arg, const tlist *pieces), void *arg)
{
	const pretok *q = p->type != P_SEQ ? p : p->nkids ? p->kids[0] : NULL;
	if (!q || q->pat.kind != PAT_REGEX || (q->type != P_SPLIT && q->type != P_BYTELEVEL) ||
	    (q->behavior != SPLIT_ISOLATED && q->behavior != SPLIT_REMOVED) || !n)
		return 1;
	bool bytelevel = q->type == P_BYTELEVEL; /* with use_regex: it has a pattern */
	sbuf text = { .max = c->max_text };
	if (bytelevel && q->add_prefix_space && s[0] != ' ') {
		sb_putc(&text, ' ');
		sb_put(&text, s, n);
		if (text.oom) {
			c->m.err = text.over ? TOKENIZER_EGROWTH : 0;
			sb_free(&text);
			return -1;
		}
		s = text.p;
		n = text.n;
	}
	bool gaps = q->behavior == SPLIT_ISOLATED || !q->invert;
	bool hits = q->behavior == SPLIT_ISOLATED || q->invert;
	rangevec m = { 0 }, keep = { 0 };
	tlist batch = { .b.max = c->max_text }, rest = { .b.max = c->max_text };
	size_t off = 0, spent = 0, prev = 0;
	int more = 1, rc = 0;
	while (more > 0 && rc == 0) {
		more = regex_find_some(&q->pat, s, n, &off, &spent, STREAM_BATCH, &c->m, &m);
		if (more < 0)
			break;
		keep.n = 0; /* the pieces of this batch, as split_by_behavior makes them */
		for (size_t i = 0; i < m.n; i++) {
			if (gaps && prev < m.v[i].a)
				rv_push(&keep, prev, m.v[i].a);
			if (hits && m.v[i].a < m.v[i].b)
				rv_push(&keep, m.v[i].a, m.v[i].b);
			prev = m.v[i].b;
		}
		if (!more && gaps && prev < n)
			rv_push(&keep, prev, n);
		tl_clear(&batch);
		for (size_t i = 0; i < keep.n; i++) {
			const char *ps = s + keep.v[i].a;
			size_t pn = keep.v[i].b - keep.v[i].a;
			bool f = first && keep.v[i].a == 0;
			if (bytelevel) {
				sb_clear(&c->tmp2);
				bytelevel_map(&c->tmp2, ps, pn);
				pl_add(&batch, c->tmp2.p, c->tmp2.n, f);
			} else {
				pl_add(&batch, ps, pn, f);
			}
		}
		if (keep.oom || pretok_failed(c, &batch)) {
			more = -1;
			break;
		}
		const tlist *pieces = &batch;
		if (q != p) {
			rc = run_steps(p->kids + 1, p->nkids - 1, &batch, &rest, c);
			pieces = &rest;
		}
		if (rc == 0)
			rc = fn(arg, pieces);
	}
	free(m.v);
	free(keep.v);
	tl_free(&batch);
	tl_free(&rest);
	sb_free(&text);
	return more < 0 ? -1 : rc;
}

const stage pretok_stage =
	STAGE(pretok, "pre_tokenizer", "pretokenizers", setup_pretok, pretok_fields_free);
