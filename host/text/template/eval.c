/* SPDX-License-Identifier: MIT */
/* eval.c - rendering: statements write to a buffer, expressions give values,
 * with Jinja2's scoping (a for body, a macro, a block set, a filter block or
 * a with block is a new scope; if is not; the loop body starts afresh at each
 * iteration, which is why templates carry state across iterations in a
 * namespace()), Python's operator semantics, and Jinja2's default Undefined:
 * it prints as "", is false, iterates as empty, compares unequal to
 * everything else, and fails on arithmetic, attribute access and calls. */
#define _GNU_SOURCE
#include "text/template/tpl.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE };

static val eval(tpl_render *r, tpl_frame *f, const node *n);
static int exec_body(tpl_render *r, tpl_frame *f, const nodes *body, tpl_buf *out);

static void step(tpl_render *r, int line)
{
	if (++r->steps > r->e->lim.steps)
		tpl_fail(r->e, line, "the template ran for more than %llu steps",
			 (unsigned long long)r->e->lim.steps);
}

static _Noreturn void undef_fail(tpl_render *r, int line, val v)
{
	tpl_fail(r->e, line, "%s", v.why ? v.why : "an undefined value was used");
}

static tpl_frame *frame_new(tpl_render *r, tpl_frame *parent)
{
	tpl_frame *f = tpl_alloc(r->e, sizeof *f);
	f->parent = parent;
	return f;
}

static val lookup(tpl_render *r, tpl_frame *f, const char *name)
{
	size_t n = strlen(name);
	for (; f; f = f->parent)
		for (size_t i = 0; i < f->vars.n; i++) {
			val k = f->vars.k[i];
			if (k.s.n == n && memcmp(k.s.p, name, n) == 0)
				return f->vars.v[i];
		}
	size_t len = n + 20;
	char *why = tpl_alloc(r->e, len);
	snprintf(why, len, "'%s' is undefined", name);
	return v_undef(why);
}

static void bind(tpl_render *r, tpl_frame *f, const char *name, val v)
{
	dict_set(r->e, &f->vars, v_str(name, strlen(name)), v);
}

/* Assign v to names (unpacking when there are several). */
static void bind_targets(tpl_render *r, int line, tpl_frame *f, const char **names, int n, val v)
{
	if (n == 1) {
		bind(r, f, names[0], v);
		return;
	}
	tpl_list *l = tpl_iter(r, line, v);
	if (l->n != (size_t)n)
		tpl_fail(r->e, line, "cannot unpack %zu values into %d names", l->n, n);
	for (int i = 0; i < n; i++)
		bind(r, f, names[i], l->v[i]);
}

/* ---- arithmetic ---------------------------------------------------------------- */
static int is_num(val v) { return v.t == V_BOOL || v.t == V_INT || v.t == V_FLOAT; }
static int is_intlike(val v) { return v.t == V_BOOL || v.t == V_INT; }
static long long ival(val v) { return v.t == V_INT ? v.i : v.b; }
static double fval(val v) { return v.t == V_FLOAT ? v.f : (double)ival(v); }

static const char *opname(int op)
{
	static const char *s[] = { "", "+", "-", "*", "/", "//", "%", "**" };
	return op <= OP_POW ? s[op] : "?";
}

static val repeat(tpl_render *r, int line, val seq, long long k)
{
	if (seq.t == V_STR) {
		tpl_buf b;
		buf_init(&b, r->e, line);
		if (k > 0 && seq.s.n && (size_t)k > r->e->lim.output / seq.s.n)
			tpl_fail(r->e, line, "the string would exceed %zu MiB", r->e->lim.output >> 20);
		for (long long i = 0; i < k; i++)
			buf_add(&b, seq.s.p, seq.s.n);
		return buf_val(&b);
	}
	val out = v_list(r->e);
	out.tuple = seq.tuple;
	if (k > 0 && seq.l->n && (size_t)k > r->e->lim.output / 16 / seq.l->n)
		tpl_fail(r->e, line, "the list would be too long");
	for (long long i = 0; i < k; i++)
		for (size_t j = 0; j < seq.l->n; j++)
			list_push(r->e, out.l, seq.l->v[j]);
	return out;
}

static val binop(tpl_render *r, int line, int op, val a, val b)
{
	if (a.t == V_UNDEF)
		undef_fail(r, line, a);
	if (b.t == V_UNDEF)
		undef_fail(r, line, b);
	if (is_intlike(a) && is_intlike(b)) {
		long long x = ival(a), y = ival(b), z;
		switch (op) {
		case OP_ADD:
			if (__builtin_add_overflow(x, y, &z))
				goto overflow;
			return v_int(z);
		case OP_SUB:
			if (__builtin_sub_overflow(x, y, &z))
				goto overflow;
			return v_int(z);
		case OP_MUL:
			if (__builtin_mul_overflow(x, y, &z))
				goto overflow;
			return v_int(z);
		case OP_DIV:
			if (!y)
				goto zero;
			return v_float((double)x / (double)y);
		case OP_FLOORDIV: case OP_MOD: {
			if (!y)
				goto zero;
			if (x == LLONG_MIN && y == -1)
				goto overflow;
			long long q = x / y, m = x % y;
			if (m && ((m < 0) != (y < 0))) {
				q--;
				m += y;
			}
			return v_int(op == OP_MOD ? m : q);
		}
		case OP_POW:
			if (y < 0)
				return v_float(pow((double)x, (double)y));
			z = 1;
			for (long long i = 0; i < y; i++) {
				if (__builtin_mul_overflow(z, x, &z))
					goto overflow;
				if (z == 0 || z == 1)
					break;
			}
			if (z == 1 && x == -1 && (y & 1))
				z = -1;
			return v_int(z);
		}
	}
	if (is_num(a) && is_num(b)) {
		double x = fval(a), y = fval(b);
		switch (op) {
		case OP_ADD: return v_float(x + y);
		case OP_SUB: return v_float(x - y);
		case OP_MUL: return v_float(x * y);
		case OP_DIV:
			if (y == 0)
				goto zero;
			return v_float(x / y);
		case OP_FLOORDIV:
			if (y == 0)
				goto zero;
			return v_float(floor(x / y));
		case OP_MOD: {
			if (y == 0)
				goto zero;
			double m = fmod(x, y);
			if (m != 0 && ((m < 0) != (y < 0)))
				m += y;
			return v_float(m);
		}
		case OP_POW: return v_float(pow(x, y));
		}
	}
	if (op == OP_ADD && a.t == V_STR && b.t == V_STR) {
		tpl_buf s;
		buf_init(&s, r->e, line);
		buf_add(&s, a.s.p, a.s.n);
		buf_add(&s, b.s.p, b.s.n);
		return buf_val(&s);
	}
	if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST && a.tuple == b.tuple) {
		val l = v_list(r->e);
		l.tuple = a.tuple;
		for (size_t i = 0; i < a.l->n; i++)
			list_push(r->e, l.l, a.l->v[i]);
		for (size_t i = 0; i < b.l->n; i++)
			list_push(r->e, l.l, b.l->v[i]);
		return l;
	}
	if (op == OP_MUL && (a.t == V_STR || a.t == V_LIST) && is_intlike(b))
		return repeat(r, line, a, ival(b));
	if (op == OP_MUL && (b.t == V_STR || b.t == V_LIST) && is_intlike(a))
		return repeat(r, line, b, ival(a));
	tpl_fail(r->e, line, "unsupported operand type(s) for %s: '%s' and '%s'", opname(op),
		 v_typename(a), v_typename(b));
overflow:
	tpl_fail(r->e, line, "integer overflow");
zero:
	tpl_fail(r->e, line, "division by zero");
}

/* Python's ordering for numbers, strings and lists. */
int tpl_cmp(tpl_render *r, int line, val a, val b)
{
	if (is_num(a) && is_num(b)) {
		if (is_intlike(a) && is_intlike(b))
			return (ival(a) > ival(b)) - (ival(a) < ival(b));
		double x = fval(a), y = fval(b);
		return (x > y) - (x < y);
	}
	if (a.t == V_STR && b.t == V_STR) {
		size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
		int c = memcmp(a.s.p, b.s.p, n);
		if (c)
			return c < 0 ? -1 : 1;
		return (a.s.n > b.s.n) - (a.s.n < b.s.n);
	}
	if (a.t == V_LIST && b.t == V_LIST) {
		for (size_t i = 0; i < a.l->n && i < b.l->n; i++)
			if (!v_eq(a.l->v[i], b.l->v[i]))
				return tpl_cmp(r, line, a.l->v[i], b.l->v[i]);
		return (a.l->n > b.l->n) - (a.l->n < b.l->n);
	}
	if (a.t == V_UNDEF)
		undef_fail(r, line, a);
	if (b.t == V_UNDEF)
		undef_fail(r, line, b);
	tpl_fail(r->e, line, "'<' not supported between instances of '%s' and '%s'", v_typename(a),
		 v_typename(b));
}

static int contains(tpl_render *r, int line, val hay, val x)
{
	switch (hay.t) {
	case V_STR:
		if (x.t != V_STR)
			tpl_fail(r->e, line, "'in <string>' requires string as left operand, not %s",
				 v_typename(x));
		if (!x.s.n)
			return 1;
		if (x.s.n > hay.s.n)
			return 0;
		return memmem(hay.s.p, hay.s.n, x.s.p, x.s.n) != NULL;
	case V_LIST:
		for (size_t i = 0; i < hay.l->n; i++)
			if (v_eq(hay.l->v[i], x))
				return 1;
		return 0;
	case V_DICT: case V_NS:
		return dict_get(hay.d, x, NULL);
	case V_UNDEF:
		return 0;
	default:
		tpl_fail(r->e, line, "argument of type '%s' is not iterable", v_typename(hay));
	}
}

static val compare(tpl_render *r, const node *n, tpl_frame *f)
{
	val a = eval(r, f, n->a);
	for (int i = 0; i < n->list.n; i++) {
		val b = eval(r, f, n->list.v[i]);
		int ok;
		switch (n->ops[i]) {
		case OP_EQ: ok = v_eq(a, b); break;
		case OP_NE: ok = !v_eq(a, b); break;
		case OP_LT: ok = tpl_cmp(r, n->line, a, b) < 0; break;
		case OP_LE: ok = tpl_cmp(r, n->line, a, b) <= 0; break;
		case OP_GT: ok = tpl_cmp(r, n->line, a, b) > 0; break;
		case OP_GE: ok = tpl_cmp(r, n->line, a, b) >= 0; break;
		case OP_IN: ok = contains(r, n->line, b, a); break;
		default: ok = !contains(r, n->line, b, a); break;
		}
		if (!ok)
			return v_bool(0);
		a = b;
	}
	return v_bool(1);
}

/* ---- indexing --------------------------------------------------------------- */
static long long norm_index(long long i, long long len)
{
	return i < 0 ? i + len : i;
}

/* One bound of a slice as Python's PySlice_AdjustIndices clamps it; dflt
 * when it is absent. */
static long long slice_bound(val x, long long len, long long step, long long dflt)
{
	if (x.t == V_NONE || x.t == V_UNDEF)
		return dflt;
	long long i = ival(x);
	if (i < 0) {
		i += len;
		if (i < 0)
			i = step < 0 ? -1 : 0;
	} else if (i >= len) {
		i = step < 0 ? len - 1 : len;
	}
	return i;
}

static val slice(tpl_render *r, int line, val obj, val lo, val hi, val st)
{
	long long len, start, stop, stepv = 1;
	if (obj.t == V_UNDEF)
		undef_fail(r, line, obj);
	if (obj.t != V_STR && obj.t != V_LIST)
		tpl_fail(r->e, line, "'%s' object is not subscriptable", v_typename(obj));
	for (int k = 0; k < 3; k++) {
		val v = k == 0 ? lo : k == 1 ? hi : st;
		if (v.t != V_NONE && v.t != V_UNDEF && !is_intlike(v))
			tpl_fail(r->e, line, "slice indices must be integers or None");
	}
	if (st.t != V_NONE && st.t != V_UNDEF)
		stepv = ival(st);
	if (!stepv)
		tpl_fail(r->e, line, "slice step cannot be zero");
	int ascii = 1;
	if (obj.t == V_STR) {
		for (size_t i = 0; i < obj.s.n && ascii; i++)
			ascii = (unsigned char)obj.s.p[i] < 0x80;
		len = ascii ? (long long)obj.s.n : (long long)u8_len(obj.s.p, obj.s.n);
	} else
		len = (long long)obj.l->n;
	start = slice_bound(lo, len, stepv, stepv < 0 ? len - 1 : 0);
	stop = slice_bound(hi, len, stepv, stepv < 0 ? -1 : len);
	if (obj.t == V_STR && stepv == 1) {
		if (stop <= start)
			return v_str("", 0);
		size_t a = ascii ? (size_t)start : u8_offset(obj.s.p, obj.s.n, (size_t)start);
		size_t b = ascii ? (size_t)stop : u8_offset(obj.s.p, obj.s.n, (size_t)stop);
		return v_str(obj.s.p + a, b - a);
	}
	if (obj.t == V_STR) {
		/* code point offsets, then pick */
		size_t *off = tpl_alloc(r->e, ((size_t)len + 1) * sizeof *off);
		size_t i = 0;
		for (long long k = 0; k < len; k++) {
			off[k] = i;
			u8_next(obj.s.p, obj.s.n, &i);
		}
		off[len] = obj.s.n;
		tpl_buf b;
		buf_init(&b, r->e, line);
		for (long long k = start; stepv > 0 ? k < stop : k > stop; k += stepv)
			buf_add(&b, obj.s.p + off[k], off[k + 1] - off[k]);
		return buf_val(&b);
	}
	val out = v_list(r->e);
	out.tuple = obj.tuple;
	for (long long k = start; stepv > 0 ? k < stop : k > stop; k += stepv)
		list_push(r->e, out.l, obj.l->v[k]);
	return out;
}

val tpl_getitem(tpl_render *r, int line, val obj, val key)
{
	char *why;
	switch (obj.t) {
	case V_UNDEF:
		undef_fail(r, line, obj);
	case V_DICT: case V_NS: {
		val v;
		if (dict_get(obj.d, key, &v))
			return v;
		if (key.t == V_STR && obj.t == V_DICT) {
			v = tpl_method(r, obj, tpl_strndup(r->e, key.s.p, key.s.n));
			if (v.t != V_UNDEF)
				return v;
		}
		break;
	}
	case V_LIST:
		if (is_intlike(key)) {
			long long i = norm_index(ival(key), (long long)obj.l->n);
			if (i >= 0 && i < (long long)obj.l->n)
				return obj.l->v[i];
			why = tpl_alloc(r->e, 64);
			snprintf(why, 64, "'%s object' has no element %lld", v_typename(obj), ival(key));
			return v_undef(why);
		}
		break;
	case V_STR:
		if (is_intlike(key)) {
			long long len = (long long)u8_len(obj.s.p, obj.s.n);
			long long i = norm_index(ival(key), len);
			if (i >= 0 && i < len) {
				size_t a = u8_offset(obj.s.p, obj.s.n, (size_t)i), b = a;
				u8_next(obj.s.p, obj.s.n, &b);
				return v_str(obj.s.p + a, b - a);
			}
		}
		break;
	}
	if (key.t == V_STR && obj.t != V_DICT && obj.t != V_NS) {
		val v = tpl_method(r, obj, tpl_strndup(r->e, key.s.p, key.s.n));
		if (v.t != V_UNDEF)
			return v;
	}
	tpl_buf b;
	buf_init(&b, r->e, line);
	buf_addf(&b, "'%s object' has no attribute ", v_typename(obj));
	v_repr_to(&b, key);
	buf_addc(&b, 0);
	return v_undef(b.p);
}

val tpl_getattr(tpl_render *r, int line, val obj, const char *name)
{
	if (obj.t == V_UNDEF)
		undef_fail(r, line, obj);
	/* attributes (methods) first, then items */
	val v = tpl_method(r, obj, name);
	if (v.t != V_UNDEF)
		return v;
	if ((obj.t == V_DICT || obj.t == V_NS) && dict_get(obj.d, v_str(name, strlen(name)), &v))
		return v;
	size_t len = strlen(name) + 64;
	char *why = tpl_alloc(r->e, len);
	snprintf(why, len, "'%s object' has no attribute '%s'", v_typename(obj), name);
	return v_undef(why);
}

tpl_list *tpl_iter(tpl_render *r, int line, val v)
{
	tpl_list *l;
	switch (v.t) {
	case V_LIST: return v.l;
	case V_UNDEF: return tpl_alloc(r->e, sizeof(tpl_list));
	case V_DICT: case V_NS:
		l = tpl_alloc(r->e, sizeof *l);
		for (size_t i = 0; i < v.d->n; i++)
			list_push(r->e, l, v.d->k[i]);
		return l;
	case V_STR: {
		l = tpl_alloc(r->e, sizeof *l);
		size_t i = 0;
		while (i < v.s.n) {
			size_t a = i;
			u8_next(v.s.p, v.s.n, &i);
			list_push(r->e, l, v_str(v.s.p + a, i - a));
		}
		return l;
	}
	default:
		tpl_fail(r->e, line, "'%s' object is not iterable", v_typename(v));
	}
}

/* ---- calls ----------------------------------------------------------------------- */
static void eval_args(tpl_render *r, tpl_frame *f, const node *n, tpl_args *a, int extra)
{
	a->n = n->args.n;
	a->v = tpl_alloc(r->e, (size_t)(a->n + 1) * sizeof *a->v);
	for (int i = 0; i < a->n; i++)
		a->v[i] = eval(r, f, n->args.v[i]);
	a->nk = n->kwargs.n;
	a->kname = tpl_alloc(r->e, (size_t)(a->nk + extra) * sizeof *a->kname + 1);
	a->kv = tpl_alloc(r->e, (size_t)(a->nk + extra) * sizeof *a->kv + 1);
	for (int i = 0; i < a->nk; i++) {
		a->kname[i] = n->knames[i];
		a->kv[i] = eval(r, f, n->kwargs.v[i]);
	}
}

static val call_macro(tpl_render *r, int line, tpl_macro *m, tpl_args *a)
{
	const node *def = m->def;
	if (++r->depth > r->e->lim.depth)
		tpl_fail(r->e, line, "macro calls nested deeper than %d", r->e->lim.depth);
	tpl_frame *f = frame_new(r, m->scope);
	char *bound = tpl_alloc(r->e, (size_t)def->nnames + 1);
	val varargs = v_list(r->e), kwargs = v_dict(r->e), caller = v_undef("'caller' is undefined");
	varargs.tuple = 1;
	for (int i = 0; i < a->n; i++) {
		if (i < def->nnames) {
			bind(r, f, def->names[i], a->v[i]);
			bound[i] = 1;
		} else
			list_push(r->e, varargs.l, a->v[i]);
	}
	for (int k = 0; k < a->nk; k++) {
		int i;
		for (i = 0; i < def->nnames; i++)
			if (!strcmp(def->names[i], a->kname[k]))
				break;
		if (i < def->nnames) {
			if (bound[i])
				tpl_fail(r->e, line, "macro '%s' got multiple values for argument '%s'",
					 m->name, a->kname[k]);
			bind(r, f, def->names[i], a->kv[k]);
			bound[i] = 1;
		} else if (!strcmp(a->kname[k], "caller"))
			caller = a->kv[k];
		else
			dict_set(r->e, kwargs.d, v_cstr(r->e, a->kname[k]), a->kv[k]);
	}
	for (int i = 0; i < def->nnames; i++)
		if (!bound[i]) {
			const node *d = def->list2.v[i];
			if (d)
				bind(r, f, def->names[i], eval(r, f, d));
			else {
				size_t len = strlen(def->names[i]) + 64;
				char *why = tpl_alloc(r->e, len);
				snprintf(why, len, "parameter '%s' was not provided", def->names[i]);
				bind(r, f, def->names[i], v_undef(why));
			}
		}
	bind(r, f, "varargs", varargs);
	bind(r, f, "kwargs", kwargs);
	if (caller.t != V_UNDEF || def->kind == N_MACRO)
		bind(r, f, "caller", caller);
	tpl_buf out;
	buf_init(&out, r->e, line);
	exec_body(r, f, &def->list, &out);
	r->depth--;
	return buf_val(&out);
}

val tpl_call(tpl_render *r, int line, val fn, tpl_args *a)
{
	step(r, line);
	if (fn.t == V_FUNC) {
		a->fname = fn.fn->name;
		return fn.fn->fn(r, line, fn.fn->self, a);
	}
	if (fn.t == V_MACRO)
		return call_macro(r, line, fn.m, a);
	if (fn.t == V_UNDEF)
		undef_fail(r, line, fn);
	tpl_fail(r->e, line, "'%s' object is not callable", v_typename(fn));
}

static val apply_filter(tpl_render *r, tpl_frame *f, const node *n, val subject)
{
	tpl_builtin fn = tpl_filter(n->name);
	if (!fn)
		tpl_fail(r->e, n->line, "no filter named '%s'", n->name);
	tpl_args a;
	eval_args(r, f, n, &a, 0);
	step(r, n->line);
	return fn(r, n->line, subject, &a);
}

/* A filter chain over a block's output: innermost (a == NULL) first. */
static val filter_chain(tpl_render *r, tpl_frame *f, const node *n, val body)
{
	if (!n)
		return body;
	val v = filter_chain(r, f, n->a, body);
	return apply_filter(r, f, n, v);
}

static val eval(tpl_render *r, tpl_frame *f, const node *n)
{
	step(r, n->line);
	switch (n->kind) {
	case E_CONST:
		return n->c;
	case E_NAME:
		return lookup(r, f, n->name);
	case E_ATTR:
		return tpl_getattr(r, n->line, eval(r, f, n->a), n->name);
	case E_ITEM: {
		val obj = eval(r, f, n->a);
		return tpl_getitem(r, n->line, obj, eval(r, f, n->b));
	}
	case E_SLICE: {
		val obj = eval(r, f, n->a);
		val lo = n->b ? eval(r, f, n->b) : v_none();
		val hi = n->c3 ? eval(r, f, n->c3) : v_none();
		val st = n->d ? eval(r, f, n->d) : v_none();
		return slice(r, n->line, obj, lo, hi, st);
	}
	case E_CALL: {
		val fn = eval(r, f, n->a);
		tpl_args a;
		eval_args(r, f, n, &a, 0);
		return tpl_call(r, n->line, fn, &a);
	}
	case E_FILTER:
		return apply_filter(r, f, n, eval(r, f, n->a));
	case E_TEST: {
		val v = eval(r, f, n->a);
		tpl_args a;
		eval_args(r, f, n, &a, 0);
		int ok = tpl_test(r, n->line, n->name, v, &a);
		if (ok < 0)
			tpl_fail(r->e, n->line, "no test named '%s'", n->name);
		return v_bool(n->op ? !ok : ok);
	}
	case E_BIN: {
		val a = eval(r, f, n->a);
		return binop(r, n->line, n->op, a, eval(r, f, n->b));
	}
	case E_NEG: case E_POS: {
		val v = eval(r, f, n->a);
		if (v.t == V_UNDEF)
			undef_fail(r, n->line, v);
		if (!is_num(v))
			tpl_fail(r->e, n->line, "bad operand type for unary %s: '%s'",
				 n->kind == E_NEG ? "-" : "+", v_typename(v));
		if (n->kind == E_POS)
			return v.t == V_BOOL ? v_int(v.b) : v;
		if (v.t == V_FLOAT)
			return v_float(-v.f);
		if (ival(v) == LLONG_MIN)
			tpl_fail(r->e, n->line, "integer overflow");
		return v_int(-ival(v));
	}
	case E_AND: {
		val a = eval(r, f, n->a);
		return v_truthy(a) ? eval(r, f, n->b) : a;
	}
	case E_OR: {
		val a = eval(r, f, n->a);
		return v_truthy(a) ? a : eval(r, f, n->b);
	}
	case E_NOT:
		return v_bool(!v_truthy(eval(r, f, n->a)));
	case E_COND:
		if (v_truthy(eval(r, f, n->b)))
			return eval(r, f, n->a);
		return n->c3 ? eval(r, f, n->c3) : v_undef("the conditional expression had no else");
	case E_LIST: case E_TUPLE: {
		val l = v_list(r->e);
		l.tuple = n->kind == E_TUPLE;
		for (int i = 0; i < n->list.n; i++)
			list_push(r->e, l.l, eval(r, f, n->list.v[i]));
		return l;
	}
	case E_DICT: {
		val d = v_dict(r->e);
		for (int i = 0; i < n->list.n; i++) {
			val k = eval(r, f, n->list.v[i]);
			if (k.t == V_LIST && !k.tuple)
				tpl_fail(r->e, n->line, "unhashable type: 'list'");
			if (k.t == V_DICT)
				tpl_fail(r->e, n->line, "unhashable type: 'dict'");
			dict_set(r->e, d.d, k, eval(r, f, n->list2.v[i]));
		}
		return d;
	}
	case E_CMP:
		return compare(r, n, f);
	case E_CONCAT: {
		tpl_buf b;
		buf_init(&b, r->e, n->line);
		for (int i = 0; i < n->list.n; i++)
			v_str_to(&b, eval(r, f, n->list.v[i]));
		return buf_val(&b);
	}
	}
	tpl_fail(r->e, n->line, "cannot evaluate this node");
}

/* ---- statements ------------------------------------------------------------------ */
static val loop_cycle(tpl_render *r, int line, val self, tpl_args *a)
{
	if (!a->n)
		tpl_fail(r->e, line, "no items for cycling given");
	return a->v[self.i % a->n];
}

static int exec_for(tpl_render *r, tpl_frame *f, const node *n, tpl_buf *out)
{
	tpl_list *items = tpl_iter(r, n->line, eval(r, f, n->a));
	if (n->b) {
		/* the loop filter sees the targets, not loop.* */
		tpl_list *kept = tpl_alloc(r->e, sizeof *kept);
		for (size_t i = 0; i < items->n; i++) {
			tpl_frame *g = frame_new(r, f);
			bind_targets(r, n->line, g, n->names, n->nnames, items->v[i]);
			if (v_truthy(eval(r, g, n->b)))
				list_push(r->e, kept, items->v[i]);
		}
		items = kept;
	}
	size_t len = items->n;
	for (size_t i = 0; i < len; i++) {
		step(r, n->line);
		tpl_frame *g = frame_new(r, f);
		val loop = v_dict(r->e);
		tpl_dict *d = loop.d;
#define LSET(k, v) dict_set(r->e, d, v_str(k, strlen(k)), v)
		LSET("index", v_int((long long)i + 1));
		LSET("index0", v_int((long long)i));
		LSET("revindex", v_int((long long)(len - i)));
		LSET("revindex0", v_int((long long)(len - i - 1)));
		LSET("first", v_bool(i == 0));
		LSET("last", v_bool(i == len - 1));
		LSET("length", v_int((long long)len));
		LSET("depth", v_int(1));
		LSET("depth0", v_int(0));
		if (i > 0)
			LSET("previtem", items->v[i - 1]);
		if (i + 1 < len)
			LSET("nextitem", items->v[i + 1]);
		tpl_func *cyc = tpl_alloc(r->e, sizeof *cyc);
		cyc->name = "cycle";
		cyc->fn = loop_cycle;
		cyc->self = v_int((long long)i);
		LSET("cycle", ((val){ .t = V_FUNC, .fn = cyc }));
#undef LSET
		bind(r, g, "loop", loop);
		bind_targets(r, n->line, g, n->names, n->nnames, items->v[i]);
		int flow = exec_body(r, g, &n->list, out);
		if (flow == FLOW_BREAK)
			break;
	}
	if (!len)
		return exec_body(r, f, &n->list2, out);
	return FLOW_NEXT;
}

/* {% set %} and {% set %}...{% endset %}: v to the names, or to a
 * namespace's attribute (set ns.name = ...). */
static void assign(tpl_render *r, tpl_frame *f, const node *n, val v)
{
	if (n->a) {
		val ns = eval(r, f, n->a);
		if (ns.t != V_NS)
			tpl_fail(r->e, n->line, "cannot assign attribute on non-namespace object");
		dict_set(r->e, ns.d, v_cstr(r->e, n->name), v);
	} else {
		bind_targets(r, n->line, f, n->names, n->nnames, v);
	}
}

static int exec(tpl_render *r, tpl_frame *f, const node *n, tpl_buf *out)
{
	step(r, n->line);
	switch (n->kind) {
	case N_DATA:
		buf_add(out, n->c.s.p, n->c.s.n);
		return FLOW_NEXT;
	case N_OUTPUT:
		out->line = n->line;
		v_str_to(out, eval(r, f, n->a));
		return FLOW_NEXT;
	case N_IF:
		return exec_body(r, f, v_truthy(eval(r, f, n->a)) ? &n->list : &n->list2, out);
	case N_FOR:
		return exec_for(r, f, n, out);
	case N_SET: {
		val v = eval(r, f, n->b);
		assign(r, f, n, v);
		return FLOW_NEXT;
	}
	case N_SETBLOCK: {
		tpl_buf b;
		buf_init(&b, r->e, n->line);
		exec_body(r, frame_new(r, f), &n->list, &b);
		val v = filter_chain(r, f, n->d, buf_val(&b));
		assign(r, f, n, v);
		return FLOW_NEXT;
	}
	case N_MACRO: {
		tpl_macro *m = tpl_alloc(r->e, sizeof *m);
		m->name = n->name;
		m->def = n;
		m->scope = f;
		bind(r, f, n->name, (val){ .t = V_MACRO, .m = m });
		return FLOW_NEXT;
	}
	case N_CALLBLOCK: {
		tpl_macro *m = tpl_alloc(r->e, sizeof *m);
		m->name = "caller";
		m->def = n;
		m->scope = f;
		const node *call = n->a;
		val fn = eval(r, f, call->a);
		tpl_args a;
		eval_args(r, f, call, &a, 1);
		a.kname[a.nk] = "caller";
		a.kv[a.nk++] = (val){ .t = V_MACRO, .m = m };
		out->line = n->line;
		v_str_to(out, tpl_call(r, n->line, fn, &a));
		return FLOW_NEXT;
	}
	case N_FILTERBLOCK: {
		tpl_buf b;
		buf_init(&b, r->e, n->line);
		exec_body(r, frame_new(r, f), &n->list, &b);
		out->line = n->line;
		v_str_to(out, filter_chain(r, f, n->d, buf_val(&b)));
		return FLOW_NEXT;
	}
	case N_WITH: {
		tpl_frame *g = frame_new(r, f);
		for (int i = 0; i < n->nnames; i++)
			bind(r, g, n->names[i], eval(r, f, n->list2.v[i]));
		return exec_body(r, g, &n->list, out);
	}
	case N_BLOCK:
		return exec_body(r, f, &n->list, out);
	case N_BREAK:
		return FLOW_BREAK;
	case N_CONTINUE:
		return FLOW_CONTINUE;
	}
	tpl_fail(r->e, n->line, "cannot execute this node");
}

static int exec_body(tpl_render *r, tpl_frame *f, const nodes *body, tpl_buf *out)
{
	for (int i = 0; i < body->n; i++) {
		int flow = exec(r, f, body->v[i], out);
		if (flow != FLOW_NEXT)
			return flow;
	}
	return FLOW_NEXT;
}

val tpl_render_tree(tpl_env *e, const node *root, val vars, time_t now)
{
	tpl_render r = { .e = e, .now = now };
	tpl_frame *g = frame_new(&r, NULL);
	tpl_add_globals(&r, &g->vars);
	if (vars.t == V_DICT)
		for (size_t i = 0; i < vars.d->n; i++)
			dict_set(e, &g->vars, vars.d->k[i], vars.d->v[i]);
	r.globals = g;
	tpl_buf out;
	buf_init(&out, e, 1);
	exec_body(&r, frame_new(&r, g), &root->list, &out);
	return buf_val(&out);
}
