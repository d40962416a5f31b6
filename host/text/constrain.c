/* SPDX-License-Identifier: MIT */
/* constrain.c - the shapes of constrain.h as a byte automaton, and the
 * token mask over a vocabulary sorted by bytes. */
#include "text/constrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the vocabulary ------------------------------------------------------- */

struct cn_vocab {
	int32_t n;          /* the tokenizer's ids */
	char *blob;         /* tokenizer_pieces after other tokens */
	uint32_t *off;
	char *blob1;        /* and as a reply's first token */
	uint32_t *off1;
	int32_t *order;     /* the ids with a piece, sorted by its bytes */
	uint32_t *lcp;      /* bytes order[i] shares with order[i - 1] */
	int32_t n_order;
	uint32_t max_len;
};

typedef struct piece {
	const char *p;
	uint32_t len;
	int32_t id;
} piece;

static int by_bytes(const void *a, const void *b)
{
	const piece *x = a, *y = b;
	int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

cn_vocab *cn_vocab_new(const mh_tokenizer *t)
{
	piece *ps = NULL;
	cn_vocab *v = calloc(1, sizeof *v);
	if (!v || tokenizer_pieces(t, 0, &v->blob, &v->off) != 0 ||
	    tokenizer_pieces(t, 1, &v->blob1, &v->off1) != 0)
		goto fail;
	v->n = tokenizer_vocab_size(t);
	v->order = malloc((size_t)v->n * sizeof *v->order);
	v->lcp = malloc((size_t)v->n * sizeof *v->lcp);
	ps = malloc((size_t)v->n * sizeof *ps);
	if (!v->order || !v->lcp || !ps)
		goto fail;
	for (int32_t id = 0; id < v->n; id++) {
		uint32_t len = v->off[id + 1] - v->off[id];
		if (len) {
			ps[v->n_order++] = (piece){ v->blob + v->off[id], len, id };
			if (len > v->max_len)
				v->max_len = len;
		}
	}
	qsort(ps, (size_t)v->n_order, sizeof *ps, by_bytes);
	for (int32_t i = 0; i < v->n_order; i++) {
		uint32_t k = 0;
		if (i)
			while (k < ps[i - 1].len && k < ps[i].len && ps[i - 1].p[k] == ps[i].p[k])
				k++;
		v->order[i] = ps[i].id;
		v->lcp[i] = k;
	}
	free(ps);
	return v;
fail:
	free(ps);
	cn_vocab_free(v);
	return NULL;
}

void cn_vocab_free(cn_vocab *v)
{
	if (!v)
		return;
	free(v->blob);
	free(v->off);
	free(v->blob1);
	free(v->off1);
	free(v->order);
	free(v->lcp);
	free(v);
}

int cn_name_ok(const char *s)
{
	size_t n = 0;
	for (; s && s[n]; n++) {
		char ch = s[n];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-'))
			return 0;
	}
	return n >= 1 && n <= CN_MAX_NAME;
}

/* ---- the automaton ---------------------------------------------------------- */

enum { P_LIT, P_NAME, P_JSON, P_DONE };

/* the tool-call shape's fixed text; a call ends with L_CLOSE, and the next
 * one (with `many`) starts with L_NEXT, whose first byte is where the reply
 * may end instead */
enum { L_OPEN, L_ARGS, L_CLOSE, L_NEXT, L_TRUE, L_FALSE, L_NULL };
static const char *const lits[] = {
	[L_OPEN] = "<tool_call>\n{\"name\": \"",
	[L_ARGS] = "\", \"arguments\": ",
	[L_CLOSE] = "}\n</tool_call>",
	[L_NEXT] = "\n<tool_call>\n{\"name\": \"",
	[L_TRUE] = "true", [L_FALSE] = "false", [L_NULL] = "null",
};

/* JSON, one byte at a time */
enum {
	J_OPEN,           /* the outermost '{' */
	J_VALUE,          /* a value: after ':', ',' in an array */
	J_VALUE_OR_CLOSE, /* after '[' */
	J_KEY_OR_CLOSE,   /* after '{' */
	J_KEY_NEXT,       /* after ',' in an object */
	J_KEY,            /* in a key's string */
	J_COLON,
	J_STR,            /* in a value's string */
	J_AFTER,          /* after a value: ',' or the container's close */
	J_WORD,           /* true, false, null (lit, at) */
	J_MINUS, J_ZERO, J_INT, J_DOT, J_FRAC, J_E, J_ESIGN, J_EXP, /* numbers */
};

typedef struct cn_state {
	uint64_t arr;      /* bit d: level d is an array, not an object */
	uint16_t at;       /* bytes of the literal or name so far */
	uint16_t u;        /* a \u escape's value so far */
	uint8_t phase, lit, js, depth;
	uint8_t ws;        /* whitespace before the next token: 0 none, 1 a
			    * space, 2 + n a newline and n spaces or tabs */
	uint8_t need;      /* UTF-8 continuation bytes still to come */
	uint8_t lo, hi;    /* the range of the next one */
	uint8_t esc;       /* after a backslash */
	uint8_t hex;       /* \u digits still to come */
	uint8_t sur;       /* a surrogate pair: 1, 2: the second half's '\\' and 'u'
			    * to come; 3: its digits */
	uint8_t nlo, nhi;  /* the names that still match: names[nlo, nhi) */
} cn_state;

struct mh_constraint {
	const cn_vocab *v;
	int kind, many;
	char **names;      /* sorted */
	uint8_t n_names;
	cn_state s;        /* after the reply so far */
	int started;       /* a token has been followed */
	cn_state *walk;    /* the mask's states, v->max_len + 1 */
	unsigned char *ok; /* the mask's verdicts, one per id */
};

static int hexval(unsigned char b)
{
	if (b >= '0' && b <= '9')
		return b - '0';
	if (b >= 'a' && b <= 'f')
		return b - 'a' + 10;
	if (b >= 'A' && b <= 'F')
		return b - 'A' + 10;
	return -1;
}

static void json_done(const mh_constraint *c, cn_state *s)
{
	if (c->kind == CN_TOOLS) {
		s->phase = P_LIT;
		s->lit = L_CLOSE;
		s->at = 0;
	} else {
		s->phase = P_DONE;
	}
}

static int push(cn_state *s, int array)
{
	if (s->depth >= CN_MAX_DEPTH)
		return 0;
	s->arr = array ? s->arr | 1ull << s->depth : s->arr & ~(1ull << s->depth);
	s->depth++;
	s->js = array ? J_VALUE_OR_CLOSE : J_KEY_OR_CLOSE;
	return 1;
}

static void pop(const mh_constraint *c, cn_state *s)
{
	s->depth--;
	s->js = J_AFTER;
	if (s->depth == 0)
		json_done(c, s);
}

/* A byte inside a string (the quotes aside): 1 if it may come. */
static int str_byte(cn_state *s, unsigned char b, int *closed)
{
	*closed = 0;
	if (s->need) {
		if (b < s->lo || b > s->hi)
			return 0;
		s->need--;
		s->lo = 0x80;
		s->hi = 0xBF;
		return 1;
	}
	if (s->sur == 1 || s->sur == 2) { /* the \u of a surrogate pair's second half */
		if (b != (s->sur == 1 ? '\\' : 'u'))
			return 0;
		if (s->sur++ == 2) {
			s->hex = 4;
			s->u = 0;
		}
		return 1;
	}
	if (s->hex) {
		int h = hexval(b);
		if (h < 0)
			return 0;
		s->u = (uint16_t)(s->u << 4 | h);
		if (--s->hex)
			return 1;
		if (s->sur == 3) { /* a pair's second half */
			s->sur = 0;
			return s->u >= 0xDC00 && s->u <= 0xDFFF;
		}
		if (s->u >= 0xD800 && s->u <= 0xDBFF) { /* a pair's first half */
			s->sur = 1;
			return 1;
		}
		/* no NUL (it would cut the string short), no lone second half */
		return s->u != 0 && (s->u < 0xDC00 || s->u > 0xDFFF);
	}
	if (s->esc) {
		s->esc = 0;
		if (b == 'u') {
			s->hex = 4;
			s->u = 0;
			return 1;
		}
		return strchr("\"\\/bfnrt", b) && b;
	}
	if (b == '"') {
		*closed = 1;
		return 1;
	}
	if (b == '\\') {
		s->esc = 1;
		return 1;
	}
	if (b < 0x20)
		return 0;
	if (b < 0x80)
		return 1;
	s->lo = 0x80;
	s->hi = 0xBF;
	if (b >= 0xC2 && b <= 0xDF) {
		s->need = 1;
	} else if (b >= 0xE0 && b <= 0xEF) {
		s->need = 2;
		if (b == 0xE0)
			s->lo = 0xA0; /* not overlong */
		if (b == 0xED)
			s->hi = 0x9F; /* not a surrogate */
	} else if (b >= 0xF0 && b <= 0xF4) {
		s->need = 3;
		if (b == 0xF0)
			s->lo = 0x90;
		if (b == 0xF4)
			s->hi = 0x8F; /* not past U+10FFFF */
	} else {
		return 0;
	}
	return 1;
}

/* A value starts with b: 1 if it may. */
static int value_start(cn_state *s, unsigned char b)
{
	switch (b) {
	case '{': return push(s, 0);
	case '[': return push(s, 1);
	case '"': s->js = J_STR; return 1;
	case '-': s->js = J_MINUS; return 1;
	case '0': s->js = J_ZERO; return 1;
	case 't': s->lit = L_TRUE; break;
	case 'f': s->lit = L_FALSE; break;
	case 'n': s->lit = L_NULL; break;
	default:
		if (b >= '1' && b <= '9') {
			s->js = J_INT;
			return 1;
		}
		return 0;
	}
	s->js = J_WORD;
	s->at = 1;
	return 1;
}

static int json_byte(const mh_constraint *c, cn_state *s, unsigned char b)
{
	int closed, digit = b >= '0' && b <= '9', expo = b == 'e' || b == 'E';
	switch (s->js) {
	case J_KEY:
	case J_STR:
		if (!str_byte(s, b, &closed))
			return 0;
		if (closed)
			s->js = s->js == J_KEY ? J_COLON : J_AFTER;
		return 1;
	case J_WORD:
		if (b != (unsigned char)lits[s->lit][s->at])
			return 0;
		if (!lits[s->lit][++s->at])
			s->js = J_AFTER;
		return 1;
	case J_MINUS:
		if (!digit)
			return 0;
		s->js = b == '0' ? J_ZERO : J_INT;
		return 1;
	case J_DOT:
	case J_ESIGN:
		if (!digit)
			return 0;
		s->js = s->js == J_DOT ? J_FRAC : J_EXP;
		return 1;
	case J_E:
		if (b == '+' || b == '-' || digit) {
			s->js = digit ? J_EXP : J_ESIGN;
			return 1;
		}
		return 0;
	case J_ZERO:
	case J_INT:
	case J_FRAC:
	case J_EXP:
		if (digit && s->js != J_ZERO)
			return 1;
		if (b == '.' && s->js <= J_INT) {
			s->js = J_DOT;
			return 1;
		}
		if (expo && s->js != J_EXP) {
			s->js = J_E;
			return 1;
		}
		s->js = J_AFTER; /* the number ended before b */
		break;
	}
	/* between tokens: one space, or a newline and an indent, as JSON
	 * printers write it (a weak model would spend its tokens on more) */
	if (b == ' ' || b == '\t' || b == '\n') {
		if (s->js == J_OPEN)
			return 0;
		if (b == '\n' ? s->ws != 0 : b == ' ' ? s->ws == 1 : s->ws < 2)
			return 0;
		if (s->ws >= 2 + CN_MAX_INDENT)
			return 0;
		s->ws = b == ' ' && !s->ws ? 1 : b == '\n' ? 2 : s->ws + 1;
		return 1;
	}
	s->ws = 0;
	switch (s->js) {
	case J_OPEN:
		return b == '{' && push(s, 0);
	case J_VALUE_OR_CLOSE:
		if (b == ']') {
			pop(c, s);
			return 1;
		}
		/* fall through */
	case J_VALUE:
		return value_start(s, b);
	case J_KEY_OR_CLOSE:
		if (b == '}') {
			pop(c, s);
			return 1;
		}
		/* fall through */
	case J_KEY_NEXT:
		if (b != '"')
			return 0;
		s->js = J_KEY;
		return 1;
	case J_COLON:
		if (b != ':')
			return 0;
		s->js = J_VALUE;
		return 1;
	case J_AFTER: {
		int array = (int)(s->arr >> (s->depth - 1) & 1);
		if (b == ',') {
			s->js = array ? J_VALUE : J_KEY_NEXT;
			return 1;
		}
		if (b == (array ? ']' : '}')) {
			pop(c, s);
			return 1;
		}
		return 0;
	}
	}
	return 0;
}

static int name_byte(const mh_constraint *c, cn_state *s, unsigned char b)
{
	if (b == '"') {
		/* names sharing the prefix sort together, the prefix itself first */
		if (s->at == 0 || c->names[s->nlo][s->at])
			return 0;
		s->phase = P_LIT;
		s->lit = L_ARGS;
		s->at = 1;
		return 1;
	}
	int lo = s->nlo, hi = s->nhi;
	while (lo < hi && (unsigned char)c->names[lo][s->at] != b)
		lo++;
	if (lo == hi)
		return 0;
	hi = lo;
	while (hi < s->nhi && (unsigned char)c->names[hi][s->at] == b)
		hi++;
	s->nlo = (uint8_t)lo;
	s->nhi = (uint8_t)hi;
	s->at++;
	return 1;
}

/* One byte of the reply: 1 and *out the state after it, or 0 if it may
 * not come. */
static int step(const mh_constraint *c, const cn_state *in, unsigned char b, cn_state *out)
{
	*out = *in;
	switch (out->phase) {
	case P_JSON:
		return json_byte(c, out, b);
	case P_NAME:
		return name_byte(c, out, b);
	case P_LIT:
		if (b != (unsigned char)lits[out->lit][out->at])
			return 0;
		if (lits[out->lit][++out->at])
			return 1;
		out->at = 0;
		if (out->lit == L_OPEN || out->lit == L_NEXT) {
			out->phase = P_NAME;
			out->nlo = 0;
			out->nhi = c->n_names;
		} else if (out->lit == L_ARGS) {
			out->phase = P_JSON;
			out->js = J_OPEN;
			out->ws = 0;
		} else { /* L_CLOSE */
			if (c->many)
				out->lit = L_NEXT;
			else
				out->phase = P_DONE;
		}
		return 1;
	}
	return 0;
}

/* ---- the constraint ----------------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

mh_constraint *constraint_new(const cn_vocab *v, int kind, const char *const *names, int n,
			      int many)
{
	if (!v || (kind != CN_JSON && kind != CN_TOOLS) ||
	    (kind == CN_TOOLS && (n < 1 || n > CN_MAX_NAMES)))
		return NULL;
	mh_constraint *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->v = v;
	c->kind = kind;
	c->many = many;
	c->walk = malloc(((size_t)v->max_len + 1) * sizeof *c->walk);
	c->ok = malloc(v->n ? (size_t)v->n : 1);
	if (!c->walk || !c->ok)
		goto fail;
	if (kind == CN_TOOLS) {
		if (!(c->names = calloc((size_t)n, sizeof *c->names)))
			goto fail;
		for (int i = 0; i < n; i++) {
			if (!cn_name_ok(names[i]) || !(c->names[i] = strdup(names[i])))
				goto fail;
			c->n_names++;
		}
		qsort(c->names, (size_t)n, sizeof *c->names, by_name);
		c->s.phase = P_LIT;
		c->s.lit = L_OPEN;
	} else {
		c->s.phase = P_JSON;
		c->s.js = J_OPEN;
	}
	return c;
fail:
	constraint_free(c);
	return NULL;
}

void constraint_free(mh_constraint *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n_names; i++)
		free(c->names[i]);
	free(c->names);
	free(c->walk);
	free(c->ok);
	free(c);
}

int constraint_may_end(const mh_constraint *c)
{
	return c->s.phase == P_LIT && c->s.lit == L_NEXT && c->s.at == 0;
}

/* The state after id's bytes from s (the piece a reply's first token or a
 * later one adds): 1, or 0 if one of them may not come. */
static int follow(const mh_constraint *c, int32_t id, cn_state *s)
{
	const cn_vocab *v = c->v;
	const char *blob = c->started ? v->blob : v->blob1;
	const uint32_t *off = c->started ? v->off : v->off1;
	if (id < 0 || id >= v->n || off[id + 1] == off[id])
		return 0;
	cn_state t = *s, u;
	for (uint32_t i = off[id]; i < off[id + 1]; i++) {
		if (!step(c, &t, (unsigned char)blob[i], &u))
			return 0;
		t = u;
	}
	*s = t;
	return 1;
}

int constraint_allows(const mh_constraint *c, int32_t id)
{
	cn_state s = c->s;
	return follow(c, id, &s);
}

int constraint_feed(mh_constraint *c, int32_t id)
{
	if (!follow(c, id, &c->s))
		return -1;
	c->started = 1;
	return c->s.phase == P_DONE;
}

/* c->ok[id] for every id the shape allows next; how many.  The pieces
 * in sorted order: a piece's steps start where it parts from the one
 * before, and a refused prefix refuses what shares it. */
static int walk(mh_constraint *c)
{
	const cn_vocab *v = c->v;
	cn_state *st = c->walk;
	size_t ok = 0;          /* st[1..ok]: after the previous piece's first bytes */
	size_t bad = SIZE_MAX;  /* where the previous piece was refused */
	int left = 0;
	st[0] = c->s;
	for (int32_t i = 0; i < v->n_order; i++) {
		int32_t id = v->order[i];
		const unsigned char *p = (const unsigned char *)v->blob + v->off[id];
		size_t len = v->off[id + 1] - v->off[id], l = v->lcp[i];
		if (bad != SIZE_MAX && l > bad)
			continue;
		size_t j = l < ok ? l : ok;
		bad = SIZE_MAX;
		for (; j < len; j++)
			if (!step(c, &st[j], p[j], &st[j + 1])) {
				bad = j;
				break;
			}
		ok = j;
		if (bad == SIZE_MAX) {
			c->ok[id] = 1;
			left++;
		}
	}
	return left;
}

int constraint_mask(mh_constraint *c, float *logits, int32_t n_logits, const int32_t *end,
		    int n_end)
{
	const cn_vocab *v = c->v;
	int left = 0;
	memset(c->ok, 0, (size_t)v->n);
	if (c->started) {
		left = walk(c);
	} else { /* the first pieces, once a reply: token by token */
		for (int32_t id = 0; id < v->n; id++)
			left += c->ok[id] = (unsigned char)constraint_allows(c, id);
	}
	int may_end = constraint_may_end(c);
	for (int32_t id = 0; id < n_logits; id++) {
		if (id < v->n && c->ok[id])
			continue;
		int keep = 0;
		for (int k = 0; may_end && k < n_end && !keep; k++)
			keep = end[k] == id;
		if (keep)
			left++;
		else
			logits[id] = -INFINITY;
	}
	return left;
}
