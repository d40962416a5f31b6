/* SPDX-License-Identifier: MIT */
/* parser.c - tokens to a tree, by Jinja2's grammar (parser.py), precedence
 * from loosest to tightest:
 *   cond:    or ["if" or ["else" cond]]
 *   or, and, not
 *   compare: math1 (("=="|"!="|"<"|"<="|">"|">="|"in"|"not" "in") math1)*
 *   math1:   concat (("+"|"-") concat)*
 *   concat:  math2 ("~" math2)*
 *   math2:   pow (("*"|"/"|"//"|"%") pow)*
 *   pow:     unary ("**" unary)*
 *   unary:   ("-"|"+") unary | primary postfix* ("|" filter | "is" test | call)*
 * so that filters and tests bind tighter than any operator: `a + b | trim` is
 * a + (b|trim), `not x is defined` is not (x is defined).
 * Node fields per kind (the rest unused):
 *   N_DATA c   N_OUTPUT a   N_IF a list list2   N_FOR names a(iter) b(filter) list list2
 *   N_SET names|a(ns) name(attr) b(value)   N_SETBLOCK names|a name list + d(filters)
 *   N_MACRO name names list2(defaults) list   N_CALLBLOCK a(call) names list2 list
 *   N_FILTERBLOCK d(filters, innermost first) list   N_WITH names list2(values) list
 *   E_ATTR a name   E_ITEM a b   E_SLICE a b c3 d   E_CALL a args kwargs
 *   E_FILTER a name args kwargs   E_TEST a name args op(negated)   E_BIN op a b
 *   E_CMP a list ops   E_COND a(then) b(test) c3(else)   E_LIST/E_TUPLE list
 *   E_DICT list(keys) list2(values) */
#include "text/template/tpl.h"

#include <string.h>

typedef struct parser {
	tpl_env *e;
	const tpl_tokens *t;
	int i;
	int depth;
	int loops;          /* for bodies we are in (break/continue) */
} parser;

static node *expr(parser *p);
static node *or_expr(parser *p);
static node *unary(parser *p, int with_filter);
static nodes body(parser *p, const char *const *ends, const char **which);

static const tpl_token *cur(parser *p) { return &p->t->v[p->i]; }
static const tpl_token *peek(parser *p, int k)
{
	int j = p->i + k;
	return &p->t->v[j < p->t->n ? j : p->t->n - 1];
}
static void advance(parser *p) { if (p->i < p->t->n - 1) p->i++; }

static int tok_is(const tpl_token *t, int type, const char *s)
{
	return t->type == type && (!s || (t->n == strlen(s) && memcmp(t->p, s, t->n) == 0));
}
static int is_name(parser *p, const char *s) { return tok_is(cur(p), T_NAME, s); }
static int is_op(parser *p, const char *s) { return tok_is(cur(p), T_OP, s); }

static const char *describe(parser *p, const tpl_token *t)
{
	static const char *names[] = { "end of template", "text", "'{{'", "'}}'", "'{%'", "'%}'" };
	if (t->type <= T_BLOCK_END)
		return names[t->type];
	if (t->type == T_STRING)
		return "string";
	if (t->type == T_INT || t->type == T_FLOAT)
		return "number";
	size_t n = t->n > 40 ? 40 : t->n;
	char *s = tpl_alloc(p->e, n + 3);
	s[0] = '\'';
	memcpy(s + 1, t->p, n);
	s[n + 1] = '\'';
	return s;
}

static _Noreturn void unexpected(parser *p, const char *wanted)
{
	tpl_fail(p->e, cur(p)->line, "syntax error: unexpected %s%s%s", describe(p, cur(p)),
		 wanted ? ", expected " : "", wanted ? wanted : "");
}

static void expect_op(parser *p, const char *s)
{
	if (!is_op(p, s)) {
		char w[8];
		w[0] = '\'';
		strcpy(w + 1, s);
		strcat(w, "'");
		unexpected(p, w);
	}
	advance(p);
}

static void expect_type(parser *p, int type, const char *what)
{
	if (cur(p)->type != type)
		unexpected(p, what);
	advance(p);
}

static const char *name_str(parser *p)
{
	if (cur(p)->type != T_NAME)
		unexpected(p, "a name");
	const char *s = tpl_strndup(p->e, cur(p)->p, cur(p)->n);
	advance(p);
	return s;
}

static node *mk(parser *p, int kind, int line)
{
	node *n = tpl_alloc(p->e, sizeof *n);
	n->kind = kind;
	n->line = line;
	return n;
}

static void add(parser *p, nodes *l, node *n)
{
	if (l->n == l->cap) {
		int cap = l->cap ? 2 * l->cap : 4;
		node **v = tpl_alloc(p->e, (size_t)cap * sizeof *v);
		if (l->n)
			memcpy(v, l->v, (size_t)l->n * sizeof *v);
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = n;
}

static void add_name(parser *p, const char ***names, int *n, const char *s)
{
	const char **v = tpl_alloc(p->e, (size_t)(*n + 1) * sizeof *v);
	if (*n)
		memcpy(v, *names, (size_t)*n * sizeof *v);
	v[(*n)++] = s;
	*names = v;
}

static void enter(parser *p)
{
	if (++p->depth > p->e->lim.depth)
		tpl_fail(p->e, cur(p)->line, "syntax error: expression nested too deeply");
}

/* ---- expressions ----------------------------------------------------------- */
/* "(" args ")" into n->args / n->kwargs; the cursor is on "(". */
static void call_args(parser *p, node *n)
{
	expect_op(p, "(");
	while (!is_op(p, ")")) {
		if (n->args.n || n->kwargs.n)
			expect_op(p, ",");
		if (is_op(p, ")"))
			break;
		if (is_op(p, "*") || is_op(p, "**"))
			tpl_fail(p->e, cur(p)->line, "*args and **kwargs in calls are not supported");
		if (cur(p)->type == T_NAME && tok_is(peek(p, 1), T_OP, "=")) {
			const char *k = name_str(p);
			advance(p);
			add_name(p, &n->knames, &(int){ n->kwargs.n }, k);
			add(p, &n->kwargs, expr(p));
		} else {
			if (n->kwargs.n)
				tpl_fail(p->e, cur(p)->line, "syntax error: positional argument after a keyword argument");
			add(p, &n->args, expr(p));
		}
	}
	advance(p);
}

static node *tuple_or(parser *p, int condexpr, int explicit_parens);

static node *primary(parser *p)
{
	const tpl_token *t = cur(p);
	node *n;
	enter(p);
	switch (t->type) {
	case T_NAME:
		n = mk(p, E_CONST, t->line);
		if (is_name(p, "true") || is_name(p, "True"))
			n->c = v_bool(1);
		else if (is_name(p, "false") || is_name(p, "False"))
			n->c = v_bool(0);
		else if (is_name(p, "none") || is_name(p, "None"))
			n->c = v_none();
		else {
			n->kind = E_NAME;
			n->name = tpl_strndup(p->e, t->p, t->n);
		}
		advance(p);
		break;
	case T_STRING: {
		/* adjacent literals concatenate */
		tpl_buf b;
		buf_init(&b, p->e, t->line);
		n = mk(p, E_CONST, t->line);
		while (cur(p)->type == T_STRING) {
			buf_add(&b, cur(p)->p, cur(p)->n);
			advance(p);
		}
		n->c = buf_val(&b);
		break;
	}
	case T_INT:
		n = mk(p, E_CONST, t->line);
		n->c = v_int(t->i);
		advance(p);
		break;
	case T_FLOAT:
		n = mk(p, E_CONST, t->line);
		n->c = v_float(t->f);
		advance(p);
		break;
	case T_OP:
		if (is_op(p, "(")) {
			advance(p);
			n = tuple_or(p, 1, 1);
			expect_op(p, ")");
			break;
		}
		if (is_op(p, "[") || is_op(p, "{")) {
			int dict = is_op(p, "{");
			n = mk(p, dict ? E_DICT : E_LIST, t->line);
			advance(p);
			while (!is_op(p, dict ? "}" : "]")) {
				if (n->list.n)
					expect_op(p, ",");
				if (is_op(p, dict ? "}" : "]"))
					break;
				add(p, &n->list, expr(p));
				if (dict) {
					expect_op(p, ":");
					add(p, &n->list2, expr(p));
				}
			}
			advance(p);
			break;
		}
		/* fall through */
	default:
		unexpected(p, NULL);
	}
	p->depth--;
	return n;
}

static node *subscript(parser *p, node *obj)
{
	int line = cur(p)->line;
	advance(p); /* [ */
	node *parts[3] = { NULL, NULL, NULL };
	int k = 0, slice = 0;
	for (;;) {
		if (is_op(p, ":")) {
			slice = 1;
			if (++k > 2)
				unexpected(p, "']'");
			advance(p);
			continue;
		}
		if (is_op(p, "]"))
			break;
		if (parts[k])
			unexpected(p, "']' or ':'");
		parts[k] = expr(p);
	}
	advance(p);
	node *n;
	if (!slice) {
		if (!parts[0])
			unexpected(p, "an index");
		n = mk(p, E_ITEM, line);
		n->b = parts[0];
	} else {
		n = mk(p, E_SLICE, line);
		n->b = parts[0];
		n->c3 = parts[1];
		n->d = parts[2];
	}
	n->a = obj;
	return n;
}

static node *postfix(parser *p, node *n)
{
	for (;;) {
		int line = cur(p)->line;
		if (is_op(p, ".")) {
			advance(p);
			node *g;
			if (cur(p)->type == T_INT) {
				g = mk(p, E_ITEM, line);
				g->b = mk(p, E_CONST, line);
				g->b->c = v_int(cur(p)->i);
				advance(p);
			} else {
				g = mk(p, E_ATTR, line);
				g->name = name_str(p);
			}
			g->a = n;
			n = g;
		} else if (is_op(p, "[")) {
			n = subscript(p, n);
		} else if (is_op(p, "(")) {
			node *c = mk(p, E_CALL, line);
			c->a = n;
			call_args(p, c);
			n = c;
		} else
			return n;
	}
}

static const char *dotted_name(parser *p)
{
	const char *s = name_str(p);
	while (is_op(p, ".") && peek(p, 1)->type == T_NAME) {
		advance(p);
		const char *t = name_str(p);
		char *u = tpl_alloc(p->e, strlen(s) + strlen(t) + 2);
		strcpy(u, s);
		strcat(u, ".");
		strcat(u, t);
		s = u;
	}
	return s;
}

/* "|" name [args], the cursor on the name; the subject is n (NULL for filter blocks). */
static node *filter(parser *p, node *n)
{
	node *f = mk(p, E_FILTER, cur(p)->line);
	f->name = dotted_name(p);
	if (is_op(p, "("))
		call_args(p, f);
	f->a = n;
	return f;
}

static node *test(parser *p, node *n)
{
	node *t = mk(p, E_TEST, cur(p)->line);
	if (is_name(p, "not")) {
		t->op = 1;
		advance(p);
	}
	t->name = dotted_name(p);
	const tpl_token *c = cur(p);
	if (is_op(p, "(")) {
		call_args(p, t);
	} else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT || c->type == T_FLOAT ||
		    is_op(p, "[") || is_op(p, "{")) &&
		   !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and")) {
		if (is_name(p, "is"))
			tpl_fail(p->e, c->line, "syntax error: You cannot chain multiple tests with is");
		add(p, &t->args, postfix(p, primary(p)));
	}
	t->a = n;
	return t;
}

static node *unary(parser *p, int with_filter)
{
	int line = cur(p)->line;
	node *n;
	enter(p);
	if (is_op(p, "-") || is_op(p, "+")) {
		int neg = is_op(p, "-");
		advance(p);
		n = mk(p, neg ? E_NEG : E_POS, line);
		n->a = unary(p, 0);
	} else
		n = primary(p);
	n = postfix(p, n);
	while (with_filter) {
		if (is_op(p, "|")) {
			advance(p);
			n = filter(p, n);
		} else if (is_name(p, "is")) {
			advance(p);
			n = test(p, n);
		} else if (is_op(p, "(")) {
			node *c = mk(p, E_CALL, cur(p)->line);
			c->a = n;
			call_args(p, c);
			n = c;
		} else
			break;
	}
	p->depth--;
	return n;
}

static node *bin(parser *p, int op, node *a, node *b, int line)
{
	node *n = mk(p, E_BIN, line);
	n->op = op;
	n->a = a;
	n->b = b;
	return n;
}

static node *pow_expr(parser *p)
{
	node *n = unary(p, 1);
	while (is_op(p, "**")) {
		int line = cur(p)->line;
		advance(p);
		n = bin(p, OP_POW, n, unary(p, 1), line);
	}
	return n;
}

static node *math2(parser *p)
{
	node *n = pow_expr(p);
	for (;;) {
		int line = cur(p)->line, op;
		if (is_op(p, "*"))
			op = OP_MUL;
		else if (is_op(p, "/"))
			op = OP_DIV;
		else if (is_op(p, "//"))
			op = OP_FLOORDIV;
		else if (is_op(p, "%"))
			op = OP_MOD;
		else
			return n;
		advance(p);
		n = bin(p, op, n, pow_expr(p), line);
	}
}

static node *concat(parser *p)
{
	node *n = math2(p);
	if (!is_op(p, "~"))
		return n;
	node *c = mk(p, E_CONCAT, cur(p)->line);
	add(p, &c->list, n);
	while (is_op(p, "~")) {
		advance(p);
		add(p, &c->list, math2(p));
	}
	return c;
}

static node *math1(parser *p)
{
	node *n = concat(p);
	for (;;) {
		int line = cur(p)->line;
		if (!is_op(p, "+") && !is_op(p, "-"))
			return n;
		int op = is_op(p, "+") ? OP_ADD : OP_SUB;
		advance(p);
		n = bin(p, op, n, concat(p), line);
	}
}

static node *compare(parser *p)
{
	int line = cur(p)->line;
	node *n = math1(p), *c = NULL;
	for (;;) {
		int op = 0;
		static const struct { const char *s; int op; } ops[] = {
			{ "==", OP_EQ }, { "!=", OP_NE }, { "<", OP_LT }, { "<=", OP_LE },
			{ ">", OP_GT }, { ">=", OP_GE } };
		for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
			if (is_op(p, ops[k].s))
				op = ops[k].op;
		if (op)
			advance(p);
		else if (is_name(p, "in")) {
			op = OP_IN;
			advance(p);
		} else if (is_name(p, "not") && tok_is(peek(p, 1), T_NAME, "in")) {
			op = OP_NOTIN;
			advance(p);
			advance(p);
		} else
			break;
		if (!c) {
			c = mk(p, E_CMP, line);
			c->a = n;
		}
		int *ops2 = tpl_alloc(p->e, (size_t)(c->list.n + 1) * sizeof *ops2);
		if (c->list.n)
			memcpy(ops2, c->ops, (size_t)c->list.n * sizeof *ops2);
		ops2[c->list.n] = op;
		c->ops = ops2;
		add(p, &c->list, math1(p));
	}
	return c ? c : n;
}

static node *not_expr(parser *p)
{
	if (is_name(p, "not")) {
		node *n = mk(p, E_NOT, cur(p)->line);
		advance(p);
		enter(p);
		n->a = not_expr(p);
		p->depth--;
		return n;
	}
	return compare(p);
}

static node *and_expr(parser *p)
{
	node *n = not_expr(p);
	while (is_name(p, "and")) {
		node *a = mk(p, E_AND, cur(p)->line);
		advance(p);
		a->a = n;
		a->b = not_expr(p);
		n = a;
	}
	return n;
}

static node *or_expr(parser *p)
{
	node *n = and_expr(p);
	while (is_name(p, "or")) {
		node *o = mk(p, E_OR, cur(p)->line);
		advance(p);
		o->a = n;
		o->b = and_expr(p);
		n = o;
	}
	return n;
}

static node *expr(parser *p)
{
	enter(p);
	node *n = or_expr(p);
	while (is_name(p, "if")) {
		node *c = mk(p, E_COND, cur(p)->line);
		advance(p);
		c->a = n;
		c->b = or_expr(p);
		if (is_name(p, "else")) {
			advance(p);
			c->c3 = expr(p);
		}
		n = c;
	}
	p->depth--;
	return n;
}

/* An expression, or a tuple of them when commas follow. */
static node *tuple_or(parser *p, int condexpr, int explicit_parens)
{
	int line = cur(p)->line;
	node *t = mk(p, E_TUPLE, line), *first = NULL;
	int comma = 0;
	for (;;) {
		if (first || comma) {
			if (!is_op(p, ","))
				break;
			advance(p);
			comma = 1;
		}
		if (cur(p)->type == T_VAR_END || cur(p)->type == T_BLOCK_END || is_op(p, ")") ||
		    (!explicit_parens && is_name(p, "if")) || is_name(p, "in"))
			break;
		node *n = condexpr ? expr(p) : or_expr(p);
		if (!first)
			first = n;
		add(p, &t->list, n);
	}
	if (!comma) {
		if (!first) {
			if (!explicit_parens)
				unexpected(p, "an expression");
			return t; /* () */
		}
		return first;
	}
	return t;
}

/* ---- statements ------------------------------------------------------------------- */
static void end_tag(parser *p) { expect_type(p, T_BLOCK_END, "'%}'"); }

/* Names separated by commas (optionally in parentheses), for for and set. */
static void targets(parser *p, node *n)
{
	int paren = is_op(p, "(");
	if (paren)
		advance(p);
	do {
		if (n->nnames)
			advance(p);
		add_name(p, &n->names, &n->nnames, name_str(p));
	} while (is_op(p, ","));
	if (paren)
		expect_op(p, ")");
}

static void end_of(parser *p, const char *name)
{
	/* body() left the cursor on the end tag's name */
	(void)name;
	advance(p);
	end_tag(p);
}

static node *st_if(parser *p, int line)
{
	static const char *const ends[] = { "elif", "else", "endif", NULL };
	static const char *const endif[] = { "endif", NULL };
	node *n = mk(p, N_IF, line);
	const char *which;
	n->a = expr(p);
	end_tag(p);
	n->list = body(p, ends, &which);
	if (!strcmp(which, "elif")) {
		int l = cur(p)->line;
		advance(p);
		add(p, &n->list2, st_if(p, l));
		return n;   /* the nested if ate the endif */
	}
	if (!strcmp(which, "else")) {
		advance(p);
		end_tag(p);
		n->list2 = body(p, endif, &which);
	}
	end_of(p, "endif");
	return n;
}

static node *st_for(parser *p, int line)
{
	static const char *const ends[] = { "else", "endfor", NULL };
	static const char *const endfor[] = { "endfor", NULL };
	node *n = mk(p, N_FOR, line);
	const char *which;
	targets(p, n);
	if (!is_name(p, "in"))
		unexpected(p, "'in'");
	advance(p);
	n->a = tuple_or(p, 0, 0);
	if (is_name(p, "if")) {
		advance(p);
		n->b = expr(p);
	}
	if (is_name(p, "recursive"))
		tpl_fail(p->e, line, "recursive for loops are not supported");
	end_tag(p);
	p->loops++;
	n->list = body(p, ends, &which);
	p->loops--;
	if (!strcmp(which, "else")) {
		advance(p);
		end_tag(p);
		n->list2 = body(p, endfor, &which);
	}
	end_of(p, "endfor");
	return n;
}

static node *st_set(parser *p, int line)
{
	static const char *const ends[] = { "endset", NULL };
	node *n = mk(p, N_SET, line);
	if (cur(p)->type == T_NAME && tok_is(peek(p, 1), T_OP, ".")) {
		/* ns.attr = ... */
		n->a = mk(p, E_NAME, line);
		n->a->name = name_str(p);
		advance(p);
		n->name = name_str(p);
	} else
		targets(p, n);
	if (is_op(p, "=")) {
		advance(p);
		n->b = tuple_or(p, 1, 0);
		end_tag(p);
		return n;
	}
	n->kind = N_SETBLOCK;
	while (is_op(p, "|")) {
		advance(p);
		n->d = filter(p, n->d);
	}
	end_tag(p);
	const char *which;
	int loops = p->loops;
	n->list = body(p, ends, &which);
	p->loops = loops;
	end_of(p, "endset");
	return n;
}

/* "(" name ["=" default], ... ")" */
static void params(parser *p, node *n)
{
	expect_op(p, "(");
	while (!is_op(p, ")")) {
		if (n->nnames)
			expect_op(p, ",");
		if (is_op(p, ")"))
			break;
		add_name(p, &n->names, &n->nnames, name_str(p));
		if (is_op(p, "=")) {
			advance(p);
			add(p, &n->list2, expr(p));
		} else {
			if (n->list2.n && n->list2.v[n->list2.n - 1])
				tpl_fail(p->e, cur(p)->line, "syntax error: non-default argument follows default argument");
			add(p, &n->list2, NULL);
		}
	}
	advance(p);
}

static node *st_macro(parser *p, int line)
{
	static const char *const ends[] = { "endmacro", NULL };
	node *n = mk(p, N_MACRO, line);
	const char *which;
	n->name = name_str(p);
	params(p, n);
	end_tag(p);
	int loops = p->loops;
	p->loops = 0;
	n->list = body(p, ends, &which);
	p->loops = loops;
	end_of(p, "endmacro");
	return n;
}

static node *st_call(parser *p, int line)
{
	static const char *const ends[] = { "endcall", NULL };
	node *n = mk(p, N_CALLBLOCK, line);
	const char *which;
	if (is_op(p, "("))
		params(p, n);
	n->a = expr(p);
	if (n->a->kind != E_CALL)
		tpl_fail(p->e, line, "syntax error: expected a call after 'call'");
	end_tag(p);
	int loops = p->loops;
	p->loops = 0;
	n->list = body(p, ends, &which);
	p->loops = loops;
	end_of(p, "endcall");
	return n;
}

static node *st_filter(parser *p, int line)
{
	static const char *const ends[] = { "endfilter", NULL };
	node *n = mk(p, N_FILTERBLOCK, line);
	const char *which;
	n->d = filter(p, NULL);
	while (is_op(p, "|")) {
		advance(p);
		n->d = filter(p, n->d);
	}
	end_tag(p);
	n->list = body(p, ends, &which);
	end_of(p, "endfilter");
	return n;
}

static node *st_with(parser *p, int line)
{
	static const char *const ends[] = { "endwith", NULL };
	node *n = mk(p, N_WITH, line);
	const char *which;
	while (cur(p)->type != T_BLOCK_END) {
		if (n->nnames)
			expect_op(p, ",");
		add_name(p, &n->names, &n->nnames, name_str(p));
		expect_op(p, "=");
		add(p, &n->list2, expr(p));
	}
	end_tag(p);
	n->list = body(p, ends, &which);
	end_of(p, "endwith");
	return n;
}

static node *statement(parser *p)
{
	int line = cur(p)->line;
	if (cur(p)->type != T_NAME)
		unexpected(p, "a tag name");
	const char *name = name_str(p);
	if (!strcmp(name, "if"))
		return st_if(p, line);
	if (!strcmp(name, "for"))
		return st_for(p, line);
	if (!strcmp(name, "set"))
		return st_set(p, line);
	if (!strcmp(name, "macro"))
		return st_macro(p, line);
	if (!strcmp(name, "call"))
		return st_call(p, line);
	if (!strcmp(name, "filter"))
		return st_filter(p, line);
	if (!strcmp(name, "with"))
		return st_with(p, line);
	if (!strcmp(name, "break") || !strcmp(name, "continue")) {
		if (!p->loops)
			tpl_fail(p->e, line, "syntax error: '%s' outside of a loop", name);
		node *n = mk(p, name[0] == 'b' ? N_BREAK : N_CONTINUE, line);
		end_tag(p);
		return n;
	}
	if (!strcmp(name, "generation")) {
		/* transformers' marker of assistant text: renders its body */
		static const char *const ends[] = { "endgeneration", NULL };
		const char *which;
		node *n = mk(p, N_BLOCK, line);
		end_tag(p);
		n->list = body(p, ends, &which);
		end_of(p, "endgeneration");
		return n;
	}
	if (!strcmp(name, "extends") || !strcmp(name, "include") || !strcmp(name, "import") ||
	    !strcmp(name, "from") || !strcmp(name, "block") || !strcmp(name, "do") ||
	    !strcmp(name, "autoescape"))
		tpl_fail(p->e, line, "'%s' is not supported in chat templates", name);
	tpl_fail(p->e, line, "syntax error: unknown tag '%s'", name);
}

/* Statements up to a tag named in ends (NULL-terminated; NULL: to the end of
 * the template); the cursor is left on that tag's name, *which names it. */
static nodes body(parser *p, const char *const *ends, const char **which)
{
	nodes out = { 0 };
	enter(p);
	for (;;) {
		const tpl_token *t = cur(p);
		if (t->type == T_EOF) {
			if (ends) {
				int k = 0;
				while (ends[k + 1])
					k++;
				tpl_fail(p->e, t->line, "syntax error: unexpected end of template, "
					 "expected '%s'", ends[k]);
			}
			break;
		}
		if (t->type == T_DATA) {
			node *n = mk(p, N_DATA, t->line);
			n->c = v_str(t->p, t->n);
			add(p, &out, n);
			advance(p);
		} else if (t->type == T_VAR_BEGIN) {
			node *n = mk(p, N_OUTPUT, t->line);
			advance(p);
			n->a = tuple_or(p, 1, 0);
			expect_type(p, T_VAR_END, "'}}'");
			add(p, &out, n);
		} else if (t->type == T_BLOCK_BEGIN) {
			const tpl_token *nt = peek(p, 1);
			int found = 0;
			for (int k = 0; ends && ends[k]; k++)
				if (tok_is(nt, T_NAME, ends[k])) {
					*which = ends[k];
					found = 1;
				}
			advance(p);
			if (found)
				break;
			if (nt->type == T_NAME && nt->n > 3 && !memcmp(nt->p, "end", 3))
				unexpected(p, NULL);
			add(p, &out, statement(p));
		} else
			unexpected(p, NULL);
	}
	p->depth--;
	return out;
}

node *tpl_parse(tpl_env *e, const tpl_tokens *t)
{
	parser p = { .e = e, .t = t };
	node *root = mk(&p, N_BLOCK, 1);
	root->list = body(&p, NULL, NULL);
	return root;
}
