/* SPDX-License-Identifier: MIT */
/* value.c - the arena, values, Python's str()/repr() and json.dumps of them,
 * and the UTF-8 helpers the template engine shares. */
#include "base/util.h"
#include "text/template/tpl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const tpl_limits tpl_default_limits = {
	.memory = (size_t)256 << 20,
	.output = (size_t)32 << 20,
	.steps = 10000000,
	.depth = 200,
};

/* ---- arena --------------------------------------------------------------- */
struct tpl_chunk {
	tpl_chunk *next;
	size_t size, used;
	max_align_t data[];
};

void *tpl_alloc(tpl_env *e, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	tpl_chunk *c = e->chunks;
	if (!c || c->size - c->used < n) {
		size_t size = n > 65536 - sizeof *c ? n : 65536 - sizeof *c;
		if (e->used + size > e->lim.memory)
			tpl_fail(e, 0, "the template needs more than %zu MiB of memory",
				 e->lim.memory >> 20);
		c = malloc(sizeof *c + size);
		if (!c)
			tpl_fail(e, 0, "out of memory");
		e->used += size;
		c->size = size;
		c->used = 0;
		/* a big block goes behind the current one, which keeps its room */
		if (e->chunks && size > 65536 - sizeof *c) {
			c->next = e->chunks->next;
			e->chunks->next = c;
		} else {
			c->next = e->chunks;
			e->chunks = c;
		}
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

char *tpl_strndup(tpl_env *e, const char *s, size_t n)
{
	char *p = tpl_alloc(e, n + 1);
	memcpy(p, s, n);
	return p;
}

void tpl_arena_free(tpl_env *e)
{
	while (e->chunks) {
		tpl_chunk *c = e->chunks;
		e->chunks = c->next;
		free(c);
	}
	e->used = 0;
}

void tpl_fail(tpl_env *e, int line, const char *fmt, ...)
{
	if (e->err && e->errlen) {
		char msg[1024];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof msg, fmt, ap);
		va_end(ap);
		if (line > 0)
			snprintf(e->err, e->errlen, "%s: line %d: %s", e->name, line, msg);
		else
			snprintf(e->err, e->errlen, "%s: %s", e->name, msg);
		for (char *p = e->err; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = ' ';
	}
	longjmp(e->jb, 1);
}

/* ---- values -------------------------------------------------------------- */
val v_cstr(tpl_env *e, const char *s)
{
	size_t n = strlen(s);
	return v_str(tpl_strndup(e, s, n), n);
}

val v_list(tpl_env *e)
{
	val v = { .t = V_LIST };
	v.l = tpl_alloc(e, sizeof *v.l);
	return v;
}

val v_dict(tpl_env *e)
{
	val v = { .t = V_DICT };
	v.d = tpl_alloc(e, sizeof *v.d);
	return v;
}

void list_push(tpl_env *e, tpl_list *l, val x)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4;
		val *v = tpl_alloc(e, cap * sizeof *v);
		if (l->n)
			memcpy(v, l->v, l->n * sizeof *v);
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = x;
}

int dict_get(const tpl_dict *d, val k, val *out)
{
	for (size_t i = 0; i < d->n; i++)
		if (v_eq(d->k[i], k)) {
			if (out)
				*out = d->v[i];
			return 1;
		}
	return 0;
}

val dict_gets(const tpl_dict *d, const char *key)
{
	size_t n = strlen(key);
	for (size_t i = 0; i < d->n; i++)
		if (d->k[i].t == V_STR && d->k[i].s.n == n && memcmp(d->k[i].s.p, key, n) == 0)
			return d->v[i];
	return v_undef(NULL);
}

void dict_set(tpl_env *e, tpl_dict *d, val k, val x)
{
	for (size_t i = 0; i < d->n; i++)
		if (v_eq(d->k[i], k)) {
			d->v[i] = x;
			return;
		}
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 4;
		val *nk = tpl_alloc(e, cap * sizeof *nk), *nv = tpl_alloc(e, cap * sizeof *nv);
		if (d->n) {
			memcpy(nk, d->k, d->n * sizeof *nk);
			memcpy(nv, d->v, d->n * sizeof *nv);
		}
		d->k = nk;
		d->v = nv;
		d->cap = cap;
	}
	d->k[d->n] = k;
	d->v[d->n++] = x;
}

int v_truthy(val v)
{
	switch (v.t) {
	case V_UNDEF: case V_NONE: return 0;
	case V_BOOL: return v.b;
	case V_INT: return v.i != 0;
	case V_FLOAT: return v.f != 0;
	case V_STR: return v.s.n != 0;
	case V_LIST: return v.l->n != 0;
	case V_DICT: return v.d->n != 0;
	default: return 1;
	}
}

static int is_num(val v) { return v.t == V_BOOL || v.t == V_INT || v.t == V_FLOAT; }
static double num(val v) { return v.t == V_FLOAT ? v.f : v.t == V_INT ? (double)v.i : v.b; }

/* Python's ==, as chat templates meet it. */
int v_eq(val a, val b)
{
	if (is_num(a) && is_num(b)) {
		if (a.t != V_FLOAT && b.t != V_FLOAT)
			return (a.t == V_INT ? a.i : a.b) == (b.t == V_INT ? b.i : b.b);
		return num(a) == num(b);
	}
	if (a.t != b.t)
		return 0;
	switch (a.t) {
	case V_UNDEF: case V_NONE: return 1;
	case V_STR: return a.s.n == b.s.n && memcmp(a.s.p, b.s.p, a.s.n) == 0;
	case V_LIST:
		if (a.tuple != b.tuple || a.l->n != b.l->n)
			return 0;
		for (size_t i = 0; i < a.l->n; i++)
			if (!v_eq(a.l->v[i], b.l->v[i]))
				return 0;
		return 1;
	case V_DICT:
		if (a.d->n != b.d->n)
			return 0;
		for (size_t i = 0; i < a.d->n; i++) {
			val x;
			if (!dict_get(b.d, a.d->k[i], &x) || !v_eq(a.d->v[i], x))
				return 0;
		}
		return 1;
	case V_NS: return a.d == b.d;
	case V_FUNC: return a.fn == b.fn;
	case V_MACRO: return a.m == b.m;
	}
	return 0;
}

const char *v_typename(val v)
{
	static const char *names[] = { "Undefined", "NoneType", "bool", "int", "float", "str",
				       "list", "dict", "Namespace", "function", "Macro" };
	if (v.t == V_LIST && v.tuple)
		return "tuple";
	return names[v.t];
}

/* ---- buffers --------------------------------------------------------------- */
void buf_init(tpl_buf *b, tpl_env *e, int line)
{
	b->e = e;
	b->p = NULL;
	b->n = b->cap = 0;
	b->line = line;
}

static void buf_grow(tpl_buf *b, size_t need)
{
	if (need > b->e->lim.output)
		tpl_fail(b->e, b->line, "the output would exceed %zu MiB", b->e->lim.output >> 20);
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	char *p = tpl_alloc(b->e, cap);
	if (b->n)
		memcpy(p, b->p, b->n);
	b->p = p;
	b->cap = cap;
}

void buf_add(tpl_buf *b, const char *p, size_t n)
{
	if (!n)
		return;
	buf_grow(b, b->n + n);
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

void buf_addc(tpl_buf *b, char c) { buf_add(b, &c, 1); }
void buf_adds(tpl_buf *b, const char *s) { buf_add(b, s, strlen(s)); }

void buf_addf(tpl_buf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	buf_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void buf_cp(tpl_buf *b, uint32_t c)
{
	char s[4];
	buf_add(b, s, mh_utf8_encode(c, s));
}

val buf_val(tpl_buf *b)
{
	return v_str(b->p ? b->p : "", b->n);
}

/* ---- UTF-8 ------------------------------------------------------------------ */
uint32_t u8_next(const char *s, size_t n, size_t *i)
{
	const unsigned char *p = (const unsigned char *)s + *i;
	size_t left = n - *i;
	uint32_t c = p[0];
	int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
	if (len == 0 || (size_t)len > left) {
		(*i)++;
		return c;
	}
	for (int k = 1; k < len; k++)
		if ((p[k] & 0xc0) != 0x80) {
			(*i)++;
			return c;
		}
	if (len == 2)
		c = (c & 0x1f) << 6 | (p[1] & 0x3f);
	else if (len == 3)
		c = (c & 0x0f) << 12 | (p[1] & 0x3f) << 6 | (p[2] & 0x3f);
	else if (len == 4)
		c = (c & 0x07) << 18 | (p[1] & 0x3f) << 12 | (p[2] & 0x3f) << 6 | (p[3] & 0x3f);
	*i += (size_t)len;
	return c;
}

size_t u8_len(const char *p, size_t n)
{
	size_t i = 0, k = 0;
	while (i < n) {
		if ((unsigned char)p[i] < 0x80)
			i++;
		else
			u8_next(p, n, &i);
		k++;
	}
	return k;
}

size_t u8_offset(const char *p, size_t n, size_t cp)
{
	size_t i = 0;
	while (cp > 0 && i < n) {
		if ((unsigned char)p[i] < 0x80)
			i++;
		else
			u8_next(p, n, &i);
		cp--;
	}
	return i;
}

/* str.isspace() */
int py_isspace(uint32_t c)
{
	return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x3000;
}

/* ---- str(), repr() ------------------------------------------------------------ */
/* Python's repr of a float: the shortest string that reads back the same,
 * in exponent form below 1e-4 and from 1e16. */
void py_float_repr(char *out, size_t n, double f)
{
	if (isnan(f)) {
		snprintf(out, n, "nan");
		return;
	}
	if (isinf(f)) {
		snprintf(out, n, f < 0 ? "-inf" : "inf");
		return;
	}
	char digits[40];
	int prec;
	for (prec = 1; prec <= 17; prec++) {
		snprintf(digits, sizeof digits, "%.*e", prec - 1, f);
		if (strtod(digits, NULL) == f)
			break;
	}
	/* digits is d.ddde[+-]XX: take the mantissa digits and the exponent */
	char mant[24];
	int nm = 0, neg = 0;
	const char *p = digits;
	if (*p == '-') {
		neg = 1;
		p++;
	}
	for (; *p && *p != 'e'; p++)
		if (*p != '.')
			mant[nm++] = *p;
	while (nm > 1 && mant[nm - 1] == '0')
		nm--;
	mant[nm] = 0;
	int exp = atoi(p + 1);
	char *o = out;
	size_t left = n;
#define PUT(...) do { int k_ = snprintf(o, left, __VA_ARGS__); if (k_ < 0 || (size_t)k_ >= left) return; o += k_; left -= (size_t)k_; } while (0)
	if (neg)
		PUT("-");
	if (exp < -4 || exp >= 16) {
		PUT("%c", mant[0]);
		if (nm > 1)
			PUT(".%s", mant + 1);
		PUT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
	} else if (exp < 0) {
		PUT("0.");
		for (int i = 0; i < -exp - 1; i++)
			PUT("0");
		PUT("%s", mant);
	} else {
		for (int i = 0; i <= exp; i++)
			PUT("%c", i < nm ? mant[i] : '0');
		PUT(".");
		if (nm > exp + 1)
			PUT("%s", mant + exp + 1);
		else
			PUT("0");
	}
#undef PUT
}

static void repr_str(tpl_buf *b, const char *s, size_t n)
{
	int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
	char q = has_sq && !has_dq ? '"' : '\'';
	buf_addc(b, q);
	size_t i = 0;
	while (i < n) {
		size_t at = i;
		uint32_t c = u8_next(s, n, &i);
		if (c == (uint32_t)q || c == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (char)c);
		} else if (c == '\n')
			buf_adds(b, "\\n");
		else if (c == '\r')
			buf_adds(b, "\\r");
		else if (c == '\t')
			buf_adds(b, "\\t");
		else if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0))
			buf_addf(b, "\\x%02x", c);
		else if (c == 0xad || (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x206f) ||
			 c == 0xfeff || (c >= 0xd800 && c < 0xe000))
			buf_addf(b, "\\u%04x", c);  /* not printable in Python's eyes */
		else
			buf_add(b, s + at, i - at);
	}
	buf_addc(b, q);
}

static void seq_repr(tpl_buf *b, val v)
{
	if (v.t == V_LIST) {
		buf_addc(b, v.tuple ? '(' : '[');
		for (size_t i = 0; i < v.l->n; i++) {
			if (i)
				buf_adds(b, ", ");
			v_repr_to(b, v.l->v[i]);
		}
		if (v.tuple && v.l->n == 1)
			buf_addc(b, ',');
		buf_addc(b, v.tuple ? ')' : ']');
		return;
	}
	buf_addc(b, '{');
	for (size_t i = 0; i < v.d->n; i++) {
		if (i)
			buf_adds(b, ", ");
		v_repr_to(b, v.d->k[i]);
		buf_adds(b, ": ");
		v_repr_to(b, v.d->v[i]);
	}
	buf_addc(b, '}');
}

void v_repr_to(tpl_buf *b, val v)
{
	if (v.t == V_STR)
		repr_str(b, v.s.p, v.s.n);
	else
		v_str_to(b, v);
}

void v_str_to(tpl_buf *b, val v)
{
	char tmp[64];
	switch (v.t) {
	case V_UNDEF: break;
	case V_NONE: buf_adds(b, "None"); break;
	case V_BOOL: buf_adds(b, v.b ? "True" : "False"); break;
	case V_INT: buf_addf(b, "%lld", v.i); break;
	case V_FLOAT:
		py_float_repr(tmp, sizeof tmp, v.f);
		buf_adds(b, tmp);
		break;
	case V_STR: buf_add(b, v.s.p, v.s.n); break;
	case V_LIST: case V_DICT: seq_repr(b, v); break;
	case V_NS:
		buf_adds(b, "<Namespace ");
		seq_repr(b, (val){ .t = V_DICT, .d = v.d });
		buf_addc(b, '>');
		break;
	case V_FUNC: buf_addf(b, "<built-in function %s>", v.fn->name); break;
	case V_MACRO: buf_addf(b, "<Macro '%s'>", v.m->name); break;
	}
}

val v_to_str(tpl_env *e, int line, val v)
{
	if (v.t == V_STR)
		return v;
	tpl_buf b;
	buf_init(&b, e, line);
	v_str_to(&b, v);
	return buf_val(&b);
}

/* ---- json.dumps ---------------------------------------------------------------- */
/* JSON's two-character escape of c, or NULL. */
static const char *json_escape(unsigned char c)
{
	switch (c) {
	case '"': return "\\\"";
	case '\\': return "\\\\";
	case '\n': return "\\n";
	case '\r': return "\\r";
	case '\t': return "\\t";
	case '\b': return "\\b";
	case '\f': return "\\f";
	}
	return NULL;
}

static void json_str(tpl_buf *b, const char *s, size_t n)
{
	buf_addc(b, '"');
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = json_escape(c);
		char u[8];
		if (!esc && c < 0x20) {
			snprintf(u, sizeof u, "\\u%04x", c);
			esc = u;
		}
		if (esc) {
			buf_add(b, s + run, i - run);
			buf_adds(b, esc);
			run = i + 1;
		}
	}
	buf_add(b, s + run, n - run);
	buf_addc(b, '"');
}

static void json_nl(tpl_buf *b, const char *indent, int depth)
{
	buf_addc(b, '\n');
	for (int i = 0; i < depth; i++)
		buf_adds(b, indent);
}

/* A dict's key and ": ", as json.dumps writes it: a string, or a scalar
 * as the string of its JSON. */
static void json_key(tpl_buf *b, val k, int depth)
{
	if (k.t == V_STR) {
		json_str(b, k.s.p, k.s.n);
	} else if (k.t == V_INT || k.t == V_FLOAT || k.t == V_BOOL || k.t == V_NONE) {
		tpl_buf kb;
		buf_init(&kb, b->e, b->line);
		v_json_to(&kb, k, NULL, depth);
		json_str(b, kb.p, kb.n);
	} else {
		tpl_fail(b->e, b->line, "tojson: keys must be str, int, float, bool or None, not %s",
			 v_typename(k));
	}
	buf_adds(b, ": ");
}

void v_json_to(tpl_buf *b, val v, const char *indent, int depth)
{
	char tmp[64];
	if (depth > b->e->lim.depth)
		tpl_fail(b->e, b->line, "tojson: nesting too deep");
	switch (v.t) {
	case V_NONE: buf_adds(b, "null"); return;
	case V_BOOL: buf_adds(b, v.b ? "true" : "false"); return;
	case V_INT: buf_addf(b, "%lld", v.i); return;
	case V_FLOAT:
		if (isnan(v.f))
			buf_adds(b, "NaN");
		else if (isinf(v.f))
			buf_adds(b, v.f < 0 ? "-Infinity" : "Infinity");
		else {
			py_float_repr(tmp, sizeof tmp, v.f);
			buf_adds(b, tmp);
		}
		return;
	case V_STR: json_str(b, v.s.p, v.s.n); return;
	case V_LIST:
	case V_DICT: {
		int dict = v.t == V_DICT;
		size_t n = dict ? v.d->n : v.l->n;
		if (!n) {
			buf_adds(b, dict ? "{}" : "[]");
			return;
		}
		buf_addc(b, dict ? '{' : '[');
		for (size_t i = 0; i < n; i++) {
			if (i)
				buf_adds(b, indent ? "," : ", ");
			if (indent)
				json_nl(b, indent, depth + 1);
			if (dict)
				json_key(b, v.d->k[i], depth);
			v_json_to(b, dict ? v.d->v[i] : v.l->v[i], indent, depth + 1);
		}
		if (indent)
			json_nl(b, indent, depth);
		buf_addc(b, dict ? '}' : ']');
		return;
	}
	default:
		tpl_fail(b->e, b->line, "tojson: Object of type %s is not JSON serializable",
			 v_typename(v));
	}
}
