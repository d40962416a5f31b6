/* SPDX-License-Identifier: MIT */
/* pattern.c - patterns (literal string, PCRE2 regex, or a per-character
 * predicate), "find all matches", and the split behaviours, as in
 * tokenizers' NormalizedString. */
#define _GNU_SOURCE /* memmem */
#include "text/tokenizer/internal.h"

void rv_push(rangevec *r, size_t a, size_t b)
{
	range *e = vec_more((void **)&r->v, &r->cap, r->n, sizeof *r->v, &r->oom);
	if (e) {
		*e = (range){ a, b };
		r->n++;
	}
}

bool mctx_ready(mctx *c)
{
	if (c->md)
		return true;
	c->md = pcre2_match_data_create(32, NULL);
	c->mc = pcre2_match_context_create(NULL);
	if (!c->md || !c->mc)
		return false;
	c->js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
	if (c->js)
		pcre2_jit_stack_assign(c->mc, NULL, c->js);
	pcre2_set_match_limit(c->mc, REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(c->mc, REGEX_DEPTH_LIMIT);
	return true;
}

/* One search from off in s[0..end), JIT first; the interpreter when the
 * JIT stack runs out. */
static int regex_match(const pattern *p, const char *s, size_t end, size_t off, uint32_t opt,
		       mctx *c)
{
	int rc = pcre2_match(p->re, (PCRE2_SPTR)s, end, off, opt, c->md, c->mc);
	if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
		rc = pcre2_match(p->re, (PCRE2_SPTR)s, end, off, opt | PCRE2_NO_JIT, c->md, c->mc);
	return rc;
}

/* The first match at or after off in s[0..n): 1 with [*a, *b), 0 if
 * none, -1 on failure (c->err).  The search sees a window of the text
 * that grows while a match may run past its end (see REGEX_WINDOW). */
static int regex_next(const pattern *p, const char *s, size_t n, size_t off, mctx *c,
		      size_t *spent, size_t *a, size_t *b)
{
	size_t win = REGEX_WINDOW;
	for (;;) {
		size_t end = n;
		if (n - off > win) {
			end = off + win;
			while (end > off && ((unsigned char)s[end] & 0xC0) == 0x80)
				end--; /* a character boundary */
		}
		uint32_t opt = PCRE2_NO_UTF_CHECK | (end < n ? PCRE2_PARTIAL_HARD : 0);
		int rc = regex_match(p, s, end, off, opt, c);
		if (rc == PCRE2_ERROR_NOMATCH && end < n) {
			off = end; /* no match starts before end */
			continue;
		}
		if (rc == PCRE2_ERROR_NOMATCH)
			return 0;
		if (rc == PCRE2_ERROR_PARTIAL) {
			*spent += end - off;
			if (*spent > REGEX_BUDGET(n)) {
				c->err = TOKENIZER_ELIMIT;
				return -1;
			}
			win *= 2;
			continue;
		}
		if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
		    rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
			c->err = TOKENIZER_ELIMIT;
		if (rc < 0)
			return -1;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
		*a = ov[0];
		*b = ov[1];
		return *a <= n && *b <= n && *a <= *b ? 1 : -1;
	}
}

void mctx_free(mctx *c)
{
	pcre2_match_data_free(c->md);
	pcre2_match_context_free(c->mc);
	pcre2_jit_stack_free(c->js);
	memset(c, 0, sizeof *c);
}

void pat_free(pattern *p)
{
	free(p->lit);
	pcre2_code_free(p->re);
	memset(p, 0, sizeof *p);
}

int regex_find_some(const pattern *p, const char *s, size_t n, size_t *off, size_t *spent,
		    size_t most, mctx *c, rangevec *out)
{
	out->n = 0;
	if (!mctx_ready(c))
		return -1;
	size_t a, b;
	while (*off <= n && out->n < most) {
		int rc = regex_next(p, s, n, *off, c, spent, &a, &b);
		if (rc < 0)
			return -1;
		if (rc == 0 || (b == a && b >= n)) {
			*off = n + 1;
			if (rc)
				rv_push(out, a, b);
			break;
		}
		rv_push(out, a, b);
		*off = b == a ? b + u8len((unsigned char)s[b]) : b;
	}
	return out->oom ? -1 : *off <= n;
}

int pat_find(const pattern *p, const char *s, size_t n, mctx *c, rangevec *out)
{
	out->n = 0;
	if (p->kind == PAT_LITERAL) {
		if (!p->lit_len)
			return 0;
		size_t off = 0;
		while (off < n) {
			const char *f = memmem(s + off, n - off, p->lit, p->lit_len);
			if (!f)
				break;
			size_t a = (size_t)(f - s);
			rv_push(out, a, a + p->lit_len);
			off = a + p->lit_len;
		}
	} else if (p->kind == PAT_CHAR) {
		size_t i = 0, l;
		while (i < n) {
			uint32_t cp = u8cp(s + i, n - i, &l);
			if (p->pred(cp))
				rv_push(out, i, i + l);
			i += l;
		}
	} else if (p->kind == PAT_REGEX) {
		if (!mctx_ready(c))
			return -1;
		size_t off = 0, spent = 0;
		if (regex_find_some(p, s, n, &off, &spent, SIZE_MAX, c, out) < 0)
			return -1;
	}
	return out->oom ? -1 : 0;
}

int pat_replace(const pattern *p, const char *s, size_t n, const char *with, size_t wlen,
		sbuf *out, mctx *c, rangevec *m)
{
	if (pat_find(p, s, n, c, m) < 0)
		return -1;
	size_t prev = 0;
	for (size_t i = 0; i < m->n; i++) {
		sb_put(out, s + prev, m->v[i].a - prev);
		sb_put(out, with, wlen);
		prev = m->v[i].b;
	}
	sb_put(out, s + prev, n - prev);
	return 0;
}

static void sv_push(spanvec *s, size_t a, size_t b, bool flag)
{
	span *e = vec_more((void **)&s->v, &s->cap, s->n, sizeof *s->v, &s->oom);
	if (e) {
		*e = (span){ a, b, flag };
		s->n++;
	}
}

int split_by_behavior(const rangevec *m, size_t n, int behavior, bool invert,
			     spanvec *tmp, rangevec *keep)
{
	tmp->n = 0;
	keep->n = 0;
	size_t prev = 0;
	if (behavior == SPLIT_ISOLATED || behavior == SPLIT_REMOVED) {
		/* every span stands alone: no list of spans to fold (it is
		 * large: pre-tokenizers split whole texts) */
		bool gaps = behavior == SPLIT_ISOLATED || !invert;
		bool hits = behavior == SPLIT_ISOLATED || invert;
		for (size_t i = 0; i < m->n; i++) {
			if (gaps && prev < m->v[i].a)
				rv_push(keep, prev, m->v[i].a);
			if (hits && m->v[i].a < m->v[i].b)
				rv_push(keep, m->v[i].a, m->v[i].b);
			prev = m->v[i].b;
		}
		if (gaps && prev < n)
			rv_push(keep, prev, n);
		return keep->oom ? -1 : 0;
	}
	for (size_t i = 0; i < m->n; i++) {
		if (prev != m->v[i].a)
			sv_push(tmp, prev, m->v[i].a, invert);
		sv_push(tmp, m->v[i].a, m->v[i].b, !invert);
		prev = m->v[i].b;
	}
	if (prev != n)
		sv_push(tmp, prev, n, invert);
	if (tmp->oom)
		return -1;

	span *v = tmp->v;
	size_t cnt = tmp->n, w = 0;
	bool prev_match = false;
	switch (behavior) {
	case SPLIT_REMOVED:
		for (size_t i = 0; i < cnt; i++)
			if (!v[i].flag)
				v[w++] = (span){ v[i].a, v[i].b, false };
		cnt = w;
		break;
	case SPLIT_ISOLATED:
		break;
	case SPLIT_CONTIGUOUS:  /* runs of the same kind join */
	case SPLIT_MERGED_PREV: /* a match joins the text before it */
		for (size_t i = 0; i < cnt; i++) {
			bool is_match = v[i].flag;
			bool join = behavior == SPLIT_CONTIGUOUS ? is_match == prev_match
								 : is_match && !prev_match;
			if (join && w > 0)
				v[w - 1].b = v[i].b;
			else
				v[w++] = (span){ v[i].a, v[i].b, false };
			prev_match = is_match;
		}
		cnt = w;
		break;
	case SPLIT_MERGED_NEXT: {
		/* fold from the right, writing leftwards from the end */
		size_t r = cnt;
		for (size_t i = cnt; i-- > 0;) {
			bool is_match = v[i].flag;
			if (is_match && !prev_match && r < cnt)
				v[r].a = v[i].a;
			else
				v[--r] = (span){ v[i].a, v[i].b, false };
			prev_match = is_match;
		}
		memmove(v, v + r, (cnt - r) * sizeof *v);
		cnt -= r;
		break;
	}
	}
	for (size_t i = 0; i < cnt; i++)
		if (v[i].b > v[i].a)
			rv_push(keep, v[i].a, v[i].b);
	return keep->oom ? -1 : 0;
}

bool load_pattern(loadctx *L, const cJSON *j, pattern *p, const char *what)
{
	const char *lit = jstr(j, "String");
	const char *rx = jstr(j, "Regex");
	char b[48];
	if (lit) {
		p->kind = PAT_LITERAL;
		p->lit = xstrdup(lit, &p->lit_len);
		return p->lit ? true : fail(L, "out of memory");
	}
	if (!rx)
		return fail(L, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", what);
	int ec;
	PCRE2_SIZE eo;
	p->re = pcre2_compile((PCRE2_SPTR)rx, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
			      &ec, &eo, NULL);
	if (!p->re) {
		PCRE2_UCHAR msg[128];
		pcre2_get_error_message(ec, msg, sizeof msg);
		return fail(L, "%s: bad regex '%s' at offset %zu: %s", what, shown(rx, b),
			    (size_t)eo, (char *)msg);
	}
	/* falls back to the interpreter */
	pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
	p->kind = PAT_REGEX;
	return true;
}

bool load_replace(loadctx *L, const cJSON *j, char **s, size_t *slen, pattern *p,
		  const char *what)
{
	const char *content = jstr(j, "content");
	if (!content)
		return fail(L, "%s without content", what);
	if (!(*s = xstrdup(content, slen)))
		return fail(L, "out of memory");
	return load_pattern(L, jget(j, "pattern"), p, what);
}

bool compile_regex(loadctx *L, pattern *p, const char *rx)
{
	cJSON *j = cJSON_CreateObject();
	if (!j || !cJSON_AddStringToObject(j, "Regex", rx)) {
		cJSON_Delete(j);
		return fail(L, "out of memory");
	}
	bool ok = load_pattern(L, j, p, "built-in regex");
	cJSON_Delete(j);
	return ok;
}

int load_behavior(const char *s)
{
	if (!s)
		return SPLIT_ISOLATED;
	if (!strcmp(s, "Removed"))
		return SPLIT_REMOVED;
	if (!strcmp(s, "Isolated"))
		return SPLIT_ISOLATED;
	if (!strcmp(s, "MergedWithPrevious"))
		return SPLIT_MERGED_PREV;
	if (!strcmp(s, "MergedWithNext"))
		return SPLIT_MERGED_NEXT;
	if (!strcmp(s, "Contiguous"))
		return SPLIT_CONTIGUOUS;
	return -1;
}
