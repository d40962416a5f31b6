/* SPDX-License-Identifier: MIT */
/* constrain.c - the forms of constrain.h: a JSON Schema compiled into a
 * table of nodes, a byte automaton that follows a reply through them, and
 * the token mask over a vocabulary sorted by bytes. */
#include "text/constrain.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
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

/* ---- grammars ------------------------------------------------------------------ */

#define NONE 0xFFFF
#define MAX_NODES 4096  /* nodes, properties and literals of one grammar */
#define MAX_LIT 1024    /* bytes of one enum value or key, as JSON */
#define MAX_DIGITS 17   /* a number's integer or fraction digits */
#define MAX_EXP_DIGITS 3

/* what a value's first byte says it is */
enum { C_OBJ, C_ARR, C_STR, C_NUM, C_BOOL, C_NULL, N_CLASS };

enum { K_PENDING, K_UNION, K_OBJ, K_ARR, K_STR, K_NUM, K_ENUM };

typedef struct cn_node {
	uint8_t kind;
	uint8_t integer;         /* K_NUM: no fraction, no exponent */
	uint8_t free_keys;       /* K_OBJ: any keys (no "properties") */
	uint16_t as[N_CLASS];    /* the node a value starting so continues as */
	uint16_t a, n;           /* K_OBJ: props[a, a + n); K_ENUM: lits[a, a + n) */
	uint16_t item;           /* K_ARR: the items; K_OBJ with free_keys: the values */
	uint32_t min, max;       /* K_ARR: items; K_STR: characters */
} cn_node;

typedef struct cn_prop {
	uint16_t key;            /* lits[key]: the key as JSON, quotes and all */
	uint16_t node;
	uint8_t required;
} cn_prop;

typedef struct cn_lit {
	char *s;                 /* an enum value or a key, compact JSON */
	uint32_t len;
} cn_lit;

struct cn_grammar {
	int tools, many;
	uint16_t root;           /* the JSON form's object */
	char **names;            /* the tools form's names, sorted */
	uint16_t *roots;         /* and each one's arguments */
	int n_names;
	cn_node *nodes;
	cn_prop *props;
	cn_lit *lits;
	int n_nodes, n_props, n_lits;
};

/* the nodes every grammar starts with */
enum { N_ANY, N_OBJECT, N_ARRAY, N_STRING, N_NUMBER, N_INTEGER, N_BOOL, N_NULL, N_BUILTIN };

typedef struct memo {
	const cJSON *j;
	uint16_t node;
} memo;

typedef struct gbuild {
	cn_grammar *g;
	const cJSON *top;        /* the schema $ref "#" means */
	memo *memo;              /* schemas compiled so far */
	int n_memo;
	char *err;
	size_t errlen;
} gbuild;

static int gfail(gbuild *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int gfail(gbuild *b, const char *fmt, ...)
{
	if (b->err[0])
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->err, b->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int grow(gbuild *b, void **v, int n, size_t size)
{
	if (n >= MAX_NODES)
		return gfail(b, "the schema is too large (more than %d parts)", MAX_NODES);
	void *p = realloc(*v, (size_t)(n + 1) * size);
	if (!p)
		return gfail(b, "out of memory");
	*v = p;
	return 0;
}

static int new_node(gbuild *b, int kind)
{
	cn_grammar *g = b->g;
	if (grow(b, (void **)&g->nodes, g->n_nodes, sizeof *g->nodes) != 0)
		return -1;
	cn_node *n = &g->nodes[g->n_nodes];
	memset(n, 0, sizeof *n);
	n->kind = (uint8_t)kind;
	for (int c = 0; c < N_CLASS; c++)
		n->as[c] = NONE;
	n->max = UINT32_MAX;
	return g->n_nodes++;
}

/* A literal from its JSON text (taken over); its index, or -1. */
static int new_lit(gbuild *b, char *s)
{
	cn_grammar *g = b->g;
	if (!s)
		return gfail(b, "out of memory");
	size_t len = strlen(s);
	if (len > MAX_LIT || grow(b, (void **)&g->lits, g->n_lits, sizeof *g->lits) != 0) {
		free(s);
		return len > MAX_LIT ? gfail(b, "an enum value or key is longer than %d bytes", MAX_LIT)
				     : -1;
	}
	g->lits[g->n_lits] = (cn_lit){ s, (uint32_t)len };
	return g->n_lits++;
}

static int class_of(unsigned char b)
{
	switch (b) {
	case '{': return C_OBJ;
	case '[': return C_ARR;
	case '"': return C_STR;
	case 't':
	case 'f': return C_BOOL;
	case 'n': return C_NULL;
	case '-': return C_NUM;
	}
	return b >= '0' && b <= '9' ? C_NUM : -1;
}

/* node i as a value of its own kind (not a union): where each class goes */
static void as_self(cn_grammar *g, int i)
{
	cn_node *n = &g->nodes[i];
	static const int8_t cls[] = { [K_OBJ] = C_OBJ, [K_ARR] = C_ARR, [K_STR] = C_STR,
				      [K_NUM] = C_NUM };
	if (n->kind == K_ENUM) {
		for (int k = n->a; k < n->a + n->n; k++)
			n->as[class_of((unsigned char)g->lits[k].s[0])] = (uint16_t)i;
	} else if (n->kind != K_UNION) {
		n->as[cls[n->kind]] = (uint16_t)i;
	}
}

static int builtins(gbuild *b)
{
	static const char *const words[] = { "false", "true", "null" };
	for (int k = 0; k < 3; k++)
		if (new_lit(b, strdup(words[k])) < 0)
			return -1;
	static const uint8_t kinds[N_BUILTIN] = { K_UNION, K_OBJ, K_ARR, K_STR, K_NUM, K_NUM,
						  K_ENUM, K_ENUM };
	for (int i = 0; i < N_BUILTIN; i++)
		if (new_node(b, kinds[i]) < 0)
			return -1;
	cn_grammar *g = b->g;
	g->nodes[N_OBJECT].free_keys = 1;
	g->nodes[N_OBJECT].item = N_ANY;
	g->nodes[N_ARRAY].item = N_ANY;
	g->nodes[N_INTEGER].integer = 1;
	g->nodes[N_BOOL].n = 2;
	g->nodes[N_NULL].a = 2;
	g->nodes[N_NULL].n = 1;
	for (int i = 1; i < N_BUILTIN; i++)
		as_self(g, i);
	static const uint16_t any[N_CLASS] = { N_OBJECT, N_ARRAY, N_STRING, N_NUMBER, N_BOOL,
					       N_NULL };
	memcpy(g->nodes[N_ANY].as, any, sizeof any);
	return 0;
}

/* Union node u takes the values node i takes; two branches may not claim
 * the same first byte (a number and an integer make a number). */
static int merge(gbuild *b, int u, int i)
{
	cn_grammar *g = b->g;
	if (g->nodes[i].kind == K_PENDING)
		return gfail(b, "a $ref to a schema being defined cannot be a branch of anyOf");
	static const char *const what[] = { "objects", "arrays", "strings", "numbers",
					    "booleans", "nulls" };
	for (int c = 0; c < N_CLASS; c++) {
		uint16_t *to = &g->nodes[u].as[c], from = g->nodes[i].as[c];
		if (from == NONE || *to == from)
			continue;
		if (*to != NONE && g->nodes[*to].kind == K_NUM && g->nodes[from].kind == K_NUM) {
			if (g->nodes[*to].integer)
				*to = from;
			continue;
		}
		if (*to != NONE)
			return gfail(b, "anyOf/oneOf or a list of types with two branches for %s "
				     "cannot be held", what[c]);
		*to = from;
	}
	return 0;
}

static int compile(gbuild *b, const cJSON *j, int depth);

static int get_count(gbuild *b, const cJSON *j, const char *key, uint32_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != (double)(int64_t)v->valuedouble)
		return gfail(b, "the schema's '%s' must be a whole number >= 0", key);
	*out = v->valuedouble > UINT32_MAX - 1 ? UINT32_MAX : (uint32_t)v->valuedouble;
	return 0;
}

static int compile_object(gbuild *b, const cJSON *j, int i, int depth)
{
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(j, "properties");
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(j, "required");
	const cJSON *more = cJSON_GetObjectItemCaseSensitive(j, "additionalProperties");
	const cJSON *p, *r;
	cn_grammar *g = b->g;
	if (props && !cJSON_IsObject(props))
		return gfail(b, "the schema's 'properties' must be an object");
	if (req && !cJSON_IsArray(req))
		return gfail(b, "the schema's 'required' must be a list of names");
	g->nodes[i].kind = K_OBJ;
	if (!props) { /* any keys, the values additionalProperties allows */
		g->nodes[i].free_keys = 1;
		int v = cJSON_IsObject(more) ? compile(b, more, depth + 1) : N_ANY;
		if (v < 0)
			return -1;
		g->nodes[i].item = (uint16_t)v;
		return 0;
	}
	/* the properties' slots first: the values' own objects come after */
	int n = cJSON_GetArraySize(props), a = g->n_props;
	for (int k = 0; k < n; k++)
		if (grow(b, (void **)&g->props, g->n_props++, sizeof *g->props) != 0)
			return -1;
	g->nodes[i].a = (uint16_t)a;
	g->nodes[i].n = (uint16_t)n;
	int k = 0;
	cJSON_ArrayForEach(p, props) {
		cJSON *key = cJSON_CreateString(p->string);
		int lit = new_lit(b, key ? cJSON_PrintUnformatted(key) : NULL);
		cJSON_Delete(key);
		int v = lit < 0 ? -1 : compile(b, p, depth + 1);
		if (v < 0)
			return -1;
		g->props[a + k++] = (cn_prop){ (uint16_t)lit, (uint16_t)v, 0 };
	}
	cJSON_ArrayForEach(r, req) {
		int found = 0;
		k = 0;
		cJSON_ArrayForEach(p, props) {
			if (cJSON_IsString(r) && strcmp(p->string, r->valuestring) == 0)
				found = g->props[a + k].required = 1;
			k++;
		}
		if (!found)
			return gfail(b, "the schema's 'required' names '%.64s', which is not one of its "
				     "'properties'", cJSON_IsString(r) ? r->valuestring : "?");
	}
	return 0;
}

/* Node i as a value of one JSON type, with j's keywords for it. */
static int compile_type(gbuild *b, const cJSON *j, const char *type, int i, int depth)
{
	cn_grammar *g = b->g;
	cn_node *n = &g->nodes[i];
	static const struct { const char *name; uint16_t builtin; } same[] = {
		{ "number", N_NUMBER }, { "integer", N_INTEGER }, { "boolean", N_BOOL },
		{ "null", N_NULL },
	};
	for (size_t k = 0; k < sizeof same / sizeof *same; k++)
		if (strcmp(type, same[k].name) == 0) {
			*n = g->nodes[same[k].builtin];
			for (int c = 0; c < N_CLASS; c++)
				n->as[c] = NONE;
			as_self(g, i);
			return 0;
		}
	if (strcmp(type, "string") == 0) {
		n->kind = K_STR;
		if (get_count(b, j, "minLength", &n->min) != 0 ||
		    get_count(b, j, "maxLength", &g->nodes[i].max) != 0)
			return -1;
	} else if (strcmp(type, "array") == 0) {
		const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
		n->kind = K_ARR;
		if (get_count(b, j, "minItems", &n->min) != 0 ||
		    get_count(b, j, "maxItems", &g->nodes[i].max) != 0)
			return -1;
		if (cJSON_IsArray(items))
			return gfail(b, "the schema's 'items' as a list (a tuple) cannot be held");
		int v = items && !cJSON_IsFalse(items) ? compile(b, items, depth + 1) : N_ANY;
		if (cJSON_IsFalse(items))
			g->nodes[i].max = 0;
		if (v < 0)
			return -1;
		g->nodes[i].item = (uint16_t)v;
	} else if (strcmp(type, "object") == 0) {
		if (compile_object(b, j, i, depth) != 0)
			return -1;
	} else {
		return gfail(b, "the schema's type '%.32s' is not a JSON Schema type", type);
	}
	if (g->nodes[i].min > g->nodes[i].max)
		return gfail(b, "the schema allows nothing: a minimum above its maximum");
	as_self(g, i);
	return 0;
}

/* the keywords a reply could break without the automaton seeing them */
static const char *const refused[] = {
	"allOf", "not", "if", "then", "else", "prefixItems", "patternProperties",
	"dependentSchemas", "dependentRequired", "dependencies", "propertyNames",
	"unevaluatedProperties", "unevaluatedItems", "contains", "additionalItems",
};

static int compile_ref(gbuild *b, const char *ref, int depth)
{
	if (strcmp(ref, "#") == 0)
		return compile(b, b->top, depth + 1);
	const char *const bases[] = { "#/$defs/", "#/definitions/" };
	for (int k = 0; k < 2; k++) {
		size_t n = strlen(bases[k]);
		if (strncmp(ref, bases[k], n) != 0 || strchr(ref + n, '/'))
			continue;
		const cJSON *defs = cJSON_GetObjectItemCaseSensitive(b->top, k ? "definitions" : "$defs");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(defs, ref + n);
		if (t)
			return compile(b, t, depth + 1);
	}
	return gfail(b, "the schema's $ref '%.64s' is not \"#\" or one of its $defs", ref);
}

static int compile(gbuild *b, const cJSON *j, int depth)
{
	if (depth > 2 * CN_MAX_DEPTH)
		return gfail(b, "the schema nests too deeply");
	if (cJSON_IsTrue(j))
		return N_ANY;
	if (!cJSON_IsObject(j))
		return gfail(b, "a schema must be an object (or true)");
	for (int k = 0; k < b->n_memo; k++)
		if (b->memo[k].j == j)
			return b->memo[k].node;
	for (size_t k = 0; k < sizeof refused / sizeof *refused; k++)
		if (cJSON_GetObjectItemCaseSensitive(j, refused[k]))
			return gfail(b, "the schema's '%s' cannot be held (replies follow type, enum, "
				     "const, properties, required, items, anyOf and $ref)", refused[k]);
	const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "$ref");
	if (ref)
		return cJSON_IsString(ref) ? compile_ref(b, ref->valuestring, depth)
					   : gfail(b, "the schema's '$ref' must be a string");
	int i = new_node(b, K_PENDING);
	if (i < 0 || grow(b, (void **)&b->memo, b->n_memo, sizeof *b->memo) != 0)
		return -1;
	b->memo[b->n_memo++] = (memo){ j, (uint16_t)i }; /* before its parts: $ref loops end here */
	cn_grammar *g = b->g;
	const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "enum");
	const cJSON *cn = cJSON_GetObjectItemCaseSensitive(j, "const");
	const cJSON *any = cJSON_GetObjectItemCaseSensitive(j, "anyOf");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type"), *e;
	if (!any)
		any = cJSON_GetObjectItemCaseSensitive(j, "oneOf");
	if (en || cn) { /* the values, as compact JSON */
		if (en && (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0))
			return gfail(b, "the schema's 'enum' must be a non-empty list");
		g->nodes[i].kind = K_ENUM;
		g->nodes[i].a = (uint16_t)g->n_lits;
		if (cn) {
			if (new_lit(b, cJSON_PrintUnformatted(cn)) < 0)
				return -1;
		} else {
			cJSON_ArrayForEach(e, en)
				if (new_lit(b, cJSON_PrintUnformatted(e)) < 0)
					return -1;
		}
		g->nodes[i].n = (uint16_t)(g->n_lits - g->nodes[i].a);
		as_self(g, i);
		return i;
	}
	if (any) {
		if (!cJSON_IsArray(any) || cJSON_GetArraySize(any) == 0)
			return gfail(b, "the schema's anyOf/oneOf must be a non-empty list");
		cJSON_ArrayForEach(e, any) {
			int v = compile(b, e, depth + 1);
			if (v < 0 || merge(b, i, v) != 0)
				return -1;
		}
		g->nodes[i].kind = K_UNION;
		return i;
	}
	if (cJSON_IsString(type))
		return compile_type(b, j, type->valuestring, i, depth) == 0 ? i : -1;
	if (cJSON_IsArray(type) && cJSON_GetArraySize(type) > 0) {
		cJSON_ArrayForEach(e, type) {
			int v = cJSON_IsString(e) ? new_node(b, K_PENDING) : gfail(b, "the schema's "
				"'type' must be a name or a list of names");
			if (v < 0 || compile_type(b, j, e->valuestring, v, depth) != 0 || merge(b, i, v))
				return -1;
		}
		g->nodes[i].kind = K_UNION;
		return i;
	}
	if (type)
		return gfail(b, "the schema's 'type' must be a name or a list of names");
	/* no type: what the keywords say, or any value */
	if (cJSON_GetObjectItemCaseSensitive(j, "properties") ||
	    cJSON_GetObjectItemCaseSensitive(j, "required"))
		return compile_type(b, j, "object", i, depth) == 0 ? i : -1;
	if (cJSON_GetObjectItemCaseSensitive(j, "items"))
		return compile_type(b, j, "array", i, depth) == 0 ? i : -1;
	g->nodes[i] = g->nodes[N_ANY];
	return i;
}

/* The root of an object form: schema compiled, which must take objects
 * and only objects. */
static int compile_root(gbuild *b, const cJSON *schema)
{
	b->top = schema;
	int r = schema ? compile(b, schema, 0) : N_OBJECT;
	if (r < 0)
		return -1;
	const cn_node *n = &b->g->nodes[r];
	if (n->kind == K_PENDING || n->as[C_OBJ] == NONE)
		return gfail(b, "the schema must be one for an object");
	/* the reply ends with the object's '}': an enum's object would end it
	 * only when a byte after it showed that no longer value goes on */
	if (b->g->nodes[n->as[C_OBJ]].kind != K_OBJ)
		return gfail(b, "an enum or const of objects cannot be the whole reply");
	return n->as[C_OBJ];
}

static cn_grammar *grammar_new(gbuild *b, char *err, size_t errlen)
{
	memset(b, 0, sizeof *b);
	b->err = err;
	b->errlen = errlen;
	err[0] = 0;
	if (!(b->g = calloc(1, sizeof *b->g))) {
		gfail(b, "out of memory");
		return NULL;
	}
	if (builtins(b) != 0) {
		cn_grammar_free(b->g);
		return NULL;
	}
	return b->g;
}

static cn_grammar *grammar_done(gbuild *b, int ok)
{
	free(b->memo);
	if (ok)
		return b->g;
	cn_grammar_free(b->g);
	return NULL;
}

cn_grammar *cn_grammar_json(const cJSON *schema, char *err, size_t errlen)
{
	gbuild b;
	cn_grammar *g = grammar_new(&b, err, errlen);
	if (!g)
		return NULL;
	int r = compile_root(&b, schema);
	g->root = (uint16_t)r;
	return grammar_done(&b, r >= 0);
}

cn_grammar *cn_grammar_tools(const char *const *names, const cJSON *const *params, int n,
			     int many, char *err, size_t errlen)
{
	gbuild b;
	cn_grammar *g = grammar_new(&b, err, errlen);
	if (!g)
		return NULL;
	int ok = n >= 1 && n <= CN_MAX_NAMES;
	if (!ok)
		gfail(&b, "a call must choose among 1 to %d functions", CN_MAX_NAMES);
	g->tools = 1;
	g->many = many;
	g->names = ok ? calloc((size_t)n, sizeof *g->names) : NULL;
	g->roots = ok ? calloc((size_t)n, sizeof *g->roots) : NULL;
	if (ok && (!g->names || !g->roots))
		ok = gfail(&b, "out of memory") == 0;
	for (int i = 0; ok && i < n; i++) {
		if (!cn_name_ok(names[i])) {
			ok = gfail(&b, "a function's name must be 1 to %d letters, digits, '_' or '-'",
				   CN_MAX_NAME) == 0;
			break;
		}
		/* insertion by name: names[] and roots[] stay sorted together */
		int at = g->n_names, r = compile_root(&b, params ? params[i] : NULL);
		char *copy = r >= 0 ? strdup(names[i]) : NULL;
		if (!copy) {
			ok = r >= 0 ? gfail(&b, "out of memory") == 0 : 0;
			break;
		}
		while (at > 0 && strcmp(g->names[at - 1], copy) > 0) {
			g->names[at] = g->names[at - 1];
			g->roots[at] = g->roots[at - 1];
			at--;
		}
		g->names[at] = copy;
		g->roots[at] = (uint16_t)r;
		g->n_names++;
	}
	return grammar_done(&b, ok);
}

void cn_grammar_free(cn_grammar *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->n_names; i++)
		free(g->names[i]);
	free(g->names);
	free(g->roots);
	for (int i = 0; i < g->n_lits; i++)
		free(g->lits[i].s);
	free(g->lits);
	free(g->nodes);
	free(g->props);
	free(g);
}

/* ---- the automaton ---------------------------------------------------------- */

enum { P_LIT, P_NAME, P_JSON, P_DONE };

/* the tool-call form's fixed text; a call ends with L_CLOSE, and the next
 * one (with `many`) starts with L_NEXT, whose first byte is where the reply
 * may end instead */
enum { L_OPEN, L_ARGS, L_CLOSE, L_NEXT };
static const char *const fixed[] = {
	[L_OPEN] = CN_TOOL_OPEN "\n{\"name\": \"",
	[L_ARGS] = "\", \"arguments\": ",
	[L_CLOSE] = "}\n" CN_TOOL_CLOSE,
	[L_NEXT] = "\n" CN_TOOL_OPEN "\n{\"name\": \"",
};

/* JSON, one byte at a time */
enum {
	J_OPEN,           /* the outermost '{' */
	J_VALUE,          /* a value of node val: after ':' */
	J_ITEM,           /* an array's next value: after ',' */
	J_ITEM_OR_CLOSE,  /* after '[' */
	J_KEY_OR_CLOSE,   /* after '{' */
	J_KEY_NEXT,       /* after ',' in an object */
	J_KEY,            /* in a key of an object with any keys */
	J_KEYLIT,         /* in one of an object's property names */
	J_COLON,
	J_STR,            /* in a string value */
	J_LIT,            /* in an enum value, true, false or null */
	J_AFTER,          /* after a value: ',' or the container's close */
	J_MINUS, J_ZERO, J_INT, J_DOT, J_FRAC, J_E, J_ESIGN, J_EXP, /* numbers */
};

typedef struct cn_frame {
	uint16_t node;     /* an object's or array's node */
	uint32_t n;        /* objects: the next property; arrays: the items so far */
} cn_frame;

typedef struct cn_head {
	uint32_t len;      /* characters of the string value so far, or
			    * digits of the number's part */
	uint16_t at;       /* bytes of the literal, key or name so far */
	uint16_t cand;     /* the first literal or property those bytes begin */
	uint16_t val;      /* the node of the value being written, or next */
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
} cn_head;

/* The head is what most bytes change; the frames change on '{', '[', a
 * key or an item, and are copied only as deep as they are open. */
typedef struct cn_state {
	cn_head h;
	cn_frame fr[CN_MAX_DEPTH];
} cn_state;

struct mh_constraint {
	const cn_vocab *v;
	const cn_grammar *g;
	cn_state s;        /* after the reply so far */
	int started;       /* a token has been followed */
	cn_state *walk;    /* the mask's states, v->max_len + 1 */
	unsigned char *ok; /* the mask's verdicts, one per id */
};

/* *out = *in, as far as it is in use */
static void copy_state(cn_state *out, const cn_state *in)
{
	out->h = in->h;
	for (int i = 0; i < in->h.depth; i++)
		out->fr[i] = in->fr[i];
}

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

static void json_done(const cn_grammar *g, cn_state *s)
{
	if (g->tools) {
		s->h.phase = P_LIT;
		s->h.lit = L_CLOSE;
		s->h.at = 0;
	} else {
		s->h.phase = P_DONE;
	}
}

static void value_done(const cn_grammar *g, cn_state *s)
{
	s->h.js = J_AFTER;
	if (s->h.depth == 0)
		json_done(g, s);
}

static int push(cn_state *s, int node, int js)
{
	if (s->h.depth >= CN_MAX_DEPTH)
		return 0;
	s->fr[s->h.depth++] = (cn_frame){ (uint16_t)node, 0 };
	s->h.js = (uint8_t)js;
	return 1;
}

/* A byte inside a string (the quotes aside): 1 if it may come.  *closed:
 * it was the closing quote; *ch: it starts a character. */
static int str_byte(cn_state *s, unsigned char b, int *closed, int *ch)
{
	*closed = *ch = 0;
	if (s->h.need) {
		if (b < s->h.lo || b > s->h.hi)
			return 0;
		s->h.need--;
		s->h.lo = 0x80;
		s->h.hi = 0xBF;
		return 1;
	}
	if (s->h.sur == 1 || s->h.sur == 2) { /* the \u of a surrogate pair's second half */
		if (b != (s->h.sur == 1 ? '\\' : 'u'))
			return 0;
		if (s->h.sur++ == 2) {
			s->h.hex = 4;
			s->h.u = 0;
		}
		return 1;
	}
	if (s->h.hex) {
		int h = hexval(b);
		if (h < 0)
			return 0;
		s->h.u = (uint16_t)(s->h.u << 4 | h);
		if (--s->h.hex)
			return 1;
		if (s->h.sur == 3) { /* a pair's second half */
			s->h.sur = 0;
			return s->h.u >= 0xDC00 && s->h.u <= 0xDFFF;
		}
		if (s->h.u >= 0xD800 && s->h.u <= 0xDBFF) { /* a pair's first half */
			s->h.sur = 1;
			return 1;
		}
		/* no NUL (it would cut the string short), no lone second half */
		return s->h.u != 0 && (s->h.u < 0xDC00 || s->h.u > 0xDFFF);
	}
	if (s->h.esc) {
		s->h.esc = 0;
		if (b == 'u') {
			s->h.hex = 4;
			s->h.u = 0;
			return 1;
		}
		return b && strchr("\"\\/bfnrt", b);
	}
	if (b == '"') {
		*closed = 1;
		return 1;
	}
	*ch = 1;
	if (b == '\\') {
		s->h.esc = 1;
		return 1;
	}
	if (b < 0x20)
		return 0;
	if (b < 0x80)
		return 1;
	s->h.lo = 0x80;
	s->h.hi = 0xBF;
	if (b >= 0xC2 && b <= 0xDF) {
		s->h.need = 1;
	} else if (b >= 0xE0 && b <= 0xEF) {
		s->h.need = 2;
		if (b == 0xE0)
			s->h.lo = 0xA0; /* not overlong */
		if (b == 0xED)
			s->h.hi = 0x9F; /* not a surrogate */
	} else if (b >= 0xF0 && b <= 0xF4) {
		s->h.need = 3;
		if (b == 0xF0)
			s->h.lo = 0x90;
		if (b == 0xF4)
			s->h.hi = 0x8F; /* not past U+10FFFF */
	} else {
		return 0;
	}
	return 1;
}

/* The first literal of [cand, to) that goes on from literal cand's first
 * `at` bytes with b; -1 if none.  Literal k is lits[k], or with props (an
 * object's keys) lits[props[k].key]. */
static int lit_next(const cn_grammar *g, const cn_prop *props, int cand, int to, int at,
		    unsigned char b)
{
	const cn_lit *l = &g->lits[props ? props[cand].key : cand];
	for (int k = cand; k < to; k++) {
		const cn_lit *m = &g->lits[props ? props[k].key : k];
		if (m->len > (uint32_t)at && (unsigned char)m->s[at] == b && !memcmp(m->s, l->s, at))
			return k;
	}
	return -1;
}

/* A value of node v starts with b: 1 if it may. */
static int value_start(const cn_grammar *g, cn_state *s, int v, unsigned char b)
{
	int c = class_of(b), t = c < 0 ? NONE : g->nodes[v].as[c];
	if (t == NONE)
		return 0;
	const cn_node *n = &g->nodes[t];
	s->h.val = (uint16_t)t;
	switch (n->kind) {
	case K_OBJ:
		return push(s, t, J_KEY_OR_CLOSE);
	case K_ARR:
		return push(s, t, J_ITEM_OR_CLOSE);
	case K_STR:
		s->h.js = J_STR;
		s->h.len = 0;
		return 1;
	case K_NUM:
		s->h.js = b == '-' ? J_MINUS : b == '0' ? J_ZERO : J_INT;
		s->h.len = b != '-';
		return 1;
	case K_ENUM: {
		int k = lit_next(g, NULL, n->a, n->a + n->n, 0, b);
		s->h.js = J_LIT;
		s->h.cand = (uint16_t)k;
		s->h.at = 1;
		return k >= 0;
	}
	}
	return 0;
}

/* The properties an object may write next, from fr->n: up to the first
 * required one (they come in the schema's order). */
static int keys_end(const cn_grammar *g, const cn_node *o, uint32_t from)
{
	for (uint32_t k = from; k < o->n; k++)
		if (g->props[o->a + k].required)
			return (int)k + 1;
	return o->n;
}

/* No required property is left from `from` on. */
static int may_close(const cn_grammar *g, const cn_node *o, uint32_t from)
{
	for (uint32_t k = from; !o->free_keys && k < o->n; k++)
		if (g->props[o->a + k].required)
			return 0;
	return 1;
}

static int json_byte(const cn_grammar *g, cn_state *s, unsigned char b)
{
	int closed, ch, digit = b >= '0' && b <= '9', expo = b == 'e' || b == 'E';
	cn_frame *f = s->h.depth ? &s->fr[s->h.depth - 1] : NULL;
	const cn_node *o = f ? &g->nodes[f->node] : NULL, *v = &g->nodes[s->h.val];
	switch (s->h.js) {
	case J_KEY:
	case J_STR:
		if (!str_byte(s, b, &closed, &ch))
			return 0;
		if (s->h.js == J_KEY) {
			if (closed)
				s->h.js = J_COLON;
			return 1;
		}
		if (ch && ++s->h.len > v->max)
			return 0;
		if (closed) {
			if (s->h.len < v->min)
				return 0;
			value_done(g, s);
		}
		return 1;
	case J_KEYLIT: { /* one of the keys the object may write next */
		const cn_prop *props = g->props + o->a;
		int k = lit_next(g, props, s->h.cand, keys_end(g, o, f->n), s->h.at, b);
		if (k < 0)
			return 0;
		s->h.cand = (uint16_t)k;
		if (++s->h.at == g->lits[props[k].key].len) { /* its closing quote */
			f->n = (uint32_t)k + 1;
			s->h.val = props[k].node;
			s->h.js = J_COLON;
		}
		return 1;
	}
	case J_LIT: {
		int k = lit_next(g, NULL, s->h.cand, v->a + v->n, s->h.at, b);
		if (k >= 0) {
			s->h.cand = (uint16_t)k;
			s->h.at++;
			return 1;
		}
		if (s->h.at != g->lits[s->h.cand].len)
			return 0;
		value_done(g, s); /* it ended before b */
		if (s->h.phase != P_JSON) /* (not so: the top is an object) */
			return 0;
		break;
	}
	case J_MINUS:
		if (!digit)
			return 0;
		s->h.js = b == '0' ? J_ZERO : J_INT;
		s->h.len = 1;
		return 1;
	case J_DOT:
	case J_ESIGN:
		if (!digit)
			return 0;
		s->h.js = s->h.js == J_DOT ? J_FRAC : J_EXP;
		s->h.len = 1;
		return 1;
	case J_E:
		if (b == '+' || b == '-' || digit) {
			s->h.js = digit ? J_EXP : J_ESIGN;
			s->h.len = 1;
			return 1;
		}
		return 0;
	case J_ZERO:
	case J_INT:
	case J_FRAC:
	case J_EXP:
		/* digits in a run: what a double holds (a model that repeats a
		 * digit would write one forever) */
		if (digit && s->h.js != J_ZERO)
			return ++s->h.len <= (s->h.js == J_EXP ? MAX_EXP_DIGITS : MAX_DIGITS);
		if (b == '.' && s->h.js <= J_INT && !v->integer) {
			s->h.js = J_DOT;
			return 1;
		}
		if (expo && s->h.js != J_EXP && !v->integer) {
			s->h.js = J_E;
			return 1;
		}
		value_done(g, s); /* the number ended before b */
		if (s->h.phase != P_JSON)
			return 0;
		break;
	}
	/* between tokens: one space, or a newline and an indent, as JSON
	 * printers write it (a weak model would spend its tokens on more) */
	if (b == ' ' || b == '\t' || b == '\n') {
		if (s->h.js == J_OPEN)
			return 0;
		if (b == '\n' ? s->h.ws != 0 : b == ' ' ? s->h.ws == 1 : s->h.ws < 2)
			return 0;
		if (s->h.ws >= 2 + CN_MAX_INDENT)
			return 0;
		s->h.ws = b == ' ' && !s->h.ws ? 1 : b == '\n' ? 2 : s->h.ws + 1;
		return 1;
	}
	s->h.ws = 0;
	switch (s->h.js) {
	case J_OPEN:
		return b == '{' && value_start(g, s, s->h.val, b);
	case J_VALUE:
		return value_start(g, s, s->h.val, b);
	case J_ITEM_OR_CLOSE:
		if (b == ']') {
			if (o->min > 0)
				return 0;
			s->h.depth--;
			value_done(g, s);
			return 1;
		}
		/* fall through */
	case J_ITEM:
		if (f->n >= o->max)
			return 0;
		f->n++;
		return value_start(g, s, o->item, b);
	case J_KEY_OR_CLOSE:
		if (b == '}') {
			if (!may_close(g, o, f->n))
				return 0;
			s->h.depth--;
			value_done(g, s);
			return 1;
		}
		/* fall through */
	case J_KEY_NEXT:
		if (b != '"')
			return 0;
		if (o->free_keys) {
			s->h.js = J_KEY;
			s->h.val = o->item;
			return 1;
		}
		if (f->n >= o->n)
			return 0;
		s->h.js = J_KEYLIT;
		s->h.cand = (uint16_t)f->n;
		s->h.at = 1; /* every key starts with its quote */
		return 1;
	case J_COLON:
		if (b != ':')
			return 0;
		s->h.js = J_VALUE;
		return 1;
	case J_AFTER:
		if (o->kind == K_ARR) {
			if (b == ',' && f->n < o->max) {
				s->h.js = J_ITEM;
				return 1;
			}
			if (b != ']' || f->n < o->min)
				return 0;
		} else {
			if (b == ',' && (o->free_keys || f->n < o->n)) {
				s->h.js = J_KEY_NEXT;
				return 1;
			}
			if (b != '}' || !may_close(g, o, f->n))
				return 0;
		}
		s->h.depth--;
		value_done(g, s);
		return 1;
	}
	return 0;
}

static int name_byte(const cn_grammar *g, cn_state *s, unsigned char b)
{
	if (b == '"') {
		/* names sharing the prefix sort together, the prefix itself first */
		if (s->h.at == 0 || g->names[s->h.nlo][s->h.at])
			return 0;
		s->h.phase = P_LIT;
		s->h.lit = L_ARGS;
		s->h.at = 1;
		s->h.val = g->roots[s->h.nlo];
		return 1;
	}
	if (!b)
		return 0;
	int lo = s->h.nlo, hi = s->h.nhi;
	while (lo < hi && (unsigned char)g->names[lo][s->h.at] != b)
		lo++;
	if (lo == hi)
		return 0;
	hi = lo;
	while (hi < s->h.nhi && (unsigned char)g->names[hi][s->h.at] == b)
		hi++;
	s->h.nlo = (uint8_t)lo;
	s->h.nhi = (uint8_t)hi;
	s->h.at++;
	return 1;
}

/* One byte of the reply: 1 and *out the state after it, or 0 if it may
 * not come. */
static int step(const cn_grammar *g, const cn_state *in, unsigned char b, cn_state *out)
{
	copy_state(out, in);
	switch (out->h.phase) {
	case P_JSON:
		return json_byte(g, out, b);
	case P_NAME:
		return name_byte(g, out, b);
	case P_LIT:
		if (b != (unsigned char)fixed[out->h.lit][out->h.at])
			return 0;
		if (fixed[out->h.lit][++out->h.at])
			return 1;
		out->h.at = 0;
		if (out->h.lit == L_OPEN || out->h.lit == L_NEXT) {
			out->h.phase = P_NAME;
			out->h.nlo = 0;
			out->h.nhi = (uint8_t)g->n_names;
		} else if (out->h.lit == L_ARGS) {
			out->h.phase = P_JSON;
			out->h.js = J_OPEN;
			out->h.ws = 0;
		} else { /* L_CLOSE */
			if (g->many)
				out->h.lit = L_NEXT;
			else
				out->h.phase = P_DONE;
		}
		return 1;
	}
	return 0;
}

/* ---- the constraint ----------------------------------------------------------- */

mh_constraint *constraint_new(const cn_vocab *v, const cn_grammar *g)
{
	if (!v || !g)
		return NULL;
	mh_constraint *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->v = v;
	c->g = g;
	c->walk = malloc(((size_t)v->max_len + 1) * sizeof *c->walk);
	c->ok = malloc(v->n ? (size_t)v->n : 1);
	if (!c->walk || !c->ok) {
		constraint_free(c);
		return NULL;
	}
	if (g->tools) {
		c->s.h.phase = P_LIT;
		c->s.h.lit = L_OPEN;
	} else {
		c->s.h.phase = P_JSON;
		c->s.h.js = J_OPEN;
		c->s.h.val = g->root;
	}
	return c;
}

void constraint_free(mh_constraint *c)
{
	if (!c)
		return;
	free(c->walk);
	free(c->ok);
	free(c);
}

int constraint_may_end(const mh_constraint *c)
{
	return c->s.h.phase == P_LIT && c->s.h.lit == L_NEXT && c->s.h.at == 0;
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
	cn_state t[2];
	copy_state(&t[0], s);
	int k = 0;
	for (uint32_t i = off[id]; i < off[id + 1]; i++, k ^= 1)
		if (!step(c->g, &t[k], (unsigned char)blob[i], &t[k ^ 1]))
			return 0;
	copy_state(s, &t[k]);
	return 1;
}

int constraint_allows(const mh_constraint *c, int32_t id)
{
	cn_state s;
	copy_state(&s, &c->s);
	return follow(c, id, &s);
}

int constraint_feed(mh_constraint *c, int32_t id)
{
	if (!follow(c, id, &c->s))
		return -1;
	c->started = 1;
	return c->s.h.phase == P_DONE;
}

/* c->ok[id] for every id the form allows next; how many.  The pieces
 * in sorted order: a piece's steps start where it parts from the one
 * before, and a refused prefix refuses what shares it. */
static int walk(mh_constraint *c)
{
	const cn_vocab *v = c->v;
	cn_state *st = c->walk;
	size_t ok = 0;          /* st[1..ok]: after the previous piece's first bytes */
	size_t bad = SIZE_MAX;  /* where the previous piece was refused */
	int left = 0;
	copy_state(&st[0], &c->s);
	for (int32_t i = 0; i < v->n_order; i++) {
		int32_t id = v->order[i];
		const unsigned char *p = (const unsigned char *)v->blob + v->off[id];
		size_t len = v->off[id + 1] - v->off[id], l = v->lcp[i];
		if (bad != SIZE_MAX && l > bad)
			continue;
		size_t j = l < ok ? l : ok;
		bad = SIZE_MAX;
		for (; j < len; j++)
			if (!step(c->g, &st[j], p[j], &st[j + 1])) {
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

int32_t constraint_sample(mh_constraint *c, mh_sampler *sm, float *logits, float *scratch,
			  int32_t n_logits, const int32_t *hist, size_t n_hist,
			  const int32_t *end, int n_end)
{
	if (sampler_is_greedy(sm)) {
		memcpy(scratch, logits, (size_t)n_logits * sizeof *logits);
		int32_t id = sampler_sample(sm, scratch, hist, n_hist);
		int is_end = 0;
		for (int k = 0; k < n_end; k++)
			is_end |= end[k] == id;
		if (is_end ? constraint_may_end(c) : constraint_allows(c, id))
			return id;
	}
	if (constraint_mask(c, logits, n_logits, end, n_end) == 0)
		return -1;
	return sampler_sample(sm, logits, hist, n_hist);
}
