/* SPDX-License-Identifier: MIT */
/* tpl.h - the Jinja2 subset behind chat templates (internal to host/text/).
 *
 * A template is lexed (lexer.c, Jinja2's whitespace rules with trim_blocks
 * and lstrip_blocks), parsed to a tree of nodes (parser.c) and rendered by
 * walking it (eval.c) over values (value.c) with Jinja2's filters, tests and
 * Python's string methods (filters.c).
 *
 * Memory: everything a parse or a render makes lives in one arena, freed at
 * once; an error longjmps out of any depth to the entry point, which frees the
 * arena.  So no code below needs cleanup paths, and no error can leak.  The
 * arena has a byte limit, and a render counts its steps, nesting and output:
 * a hostile template ends in an error, never in a hang or an exhausted host. */
#ifndef MH_TPL_H
#define MH_TPL_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- limits ------------------------------------------------------------- */
typedef struct tpl_limits {
	size_t memory;   /* bytes of arena per parse or render */
	size_t output;   /* bytes of any one string, the rendering included */
	uint64_t steps;  /* expressions and statements evaluated */
	int depth;       /* nesting of macro calls; of the parser's recursion */
} tpl_limits;
extern const tpl_limits tpl_default_limits;

/* ---- arena and errors ---------------------------------------------------- */
typedef struct tpl_chunk tpl_chunk;
typedef struct tpl_env {
	jmp_buf jb;
	tpl_chunk *chunks;
	size_t used;
	tpl_limits lim;
	const char *name;     /* the template's name, first in every message */
	char *err;
	size_t errlen;
} tpl_env;

void *tpl_alloc(tpl_env *e, size_t n);            /* zeroed */
char *tpl_strndup(tpl_env *e, const char *s, size_t n);
void tpl_arena_free(tpl_env *e);
/* "NAME: line N: message", one line, then longjmp to e->jb. */
_Noreturn void tpl_fail(tpl_env *e, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- values ------------------------------------------------------------- */
enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FUNC, V_MACRO };

typedef struct tpl_list tpl_list;
typedef struct tpl_dict tpl_dict;
typedef struct tpl_func tpl_func;
typedef struct tpl_macro tpl_macro;

typedef struct val {
	int t;
	int tuple;            /* a V_LIST that Python would call a tuple (repr only) */
	union {
		int b;
		long long i;
		double f;
		struct { const char *p; size_t n; } s;  /* UTF-8, not NUL-terminated */
		tpl_list *l;
		tpl_dict *d;      /* V_DICT and V_NS */
		tpl_func *fn;
		tpl_macro *m;
		const char *why;  /* V_UNDEF: what was missing, for the message */
	};
} val;

struct tpl_list { size_t n, cap; val *v; };
struct tpl_dict { size_t n, cap; val *k, *v; };

typedef struct tpl_args {
	int n;                /* positional */
	val *v;
	int nk;               /* keyword */
	const char **kname;
	val *kv;
	const char *fname;    /* the name of the function called (methods share code) */
} tpl_args;

typedef struct tpl_render tpl_render;
typedef val (*tpl_builtin)(tpl_render *r, int line, val self, tpl_args *a);
struct tpl_func { const char *name; tpl_builtin fn; val self; };

static inline val v_undef(const char *why) { val v = { .t = V_UNDEF }; v.why = why; return v; }
static inline val v_none(void) { val v = { .t = V_NONE }; return v; }
static inline val v_bool(int b) { val v = { .t = V_BOOL }; v.b = !!b; return v; }
static inline val v_int(long long i) { val v = { .t = V_INT }; v.i = i; return v; }
static inline val v_float(double f) { val v = { .t = V_FLOAT }; v.f = f; return v; }
static inline val v_str(const char *p, size_t n) { val v = { .t = V_STR }; v.s.p = p; v.s.n = n; return v; }

val v_cstr(tpl_env *e, const char *s);     /* copies */
val v_list(tpl_env *e);
val v_dict(tpl_env *e);
void list_push(tpl_env *e, tpl_list *l, val x);
void dict_set(tpl_env *e, tpl_dict *d, val k, val x);
/* 1 and *out when k is a key of d. */
int dict_get(const tpl_dict *d, val k, val *out);
val dict_gets(const tpl_dict *d, const char *key); /* V_UNDEF when absent */

int v_truthy(val v);
int v_eq(val a, val b);
const char *v_typename(val v);  /* Python's: 'str', 'dict', ... */

/* Growing byte buffers in the arena, bounded by lim.output. */
typedef struct tpl_buf { tpl_env *e; char *p; size_t n, cap; int line; } tpl_buf;
void buf_init(tpl_buf *b, tpl_env *e, int line);
void buf_add(tpl_buf *b, const char *p, size_t n);
void buf_addc(tpl_buf *b, char c);
void buf_adds(tpl_buf *b, const char *s);
void buf_addf(tpl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_cp(tpl_buf *b, uint32_t cp);      /* one code point as UTF-8 */
val buf_val(tpl_buf *b);

/* Python's str() and repr() of a value, appended to b. */
void v_str_to(tpl_buf *b, val v);
void v_repr_to(tpl_buf *b, val v);
val v_to_str(tpl_env *e, int line, val v);  /* str(v) as a V_STR */
/* json.dumps(v, ensure_ascii=False, indent=indent (NULL: none)), key order kept. */
void v_json_to(tpl_buf *b, val v, const char *indent, int depth);
void py_float_repr(char *out, size_t n, double f);

/* UTF-8 helpers (strings from JSON and templates are valid UTF-8; invalid
 * bytes count as one code point each, so nothing reads out of bounds). */
size_t u8_len(const char *p, size_t n);                 /* code points */
size_t u8_offset(const char *p, size_t n, size_t cp);   /* byte offset of code point cp */
uint32_t u8_next(const char *p, size_t n, size_t *i);   /* decode at *i, advance */
int py_isspace(uint32_t c);

/* ---- the tree ------------------------------------------------------------ */
enum {
	/* statements */
	N_DATA, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK,
	N_BREAK, N_CONTINUE, N_WITH, N_BLOCK,
	/* expressions */
	E_CONST, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NEG, E_POS,
	E_AND, E_OR, E_NOT, E_COND, E_LIST, E_TUPLE, E_DICT, E_CMP, E_CONCAT
};

typedef struct node node;
typedef struct nodes { int n, cap; node **v; } nodes;

struct node {
	int kind, line;
	int op;               /* E_BIN / E_CMP operator; E_TEST negation; N_FOR recursive */
	const char *name;     /* E_NAME, E_ATTR, E_FILTER, E_TEST; N_MACRO */
	val c;                /* E_CONST */
	node *a, *b, *c3, *d; /* operands, in order (see parser.c for each kind) */
	nodes list;           /* bodies, elements, cmp chains */
	nodes list2;          /* else bodies, dict values, macro defaults */
	nodes args;           /* call/filter/test positional arguments */
	nodes kwargs;         /* their keyword values ... */
	const char **knames;  /* ... and names */
	const char **names;   /* N_FOR / N_SET targets, N_MACRO parameters */
	int nnames;
	int *ops;             /* E_CMP: the operator before each of list */
};

/* Binary and comparison operators. */
enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

/* ---- lexer --------------------------------------------------------------- */
enum {
	T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
	T_NAME, T_STRING, T_INT, T_FLOAT, T_OP
};
typedef struct tpl_token {
	int type, line;
	const char *p;        /* T_DATA, T_NAME, T_STRING (unescaped), T_OP text */
	size_t n;
	long long i;
	double f;
} tpl_token;
typedef struct tpl_tokens { int n, cap; tpl_token *v; } tpl_tokens;

/* Tokens of src (n bytes), whitespace control applied. */
void tpl_lex(tpl_env *e, const char *src, size_t n, tpl_tokens *out);

/* ---- parser -------------------------------------------------------------- */
node *tpl_parse(tpl_env *e, const tpl_tokens *t);  /* the template's body (a N_BLOCK) */

/* ---- render -------------------------------------------------------------- */
typedef struct tpl_frame tpl_frame;
struct tpl_frame { tpl_frame *parent; tpl_dict vars; };

struct tpl_macro {
	const char *name;
	const node *def;      /* N_MACRO or N_CALLBLOCK */
	tpl_frame *scope;
	val caller;           /* for the body of a call block */
};

struct tpl_render {
	tpl_env *e;
	tpl_frame *globals;
	time_t now;
	uint64_t steps;
	int depth;
};

/* Render root with vars (a V_DICT) as the context; the output, or an error. */
val tpl_render_tree(tpl_env *e, const node *root, val vars, time_t now);
val tpl_call(tpl_render *r, int line, val fn, tpl_args *a);

/* filters.c */
tpl_builtin tpl_filter(const char *name);
/* -1: no such test */
int tpl_test(tpl_render *r, int line, const char *name, val v, tpl_args *a);
val tpl_method(tpl_render *r, val self, const char *name);  /* V_UNDEF if none */
void tpl_add_globals(tpl_render *r, tpl_dict *d);
val tpl_getattr(tpl_render *r, int line, val obj, const char *name);
val tpl_getitem(tpl_render *r, int line, val obj, val key);
/* Materialise an iterable (list, tuple, dict keys, string chars, undefined: none). */
tpl_list *tpl_iter(tpl_render *r, int line, val v);
/* Compare: <0, 0, >0; type errors fail. */
int tpl_cmp(tpl_render *r, int line, val a, val b);

#endif
