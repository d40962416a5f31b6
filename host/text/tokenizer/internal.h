/* SPDX-License-Identifier: MIT */
/* internal.h - what the pieces of the tokenizer share; nothing outside
 * host/text/tokenizer/ includes it (the API is text/tokenizer.h).
 *
 * The files follow the Hugging Face tokenizers crate, stage by stage:
 *   tokenizer.c        encode and decode, end to end; small queries
 *   added_tokens.c     added-token matching (AddedVocabulary)
 *   normalizers.c      Sequence, Prepend, Append, Replace, NF(K)C/D,
 *                      Lowercase, Strip, StripAccents, BertNormalizer, ByteLevel
 *   pre_tokenizers.c   Split, ByteLevel (and its byte <-> char map),
 *                      Metaspace, Whitespace(Split), Digits, Punctuation,
 *                      BertPreTokenizer, Sequence
 *   bpe.c              the BPE model: vocabulary, merges, merging, word cache
 *   post_processors.c  TemplateProcessing, Roberta/BertProcessing, ByteLevel,
 *                      Sequence
 *   decoders.c         ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 *                      Strip, BPEDecoder, Sequence
 *   stream.c           the streaming decoder (DecodeStream)
 *   loader.c           tokenizer.json -> mh_tokenizer, and the JSON helpers
 *                      every stage's own loader uses
 *   pattern.c          String / Regex / character-class patterns and the
 *                      split behaviours (NormalizedString::split)
 *   util.c             buffers, arena, UTF-8, character classes, hash tables
 * Each stage keeps its node type to itself and gives out run, free and load.
 */
#ifndef MH_TOKENIZER_INTERNAL_H
#define MH_TOKENIZER_INTERNAL_H

#include "base/util.h"
#include "text/tokenizer.h"

#include <cJSON.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* these names link across the tokenizer's files only */
#pragma GCC visibility push(hidden)

#define MAX_TOKEN_ID (1 << 24)       /* refuse absurd ids in hostile files */
#define ARENA_BLOCK (256 * 1024)

/* ---- util.c: growable byte buffer, int vector, arena ------------------ */

typedef struct {
	char *p;
	size_t n, cap;
	size_t max;     /* 0, or the most it may hold: past it, over and oom */
	bool oom, over;
} sbuf;

static inline bool grow_array(void **p, size_t *cap, size_t need, size_t elsz)
{
	if (need <= *cap)
		return true;
	size_t c = *cap ? *cap : 16;
	while (c < need) {
		if (c > SIZE_MAX / 2 / elsz)
			return false;
		c *= 2;
	}
	void *np = realloc(*p, c * elsz);
	if (!np)
		return false;
	*p = np;
	*cap = c;
	return true;
}

/* The address of a new last element of a growable array, NULL (and *oom
 * set) when there is no memory; the caller fills it and counts it. */
static inline void *vec_more(void **v, size_t *cap, size_t n, size_t elsz, bool *oom)
{
	if (*oom)
		return NULL;
	if (!grow_array(v, cap, n + 1, elsz)) {
		*oom = true;
		return NULL;
	}
	return (char *)*v + n * elsz;
}

static inline bool sb_reserve(sbuf *b, size_t extra)
{
	if (b->oom)
		return false;
	if (b->max && extra > b->max - b->n) {
		b->over = b->oom = true;
		return false;
	}
	if (extra > SIZE_MAX / 4 - b->n) {
		b->oom = true;
		return false;
	}
	if (!grow_array((void **)&b->p, &b->cap, b->n + extra + 1, 1)) {
		b->oom = true;
		return false;
	}
	return true;
}

static inline void sb_put(sbuf *b, const void *s, size_t n)
{
	if (!sb_reserve(b, n))
		return;
	if (n)
		memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static inline void sb_putc(sbuf *b, char c)
{
	sb_put(b, &c, 1);
}

static inline void sb_putcp(sbuf *b, uint32_t cp)
{
	char u[4];
	sb_put(b, u, mh_utf8_encode(cp, u));
}

static inline void sb_clear(sbuf *b)
{
	b->n = 0;
	if (b->p)
		b->p[0] = 0;
}

static inline void sb_free(sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

typedef struct {
	int32_t *v;
	size_t n, cap;
	bool oom;
} i32vec;

static inline void iv_push(i32vec *v, int32_t x)
{
	int32_t *e = vec_more((void **)&v->v, &v->cap, v->n, sizeof *v->v, &v->oom);
	if (e) {
		*e = x;
		v->n++;
	}
}

static inline void iv_put(i32vec *v, const int32_t *x, size_t n)
{
	if (v->oom || !n)
		return;
	if (!grow_array((void **)&v->v, &v->cap, v->n + n, sizeof *v->v)) {
		v->oom = true;
		return;
	}
	memcpy(v->v + v->n, x, n * sizeof *x);
	v->n += n;
}

typedef struct ablk {
	struct ablk *next;
	size_t used, cap;
	char data[];
} ablk;

void *arena_alloc(ablk **head, size_t n);
char *arena_strndup(ablk **head, const char *s, size_t n);
void arena_free(ablk *b);

/* ---- util.c: UTF-8 and character classes ------------------------------ */

size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad);
bool utf8_valid(const char *s, size_t n);
void utf8_lossy(sbuf *out, const char *s, size_t n);

/* Length of the character starting with lead byte c (input known valid). */
static inline size_t u8len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Code point at s (valid UTF-8), its length in *len. */
static inline uint32_t u8cp(const char *s, size_t n, size_t *len)
{
	uint32_t cp = 0xFFFD;
	size_t bad;
	size_t l = utf8_seq((const unsigned char *)s, n, &cp, &bad);
	*len = l ? l : 1;
	return l ? cp : 0xFFFD;
}

bool is_ws(uint32_t c);        /* Rust char::is_whitespace */
bool is_numeric(uint32_t c);
bool is_punct(uint32_t c);
bool is_word_char(uint32_t c);  /* regex \w */

/* ---- util.c: string -> int32 and (id, id) -> (rank, id) --------------- */

static inline uint32_t hash_bytes(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 1099511628211ULL;
	}
	return (uint32_t)(h ^ (h >> 32));
}

typedef struct {
	const char *key; /* NULL: empty slot */
	uint32_t len, hash;
	int32_t val;
} sm_ent;

typedef struct {
	sm_ent *e;
	size_t mask, n;
} strmap;

static inline sm_ent *sm_slot(const strmap *m, const char *k, size_t len, uint32_t h)
{
	for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
		sm_ent *e = &m->e[i];
		if (!e->key || (e->hash == h && e->len == len && !memcmp(e->key, k, len)))
			return e;
	}
}

static inline int32_t sm_get(const strmap *m, const char *k, size_t len)
{
	if (!m->e || len > UINT32_MAX)
		return -1;
	sm_ent *e = sm_slot(m, k, len, hash_bytes(k, len));
	return e->key ? e->val : -1;
}

/* Insert or overwrite; key must outlive the map. */
bool sm_put(strmap *m, const char *k, size_t len, int32_t val);
bool sm_reserve(strmap *m, size_t n);

typedef struct {
	uint64_t key; /* UINT64_MAX: empty */
	int32_t rank, id;
} mm_ent;

typedef struct {
	mm_ent *e;
	size_t mask, n;
} mergemap;

static inline uint64_t mm_key(int32_t a, int32_t b)
{
	return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static inline size_t mm_hash(uint64_t k)
{
	return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 29);
}

static inline const mm_ent *mm_get(const mergemap *m, int32_t a, int32_t b)
{
	if (!m->e)
		return NULL;
	uint64_t k = mm_key(a, b);
	for (size_t i = mm_hash(k) & m->mask;; i = (i + 1) & m->mask) {
		if (m->e[i].key == k)
			return &m->e[i];
		if (m->e[i].key == UINT64_MAX)
			return NULL;
	}
}

bool mm_init(mergemap *m, size_t n);
/* Table sized by mm_init for all merges; later duplicates win (as a HashMap). */
void mm_put(mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t id);

/* ---- pattern.c: patterns, "find all matches", split behaviours -------- */

enum { PAT_NONE, PAT_LITERAL, PAT_REGEX, PAT_CHAR };

typedef struct {
	int kind;
	char *lit;
	size_t lit_len;
	pcre2_code *re;
	bool (*pred)(uint32_t);
} pattern;

typedef struct {
	size_t a, b;
} range;

typedef struct {
	range *v;
	size_t n, cap;
	bool oom;
} rangevec;

/* Per-call regex matching state. */
typedef struct {
	pcre2_match_data *md;
	pcre2_match_context *mc;
	pcre2_jit_stack *js;
	int err;            /* why a step failed: TOKENIZER_E*; 0: out of memory */
	bool raw;           /* decoders keep bytes as they are (no U+FFFD for
			     * a part of a character): tokenizer_pieces */
} mctx;

/* Limits on the work of one regex search (PCRE2's own counters), and on
 * how far all searches over a text may scan past where they match: a
 * search looks at most REGEX_WINDOW bytes ahead, more only where a match
 * may go on (PCRE2's hard partial matching says so), and those extra
 * bytes may add up to REGEX_BUDGET(n) over a text of n bytes.  So a
 * pattern like a*b|a, which scans to the end from every position, fails
 * (TOKENIZER_ELIMIT) instead of taking quadratic time. */
#define REGEX_MATCH_LIMIT 1000000
#define REGEX_DEPTH_LIMIT 100000
#define REGEX_WINDOW 4096
#define REGEX_BUDGET(n) (8 * (n) + (1u << 20))

enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };

typedef struct {
	size_t a, b;
	bool flag;
} span;

typedef struct {
	span *v;
	size_t n, cap;
	bool oom;
} spanvec;

void rv_push(rangevec *r, size_t a, size_t b);
bool mctx_ready(mctx *c);
void mctx_free(mctx *c);
void pat_free(pattern *p);
/* All non-overlapping matches of p in s[0..n), left to right. */
int pat_find(const pattern *p, const char *s, size_t n, mctx *c, rangevec *out);
/* The next matches of a regex pattern from *off on, at most most of them
 * (*off and *spent carried from call to call, from 0): 1 if more may
 * follow, 0 at the end of s, -1 on failure (c->err). */
int regex_find_some(const pattern *p, const char *s, size_t n, size_t *off, size_t *spent,
		    size_t most, mctx *c, rangevec *out);
/* s[0..n) with every match of p replaced by with[0..wlen), appended to out
 * (m: scratch for the matches). */
int pat_replace(const pattern *p, const char *s, size_t n, const char *with, size_t wlen,
		sbuf *out, mctx *c, rangevec *m);
/* Turn matches of a string of length n into the kept sub-ranges (non-empty)
 * according to the split behavior; tokenizers' NormalizedString::split. */
int split_by_behavior(const rangevec *m, size_t n, int behavior, bool invert,
		      spanvec *tmp, rangevec *keep);

/* ---- loader.c: loading context and JSON helpers ----------------------- */

typedef struct {
	const char *path;
	char *err;
	size_t errlen;
	bool failed;
	mh_tokenizer *t;
} loadctx;

__attribute__((format(printf, 2, 3)))
bool fail(loadctx *L, const char *fmt, ...);    /* always false */
/* A short, printable excerpt of a string from the file for messages. */
const char *shown(const char *s, char buf[48]);
const cJSON *jget(const cJSON *o, const char *key);
const char *jstr(const cJSON *o, const char *key);
bool jbool(const cJSON *o, const char *key, bool def);
bool jid(const cJSON *v, int32_t *out);
char *xstrdup(const char *s, size_t *len);
/* One character given as a JSON string (Metaspace replacement, Strip content). */
bool load_char(loadctx *L, const char *s, uint32_t *cp, const char *what);
int load_prepend_scheme(const cJSON *j);
/* Zeroed room for one element per item of the JSON array arr (at least
 * one); NULL on failure (L->failed), "WHAT must be a list" if arr is not. */
void *load_list(loadctx *L, const cJSON *arr, size_t elsz, const char *what);
/* What load_tree needs to know of a stage's node type (normalizer, ...). */
typedef struct {
	const char *what;      /* "normalizer", for messages */
	const char *list;      /* the key of a Sequence's list: "normalizers" */
	size_t size;           /* of a node */
	size_t kids, nkids;    /* offsets of its children array and their count */
	/* sets a node up from its JSON (a Sequence's children are loaded);
	 * false without failing: type is not one of the stage's */
	bool (*setup)(loadctx *L, const cJSON *j, const char *type, void *node);
	void (*fields_free)(void *node);  /* what a node owns besides its children */
} stage;
/* The descriptor of a stage whose node type T keeps its children in
 * T.kids[T.nkids]. */
#define STAGE(T, what, list, setup, fields_free)                                        \
	{ what, list, sizeof(T), offsetof(T, kids), offsetof(T, nkids), setup, fields_free }
/* A node of a stage's tree, zeroed and set up; NULL when j is absent or
 * null, or loading failed before.  On failure (L->failed) what was built
 * is returned for the caller to free. */
void *load_tree(loadctx *L, const cJSON *j, const stage *st, int depth);
void tree_free(const stage *st, void *node);
/* A pattern object {"String": "..."} or {"Regex": "..."} (pattern.c). */
bool load_pattern(loadctx *L, const cJSON *j, pattern *p, const char *what);
/* A Replace step's "content" into *s and its "pattern" (pattern.c); what:
 * "normalizer Replace", for messages. */
bool load_replace(loadctx *L, const cJSON *j, char **s, size_t *slen, pattern *p,
		  const char *what);
bool compile_regex(loadctx *L, pattern *p, const char *rx);
int load_behavior(const char *s);

/* ---- the stages ------------------------------------------------------- */

enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

/* Scratch state of one encode call. */
typedef struct {
	mctx m;
	rangevec matches, keep;
	spanvec spans;
	sbuf tmp, tmp2;
	/* BPE */
	struct sym *syms;
	size_t nsyms, capsyms;
	struct hent *heap;
	size_t nheap, capheap;
	/* word cache: piece -> ids in cache_ids */
	strmap cache;
	ablk *cache_keys;
	i32vec cache_ids;
	bool oom;
	size_t max_ids;    /* stop past this many ids (0: never) */
	size_t max_text;   /* the most text a step may make (growth_cap) */
} ectx;

/* Whether out holds more ids than the caller wants (then says so). */
static inline bool past_max(ectx *c, const i32vec *out)
{
	if (!c->max_ids || out->n <= c->max_ids)
		return false;
	c->m.err = TOKENIZER_ETOOLONG;
	return true;
}

/* The most text a step of the pipeline may make out of n bytes. */
static inline size_t growth_cap(size_t n)
{
	size_t most = (SIZE_MAX / 4 - 4096) / TOKENIZER_MAX_GROWTH;
	return n > most ? SIZE_MAX / 4 : TOKENIZER_MAX_GROWTH * n + 4096;
}

typedef struct {
	strmap vocab;
	mergemap merges;
	int32_t unk_id;          /* -1: none */
	bool fuse_unk, byte_fallback, ignore_merges;
	char *prefix, *suffix;   /* continuing_subword_prefix, end_of_word_suffix */
	size_t prefix_len, suffix_len;
	int32_t byte_ids[256];   /* <0xXX>, -1 if absent */
	/* Pairs of adjacent characters inside any merge result: a long word is
	 * cut between two characters that are vocabulary tokens themselves and
	 * whose pair is not here, since no merge can ever join across them. */
	mergemap bigrams;
} bpe_model;

/* A list of strings in one buffer: the tokens decoders work on, the
 * pieces pre-tokenizers cut (flag: the piece starts at offset 0 of the
 * input) (util.c). */
typedef struct {
	sbuf b;
	span *v;
	size_t n, cap;
	bool oom;
} tlist;

#define TOK(t, i) ((t)->b.p + (t)->v[i].a)
#define TOKLEN(t, i) ((t)->v[i].b - (t)->v[i].a)
void tl_begin(tlist *t);        /* a new empty string, appended to by the */
void tl_end(tlist *t);          /* caller into t->b, ended by tl_end */
void tl_add(tlist *t, const char *s, size_t n);
void tl_clear(tlist *t);
void tl_free(tlist *t);

typedef struct normalizer normalizer;
/* Normalize s[0..n) into out (cleared first). */
int norm_run(const normalizer *nz, const char *s, size_t n, sbuf *out, mctx *c);
extern const stage normalizer_stage; /* load_tree of a normalizer */

typedef struct pretok pretok;
int pretok_run(const pretok *p, const tlist *in, tlist *out, ectx *c);
/* Pre-tokenize s[0..n) and hand the pieces to fn in batches, when the
 * first step's pieces stand alone (a regex Split or ByteLevel, Isolated or
 * Removed): memory is then bounded by a batch of 1024 of them, and fn
 * stops the whole by failing (encoding past max_ids).  The pieces are
 * those of pretok_run.  1: not such a pre-tokenizer (use pretok_run);
 * else fn's result, or -1 on failure (c->m.err). */
int pretok_stream(const pretok *p, const char *s, size_t n, bool first, ectx *c,
		  int (*fn)(void *arg, const tlist *pieces), void *arg);
extern const stage pretok_stage; /* load_tree of a pretok */
/* a piece into a list; empty ones are dropped */
void pl_add(tlist *p, const char *s, size_t n, bool first);
extern int16_t bl_dec[324];      /* byte-level char (code point) -> byte, -1 if none */
void bytelevel_init(void);
void bytelevel_map(sbuf *out, const char *s, size_t n);

/* A long word is merged in chunks that no merge crosses (bpe.c). */
int bpe_piece(const bpe_model *m, const char *w, size_t n, ectx *c, i32vec *out);
void bpe_free(bpe_model *m);
bool load_model(loadctx *L, const cJSON *model, int32_t *max_id);

typedef struct postproc postproc;
int post_run(const postproc *p, i32vec *ids);
extern const stage post_stage; /* load_tree of a postproc */

typedef struct decoder decoder;
int dec_run(const decoder *d, const tlist *in, tlist *out, mctx *c);
extern const stage decoder_stage; /* load_tree of a decoder */

/* ---- added_tokens.c and the tokenizer itself -------------------------- */

typedef struct {
	const char *content;
	size_t len;
	const char *norm;   /* normalized content (normalized=true tokens) */
	size_t norm_len;
	int32_t id;
	bool special, single_word, lstrip, rstrip, normalized;
} added_tok;

typedef struct {
	int32_t child, sibling, tok;
	unsigned char byte;
} tnode;

typedef struct {
	tnode *v;
	size_t n, cap;
} trie;

enum { F_SPECIAL = 1, F_ADDED = 2 };

struct mh_tokenizer {
	ablk *arena;
	bpe_model bpe;
	int32_t n_ids;
	const char **id_str;
	uint32_t *id_len;
	uint8_t *id_flags;
	added_tok *added;
	size_t n_added;
	strmap added_map;
	trie raw_trie, norm_trie;
	normalizer *norm;
	pretok *pre;
	postproc *post;
	decoder *dec;
};

typedef struct {
	size_t a, b;
	int32_t tok; /* index into added[], -1: plain text */
} seg;

typedef struct {
	seg *v;
	size_t n, cap;
	bool oom;
} segvec;

/* Split s into plain segments and added-token matches. */
int added_split(const mh_tokenizer *t, const trie *tr, const char *s, size_t n, segvec *out);
bool load_added(loadctx *L, const cJSON *arr, int32_t *max_id);
/* Tries over added tokens (after the normalizer is loaded). */
bool build_tries(loadctx *L);
/* Decoded text (valid UTF-8) appended to out (tokenizer.c). */
int decode_into(const mh_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
		sbuf *out);

#pragma GCC visibility pop

#endif
