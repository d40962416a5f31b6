/* SPDX-License-Identifier: MIT */
/* filters.c - Jinja2's builtin filters and tests, the Python str and dict
 * methods templates call, and the globals transformers provides (range,
 * namespace, dict, joiner, raise_exception, strftime_now).  Each follows the
 * Python it stands for (jinja2/filters.py, jinja2/tests.py, str methods);
 * where Jinja2 returns a generator (select, map, unique, items...) this gives
 * a list, which renders the same wherever a template can use it. */
#define _GNU_SOURCE
#include "text/template/tpl.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- arguments ------------------------------------------------------------ */
static const val *arg(tpl_args *a, int pos, const char *name)
{
	if (pos >= 0 && pos < a->n)
		return &a->v[pos];
	for (int k = 0; name && k < a->nk; k++)
		if (!strcmp(a->kname[k], name))
			return &a->kv[k];
	return NULL;
}

static val str_of(tpl_render *r, int line, val v)
{
	return v_to_str(r->e, line, v);
}

static val need_str(tpl_render *r, int line, val v, const char *what)
{
	if (v.t != V_STR)
		tpl_fail(r->e, line, "%s: expected a string, not %s", what, v_typename(v));
	return v;
}

static long long need_int(tpl_render *r, int line, const val *v, long long dflt, const char *what)
{
	if (!v || v->t == V_NONE)
		return dflt;
	if (v->t == V_INT)
		return v->i;
	if (v->t == V_BOOL)
		return v->b;
	tpl_fail(r->e, line, "%s: expected an integer, not %s", what, v_typename(*v));
}

static int opt_bool(const val *v, int dflt)
{
	return v ? v_truthy(*v) : dflt;
}

static int is_cased(uint32_t c)
{
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

/* mode: 'u' upper, 'l' lower, 't' title case of one code point */
static void put_case(tpl_buf *b, uint32_t c, char mode)
{
	if (mode == 'u' && c == 0xdf) {
		buf_adds(b, "SS");
		return;
	}
	utf8proc_int32_t x = (utf8proc_int32_t)c;
	if (c <= 0x10ffff)
		x = mode == 'u' ? utf8proc_toupper(x) : mode == 'l' ? utf8proc_tolower(x) : utf8proc_totitle(x);
	buf_cp(b, (uint32_t)x);
}

/* s recased: 'u' upper, 'l' lower (every character); 'c' as str.capitalize()
 * (the first title-cased, the rest lowered); 'T' as str.title() (a cased
 * character title-cased after an uncased one, lowered after a cased one). */
static val recase(tpl_render *r, int line, val s, char rule)
{
	tpl_buf b;
	buf_init(&b, r->e, line);
	size_t i = 0;
	int prev = 0; /* 'c': a character came before; 'T': the one before was cased */
	while (i < s.s.n) {
		uint32_t c = u8_next(s.s.p, s.s.n, &i);
		char mode = rule;
		if (rule == 'c') {
			mode = prev ? 'l' : 't';
			prev = 1;
		} else if (rule == 'T') {
			int cased = is_cased(c);
			mode = cased && !prev ? 't' : 'l';
			prev = cased;
		}
		put_case(&b, c, mode);
	}
	return buf_val(&b);
}

static int in_chars(uint32_t c, const val *chars)
{
	if (!chars || chars->t == V_NONE)
		return py_isspace(c);
	size_t i = 0;
	while (i < chars->s.n)
		if (u8_next(chars->s.p, chars->s.n, &i) == c)
			return 1;
	return 0;
}

/* str.strip/lstrip/rstrip(chars) */
static val strip(tpl_render *r, int line, val s, const val *chars, int left, int right)
{
	if (chars && chars->t != V_NONE)
		need_str(r, line, *chars, "strip");
	size_t a = 0, b = s.s.n;
	if (left)
		while (a < b) {
			size_t j = a;
			if (!in_chars(u8_next(s.s.p, b, &j), chars))
				break;
			a = j;
		}
	if (right)
		while (b > a) {
			size_t j = b - 1;
			while (j > a && ((unsigned char)s.s.p[j] & 0xc0) == 0x80)
				j--;
			size_t k = j;
			if (!in_chars(u8_next(s.s.p, b, &k), chars) || k != b)
				break;
			b = j;
		}
	return v_str(s.s.p + a, b - a);
}

static val split(tpl_render *r, int line, val s, const val *sep, long long maxsplit)
{
	val out = v_list(r->e);
	if (!sep || sep->t == V_NONE) {
		size_t i = 0;
		while (i < s.s.n) {
			size_t j = i;
			while (j < s.s.n) {
				size_t k = j;
				if (!py_isspace(u8_next(s.s.p, s.s.n, &k)))
					break;
				j = k;
			}
			if (j >= s.s.n)
				break;
			i = j;
			if (maxsplit >= 0 && (long long)out.l->n >= maxsplit) {
				/* the rest, right-stripped */
				val rest = strip(r, line, v_str(s.s.p + i, s.s.n - i), NULL, 0, 1);
				list_push(r->e, out.l, rest);
				return out;
			}
			while (j < s.s.n) {
				size_t k = j;
				if (py_isspace(u8_next(s.s.p, s.s.n, &k)))
					break;
				j = k;
			}
			list_push(r->e, out.l, v_str(s.s.p + i, j - i));
			i = j;
		}
		return out;
	}
	need_str(r, line, *sep, "split");
	if (!sep->s.n)
		tpl_fail(r->e, line, "split: empty separator");
	size_t i = 0;
	for (;;) {
		const char *hit = maxsplit < 0 || (long long)out.l->n < maxsplit ?
			memmem(s.s.p + i, s.s.n - i, sep->s.p, sep->s.n) : NULL;
		if (!hit) {
			list_push(r->e, out.l, v_str(s.s.p + i, s.s.n - i));
			return out;
		}
		list_push(r->e, out.l, v_str(s.s.p + i, (size_t)(hit - (s.s.p + i))));
		i = (size_t)(hit - s.s.p) + sep->s.n;
	}
}

/* str.splitlines() */
static val splitlines(tpl_render *r, val s)
{
	val out = v_list(r->e);
	size_t i = 0, start = 0;
	while (i < s.s.n) {
		size_t at = i;
		uint32_t c = u8_next(s.s.p, s.s.n, &i);
		if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e) ||
		    c == 0x85 || c == 0x2028 || c == 0x2029) {
			list_push(r->e, out.l, v_str(s.s.p + start, at - start));
			if (c == '\r' && i < s.s.n && s.s.p[i] == '\n')
				i++;
			start = i;
		}
	}
	if (start < s.s.n)
		list_push(r->e, out.l, v_str(s.s.p + start, s.s.n - start));
	return out;
}

static val replace(tpl_render *r, int line, val s, val old, val new, long long count)
{
	need_str(r, line, old, "replace");
	need_str(r, line, new, "replace");
	tpl_buf b;
	buf_init(&b, r->e, line);
	size_t i = 0;
	long long done = 0;
	if (!old.s.n) {
		/* "" matches before every code point and at the end */
		while (count < 0 || done < count) {
			buf_add(&b, new.s.p, new.s.n);
			done++;
			if (i >= s.s.n)
				break;
			size_t j = i;
			u8_next(s.s.p, s.s.n, &j);
			buf_add(&b, s.s.p + i, j - i);
			i = j;
		}
		buf_add(&b, s.s.p + i, s.s.n - i);
		return buf_val(&b);
	}
	for (;;) {
		const char *hit = count < 0 || done < count ?
			memmem(s.s.p + i, s.s.n - i, old.s.p, old.s.n) : NULL;
		if (!hit)
			break;
		buf_add(&b, s.s.p + i, (size_t)(hit - (s.s.p + i)));
		buf_add(&b, new.s.p, new.s.n);
		i = (size_t)(hit - s.s.p) + old.s.n;
		done++;
	}
	buf_add(&b, s.s.p + i, s.s.n - i);
	return buf_val(&b);
}

static int starts_or_ends(tpl_render *r, int line, val s, val x, int end)
{
	if (x.t == V_LIST && x.tuple) {
		for (size_t i = 0; i < x.l->n; i++)
			if (starts_or_ends(r, line, s, x.l->v[i], end))
				return 1;
		return 0;
	}
	need_str(r, line, x, end ? "endswith" : "startswith");
	if (x.s.n > s.s.n)
		return 0;
	return memcmp(s.s.p + (end ? s.s.n - x.s.n : 0), x.s.p, x.s.n) == 0;
}

static val join_list(tpl_render *r, int line, tpl_list *l, val sep)
{
	tpl_buf b;
	buf_init(&b, r->e, line);
	for (size_t i = 0; i < l->n; i++) {
		if (i)
			buf_add(&b, sep.s.p, sep.s.n);
		v_str_to(&b, l->v[i]);
	}
	return buf_val(&b);
}

static long long find(val s, val x, int last)
{
	const char *hit = NULL;
	if (!last)
		hit = x.s.n ? memmem(s.s.p, s.s.n, x.s.p, x.s.n) : s.s.p;
	else
		for (size_t i = s.s.n + 1; i-- > 0 && !hit;)
			if (i + x.s.n <= s.s.n && memcmp(s.s.p + i, x.s.p, x.s.n) == 0)
				hit = s.s.p + i;
	return hit ? (long long)u8_len(s.s.p, (size_t)(hit - s.s.p)) : -1;
}

/* ---- methods ------------------------------------------------------------------- */
static val m_str(tpl_render *r, int line, val self, tpl_args *a);
static val m_dict(tpl_render *r, int line, val self, tpl_args *a);

static const char *const str_methods[] = {
	"strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper", "lower",
	"replace", "title", "capitalize", "join", "count", "find", "rfind", "splitlines",
	"isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "rsplit", "removeprefix",
	"removesuffix", NULL };
static const char *const dict_methods[] = { "items", "keys", "values", "get", NULL };

val tpl_method(tpl_render *r, val self, const char *name)
{
	const char *const *names = self.t == V_STR ? str_methods : self.t == V_DICT ? dict_methods : NULL;
	for (int i = 0; names && names[i]; i++)
		if (!strcmp(names[i], name)) {
			tpl_func *f = tpl_alloc(r->e, sizeof *f);
			f->name = names[i];
			f->fn = self.t == V_STR ? m_str : m_dict;
			f->self = self;
			return (val){ .t = V_FUNC, .fn = f };
		}
	return v_undef(NULL);
}

static const char *method_name(tpl_args *a) { return a->fname ? a->fname : ""; }

static val str_method(tpl_render *r, int line, const char *m, val s, tpl_args *a)
{
	const val *x = arg(a, 0, NULL), *y = arg(a, 1, NULL), *z = arg(a, 2, NULL);
	if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip"))
		return strip(r, line, s, x, m[0] != 'r', m[0] != 'l');
	if (!strcmp(m, "split"))
		return split(r, line, s, x ? x : arg(a, -1, "sep"),
			     need_int(r, line, y ? y : arg(a, -1, "maxsplit"), -1, "split"));
	if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
		if (!x)
			tpl_fail(r->e, line, "%s: takes one argument", m);
		return v_bool(starts_or_ends(r, line, s, *x, m[0] == 'e'));
	}
	if (!strcmp(m, "upper") || !strcmp(m, "lower"))
		return recase(r, line, s, m[0]);
	if (!strcmp(m, "title"))
		return recase(r, line, s, 'T');
	if (!strcmp(m, "capitalize"))
		return recase(r, line, s, 'c');
	if (!strcmp(m, "replace")) {
		if (!x || !y)
			tpl_fail(r->e, line, "replace: takes two arguments");
		return replace(r, line, s, *x, *y, need_int(r, line, z, -1, "replace"));
	}
	if (!strcmp(m, "join")) {
		if (!x)
			tpl_fail(r->e, line, "join: takes one argument");
		tpl_list *l = tpl_iter(r, line, *x);
		for (size_t i = 0; i < l->n; i++)
			if (l->v[i].t != V_STR)
				tpl_fail(r->e, line, "sequence item %zu: expected str instance, %s found",
					 i, v_typename(l->v[i]));
		return join_list(r, line, l, s);
	}
	if (!strcmp(m, "count") || !strcmp(m, "find") || !strcmp(m, "rfind")) {
		if (!x)
			tpl_fail(r->e, line, "%s: takes one argument", m);
		need_str(r, line, *x, m);
		if (m[0] == 'f' || m[0] == 'r')
			return v_int(find(s, *x, m[0] == 'r'));
		if (!x->s.n)
			return v_int((long long)u8_len(s.s.p, s.s.n) + 1);
		long long k = 0;
		for (size_t i = 0; i + x->s.n <= s.s.n;) {
			const char *hit = memmem(s.s.p + i, s.s.n - i, x->s.p, x->s.n);
			if (!hit)
				break;
			k++;
			i = (size_t)(hit - s.s.p) + x->s.n;
		}
		return v_int(k);
	}
	if (!strcmp(m, "splitlines"))
		return splitlines(r, s);
	if (!strcmp(m, "rsplit")) {
		const val *sep = x ? x : arg(a, -1, "sep");
		long long max = need_int(r, line, y ? y : arg(a, -1, "maxsplit"), -1, "rsplit");
		if (max < 0 || !sep || sep->t == V_NONE)
			return split(r, line, s, sep, max); /* the same when every split is made */
		need_str(r, line, *sep, "rsplit");
		if (!sep->s.n)
			tpl_fail(r->e, line, "rsplit: empty separator");
		/* the last max pieces, found from the right */
		val out = v_list(r->e);
		size_t end = s.s.n;
		val *tail = tpl_alloc(r->e, ((size_t)max + 1) * sizeof *tail);
		long long k = 0;
		while (k < max && end >= sep->s.n) {
			size_t i = end - sep->s.n + 1;
			int found = 0;
			while (i-- > 0)
				if (memcmp(s.s.p + i, sep->s.p, sep->s.n) == 0) {
					found = 1;
					break;
				}
			if (!found)
				break;
			tail[k++] = v_str(s.s.p + i + sep->s.n, end - i - sep->s.n);
			end = i;
		}
		list_push(r->e, out.l, v_str(s.s.p, end));
		while (k-- > 0)
			list_push(r->e, out.l, tail[k]);
		return out;
	}
	if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
		if (!x)
			tpl_fail(r->e, line, "%s: takes one argument", m);
		need_str(r, line, *x, m);
		int suffix = m[6] == 's';
		if (x->s.n > s.s.n || memcmp(s.s.p + (suffix ? s.s.n - x->s.n : 0), x->s.p, x->s.n) != 0)
			return s;
		return v_str(s.s.p + (suffix ? 0 : x->s.n), s.s.n - x->s.n);
	}
	if (!strncmp(m, "is", 2)) {
		size_t i = 0;
		int any = 0, ok = s.s.n > 0, cased = 0;
		while (i < s.s.n && ok) {
			uint32_t c = u8_next(s.s.p, s.s.n, &i);
			utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
			int alpha = k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
			int digit = k == UTF8PROC_CATEGORY_ND;
			if (!strcmp(m, "isdigit"))
				ok = digit;
			else if (!strcmp(m, "isalpha"))
				ok = alpha;
			else if (!strcmp(m, "isalnum"))
				ok = alpha || digit || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
			else if (!strcmp(m, "isspace"))
				ok = py_isspace(c);
			else if (!strcmp(m, "islower")) {
				if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT)
					ok = 0;
				cased |= k == UTF8PROC_CATEGORY_LL;
			} else {
				if (k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT)
					ok = 0;
				cased |= k == UTF8PROC_CATEGORY_LU;
			}
			any = 1;
		}
		if (!strcmp(m, "islower") || !strcmp(m, "isupper"))
			ok = ok && cased;
		return v_bool(ok && any);
	}
	tpl_fail(r->e, line, "str has no method '%s'", m);
}

static val m_str(tpl_render *r, int line, val self, tpl_args *a)
{
	return str_method(r, line, method_name(a), self, a);
}

static val dict_method(tpl_render *r, int line, const char *m, val d, tpl_args *a)
{
	if (!strcmp(m, "get")) {
		const val *k = arg(a, 0, NULL), *dflt = arg(a, 1, NULL);
		if (!k)
			tpl_fail(r->e, line, "get: takes a key");
		val v;
		if (dict_get(d.d, *k, &v))
			return v;
		return dflt ? *dflt : v_none();
	}
	val out = v_list(r->e);
	for (size_t i = 0; i < d.d->n; i++) {
		if (m[0] == 'k')
			list_push(r->e, out.l, d.d->k[i]);
		else if (m[0] == 'v')
			list_push(r->e, out.l, d.d->v[i]);
		else {
			val pair = v_list(r->e);
			pair.tuple = 1;
			list_push(r->e, pair.l, d.d->k[i]);
			list_push(r->e, pair.l, d.d->v[i]);
			list_push(r->e, out.l, pair);
		}
	}
	return out;
}

static val m_dict(tpl_render *r, int line, val self, tpl_args *a)
{
	return dict_method(r, line, method_name(a), self, a);
}

/* ---- filters ----------------------------------------------------------------------- */
#define FILTER(name) static val f_##name(tpl_render *r, int line, val v, tpl_args *a)

/* Jinja2's make_attrgetter: "a.b.0" looked up item-first, each part. */
static val attr_path(tpl_render *r, int line, val v, val attr)
{
	if (attr.t == V_INT)
		return tpl_getitem(r, line, v, attr);
	need_str(r, line, attr, "attribute");
	const char *p = attr.s.p, *end = p + attr.s.n;
	while (p <= end) {
		const char *dot = memchr(p, '.', (size_t)(end - p));
		if (!dot)
			dot = end;
		val key = v_str(p, (size_t)(dot - p));
		int digits = dot > p;
		for (const char *q = p; q < dot; q++)
			digits &= *q >= '0' && *q <= '9';
		if (digits && dot - p < 18)
			key = v_int(strtoll(p, NULL, 10));
		v = tpl_getitem(r, line, v, key);
		p = dot + 1;
	}
	return v;
}

static val lower_key(tpl_render *r, int line, val v, int case_sensitive)
{
	return !case_sensitive && v.t == V_STR ? recase(r, line, v, 'l') : v;
}

FILTER(trim)
{
	val s = str_of(r, line, v);
	return strip(r, line, s, arg(a, 0, "chars"), 1, 1);
}

FILTER(length)
{
	(void)a;
	switch (v.t) {
	case V_STR: return v_int((long long)u8_len(v.s.p, v.s.n));
	case V_LIST: return v_int((long long)v.l->n);
	case V_DICT: case V_NS: return v_int((long long)v.d->n);
	case V_UNDEF: return v_int(0);
	default: tpl_fail(r->e, line, "object of type '%s' has no len()", v_typename(v));
	}
}

FILTER(upper) { (void)a; return recase(r, line, str_of(r, line, v), 'u'); }
FILTER(lower) { (void)a; return recase(r, line, str_of(r, line, v), 'l'); }
FILTER(capitalize) { (void)a; return recase(r, line, str_of(r, line, v), 'c'); }

/* Jinja's title: each run split at [-\s({[<]+ gets its first character
 * upper-cased and the rest lower-cased. */
FILTER(title)
{
	(void)a;
	val s = str_of(r, line, v);
	tpl_buf b;
	buf_init(&b, r->e, line);
	size_t i = 0;
	int start = 1;
	while (i < s.s.n) {
		uint32_t c = u8_next(s.s.p, s.s.n, &i);
		int sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
		if (sep) {
			buf_cp(&b, c);
			start = 1;
		} else {
			put_case(&b, c, start ? 'u' : 'l');
			start = 0;
		}
	}
	return buf_val(&b);
}

FILTER(replace)
{
	const val *old = arg(a, 0, "old"), *new = arg(a, 1, "new");
	if (!old || !new)
		tpl_fail(r->e, line, "replace: takes the old and the new text");
	return replace(r, line, str_of(r, line, v), str_of(r, line, *old), str_of(r, line, *new),
		       need_int(r, line, arg(a, 2, "count"), -1, "replace"));
}

FILTER(join)
{
	const val *d = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
	tpl_list *l = tpl_iter(r, line, v);
	if (attr && attr->t != V_NONE) {
		tpl_list *m = tpl_alloc(r->e, sizeof *m);
		for (size_t i = 0; i < l->n; i++)
			list_push(r->e, m, attr_path(r, line, l->v[i], *attr));
		l = m;
	}
	return join_list(r, line, l, d ? str_of(r, line, *d) : v_str("", 0));
}

FILTER(first)
{
	(void)a;
	tpl_list *l = tpl_iter(r, line, v);
	return l->n ? l->v[0] : v_undef("No first item, sequence was empty.");
}

FILTER(last)
{
	(void)a;
	tpl_list *l = tpl_iter(r, line, v);
	return l->n ? l->v[l->n - 1] : v_undef("No last item, sequence was empty.");
}

FILTER(default)
{
	const val *d = arg(a, 0, "default_value");
	int boolean = opt_bool(arg(a, 1, "boolean"), 0);
	if (v.t == V_UNDEF || (boolean && !v_truthy(v)))
		return d ? *d : v_str("", 0);
	return v;
}

FILTER(items)
{
	(void)a;
	if (v.t == V_UNDEF)
		return v_list(r->e);
	if (v.t != V_DICT)
		tpl_fail(r->e, line, "Can only get item pairs from a mapping.");
	return dict_method(r, line, "items", v, a);
}

FILTER(list)
{
	(void)a;
	val out = v_list(r->e);
	tpl_list *l = tpl_iter(r, line, v);
	for (size_t i = 0; i < l->n; i++)
		list_push(r->e, out.l, l->v[i]);
	return out;
}

FILTER(tojson)
{
	const val *ind = arg(a, 0, "indent"), *ascii = arg(a, -1, "ensure_ascii");
	const val *sort = arg(a, -1, "sort_keys"), *seps = arg(a, -1, "separators");
	if ((ascii && v_truthy(*ascii)) || (sort && v_truthy(*sort)) || (seps && seps->t != V_NONE))
		tpl_fail(r->e, line, "tojson: only indent is supported (ensure_ascii=False, key order kept)");
	char spaces[65];
	const char *indent = NULL;
	if (ind && ind->t == V_STR) {
		indent = tpl_strndup(r->e, ind->s.p, ind->s.n);
	} else if (ind && ind->t != V_NONE) {
		long long k = need_int(r, line, ind, 0, "tojson indent");
		if (k > 64)
			k = 64;
		memset(spaces, ' ', (size_t)(k > 0 ? k : 0));
		spaces[k > 0 ? k : 0] = 0;
		indent = spaces;
	}
	tpl_buf b;
	buf_init(&b, r->e, line);
	v_json_to(&b, v, indent, 0);
	return buf_val(&b);
}

FILTER(string) { (void)a; return str_of(r, line, v); }
FILTER(safe) { (void)a; (void)r; (void)line; return v; }

/* Past the white space Python's int() and float() allow around a number. */
static char *skip_space(char *p)
{
	while (*p == ' ' || (*p >= 9 && *p <= 13))
		p++;
	return p;
}

/* Python's int(str): optional sign, digits with single underscores, spaces around. */
static int parse_int(val s, long long base, long long *out)
{
	char buf[80];
	if (s.s.n >= sizeof buf)
		return -1;
	size_t n = 0;
	for (size_t i = 0; i < s.s.n; i++)
		if (s.s.p[i] != '_')
			buf[n++] = s.s.p[i];
		else if (!i || i + 1 == s.s.n || s.s.p[i + 1] == '_')
			return -1;
	buf[n] = 0;
	char *p = skip_space(buf), *end;
	if (!*p)
		return -1;
	errno = 0;
	long long x = strtoll(p, &end, (int)base);
	if (end == p || errno || *skip_space(end))
		return -1;
	*out = x;
	return 0;
}

static int parse_float(val s, double *out)
{
	char buf[80];
	if (s.s.n >= sizeof buf)
		return -1;
	memcpy(buf, s.s.p, s.s.n);
	buf[s.s.n] = 0;
	char *p = skip_space(buf), *end;
	if (!*p || (p[0] == '0' && (p[1] | 0x20) == 'x'))
		return -1;
	double x = strtod(p, &end);
	if (end == p || *skip_space(end))
		return -1;
	*out = x;
	return 0;
}

FILTER(int)
{
	const val *d = arg(a, 0, "default");
	long long base = need_int(r, line, arg(a, 1, "base"), 10, "int");
	long long x;
	double f;
	if (base < 2 || base > 36)
		base = 10;
	switch (v.t) {
	case V_INT: return v;
	case V_BOOL: return v_int(v.b);
	case V_FLOAT:
		if (isfinite(v.f) && fabs(v.f) < 9.2e18)
			return v_int((long long)v.f);
		break;
	case V_STR:
		if (parse_int(v, base, &x) == 0)
			return v_int(x);
		if (parse_float(v, &f) == 0 && isfinite(f) && fabs(f) < 9.2e18)
			return v_int((long long)f);
		break;
	}
	return d ? *d : v_int(0);
}

FILTER(float)
{
	const val *d = arg(a, 0, "default");
	double f;
	switch (v.t) {
	case V_FLOAT: return v;
	case V_INT: return v_float((double)v.i);
	case V_BOOL: return v_float(v.b);
	case V_STR:
		if (parse_float(v, &f) == 0)
			return v_float(f);
		break;
	}
	(void)r;
	(void)line;
	return d ? *d : v_float(0);
}

/* select/reject and their attr forms */
static val select_impl(tpl_render *r, int line, val v, tpl_args *a, int attr, int keep)
{
	val out = v_list(r->e);
	tpl_list *l = tpl_iter(r, line, v);
	int off = 0;
	val attribute = v_none();
	if (attr) {
		if (a->n < 1)
			tpl_fail(r->e, line, "Missing parameter for attribute name");
		attribute = a->v[0];
		off = 1;
	}
	const char *test = NULL;
	if (a->n > off) {
		val t = need_str(r, line, a->v[off], "select");
		test = tpl_strndup(r->e, t.s.p, t.s.n);
	}
	tpl_args ta = { .n = a->n > off + 1 ? a->n - off - 1 : 0, .v = a->v + off + 1, .nk = a->nk,
			.kname = a->kname, .kv = a->kv };
	for (size_t i = 0; i < l->n; i++) {
		val x = attr ? attr_path(r, line, l->v[i], attribute) : l->v[i];
		int ok;
		if (test) {
			ok = tpl_test(r, line, test, x, &ta);
			if (ok < 0)
				tpl_fail(r->e, line, "no test named '%s'", test);
		} else
			ok = v_truthy(x);
		if (ok == keep)
			list_push(r->e, out.l, l->v[i]);
	}
	return out;
}

FILTER(select) { return select_impl(r, line, v, a, 0, 1); }
FILTER(reject) { return select_impl(r, line, v, a, 0, 0); }
FILTER(selectattr) { return select_impl(r, line, v, a, 1, 1); }
FILTER(rejectattr) { return select_impl(r, line, v, a, 1, 0); }

FILTER(map)
{
	val out = v_list(r->e);
	tpl_list *l = tpl_iter(r, line, v);
	const val *attribute = a->n == 0 ? arg(a, -1, "attribute") : NULL;
	if (attribute) {
		const val *d = arg(a, -1, "default");
		for (size_t i = 0; i < l->n; i++) {
			val x = attr_path(r, line, l->v[i], *attribute);
			if (x.t == V_UNDEF && d && d->t != V_NONE)
				x = *d;
			list_push(r->e, out.l, x);
		}
		return out;
	}
	if (a->n < 1)
		tpl_fail(r->e, line, "map: takes a filter name or attribute=");
	val name = need_str(r, line, a->v[0], "map");
	tpl_builtin fn = tpl_filter(tpl_strndup(r->e, name.s.p, name.s.n));
	if (!fn)
		tpl_fail(r->e, line, "no filter named '%.*s'", (int)name.s.n, name.s.p);
	tpl_args fa = { .n = a->n - 1, .v = a->v + 1, .nk = a->nk, .kname = a->kname, .kv = a->kv };
	for (size_t i = 0; i < l->n; i++)
		list_push(r->e, out.l, fn(r, line, l->v[i], &fa));
	return out;
}

FILTER(unique)
{
	int cs = opt_bool(arg(a, 0, "case_sensitive"), 0);
	const val *attr = arg(a, 1, "attribute");
	val out = v_list(r->e), seen = v_list(r->e);
	tpl_list *l = tpl_iter(r, line, v);
	for (size_t i = 0; i < l->n; i++) {
		val k = attr && attr->t != V_NONE ? attr_path(r, line, l->v[i], *attr) : l->v[i];
		k = lower_key(r, line, k, cs);
		int dup = 0;
		for (size_t j = 0; j < seen.l->n && !dup; j++)
			dup = v_eq(seen.l->v[j], k);
		if (!dup) {
			list_push(r->e, seen.l, k);
			list_push(r->e, out.l, l->v[i]);
		}
	}
	return out;
}

FILTER(indent)
{
	const val *w = arg(a, 0, "width");
	int first = opt_bool(arg(a, 1, "first"), 0), blank = opt_bool(arg(a, 2, "blank"), 0);
	val ind;
	if (w && w->t == V_STR)
		ind = *w;
	else {
		long long k = need_int(r, line, w, 4, "indent");
		if (k < 0)
			k = 0;
		if ((size_t)k > r->e->lim.output)
			tpl_fail(r->e, line, "indent: width too large");
		char *sp = tpl_alloc(r->e, (size_t)k + 1);
		memset(sp, ' ', (size_t)k);
		ind = v_str(sp, (size_t)k);
	}
	val s = str_of(r, line, v);
	tpl_buf t;
	buf_init(&t, r->e, line);
	buf_add(&t, s.s.p, s.s.n);
	buf_addc(&t, '\n');
	tpl_list *lines = splitlines(r, buf_val(&t)).l;
	tpl_buf b;
	buf_init(&b, r->e, line);
	if (first)
		buf_add(&b, ind.s.p, ind.s.n);
	for (size_t i = 0; i < lines->n; i++) {
		val ln = lines->v[i];
		if (i) {
			buf_addc(&b, '\n');
			if (blank || ln.s.n)
				buf_add(&b, ind.s.p, ind.s.n);
		}
		buf_add(&b, ln.s.p, ln.s.n);
	}
	return buf_val(&b);
}

FILTER(round)
{
	long long prec = need_int(r, line, arg(a, 0, "precision"), 0, "round");
	const val *mv = arg(a, 1, "method");
	char method = 'c';
	if (mv) {
		val m = need_str(r, line, *mv, "round");
		method = m.s.n ? m.s.p[0] : 'x';
		if ((method != 'c' && method != 'f') || (m.s.n != 6 && m.s.n != 5 && m.s.n != 4))
			tpl_fail(r->e, line, "method must be common, ceil or floor");
	}
	if (v.t == V_INT || v.t == V_BOOL) {
		if (method == 'c' && (!mv || mv->s.p[1] == 'o'))
			return v_int(v.t == V_INT ? v.i : v.b);
	}
	if (v.t != V_INT && v.t != V_FLOAT && v.t != V_BOOL)
		tpl_fail(r->e, line, "round: expected a number, not %s", v_typename(v));
	double x = v.t == V_FLOAT ? v.f : v.t == V_INT ? (double)v.i : v.b;
	if (prec > 300)
		prec = 300;
	if (prec < -300)
		prec = -300;
	if (mv && mv->s.p[1] != 'o') {
		double p10 = pow(10, (double)prec);
		return v_float((mv->s.p[0] == 'c' ? ceil(x * p10) : floor(x * p10)) / p10);
	}
	if (!isfinite(x))
		return v_float(x);
	if (prec >= 0) {
		/* correctly rounded, ties to even, as Python's round */
		char buf[400];
		snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
		return v_float(strtod(buf, NULL));
	}
	double p10 = pow(10, (double)-prec);
	return v_float(nearbyint(x / p10) * p10);
}

FILTER(abs)
{
	(void)a;
	if (v.t == V_INT) {
		if (v.i == LLONG_MIN)
			tpl_fail(r->e, line, "integer overflow");
		return v_int(v.i < 0 ? -v.i : v.i);
	}
	if (v.t == V_BOOL)
		return v_int(v.b);
	if (v.t == V_FLOAT)
		return v_float(fabs(v.f));
	tpl_fail(r->e, line, "bad operand type for abs(): '%s'", v_typename(v));
}

FILTER(reverse)
{
	(void)a;
	if (v.t == V_STR) {
		tpl_list *l = tpl_iter(r, line, v);
		tpl_buf b;
		buf_init(&b, r->e, line);
		for (size_t i = l->n; i-- > 0;)
			buf_add(&b, l->v[i].s.p, l->v[i].s.n);
		return buf_val(&b);
	}
	tpl_list *l = tpl_iter(r, line, v);
	val out = v_list(r->e);
	for (size_t i = l->n; i-- > 0;)
		list_push(r->e, out.l, l->v[i]);
	return out;
}

/* A stable sort of items by keys (insertion sort: template lists are short,
 * and the step limit bounds the rest). */
static void sort_by(tpl_render *r, int line, val *items, val *keys, size_t n, int reverse)
{
	for (size_t i = 1; i < n; i++) {
		val it = items[i], k = keys[i];
		size_t j = i;
		while (j > 0) {
			int c = tpl_cmp(r, line, keys[j - 1], k);
			if (reverse ? c >= 0 : c <= 0)
				break;
			items[j] = items[j - 1];
			keys[j] = keys[j - 1];
			j--;
		}
		items[j] = it;
		keys[j] = k;
		if (++r->steps > r->e->lim.steps)
			tpl_fail(r->e, line, "the template ran too long");
	}
}

FILTER(sort)
{
	int reverse = opt_bool(arg(a, 0, "reverse"), 0), cs = opt_bool(arg(a, 1, "case_sensitive"), 0);
	const val *attr = arg(a, 2, "attribute");
	tpl_list *l = tpl_iter(r, line, v);
	val out = v_list(r->e);
	val *keys = tpl_alloc(r->e, (l->n + 1) * sizeof *keys);
	for (size_t i = 0; i < l->n; i++) {
		list_push(r->e, out.l, l->v[i]);
		val k = attr && attr->t != V_NONE ? attr_path(r, line, l->v[i], *attr) : l->v[i];
		keys[i] = lower_key(r, line, k, cs);
	}
	sort_by(r, line, out.l->v, keys, out.l->n, reverse);
	return out;
}

FILTER(dictsort)
{
	int cs = opt_bool(arg(a, 0, "case_sensitive"), 0);
	const val *by = arg(a, 1, "by");
	int reverse = opt_bool(arg(a, 2, "reverse"), 0);
	int by_value = by && by->t == V_STR && by->s.n == 5 && !memcmp(by->s.p, "value", 5);
	if (v.t != V_DICT)
		tpl_fail(r->e, line, "dictsort: expected a mapping");
	val out = dict_method(r, line, "items", v, a);
	val *keys = tpl_alloc(r->e, (out.l->n + 1) * sizeof *keys);
	for (size_t i = 0; i < out.l->n; i++)
		keys[i] = lower_key(r, line, out.l->v[i].l->v[by_value], cs);
	sort_by(r, line, out.l->v, keys, out.l->n, reverse);
	return out;
}

FILTER(sum)
{
	const val *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
	tpl_list *l = tpl_iter(r, line, v);
	val acc = start ? *start : v_int(0);
	for (size_t i = 0; i < l->n; i++) {
		val x = attr && attr->t != V_NONE ? attr_path(r, line, l->v[i], *attr) : l->v[i];
		if (!((x.t == V_INT || x.t == V_FLOAT || x.t == V_BOOL) &&
		      (acc.t == V_INT || acc.t == V_FLOAT || acc.t == V_BOOL)))
			tpl_fail(r->e, line, "sum: unsupported operand types '%s' and '%s'",
				 v_typename(acc), v_typename(x));
		if (acc.t != V_FLOAT && x.t != V_FLOAT) {
			long long s;
			if (__builtin_add_overflow(acc.t == V_INT ? acc.i : acc.b, x.t == V_INT ? x.i : x.b, &s))
				tpl_fail(r->e, line, "integer overflow");
			acc = v_int(s);
		} else
			acc = v_float((acc.t == V_FLOAT ? acc.f : acc.t == V_INT ? (double)acc.i : acc.b) +
				      (x.t == V_FLOAT ? x.f : x.t == V_INT ? (double)x.i : x.b));
	}
	return acc;
}

static val minmax(tpl_render *r, int line, val v, tpl_args *a, int want)
{
	int cs = opt_bool(arg(a, 0, "case_sensitive"), 0);
	const val *attr = arg(a, 1, "attribute");
	tpl_list *l = tpl_iter(r, line, v);
	if (!l->n)
		return v_undef(want > 0 ? "No largest item, sequence was empty." :
				   "No smallest item, sequence was empty.");
	size_t best = 0;
	val bk = v_none();
	for (size_t i = 0; i < l->n; i++) {
		val k = attr && attr->t != V_NONE ? attr_path(r, line, l->v[i], *attr) : l->v[i];
		k = lower_key(r, line, k, cs);
		if (i == 0 || tpl_cmp(r, line, k, bk) * want > 0) {
			best = i;
			bk = k;
		}
	}
	return l->v[best];
}

FILTER(min) { return minmax(r, line, v, a, -1); }
FILTER(max) { return minmax(r, line, v, a, 1); }

FILTER(escape)
{
	(void)a;
	val s = str_of(r, line, v);
	tpl_buf b;
	buf_init(&b, r->e, line);
	for (size_t i = 0; i < s.s.n; i++) {
		char c = s.s.p[i];
		if (c == '&')
			buf_adds(&b, "&amp;");
		else if (c == '<')
			buf_adds(&b, "&lt;");
		else if (c == '>')
			buf_adds(&b, "&gt;");
		else if (c == '"')
			buf_adds(&b, "&#34;");
		else if (c == '\'')
			buf_adds(&b, "&#39;");
		else
			buf_addc(&b, c);
	}
	return buf_val(&b);
}

FILTER(wordcount)
{
	(void)a;
	val s = str_of(r, line, v);
	long long k = 0;
	int in = 0;
	size_t i = 0;
	while (i < s.s.n) {
		uint32_t c = u8_next(s.s.p, s.s.n, &i);
		utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
		int w = c == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
			(cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) ||
			(cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME);
		if (w && !in)
			k++;
		in = w;
	}
	return v_int(k);
}

/* "%s and %d" | format(a, b): Python's printf-style formatting, the common
 * conversions (s, r, d, i, f, %) with an optional precision for f. */
FILTER(format)
{
	val s = str_of(r, line, v);
	tpl_buf b;
	buf_init(&b, r->e, line);
	int k = 0;
	for (size_t i = 0; i < s.s.n; i++) {
		if (s.s.p[i] != '%') {
			buf_addc(&b, s.s.p[i]);
			continue;
		}
		if (++i >= s.s.n)
			tpl_fail(r->e, line, "format: incomplete format");
		int prec = -1;
		if (s.s.p[i] == '.') {
			prec = 0;
			while (++i < s.s.n && s.s.p[i] >= '0' && s.s.p[i] <= '9')
				prec = prec * 10 + (s.s.p[i] - '0') > 50 ? 50 : prec * 10 + (s.s.p[i] - '0');
			if (i >= s.s.n)
				tpl_fail(r->e, line, "format: incomplete format");
		}
		char c = s.s.p[i];
		if (c == '%') {
			buf_addc(&b, '%');
			continue;
		}
		if (k >= a->n)
			tpl_fail(r->e, line, "format: not enough arguments for format string");
		val x = a->v[k++];
		if (c == 's')
			v_str_to(&b, x);
		else if (c == 'r')
			v_repr_to(&b, x);
		else if (c == 'd' || c == 'i') {
			if (x.t == V_FLOAT && isfinite(x.f) && fabs(x.f) < 9.2e18)
				buf_addf(&b, "%lld", (long long)x.f);
			else if (x.t == V_INT || x.t == V_BOOL)
				buf_addf(&b, "%lld", x.t == V_INT ? x.i : x.b);
			else
				tpl_fail(r->e, line, "format: %%d format: a number is required, not %s",
					 v_typename(x));
		} else if (c == 'f') {
			if (x.t != V_FLOAT && x.t != V_INT && x.t != V_BOOL)
				tpl_fail(r->e, line, "format: must be real number, not %s", v_typename(x));
			buf_addf(&b, "%.*f", prec < 0 ? 6 : prec,
				 x.t == V_FLOAT ? x.f : x.t == V_INT ? (double)x.i : x.b);
		} else
			tpl_fail(r->e, line, "format: unsupported format character '%c'", c);
	}
	if (k < a->n)
		tpl_fail(r->e, line, "format: not all arguments converted during string formatting");
	return buf_val(&b);
}

static const struct { const char *name; tpl_builtin fn; } filters[] = {
	{ "trim", f_trim }, { "length", f_length }, { "count", f_length }, { "upper", f_upper },
	{ "lower", f_lower }, { "capitalize", f_capitalize }, { "title", f_title },
	{ "replace", f_replace }, { "join", f_join }, { "first", f_first }, { "last", f_last },
	{ "default", f_default }, { "d", f_default }, { "items", f_items }, { "list", f_list },
	{ "tojson", f_tojson }, { "string", f_string }, { "int", f_int }, { "float", f_float },
	{ "select", f_select }, { "reject", f_reject }, { "selectattr", f_selectattr },
	{ "rejectattr", f_rejectattr }, { "map", f_map }, { "unique", f_unique },
	{ "indent", f_indent }, { "round", f_round }, { "safe", f_safe }, { "abs", f_abs },
	{ "reverse", f_reverse }, { "sort", f_sort }, { "dictsort", f_dictsort }, { "sum", f_sum },
	{ "min", f_min }, { "max", f_max }, { "escape", f_escape }, { "e", f_escape },
	{ "forceescape", f_escape }, { "wordcount", f_wordcount }, { "format", f_format },
};

tpl_builtin tpl_filter(const char *name)
{
	for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
		if (!strcmp(filters[i].name, name))
			return filters[i].fn;
	return NULL;
}

/* ---- tests --------------------------------------------------------------------------- */
#define T(type) (1u << (type))
/* The tests that look at the type alone, and the types that pass them. */
static const struct {
	const char *name;
	unsigned types;
} by_type[] = {
	{ "undefined", T(V_UNDEF) },
	{ "none", T(V_NONE) },
	{ "string", T(V_STR) },
	{ "mapping", T(V_DICT) },
	{ "iterable", T(V_STR) | T(V_LIST) | T(V_DICT) | T(V_UNDEF) },
	{ "sequence", T(V_STR) | T(V_LIST) | T(V_DICT) | T(V_UNDEF) },
	{ "number", T(V_INT) | T(V_FLOAT) | T(V_BOOL) },
	{ "integer", T(V_INT) },
	{ "float", T(V_FLOAT) },
	{ "boolean", T(V_BOOL) },
	{ "callable", T(V_FUNC) | T(V_MACRO) },
};
#undef T

int tpl_test(tpl_render *r, int line, const char *t, val v, tpl_args *a)
{
	const val *x = arg(a, 0, NULL);
	if (!strcmp(t, "defined"))
		return v.t != V_UNDEF;
	for (size_t k = 0; k < sizeof by_type / sizeof *by_type; k++)
		if (!strcmp(t, by_type[k].name))
			return (by_type[k].types >> v.t) & 1;
	if (!strcmp(t, "true"))
		return v.t == V_BOOL && v.b;
	if (!strcmp(t, "false"))
		return v.t == V_BOOL && !v.b;
	if (!strcmp(t, "escaped"))
		return 0;
	if (!strcmp(t, "odd") || !strcmp(t, "even")) {
		if (v.t != V_INT && v.t != V_BOOL)
			tpl_fail(r->e, line, "test '%s': expected an integer, not %s", t, v_typename(v));
		long long i = v.t == V_INT ? v.i : v.b;
		return (t[0] == 'o') == ((i & 1) != 0);
	}
	if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
		tpl_args none = { 0 };
		return v_truthy(str_method(r, line, t[0] == 'l' ? "islower" : "isupper",
					   str_of(r, line, v), &none));
	}
	if (!x && (!strcmp(t, "divisibleby") || !strcmp(t, "eq") || !strcmp(t, "equalto") ||
		   !strcmp(t, "==") || !strcmp(t, "ne") || !strcmp(t, "!=") || !strcmp(t, "lt") ||
		   !strcmp(t, "le") || !strcmp(t, "gt") || !strcmp(t, "ge") || !strcmp(t, "in") ||
		   !strcmp(t, "sameas") || !strcmp(t, "<") || !strcmp(t, ">") || !strcmp(t, "<=") ||
		   !strcmp(t, ">=") || !strcmp(t, "greaterthan") || !strcmp(t, "lessthan")))
		tpl_fail(r->e, line, "test '%s' takes an argument", t);
	if (!strcmp(t, "divisibleby")) {
		if ((v.t != V_INT && v.t != V_BOOL) || (x->t != V_INT && x->t != V_BOOL))
			tpl_fail(r->e, line, "divisibleby: expected integers");
		long long n = v.t == V_INT ? v.i : v.b, d = x->t == V_INT ? x->i : x->b;
		if (!d)
			tpl_fail(r->e, line, "integer modulo by zero");
		return d == -1 || n % d == 0;
	}
	if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "=="))
		return v_eq(v, *x);
	if (!strcmp(t, "ne") || !strcmp(t, "!="))
		return !v_eq(v, *x);
	if (!strcmp(t, "lt") || !strcmp(t, "<") || !strcmp(t, "lessthan"))
		return tpl_cmp(r, line, v, *x) < 0;
	if (!strcmp(t, "le") || !strcmp(t, "<="))
		return tpl_cmp(r, line, v, *x) <= 0;
	if (!strcmp(t, "gt") || !strcmp(t, ">") || !strcmp(t, "greaterthan"))
		return tpl_cmp(r, line, v, *x) > 0;
	if (!strcmp(t, "ge") || !strcmp(t, ">="))
		return tpl_cmp(r, line, v, *x) >= 0;
	if (!strcmp(t, "sameas")) {
		if (v.t != x->t)
			return 0;
		if (v.t == V_NONE || v.t == V_UNDEF)
			return 1;
		if (v.t == V_BOOL)
			return v.b == x->b;
		if (v.t == V_LIST)
			return v.l == x->l;
		if (v.t == V_DICT || v.t == V_NS)
			return v.d == x->d;
		return v_eq(v, *x);
	}
	if (!strcmp(t, "in")) {
		val hay = *x;
		if (hay.t == V_STR) {
			if (v.t != V_STR)
				tpl_fail(r->e, line, "'in <string>' requires string as left operand");
			return !v.s.n || memmem(hay.s.p, hay.s.n, v.s.p, v.s.n) != NULL;
		}
		if (hay.t == V_DICT || hay.t == V_NS)
			return dict_get(hay.d, v, NULL);
		tpl_list *l = tpl_iter(r, line, hay);
		for (size_t i = 0; i < l->n; i++)
			if (v_eq(l->v[i], v))
				return 1;
		return 0;
	}
	return -1;
}

/* ---- globals ------------------------------------------------------------------------- */
static val g_range(tpl_render *r, int line, val self, tpl_args *a)
{
	(void)self;
	long long start = 0, stop, step = 1;
	if (a->n < 1 || a->n > 3)
		tpl_fail(r->e, line, "range expected 1 to 3 arguments, got %d", a->n);
	for (int i = 0; i < a->n; i++)
		if (a->v[i].t != V_INT && a->v[i].t != V_BOOL)
			tpl_fail(r->e, line, "'%s' object cannot be interpreted as an integer",
				 v_typename(a->v[i]));
	if (a->n == 1)
		stop = need_int(r, line, &a->v[0], 0, "range");
	else {
		start = need_int(r, line, &a->v[0], 0, "range");
		stop = need_int(r, line, &a->v[1], 0, "range");
		if (a->n == 3)
			step = need_int(r, line, &a->v[2], 1, "range");
	}
	if (!step)
		tpl_fail(r->e, line, "range() arg 3 must not be zero");
	val out = v_list(r->e);
	for (long long i = start; step > 0 ? i < stop : i > stop; i += step) {
		if (out.l->n >= 100000)
			tpl_fail(r->e, line, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
		list_push(r->e, out.l, v_int(i));
		if ((step > 0 && i > LLONG_MAX - step) || (step < 0 && i < LLONG_MIN - step))
			break;
	}
	return out;
}

static val g_namespace(tpl_render *r, int line, val self, tpl_args *a)
{
	(void)self;
	val ns = v_dict(r->e);
	ns.t = V_NS;
	for (int i = 0; i < a->n; i++) {
		if (a->v[i].t != V_DICT && a->v[i].t != V_NS)
			tpl_fail(r->e, line, "namespace() takes a mapping and keyword arguments");
		for (size_t k = 0; k < a->v[i].d->n; k++)
			dict_set(r->e, ns.d, a->v[i].d->k[k], a->v[i].d->v[k]);
	}
	for (int k = 0; k < a->nk; k++)
		dict_set(r->e, ns.d, v_cstr(r->e, a->kname[k]), a->kv[k]);
	return ns;
}

static val g_dict(tpl_render *r, int line, val self, tpl_args *a)
{
	val d = g_namespace(r, line, self, a);
	d.t = V_DICT;
	return d;
}

static val g_raise(tpl_render *r, int line, val self, tpl_args *a)
{
	(void)self;
	val msg = a->n ? str_of(r, line, a->v[0]) : v_str("", 0);
	tpl_fail(r->e, line, "%.*s", (int)(msg.s.n > 900 ? 900 : msg.s.n), msg.s.p);
}

static val g_strftime(tpl_render *r, int line, val self, tpl_args *a)
{
	(void)self;
	if (a->n != 1 || a->v[0].t != V_STR)
		tpl_fail(r->e, line, "strftime_now takes one format string");
	val f = a->v[0];
	if (f.s.n > 256)
		tpl_fail(r->e, line, "strftime_now: format too long");
	char fmt[260], out[2048];
	memcpy(fmt, f.s.p, f.s.n);
	fmt[f.s.n] = 0;
	time_t now = r->now ? r->now : time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	size_t n = fmt[0] ? strftime(out, sizeof out, fmt, &tm) : 0;
	return v_str(tpl_strndup(r->e, out, n), n);
}

static val g_joiner_call(tpl_render *r, int line, val self, tpl_args *a)
{
	(void)a;
	(void)line;
	val used = dict_gets(self.d, "used");
	dict_set(r->e, self.d, v_cstr(r->e, "used"), v_bool(1));
	return used.t == V_BOOL ? dict_gets(self.d, "sep") : v_str("", 0);
}

static val g_joiner(tpl_render *r, int line, val self, tpl_args *a)
{
	(void)self;
	const val *sep = arg(a, 0, "sep");
	val st = v_dict(r->e);
	dict_set(r->e, st.d, v_cstr(r->e, "sep"), sep ? str_of(r, line, *sep) : v_str(", ", 2));
	tpl_func *f = tpl_alloc(r->e, sizeof *f);
	f->name = "joiner";
	f->fn = g_joiner_call;
	f->self = st;
	return (val){ .t = V_FUNC, .fn = f };
}

void tpl_add_globals(tpl_render *r, tpl_dict *d)
{
	static const struct { const char *name; tpl_builtin fn; } g[] = {
		{ "range", g_range }, { "namespace", g_namespace }, { "dict", g_dict },
		{ "raise_exception", g_raise }, { "strftime_now", g_strftime }, { "joiner", g_joiner },
	};
	for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
		tpl_func *f = tpl_alloc(r->e, sizeof *f);
		f->name = g[i].name;
		f->fn = g[i].fn;
		dict_set(r->e, d, v_cstr(r->e, g[i].name), (val){ .t = V_FUNC, .fn = f });
	}
}
