/* SPDX-License-Identifier: MIT */
/* normalizers.c - the normalizer tree (tokenizers' normalizers), and
 * loading it. */
#include "text/tokenizer/internal.h"

#include <stddef.h>

enum {
	N_SEQ, N_PREPEND, N_APPEND, N_REPLACE, N_NFC, N_NFD, N_NFKC, N_NFKD,
	N_LOWER, N_STRIP, N_STRIP_ACCENTS, N_BERT, N_BYTELEVEL
};

typedef struct normalizer {
	int type;
	struct normalizer **kids;
	size_t nkids;
	char *s; /* Prepend/Append/Replace content */
	size_t slen;
	pattern pat;
	bool left, right;                      /* Strip */
	bool clean, chinese, accents, lower;   /* BertNormalizer */
} normalizer;

static void norm_fields_free(void *node)
{
	normalizer *n = node;
	free(n->s);
	pat_free(&n->pat);
}

static int norm_unicode(const char *s, size_t n, sbuf *out, int options)
{
	if (!n)
		return 0;
	utf8proc_uint8_t *dst = NULL;
	utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
					  &dst, (utf8proc_option_t)(options | UTF8PROC_STABLE));
	if (r < 0)
		return -1;
	sb_put(out, dst, (size_t)r);
	free(dst);
	return 0;
}

static void norm_lower(const char *s, size_t n, sbuf *out)
{
	size_t i = 0, l;
	while (i < n) {
		uint32_t cp = u8cp(s + i, n - i, &l);
		if (cp < 0x80) {
			sb_putc(out, (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
		} else if (cp == 0x130) { /* Rust: 'İ' -> "i\u0307" */
			sb_put(out, "i\xCC\x87", 3);
		} else {
			sb_putcp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
		}
		i += l;
	}
}

static void norm_strip(const char *s, size_t n, bool left, bool right, sbuf *out)
{
	size_t a = 0, b = n, l;
	while (left && a < b) {
		uint32_t cp = u8cp(s + a, b - a, &l);
		if (!is_ws(cp))
			break;
		a += l;
	}
	while (right && b > a) {
		size_t st = b - 1;
		while (st > a && ((unsigned char)s[st] & 0xC0) == 0x80)
			st--;
		uint32_t cp = u8cp(s + st, b - st, &l);
		if (!is_ws(cp))
			break;
		b = st;
	}
	sb_put(out, s + a, b - a);
}

static int norm_strip_accents(const char *s, size_t n, sbuf *out)
{
	size_t i = 0, l;
	while (i < n) {
		uint32_t cp = u8cp(s + i, n - i, &l);
		if (utf8proc_category((utf8proc_int32_t)cp) != UTF8PROC_CATEGORY_MN)
			sb_put(out, s + i, l);
		i += l;
	}
	return 0;
}

static bool is_chinese_char(uint32_t c)
{
	return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
	       (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
	       (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
	       (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int norm_bert(const normalizer *nz, const char *s, size_t n, sbuf *out)
{
	sbuf a = { .max = out->max };
	size_t i = 0, l;
	while (i < n) {
		uint32_t cp = u8cp(s + i, n - i, &l);
		i += l;
		if (nz->clean) {
			if (cp == 0 || cp == 0xFFFD)
				continue;
			if (cp != '\t' && cp != '\n' && cp != '\r') {
				utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
				if (k >= UTF8PROC_CATEGORY_CC && k <= UTF8PROC_CATEGORY_CO)
					continue;
				if (k == UTF8PROC_CATEGORY_CN)
					continue;
			}
			if (cp == '\t' || cp == '\n' || cp == '\r' || is_ws(cp))
				cp = ' ';
		}
		if (nz->chinese && is_chinese_char(cp)) {
			sb_putc(&a, ' ');
			sb_putcp(&a, cp);
			sb_putc(&a, ' ');
		} else {
			sb_putcp(&a, cp);
		}
	}
	int rc = 0;
	if (nz->accents) {
		sbuf d = { .max = out->max };
		rc = norm_unicode(a.p, a.n, &d, UTF8PROC_DECOMPOSE);
		out->over |= d.over;
		out->oom |= d.oom;
		sb_clear(&a);
		norm_strip_accents(d.p, d.n, &a);
		sb_free(&d);
	}
	if (nz->lower)
		norm_lower(a.p, a.n, out);
	else
		sb_put(out, a.p, a.n);
	if (a.oom)
		out->oom = true;
	if (a.over)
		out->over = true;
	sb_free(&a);
	return rc;
}

static int norm_replace(const normalizer *nz, const char *s, size_t n, sbuf *out, mctx *c)
{
	rangevec m = { 0 };
	int rc = pat_replace(&nz->pat, s, n, nz->s, nz->slen, out, c, &m);
	free(m.v);
	return rc;
}

static int norm_step(const normalizer *nz, const char *s, size_t n, sbuf *out, mctx *c)
{
	sb_clear(out);
	switch (nz->type) {
	case N_SEQ: {
		sbuf a = { .max = out->max }, b = { .max = out->max };
		sb_put(&a, s, n);
		int rc = 0;
		for (size_t i = 0; i < nz->nkids && rc == 0; i++) {
			rc = norm_run(nz->kids[i], a.p ? a.p : "", a.n, &b, c);
			sbuf t = a;
			a = b;
			b = t;
			if (a.oom)
				rc = -1;
		}
		if (rc == 0)
			sb_put(out, a.p ? a.p : "", a.n);
		sb_free(&a);
		sb_free(&b);
		return rc;
	}
	case N_PREPEND:
		if (n)
			sb_put(out, nz->s, nz->slen);
		sb_put(out, s, n);
		break;
	case N_APPEND:
		sb_put(out, s, n);
		if (n)
			sb_put(out, nz->s, nz->slen);
		break;
	case N_REPLACE:
		return norm_replace(nz, s, n, out, c);
	case N_NFC:
		return norm_unicode(s, n, out, UTF8PROC_COMPOSE);
	case N_NFD:
		return norm_unicode(s, n, out, UTF8PROC_DECOMPOSE);
	case N_NFKC:
		return norm_unicode(s, n, out, UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
	case N_NFKD:
		return norm_unicode(s, n, out, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
	case N_LOWER:
		norm_lower(s, n, out);
		break;
	case N_STRIP:
		norm_strip(s, n, nz->left, nz->right, out);
		break;
	case N_STRIP_ACCENTS:
		return norm_strip_accents(s, n, out);
	case N_BERT:
		return norm_bert(nz, s, n, out);
	case N_BYTELEVEL:
		bytelevel_map(out, s, n);
		break;
	}
	return out->oom ? -1 : 0;
}

/* Normalize s[0..n) into out (cleared first). */
int norm_run(const normalizer *nz, const char *s, size_t n, sbuf *out, mctx *c)
{
	int rc = norm_step(nz, s, n, out, c);
	if (out->over && !c->err)
		c->err = TOKENIZER_EGROWTH;
	return rc < 0 || out->oom ? -1 : rc;
}

/* The normalizers without settings; -1 if type is not one. */
static int plain_type(const char *type)
{
	static const struct {
		const char *name;
		int type;
	} plain[] = {
		{ "NFC", N_NFC }, { "NFD", N_NFD }, { "NFKC", N_NFKC }, { "NFKD", N_NFKD },
		{ "Lowercase", N_LOWER }, { "StripAccents", N_STRIP_ACCENTS },
		{ "ByteLevel", N_BYTELEVEL },
	};
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
		if (!strcmp(type, plain[i].name))
			return plain[i].type;
	return -1;
}

static bool setup_normalizer(loadctx *L, const cJSON *j, const char *type, void *node)
{
	normalizer *n = node;
	if (!strcmp(type, "Sequence")) {
		n->type = N_SEQ;
	} else if (!strcmp(type, "Prepend") || !strcmp(type, "Append")) {
		bool pre = type[0] == 'P';
		n->type = pre ? N_PREPEND : N_APPEND;
		const char *s = jstr(j, pre ? "prepend" : "append");
		if (!s)
			return fail(L, "normalizer %s without a string", type);
		if (!(n->s = xstrdup(s, &n->slen)))
			return fail(L, "out of memory");
	} else if (!strcmp(type, "Replace")) {
		n->type = N_REPLACE;
		if (!load_replace(L, j, &n->s, &n->slen, &n->pat, "normalizer Replace"))
			return false;
	} else if ((n->type = plain_type(type)) >= 0) {
		/* nothing to set */
	} else if (!strcmp(type, "Strip")) {
		n->type = N_STRIP;
		n->left = jbool(j, "strip_left", true);
		n->right = jbool(j, "strip_right", true);
	} else if (!strcmp(type, "BertNormalizer")) {
		n->type = N_BERT;
		n->clean = jbool(j, "clean_text", true);
		n->chinese = jbool(j, "handle_chinese_chars", true);
		n->lower = jbool(j, "lowercase", true);
		n->accents = jbool(j, "strip_accents", n->lower);
	} else {
		return false; /* not a type of this stage */
	}
	return true;
}

const stage normalizer_stage =
	STAGE(normalizer, "normalizer", "normalizers", setup_normalizer, norm_fields_free);
