/* tokenizer.c - Hugging Face tokenizer.json with a BPE model.
 *
 * Encoding (tokenizer_encode) follows the Hugging Face tokenizers pipeline:
 *
 *   1. added tokens: the raw text is scanned (leftmost-longest, a byte trie)
 *      for added tokens whose "normalized" flag is false, honouring their
 *      lstrip / rstrip / single_word flags.  Those become ids directly; the
 *      text between them is processed by the next steps, segment by segment.
 *   2. normalize: the normalizer tree (Sequence, Prepend, Replace, NFC, ...).
 *      Added tokens with normalized=true are then matched in the normalized
 *      text (against their normalized content).
 *   3. pre-tokenize: a list of pieces, each stage (Split with the file's
 *      PCRE2 regex, ByteLevel, Metaspace, Digits, ...) splitting or
 *      rewriting every piece.  A piece remembers whether it starts at
 *      offset 0 of the input (Metaspace prepend_scheme "first").
 *   4. BPE per piece: characters (or <0xXX> byte-fallback tokens, or unk)
 *      are merged by rank with a min-heap over a linked list of symbols, as
 *      tokenizers' Word::merge_all does (lowest rank, then leftmost first).
 *      Results are cached per encode call for pieces up to 256 bytes.
 *   5. post-process (only when add_special): TemplateProcessing,
 *      Roberta/Bert processing (reduced to templates), Sequence; ByteLevel
 *      only touches offsets and is a no-op here.
 *
 * Decoding maps ids to token strings (added tokens first), drops special
 * tokens when asked, and runs the decoder chain over the list of strings
 * (Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace, BPEDecoder,
 * Sequence); without a decoder tokens are joined with spaces.  The result is
 * made valid UTF-8 the way Rust's from_utf8_lossy does it.
 *
 * The streaming detokenizer is tokenizers' DecodeStream: it re-decodes a
 * small window of ids (the ids of the previous chunk as context, plus new
 * ones) and emits the text past the previous decode, holding back while the
 * window ends in U+FFFD (an incomplete UTF-8 sequence).
 *
 * A loaded tokenizer is read-only; each encode/decode call keeps its scratch
 * state (PCRE2 match data, heap, cache) on its own, so calls are thread-safe.
 */
#define _GNU_SOURCE
#include "text/tokenizer.h"

#include <cJSON.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN_ID (1 << 24)       /* refuse absurd ids in hostile files */
#define CACHE_MAX_PIECE 256          /* bytes; longer pieces are not cached */
#define CACHE_MAX_ENTRIES 200000
#define ARENA_BLOCK (256 * 1024)

static const char GPT2_REGEX[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char WHITESPACE_REGEX[] = "\\w+|[^\\w\\s]+";

/* ========================================================================
 * Small utilities: growable byte buffer, int vector, arena, UTF-8
 * ====================================================================== */

typedef struct {
	char *p;
	size_t n, cap;
	bool oom;
} sbuf;

static bool grow_array(void **p, size_t *cap, size_t need, size_t elsz)
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

static bool sb_reserve(sbuf *b, size_t extra)
{
	if (b->oom)
		return false;
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

static void sb_put(sbuf *b, const void *s, size_t n)
{
	if (!sb_reserve(b, n))
		return;
	if (n)
		memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void sb_putc(sbuf *b, char c)
{
	sb_put(b, &c, 1);
}

static void sb_putcp(sbuf *b, uint32_t cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	sb_put(b, u, n);
}

static void sb_clear(sbuf *b)
{
	b->n = 0;
	if (b->p)
		b->p[0] = 0;
}

static void sb_free(sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

typedef struct {
	int32_t *v;
	size_t n, cap;
	bool oom;
} i32vec;

static void iv_push(i32vec *v, int32_t x)
{
	if (v->oom)
		return;
	if (!grow_array((void **)&v->v, &v->cap, v->n + 1, sizeof *v->v)) {
		v->oom = true;
		return;
	}
	v->v[v->n++] = x;
}

static void iv_put(i32vec *v, const int32_t *x, size_t n)
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

static void *arena_alloc(ablk **head, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	if (!*head || (*head)->cap - (*head)->used < n) {
		size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		ablk *b = malloc(sizeof *b + cap);
		if (!b)
			return NULL;
		b->next = *head;
		b->used = 0;
		b->cap = cap;
		*head = b;
	}
	void *p = (*head)->data + (*head)->used;
	(*head)->used += n;
	return p;
}

static char *arena_strndup(ablk **head, const char *s, size_t n)
{
	char *p = arena_alloc(head, n + 1);
	if (p) {
		if (n)
			memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

static void arena_free(ablk *b)
{
	while (b) {
		ablk *n = b->next;
		free(b);
		b = n;
	}
}

/* Decode one UTF-8 sequence strictly.  Returns its length, or 0 when it is
 * ill-formed; then *bad is the length of its maximal valid prefix (>= 1),
 * which is what one U+FFFD replaces in from_utf8_lossy. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad)
{
	unsigned c = s[0];
	size_t len;
	uint32_t v;
	unsigned lo = 0x80, hi = 0xBF;
	*bad = 1;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		if (i >= n)
			return 0;
		unsigned d = s[i];
		if (d < lo || d > hi)
			return 0;
		lo = 0x80;
		hi = 0xBF;
		v = (v << 6) | (d & 0x3F);
		*bad = i + 1;
	}
	*cp = v;
	return len;
}

size_t tokenizer_utf8_valid_prefix(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, bad;
	uint32_t cp;
	while (i < n) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = utf8_seq(u + i, n - i, &cp, &bad);
		if (!l)
			return i;
		i += l;
	}
	return n;
}

static bool utf8_valid(const char *s, size_t n)
{
	return tokenizer_utf8_valid_prefix(s, n) == n;
}

/* Append s to out, replacing ill-formed sequences by U+FFFD. */
static void utf8_lossy(sbuf *out, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0, bad;
	uint32_t cp;
	while (i < n) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = utf8_seq(u + i, n - i, &cp, &bad);
		if (l) {
			i += l;
			continue;
		}
		sb_put(out, s + run, i - run);
		sb_put(out, "\xEF\xBF\xBD", 3);
		i += bad;
		run = i;
	}
	sb_put(out, s + run, n - run);
}

/* Length of the character starting with lead byte c (input known valid). */
static inline size_t u8len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Code point at s (valid UTF-8), its length in *len. */
static uint32_t u8cp(const char *s, size_t n, size_t *len)
{
	uint32_t cp = 0xFFFD;
	size_t bad;
	size_t l = utf8_seq((const unsigned char *)s, n, &cp, &bad);
	*len = l ? l : 1;
	return l ? cp : 0xFFFD;
}

/* Rust char::is_whitespace (the White_Space property). */
static bool is_ws(uint32_t c)
{
	return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
	       c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_numeric(uint32_t c)
{
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL ||
	       k == UTF8PROC_CATEGORY_NO;
}

static bool is_punct(uint32_t c)
{
	if (c < 0x80)
		return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) ||
		       (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* Regex \w: letters, marks, decimal digits, connector punctuation. */
static bool is_word_char(uint32_t c)
{
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) ||
	       k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_PC;
}

static uint32_t hash_bytes(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 1099511628211ULL;
	}
	return (uint32_t)(h ^ (h >> 32));
}

/* ========================================================================
 * Hash tables: string -> int32 and (id, id) -> (rank, id)
 * ====================================================================== */

typedef struct {
	const char *key; /* NULL: empty slot */
	uint32_t len, hash;
	int32_t val;
} sm_ent;

typedef struct {
	sm_ent *e;
	size_t mask, n;
} strmap;

static sm_ent *sm_slot(const strmap *m, const char *k, size_t len, uint32_t h)
{
	for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
		sm_ent *e = &m->e[i];
		if (!e->key || (e->hash == h && e->len == len && !memcmp(e->key, k, len)))
			return e;
	}
}

static int32_t sm_get(const strmap *m, const char *k, size_t len)
{
	if (!m->e || len > UINT32_MAX)
		return -1;
	sm_ent *e = sm_slot(m, k, len, hash_bytes(k, len));
	return e->key ? e->val : -1;
}

static bool sm_rehash(strmap *m, size_t cap)
{
	sm_ent *ne = calloc(cap, sizeof *ne);
	if (!ne)
		return false;
	strmap nm = { ne, cap - 1, m->n };
	for (size_t i = 0; m->e && i <= m->mask; i++)
		if (m->e[i].key)
			*sm_slot(&nm, m->e[i].key, m->e[i].len, m->e[i].hash) = m->e[i];
	free(m->e);
	*m = nm;
	return true;
}

/* Insert or overwrite; key must outlive the map. */
static bool sm_put(strmap *m, const char *k, size_t len, int32_t val)
{
	if (len > UINT32_MAX)
		return false;
	if (!m->e || (m->n + 1) * 2 > m->mask + 1) {
		size_t cap = m->e ? (m->mask + 1) * 2 : 64;
		if (!sm_rehash(m, cap))
			return false;
	}
	uint32_t h = hash_bytes(k, len);
	sm_ent *e = sm_slot(m, k, len, h);
	if (!e->key) {
		e->key = k;
		e->len = (uint32_t)len;
		e->hash = h;
		m->n++;
	}
	e->val = val;
	return true;
}

static bool sm_reserve(strmap *m, size_t n)
{
	size_t cap = 64;
	while (cap < n * 2 + 2)
		cap *= 2;
	return m->e ? true : sm_rehash(m, cap);
}

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

static const mm_ent *mm_get(const mergemap *m, int32_t a, int32_t b)
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

static bool mm_init(mergemap *m, size_t n)
{
	size_t cap = 64;
	while (cap < n * 2 + 2)
		cap *= 2;
	m->e = malloc(cap * sizeof *m->e);
	if (!m->e)
		return false;
	for (size_t i = 0; i < cap; i++)
		m->e[i].key = UINT64_MAX;
	m->mask = cap - 1;
	m->n = 0;
	return true;
}

/* Table sized by mm_init for all merges; later duplicates win (as a HashMap). */
static void mm_put(mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
	uint64_t k = mm_key(a, b);
	size_t i = mm_hash(k) & m->mask;
	while (m->e[i].key != UINT64_MAX && m->e[i].key != k)
		i = (i + 1) & m->mask;
	if (m->e[i].key == UINT64_MAX)
		m->n++;
	m->e[i].key = k;
	m->e[i].rank = rank;
	m->e[i].id = id;
}

/* ========================================================================
 * Patterns (literal string, PCRE2 regex, or a per-character predicate) and
 * "find all matches" + split behaviors, as in tokenizers' NormalizedString.
 * ====================================================================== */

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

static void rv_push(rangevec *r, size_t a, size_t b)
{
	if (r->oom)
		return;
	if (!grow_array((void **)&r->v, &r->cap, r->n + 1, sizeof *r->v)) {
		r->oom = true;
		return;
	}
	r->v[r->n].a = a;
	r->v[r->n].b = b;
	r->n++;
}

/* Per-call regex matching state. */
typedef struct {
	pcre2_match_data *md;
	pcre2_match_context *mc;
	pcre2_jit_stack *js;
} mctx;

static bool mctx_ready(mctx *c)
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
	return true;
}

static void mctx_free(mctx *c)
{
	pcre2_match_data_free(c->md);
	pcre2_match_context_free(c->mc);
	pcre2_jit_stack_free(c->js);
	memset(c, 0, sizeof *c);
}

static void pat_free(pattern *p)
{
	free(p->lit);
	pcre2_code_free(p->re);
	memset(p, 0, sizeof *p);
}

/* All non-overlapping matches of p in s[0..n), left to right. */
static int pat_find(const pattern *p, const char *s, size_t n, mctx *c, rangevec *out)
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
		size_t off = 0;
		while (off <= n) {
			int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, off,
					     PCRE2_NO_UTF_CHECK, c->md, c->mc);
			if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
				rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, off,
						 PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
						 c->md, c->mc);
			if (rc == PCRE2_ERROR_NOMATCH)
				break;
			if (rc < 0)
				return -1;
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
			size_t a = ov[0], b = ov[1];
			if (a > n || b > n || b < a)
				return -1;
			rv_push(out, a, b);
			if (b == a) {
				if (b >= n)
					break;
				off = b + u8len((unsigned char)s[b]);
			} else {
				off = b;
			}
		}
	}
	return out->oom ? -1 : 0;
}

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

static void sv_push(spanvec *s, size_t a, size_t b, bool flag)
{
	if (s->oom)
		return;
	if (!grow_array((void **)&s->v, &s->cap, s->n + 1, sizeof *s->v)) {
		s->oom = true;
		return;
	}
	s->v[s->n++] = (span){ a, b, flag };
}

/* Turn matches of a string of length n into the kept sub-ranges (non-empty)
 * according to the split behavior; tokenizers' NormalizedString::split. */
static int split_by_behavior(const rangevec *m, size_t n, int behavior, bool invert,
			     spanvec *tmp, rangevec *keep)
{
	tmp->n = 0;
	keep->n = 0;
	size_t prev = 0;
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
	case SPLIT_CONTIGUOUS:
		for (size_t i = 0; i < cnt; i++) {
			bool is_match = v[i].flag;
			if (is_match == prev_match && w > 0)
				v[w - 1].b = v[i].b;
			else
				v[w++] = (span){ v[i].a, v[i].b, false };
			prev_match = is_match;
		}
		cnt = w;
		break;
	case SPLIT_MERGED_PREV:
		for (size_t i = 0; i < cnt; i++) {
			bool is_match = v[i].flag;
			if (is_match && !prev_match && w > 0)
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

/* ========================================================================
 * Byte-level (GPT-2) byte <-> character mapping
 * ====================================================================== */

static char bl_enc[256][3];      /* UTF-8 of the char for each byte */
static uint8_t bl_enc_len[256];
static int16_t bl_dec[324];      /* code point -> byte, -1 if none */

static void bytelevel_build(void)
{
	int n = 0;
	for (int i = 0; i < 324; i++)
		bl_dec[i] = -1;
	for (int b = 0; b < 256; b++) {
		uint32_t cp;
		if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
			cp = (uint32_t)b;
		else
			cp = 256 + (uint32_t)n++;
		bl_dec[cp] = (int16_t)b;
		if (cp < 0x80) {
			bl_enc[b][0] = (char)cp;
			bl_enc_len[b] = 1;
		} else {
			bl_enc[b][0] = (char)(0xC0 | (cp >> 6));
			bl_enc[b][1] = (char)(0x80 | (cp & 0x3F));
			bl_enc_len[b] = 2;
		}
	}
}

static void bytelevel_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, bytelevel_build);
}

static void bytelevel_map(sbuf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		sb_put(out, bl_enc[c], bl_enc_len[c]);
	}
}

/* ========================================================================
 * Normalizers
 * ====================================================================== */

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

static void norm_free(normalizer *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		norm_free(n->kids[i]);
	free(n->kids);
	free(n->s);
	pat_free(&n->pat);
	free(n);
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
	sbuf a = { 0 };
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
		sbuf d = { 0 };
		rc = norm_unicode(a.p, a.n, &d, UTF8PROC_DECOMPOSE);
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
	sb_free(&a);
	return rc;
}

static int norm_replace(const normalizer *nz, const char *s, size_t n, sbuf *out, mctx *c)
{
	rangevec m = { 0 };
	if (pat_find(&nz->pat, s, n, c, &m) < 0) {
		free(m.v);
		return -1;
	}
	size_t prev = 0;
	for (size_t i = 0; i < m.n; i++) {
		sb_put(out, s + prev, m.v[i].a - prev);
		sb_put(out, nz->s, nz->slen);
		prev = m.v[i].b;
	}
	sb_put(out, s + prev, n - prev);
	free(m.v);
	return 0;
}

/* Normalize s[0..n) into out (cleared first). */
static int norm_run(const normalizer *nz, const char *s, size_t n, sbuf *out, mctx *c)
{
	sb_clear(out);
	switch (nz->type) {
	case N_SEQ: {
		sbuf a = { 0 }, b = { 0 };
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

/* ========================================================================
 * Pre-tokenizers over a list of pieces
 * ====================================================================== */

enum { P_SEQ, P_SPLIT, P_BYTELEVEL, P_METASPACE };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

typedef struct pretok {
	int type;
	struct pretok **kids;
	size_t nkids;
	pattern pat;           /* Split; ByteLevel's regex */
	int behavior;
	bool invert;
	bool add_prefix_space; /* ByteLevel */
	bool use_regex;
	char rep[5];           /* Metaspace replacement (UTF-8) */
	size_t rep_len;
	int prepend_scheme;
	bool split;
} pretok;

static void pretok_free(pretok *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nkids; i++)
		pretok_free(p->kids[i]);
	free(p->kids);
	pat_free(&p->pat);
	free(p);
}

typedef struct {
	size_t off, len;
	bool first; /* starts at offset 0 of the whole input */
} piece;

typedef struct {
	sbuf b;
	piece *v;
	size_t n, cap;
	bool oom;
} plist;

static void pl_clear(plist *p)
{
	sb_clear(&p->b);
	p->n = 0;
}

static void pl_free(plist *p)
{
	sb_free(&p->b);
	free(p->v);
	memset(p, 0, sizeof *p);
}

static void pl_add(plist *p, const char *s, size_t n, bool first)
{
	if (!n || p->oom)
		return;
	if (!grow_array((void **)&p->v, &p->cap, p->n + 1, sizeof *p->v)) {
		p->oom = true;
		return;
	}
	p->v[p->n++] = (piece){ p->b.n, n, first };
	sb_put(&p->b, s, n);
}

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
} ectx;

static void ectx_free(ectx *c)
{
	mctx_free(&c->m);
	free(c->matches.v);
	free(c->keep.v);
	free(c->spans.v);
	sb_free(&c->tmp);
	sb_free(&c->tmp2);
	free(c->syms);
	free(c->heap);
	free(c->cache.e);
	arena_free(c->cache_keys);
	free(c->cache_ids.v);
}

static int pretok_run(const pretok *p, const plist *in, plist *out, ectx *c);

static int pretok_split_piece(const pretok *p, const char *s, size_t n, bool first,
			      plist *out, ectx *c, bool bytelevel)
{
	if (pat_find(&p->pat, s, n, &c->m, &c->matches) < 0)
		return -1;
	if (split_by_behavior(&c->matches, n, p->behavior, p->invert, &c->spans, &c->keep) < 0)
		return -1;
	for (size_t i = 0; i < c->keep.n; i++) {
		const char *ps = s + c->keep.v[i].a;
		size_t pn = c->keep.v[i].b - c->keep.v[i].a;
		bool f = first && c->keep.v[i].a == 0;
		if (bytelevel) {
			sb_clear(&c->tmp2);
			bytelevel_map(&c->tmp2, ps, pn);
			pl_add(out, c->tmp2.p, c->tmp2.n, f);
		} else {
			pl_add(out, ps, pn, f);
		}
	}
	return 0;
}

static int pretok_bytelevel(const pretok *p, const char *s, size_t n, bool first,
			    plist *out, ectx *c)
{
	sbuf *t = &c->tmp;
	sb_clear(t);
	if (p->add_prefix_space && s[0] != ' ')
		sb_putc(t, ' ');
	sb_put(t, s, n);
	if (t->oom)
		return -1;
	if (p->use_regex)
		return pretok_split_piece(p, t->p, t->n, first, out, c, true);
	sb_clear(&c->tmp2);
	bytelevel_map(&c->tmp2, t->p, t->n);
	pl_add(out, c->tmp2.p, c->tmp2.n, first);
	return 0;
}

static int pretok_metaspace(const pretok *p, const char *s, size_t n, bool first,
			    plist *out, ectx *c)
{
	sbuf *t = &c->tmp;
	sb_clear(t);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ')
			sb_put(t, p->rep, p->rep_len);
		else
			sb_putc(t, s[i]);
	}
	bool starts = t->n >= p->rep_len && !memcmp(t->p, p->rep, p->rep_len);
	bool prepend = !starts && (p->prepend_scheme == PREPEND_ALWAYS ||
				   (p->prepend_scheme == PREPEND_FIRST && first));
	if (prepend) {
		sbuf *u = &c->tmp2;
		sb_clear(u);
		sb_put(u, p->rep, p->rep_len);
		sb_put(u, t->p, t->n);
		sbuf x = *t;
		*t = *u;
		*u = x;
	}
	if (t->oom)
		return -1;
	if (!p->split) {
		pl_add(out, t->p, t->n, first);
		return 0;
	}
	return pretok_split_piece(p, t->p, t->n, first, out, c, false);
}

static int pretok_run(const pretok *p, const plist *in, plist *out, ectx *c)
{
	pl_clear(out);
	if (p->type == P_SEQ) {
		plist a = { 0 }, b = { 0 };
		for (size_t i = 0; i < in->n; i++)
			pl_add(&a, in->b.p + in->v[i].off, in->v[i].len, in->v[i].first);
		int rc = a.oom || a.b.oom ? -1 : 0;
		for (size_t k = 0; k < p->nkids && rc == 0; k++) {
			rc = pretok_run(p->kids[k], &a, &b, c);
			plist t = a;
			a = b;
			b = t;
		}
		for (size_t i = 0; rc == 0 && i < a.n; i++)
			pl_add(out, a.b.p + a.v[i].off, a.v[i].len, a.v[i].first);
		pl_free(&a);
		pl_free(&b);
		return rc < 0 || out->oom || out->b.oom ? -1 : 0;
	}
	for (size_t i = 0; i < in->n; i++) {
		const char *s = in->b.p + in->v[i].off;
		size_t n = in->v[i].len;
		bool first = in->v[i].first;
		int rc = 0;
		switch (p->type) {
		case P_SPLIT:
			rc = pretok_split_piece(p, s, n, first, out, c, false);
			break;
		case P_BYTELEVEL:
			rc = pretok_bytelevel(p, s, n, first, out, c);
			break;
		case P_METASPACE:
			rc = pretok_metaspace(p, s, n, first, out, c);
			break;
		}
		if (rc < 0)
			return -1;
	}
	return out->oom || out->b.oom || c->tmp.oom || c->tmp2.oom ? -1 : 0;
}

/* ========================================================================
 * BPE model
 * ====================================================================== */

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

struct sym {
	int32_t id, prev, next;
	uint32_t len; /* bytes; 0: merged away */
};

struct hent {
	int32_t rank, pos, id;
};

static inline bool hent_less(const struct hent *a, const struct hent *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static bool heap_push(ectx *c, int32_t rank, int32_t pos, int32_t id)
{
	if (!grow_array((void **)&c->heap, &c->capheap, c->nheap + 1, sizeof *c->heap))
		return false;
	struct hent e = { rank, pos, id };
	size_t i = c->nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!hent_less(&e, &c->heap[p]))
			break;
		c->heap[i] = c->heap[p];
		i = p;
	}
	c->heap[i] = e;
	return true;
}

static struct hent heap_pop(ectx *c)
{
	struct hent top = c->heap[0];
	struct hent last = c->heap[--c->nheap];
	size_t i = 0, n = c->nheap;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct hent *best = &last;
		if (l < n && hent_less(&c->heap[l], best)) {
			m = l;
			best = &c->heap[l];
		}
		if (r < n && hent_less(&c->heap[r], best))
			m = r;
		if (m == i)
			break;
		c->heap[i] = c->heap[m];
		i = m;
	}
	if (n)
		c->heap[i] = last;
	return top;
}

static bool sym_add(ectx *c, int32_t id, size_t len)
{
	if (c->nsyms >= INT32_MAX - 1)
		return false;
	if (!grow_array((void **)&c->syms, &c->capsyms, c->nsyms + 1, sizeof *c->syms))
		return false;
	int32_t i = (int32_t)c->nsyms++;
	c->syms[i] = (struct sym){ id, i - 1, i + 1, (uint32_t)len };
	return true;
}

/* Initial symbols of a word: one per character, else byte fallback, else unk
 * (tokenizers' BPE::merge_word). */
static int bpe_symbols(const bpe_model *m, const char *w, size_t n, ectx *c)
{
	c->nsyms = 0;
	int32_t unk = -1;
	size_t unk_len = 0;
	size_t i = 0;
	while (i < n) {
		size_t bl = u8len((unsigned char)w[i]);
		if (bl > n - i)
			bl = n - i;
		bool is_first = i == 0, is_last = i + bl == n;
		const char *key = w + i;
		size_t klen = bl;
		if ((m->prefix_len && !is_first) || (m->suffix_len && is_last)) {
			sb_clear(&c->tmp);
			if (!is_first)
				sb_put(&c->tmp, m->prefix, m->prefix_len);
			sb_put(&c->tmp, w + i, bl);
			if (is_last)
				sb_put(&c->tmp, m->suffix, m->suffix_len);
			if (c->tmp.oom)
				return -1;
			key = c->tmp.p;
			klen = c->tmp.n;
		}
		int32_t id = sm_get(&m->vocab, key, klen);
		if (id >= 0) {
			if (unk >= 0) {
				if (!sym_add(c, unk, unk_len))
					return -1;
				unk = -1;
			}
			if (!sym_add(c, id, bl))
				return -1;
			i += bl;
			continue;
		}
		if (m->byte_fallback) {
			bool all = true;
			for (size_t k = 0; k < klen && all; k++)
				all = m->byte_ids[(unsigned char)key[k]] >= 0;
			if (all) {
				for (size_t k = 0; k < klen; k++)
					if (!sym_add(c, m->byte_ids[(unsigned char)key[k]], 1))
						return -1;
				i += bl;
				continue;
			}
		}
		if (m->unk_id >= 0) {
			if (unk >= 0 && m->fuse_unk) {
				unk_len += bl;
			} else {
				if (unk >= 0 && !sym_add(c, unk, unk_len))
					return -1;
				unk = m->unk_id;
				unk_len = bl;
			}
		}
		i += bl;
	}
	if (unk >= 0 && !sym_add(c, unk, unk_len))
		return -1;
	if (c->nsyms)
		c->syms[c->nsyms - 1].next = -1;
	return 0;
}

/* Merge by rank (tokenizers' Word::merge_all without dropout). */
static int bpe_merge(const bpe_model *m, ectx *c)
{
	struct sym *s = c->syms;
	int32_t n = (int32_t)c->nsyms;
	c->nheap = 0;
	for (int32_t i = 0; i + 1 < n; i++) {
		const mm_ent *e = mm_get(&m->merges, s[i].id, s[i + 1].id);
		if (e && !heap_push(c, e->rank, i, e->id))
			return -1;
	}
	while (c->nheap) {
		struct hent top = heap_pop(c);
		s = c->syms;
		struct sym *cur = &s[top.pos];
		if (cur->len == 0 || cur->next < 0)
			continue;
		int32_t next = cur->next;
		const mm_ent *e = mm_get(&m->merges, cur->id, s[next].id);
		if (!e || e->id != top.id)
			continue;
		cur->id = top.id;
		cur->len += s[next].len;
		cur->next = s[next].next;
		s[next].len = 0;
		if (cur->next >= 0)
			s[cur->next].prev = top.pos;
		if (cur->prev >= 0) {
			e = mm_get(&m->merges, s[cur->prev].id, cur->id);
			if (e && !heap_push(c, e->rank, cur->prev, e->id))
				return -1;
		}
		s = c->syms;
		cur = &s[top.pos];
		if (cur->next >= 0) {
			e = mm_get(&m->merges, cur->id, s[cur->next].id);
			if (e && !heap_push(c, e->rank, top.pos, e->id))
				return -1;
		}
	}
	return 0;
}

static int bpe_word(const bpe_model *m, const char *w, size_t n, ectx *c, i32vec *out)
{
	if (!n)
		return 0;
	if (m->ignore_merges) {
		int32_t id = sm_get(&m->vocab, w, n);
		if (id >= 0) {
			iv_push(out, id);
			return out->oom ? -1 : 0;
		}
	}
	if (bpe_symbols(m, w, n, c) < 0 || bpe_merge(m, c) < 0)
		return -1;
	for (size_t i = 0; i < c->nsyms; i++)
		if (c->syms[i].len)
			iv_push(out, c->syms[i].id);
	return out->oom ? -1 : 0;
}

/* bpe_word through the per-call cache. */
static int bpe_cached(const bpe_model *m, const char *w, size_t n, ectx *c, i32vec *out)
{
	if (n > CACHE_MAX_PIECE)
		return bpe_word(m, w, n, c, out);
	int32_t at = sm_get(&c->cache, w, n);
	if (at >= 0) {
		int32_t cnt = c->cache_ids.v[at];
		iv_put(out, c->cache_ids.v + at + 1, (size_t)cnt);
		return out->oom ? -1 : 0;
	}
	size_t start = out->n;
	if (bpe_word(m, w, n, c, out) < 0)
		return -1;
	if (c->cache.n < CACHE_MAX_ENTRIES && c->cache_ids.n < INT32_MAX / 2) {
		char *key = arena_strndup(&c->cache_keys, w, n);
		int32_t pos = (int32_t)c->cache_ids.n;
		iv_push(&c->cache_ids, (int32_t)(out->n - start));
		iv_put(&c->cache_ids, out->v + start, out->n - start);
		if (!key || c->cache_ids.oom || !sm_put(&c->cache, key, n, pos))
			return -1;
	}
	return 0;
}

/* A long word (e.g. a whole sentence without a pre-tokenizer) is merged in
 * independent chunks, cut where no merge can cross (see bpe_model.bigrams);
 * the result is the same as merging it whole, only faster and cacheable. */
static int bpe_piece(const bpe_model *m, const char *w, size_t n, ectx *c, i32vec *out)
{
	if (n <= CACHE_MAX_PIECE || !m->bigrams.e || m->ignore_merges)
		return bpe_cached(m, w, n, c, out);
	size_t start = 0, i = 0, l;
	uint32_t prev = 0;
	bool prev_in_vocab = false;
	while (i < n) {
		uint32_t cp = u8cp(w + i, n - i, &l);
		bool in_vocab = sm_get(&m->vocab, w + i, l) >= 0;
		if (i > start && prev_in_vocab && in_vocab &&
		    !mm_get(&m->bigrams, (int32_t)prev, (int32_t)cp)) {
			if (bpe_cached(m, w + start, i - start, c, out) < 0)
				return -1;
			start = i;
		}
		prev = cp;
		prev_in_vocab = in_vocab;
		i += l;
	}
	return bpe_cached(m, w + start, n - start, c, out);
}

/* ========================================================================
 * Post-processors (all reduced to templates of ids around $A)
 * ====================================================================== */

typedef struct {
	bool is_seq;
	int32_t *ids;
	size_t n;
} tmpl_item;

typedef struct postproc {
	bool is_seq; /* Sequence of kids; else a template (possibly empty = no-op) */
	struct postproc **kids;
	size_t nkids;
	tmpl_item *items;
	size_t nitems;
	bool noop;
} postproc;

static void post_free(postproc *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nkids; i++)
		post_free(p->kids[i]);
	free(p->kids);
	for (size_t i = 0; i < p->nitems; i++)
		free(p->items[i].ids);
	free(p->items);
	free(p);
}

static int post_run(const postproc *p, i32vec *ids)
{
	if (p->is_seq) {
		for (size_t i = 0; i < p->nkids; i++)
			if (post_run(p->kids[i], ids) < 0)
				return -1;
		return 0;
	}
	if (p->noop)
		return 0;
	i32vec out = { 0 };
	for (size_t i = 0; i < p->nitems; i++) {
		if (p->items[i].is_seq)
			iv_put(&out, ids->v, ids->n);
		else
			iv_put(&out, p->items[i].ids, p->items[i].n);
	}
	if (out.oom) {
		free(out.v);
		return -1;
	}
	free(ids->v);
	*ids = out;
	return 0;
}

/* ========================================================================
 * Decoders over a list of token strings
 * ====================================================================== */

enum { D_SEQ, D_BYTELEVEL, D_METASPACE, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_BPE };

typedef struct decoder {
	int type;
	struct decoder **kids;
	size_t nkids;
	pattern pat;     /* Replace */
	char *s;         /* Replace content; BPE suffix */
	size_t slen;
	uint32_t cp;     /* Metaspace replacement; Strip content */
	int prepend_scheme;
	size_t start, stop;
} decoder;

static void dec_free(decoder *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nkids; i++)
		dec_free(d->kids[i]);
	free(d->kids);
	pat_free(&d->pat);
	free(d->s);
	free(d);
}

typedef struct {
	sbuf b;
	range *v;
	size_t n, cap;
	bool oom;
} tlist;

static void tl_begin(tlist *t)
{
	if (t->oom)
		return;
	/* the text buffer exists once there is a token, even an empty one:
	 * TOK() never offsets a null pointer (Fuse of no tokens gives one) */
	if (!sb_reserve(&t->b, 0) ||
	    !grow_array((void **)&t->v, &t->cap, t->n + 1, sizeof *t->v)) {
		t->oom = true;
		return;
	}
	t->v[t->n].a = t->b.n;
	t->v[t->n].b = t->b.n;
	t->n++;
}

static void tl_end(tlist *t)
{
	if (t->n)
		t->v[t->n - 1].b = t->b.n;
}

static void tl_add(tlist *t, const char *s, size_t n)
{
	tl_begin(t);
	sb_put(&t->b, s, n);
	tl_end(t);
}

static void tl_clear(tlist *t)
{
	sb_clear(&t->b);
	t->n = 0;
}

static void tl_free(tlist *t)
{
	sb_free(&t->b);
	free(t->v);
	memset(t, 0, sizeof *t);
}

#define TOK(t, i) ((t)->b.p + (t)->v[i].a)
#define TOKLEN(t, i) ((t)->v[i].b - (t)->v[i].a)

static bool parse_byte_token(const char *s, size_t n, unsigned char *byte)
{
	if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return false;
	unsigned v = 0;
	for (int i = 3; i < 5; i++) {
		char ch = s[i];
		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v |= (unsigned)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			v |= (unsigned)(ch - 'A' + 10);
		else
			return false;
	}
	*byte = (unsigned char)v;
	return true;
}

static void dec_flush_bytes(tlist *out, sbuf *bytes)
{
	if (!bytes->n)
		return;
	if (utf8_valid(bytes->p, bytes->n)) {
		tl_add(out, bytes->p, bytes->n);
	} else {
		for (size_t i = 0; i < bytes->n; i++)
			tl_add(out, "\xEF\xBF\xBD", 3);
	}
	sb_clear(bytes);
}

static int dec_run(const decoder *d, const tlist *in, tlist *out, mctx *c);

static int dec_bytelevel(const tlist *in, tlist *out)
{
	sbuf raw = { 0 };
	for (size_t i = 0; i < in->n; i++) {
		const char *s = TOK(in, i);
		size_t n = TOKLEN(in, i), j = 0, l;
		size_t mark = raw.n;
		bool all = true;
		while (j < n) {
			uint32_t cp = u8cp(s + j, n - j, &l);
			if (cp >= 324 || bl_dec[cp] < 0) {
				all = false;
				break;
			}
			unsigned char b = (unsigned char)bl_dec[cp];
			sb_put(&raw, &b, 1);
			j += l;
		}
		if (!all) {
			raw.n = mark;
			sb_put(&raw, s, n);
		}
	}
	tl_begin(out);
	utf8_lossy(&out->b, raw.p ? raw.p : "", raw.n);
	tl_end(out);
	bool oom = raw.oom;
	sb_free(&raw);
	return oom ? -1 : 0;
}

static int dec_replace(const decoder *d, const tlist *in, tlist *out, mctx *c)
{
	rangevec m = { 0 };
	for (size_t i = 0; i < in->n; i++) {
		const char *s = TOK(in, i);
		size_t n = TOKLEN(in, i), prev = 0;
		if (pat_find(&d->pat, s, n, c, &m) < 0) {
			free(m.v);
			return -1;
		}
		tl_begin(out);
		for (size_t k = 0; k < m.n; k++) {
			sb_put(&out->b, s + prev, m.v[k].a - prev);
			sb_put(&out->b, d->s, d->slen);
			prev = m.v[k].b;
		}
		sb_put(&out->b, s + prev, n - prev);
		tl_end(out);
	}
	free(m.v);
	return 0;
}

static void dec_strip(const decoder *d, const tlist *in, tlist *out)
{
	for (size_t i = 0; i < in->n; i++) {
		const char *s = TOK(in, i);
		size_t n = TOKLEN(in, i), a = 0, b = n, l;
		for (size_t k = 0; k < d->start && a < b; k++) {
			if (u8cp(s + a, b - a, &l) != d->cp)
				break;
			a += l;
		}
		for (size_t k = 0; k < d->stop && b > a; k++) {
			size_t st = b - 1;
			while (st > a && ((unsigned char)s[st] & 0xC0) == 0x80)
				st--;
			if (u8cp(s + st, b - st, &l) != d->cp)
				break;
			b = st;
		}
		tl_add(out, s + a, b - a);
	}
}

static void dec_metaspace(const decoder *d, const tlist *in, tlist *out)
{
	for (size_t i = 0; i < in->n; i++) {
		const char *s = TOK(in, i);
		size_t n = TOKLEN(in, i), j = 0, l;
		tl_begin(out);
		while (j < n) {
			uint32_t cp = u8cp(s + j, n - j, &l);
			if (cp == d->cp) {
				if (!(i == 0 && d->prepend_scheme != PREPEND_NEVER))
					sb_putc(&out->b, ' ');
			} else {
				sb_put(&out->b, s + j, l);
			}
			j += l;
		}
		tl_end(out);
	}
}

/* BPEDecoder: the end-of-word suffix becomes a space (nothing on the last). */
static void dec_bpe(const decoder *d, const tlist *in, tlist *out)
{
	for (size_t i = 0; i < in->n; i++) {
		const char *s = TOK(in, i);
		size_t n = TOKLEN(in, i), j = 0;
		tl_begin(out);
		while (j < n) {
			if (d->slen && n - j >= d->slen && !memcmp(s + j, d->s, d->slen)) {
				if (i + 1 != in->n)
					sb_putc(&out->b, ' ');
				j += d->slen;
			} else {
				sb_putc(&out->b, s[j++]);
			}
		}
		tl_end(out);
	}
}

static int dec_run(const decoder *d, const tlist *in, tlist *out, mctx *c)
{
	tl_clear(out);
	switch (d->type) {
	case D_SEQ: {
		tlist a = { 0 }, b = { 0 };
		for (size_t i = 0; i < in->n; i++)
			tl_add(&a, TOK(in, i), TOKLEN(in, i));
		int rc = a.oom || a.b.oom ? -1 : 0;
		for (size_t k = 0; k < d->nkids && rc == 0; k++) {
			rc = dec_run(d->kids[k], &a, &b, c);
			tlist t = a;
			a = b;
			b = t;
		}
		for (size_t i = 0; rc == 0 && i < a.n; i++)
			tl_add(out, TOK(&a, i), TOKLEN(&a, i));
		tl_free(&a);
		tl_free(&b);
		if (rc < 0)
			return -1;
		break;
	}
	case D_BYTELEVEL:
		if (dec_bytelevel(in, out) < 0)
			return -1;
		break;
	case D_METASPACE:
		dec_metaspace(d, in, out);
		break;
	case D_REPLACE:
		if (dec_replace(d, in, out, c) < 0)
			return -1;
		break;
	case D_BYTEFALLBACK: {
		sbuf bytes = { 0 };
		for (size_t i = 0; i < in->n; i++) {
			unsigned char byte;
			if (parse_byte_token(TOK(in, i), TOKLEN(in, i), &byte)) {
				sb_put(&bytes, &byte, 1);
			} else {
				dec_flush_bytes(out, &bytes);
				tl_add(out, TOK(in, i), TOKLEN(in, i));
			}
		}
		dec_flush_bytes(out, &bytes);
		bool oom = bytes.oom;
		sb_free(&bytes);
		if (oom)
			return -1;
		break;
	}
	case D_FUSE:
		tl_begin(out);
		for (size_t i = 0; i < in->n; i++)
			sb_put(&out->b, TOK(in, i), TOKLEN(in, i));
		tl_end(out);
		break;
	case D_STRIP:
		dec_strip(d, in, out);
		break;
	case D_BPE:
		dec_bpe(d, in, out);
		break;
	}
	return out->oom || out->b.oom ? -1 : 0;
}

/* ========================================================================
 * The tokenizer
 * ====================================================================== */

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

static bool trie_add(trie *t, const char *s, size_t n, int32_t tok)
{
	if (!t->n) {
		if (!grow_array((void **)&t->v, &t->cap, 1, sizeof *t->v))
			return false;
		t->v[0] = (tnode){ -1, -1, -1, 0 };
		t->n = 1;
	}
	int32_t node = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)s[i];
		int32_t ch = t->v[node].child;
		while (ch >= 0 && t->v[ch].byte != b)
			ch = t->v[ch].sibling;
		if (ch < 0) {
			if (t->n >= INT32_MAX ||
			    !grow_array((void **)&t->v, &t->cap, t->n + 1, sizeof *t->v))
				return false;
			ch = (int32_t)t->n++;
			t->v[ch] = (tnode){ -1, t->v[node].child, -1, b };
			t->v[node].child = ch;
		}
		node = ch;
	}
	if (t->v[node].tok < 0) /* the first token with this content wins */
		t->v[node].tok = tok;
	return true;
}

/* Longest token starting at s; returns its length (0: none), index in *tok. */
static size_t trie_longest(const trie *t, const char *s, size_t n, int32_t *tok)
{
	size_t best = 0;
	int32_t node = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)s[i];
		int32_t ch = t->v[node].child;
		while (ch >= 0 && t->v[ch].byte != b)
			ch = t->v[ch].sibling;
		if (ch < 0)
			break;
		node = ch;
		if (t->v[node].tok >= 0) {
			best = i + 1;
			*tok = t->v[node].tok;
		}
	}
	return best;
}

typedef struct {
	size_t a, b;
	int32_t tok; /* index into added[], -1: plain text */
} seg;

typedef struct {
	seg *v;
	size_t n, cap;
	bool oom;
} segvec;

static void seg_push(segvec *s, size_t a, size_t b, int32_t tok)
{
	if (s->oom)
		return;
	if (!grow_array((void **)&s->v, &s->cap, s->n + 1, sizeof *s->v)) {
		s->oom = true;
		return;
	}
	s->v[s->n++] = (seg){ a, b, tok };
}

static bool ends_with_word(const char *s, size_t n)
{
	if (!n)
		return false;
	size_t st = n - 1, l;
	while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80)
		st--;
	return is_word_char(u8cp(s + st, n - st, &l));
}

static bool starts_with_word(const char *s, size_t n)
{
	size_t l;
	return n && is_word_char(u8cp(s, n, &l));
}

/* Split s into plain segments and added-token matches (AddedVocabulary::
 * find_matches: leftmost-longest, then single_word / lstrip / rstrip). */
static int added_split(const mh_tokenizer *t, const trie *tr, const char *s, size_t n,
		       segvec *out)
{
	out->n = 0;
	size_t pos = 0, start_offset = 0, l;
	while (tr->n && pos < n) {
		int32_t ti = -1;
		size_t mlen = trie_longest(tr, s + pos, n - pos, &ti);
		if (!mlen) {
			pos++;
			continue;
		}
		const added_tok *at = &t->added[ti];
		size_t start = pos, stop = pos + mlen;
		pos = stop;
		if (start < start_offset)
			continue;
		if (at->single_word) {
			bool start_space = start == 0 || !ends_with_word(s, start);
			bool stop_space = stop == n || !starts_with_word(s + stop, n - stop);
			if (!start_space || !stop_space)
				continue;
		}
		if (at->lstrip) {
			size_t ns = start;
			while (ns > 0) {
				size_t st = ns - 1;
				while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80)
					st--;
				if (!is_ws(u8cp(s + st, ns - st, &l)))
					break;
				ns = st;
			}
			start = ns > start_offset ? ns : start_offset;
		}
		if (at->rstrip) {
			while (stop < n) {
				uint32_t cp = u8cp(s + stop, n - stop, &l);
				if (!is_ws(cp))
					break;
				stop += l;
			}
			pos = stop;
		}
		if (start_offset < start)
			seg_push(out, start_offset, start, -1);
		seg_push(out, start, stop, ti);
		start_offset = stop;
	}
	if (start_offset < n)
		seg_push(out, start_offset, n, -1);
	return out->oom ? -1 : 0;
}

/* ---- encode ---------------------------------------------------------- */

static int encode_pretokenized(const mh_tokenizer *t, ectx *c, const char *s, size_t n,
			       bool first, i32vec *out)
{
	if (!n)
		return 0;
	if (!t->pre)
		return bpe_piece(&t->bpe, s, n, c, out);
	plist in = { 0 }, pieces = { 0 };
	pl_add(&in, s, n, first);
	int rc = in.oom || in.b.oom ? -1 : pretok_run(t->pre, &in, &pieces, c);
	for (size_t i = 0; rc == 0 && i < pieces.n; i++)
		rc = bpe_piece(&t->bpe, pieces.b.p + pieces.v[i].off, pieces.v[i].len, c, out);
	pl_free(&in);
	pl_free(&pieces);
	return rc;
}

static int encode_segment(const mh_tokenizer *t, ectx *c, const char *s, size_t n,
			  bool first, i32vec *out)
{
	sbuf norm = { 0 };
	if (t->norm) {
		if (norm_run(t->norm, s, n, &norm, &c->m) < 0 || norm.oom) {
			sb_free(&norm);
			return -1;
		}
		s = norm.p ? norm.p : "";
		n = norm.n;
	}
	int rc = 0;
	if (t->norm_trie.n) {
		segvec segs = { 0 };
		rc = added_split(t, &t->norm_trie, s, n, &segs);
		for (size_t i = 0; rc == 0 && i < segs.n; i++) {
			if (segs.v[i].tok >= 0)
				iv_push(out, t->added[segs.v[i].tok].id);
			else
				rc = encode_pretokenized(t, c, s + segs.v[i].a,
							 segs.v[i].b - segs.v[i].a,
							 first && segs.v[i].a == 0, out);
		}
		free(segs.v);
	} else {
		rc = encode_pretokenized(t, c, s, n, first, out);
	}
	sb_free(&norm);
	return rc;
}

int tokenizer_encode(const mh_tokenizer *t, const char *text, size_t len, int add_special,
		     int32_t **ids, size_t *n_ids)
{
	if (ids)
		*ids = NULL;
	if (n_ids)
		*n_ids = 0;
	if (!t || !ids || !n_ids || (!text && len))
		return -1;
	if (!text)
		text = "";
	if (!utf8_valid(text, len))
		return -1;
	ectx c = { 0 };
	i32vec out = { 0 };
	segvec segs = { 0 };
	int rc = added_split(t, &t->raw_trie, text, len, &segs);
	for (size_t i = 0; rc == 0 && i < segs.n; i++) {
		if (segs.v[i].tok >= 0)
			iv_push(&out, t->added[segs.v[i].tok].id);
		else
			rc = encode_segment(t, &c, text + segs.v[i].a, segs.v[i].b - segs.v[i].a,
					    segs.v[i].a == 0, &out);
	}
	if (rc == 0 && add_special && t->post)
		rc = post_run(t->post, &out);
	if (rc == 0 && !out.v && !(out.v = malloc(sizeof *out.v)))
		rc = -1; /* a non-NULL array even when empty */
	free(segs.v);
	ectx_free(&c);
	if (rc < 0 || out.oom) {
		free(out.v);
		return -1;
	}
	*ids = out.v;
	*n_ids = out.n;
	return 0;
}

/* ---- decode ---------------------------------------------------------- */

/* Decoded text (valid UTF-8) appended to out. */
static int decode_into(const mh_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
		       sbuf *out)
{
	tlist toks = { 0 }, res = { 0 };
	for (size_t i = 0; i < n; i++) {
		int32_t id = ids[i];
		if (id < 0 || id >= t->n_ids || !t->id_str[id])
			continue;
		if (skip_special && (t->id_flags[id] & F_SPECIAL))
			continue;
		tl_add(&toks, t->id_str[id], t->id_len[id]);
	}
	int rc = toks.oom || toks.b.oom ? -1 : 0;
	const tlist *fin = &toks;
	mctx m = { 0 };
	if (rc == 0 && t->dec) {
		rc = dec_run(t->dec, &toks, &res, &m);
		fin = &res;
	}
	if (rc == 0) {
		sbuf raw = { 0 };
		for (size_t i = 0; i < fin->n; i++) {
			if (i && !t->dec)
				sb_putc(&raw, ' ');
			sb_put(&raw, TOK(fin, i), TOKLEN(fin, i));
		}
		utf8_lossy(out, raw.p ? raw.p : "", raw.n);
		if (raw.oom)
			rc = -1;
		sb_free(&raw);
	}
	mctx_free(&m);
	tl_free(&toks);
	tl_free(&res);
	return rc < 0 || out->oom ? -1 : 0;
}

char *tokenizer_decode(const mh_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
		       size_t *len)
{
	if (len)
		*len = 0;
	if (!t || (!ids && n))
		return NULL;
	sbuf out = { 0 };
	if (decode_into(t, ids, n, skip_special != 0, &out) < 0 || !sb_reserve(&out, 0)) {
		sb_free(&out);
		return NULL;
	}
	out.p[out.n] = 0;
	if (len)
		*len = out.n;
	return out.p;
}

/* ---- streaming ------------------------------------------------------- */

struct mh_detok_stream {
	const mh_tokenizer *t;
	bool skip;
	i32vec ids;
	size_t prefix_index;
	sbuf prefix, text, out;
};

mh_detok_stream *tokenizer_stream_new(const mh_tokenizer *t, int skip_special)
{
	if (!t)
		return NULL;
	mh_detok_stream *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->t = t;
	s->skip = skip_special != 0;
	if (!sb_reserve(&s->out, 16) || !sb_reserve(&s->prefix, 16)) {
		tokenizer_stream_free(s);
		return NULL;
	}
	return s;
}

static bool ends_with_replacement(const sbuf *b)
{
	return b->n >= 3 && !memcmp(b->p + b->n - 3, "\xEF\xBF\xBD", 3);
}

/* How much of text the stream has given out already: all of prefix, when
 * text extends it.  When it does not (ByteFallback turns bytes already
 * shown, "{" of <0x7B>, into U+FFFD once an invalid byte joins their
 * group), text from the first difference on, at a character boundary:
 * shown text cannot be taken back, and the rest must not be lost. */
static size_t emitted_part(const sbuf *text, const sbuf *prefix)
{
	if (text->n >= prefix->n && (!prefix->n || !memcmp(text->p, prefix->p, prefix->n)))
		return prefix->n;
	size_t common = 0;
	while (common < prefix->n && common < text->n && text->p[common] == prefix->p[common])
		common++;
	while (common > 0 && ((unsigned char)text->p[common] & 0xC0) == 0x80)
		common--;
	return common;
}

const char *tokenizer_stream_push(mh_detok_stream *s, int32_t id, size_t *len)
{
	if (len)
		*len = 0;
	if (!s)
		return NULL;
	sb_clear(&s->out);
	iv_push(&s->ids, id);
	if (s->ids.oom)
		return NULL;
	sb_clear(&s->text);
	if (decode_into(s->t, s->ids.v, s->ids.n, s->skip, &s->text) < 0)
		return NULL;
	if (s->text.n > s->prefix.n && !ends_with_replacement(&s->text)) {
		size_t common = emitted_part(&s->text, &s->prefix);
		sb_put(&s->out, s->text.p + common, s->text.n - common);
		size_t new_prefix_index = s->ids.n - s->prefix_index;
		memmove(s->ids.v, s->ids.v + s->prefix_index,
			(s->ids.n - s->prefix_index) * sizeof *s->ids.v);
		s->ids.n -= s->prefix_index;
		sb_clear(&s->prefix);
		if (decode_into(s->t, s->ids.v, s->ids.n, s->skip, &s->prefix) < 0)
			return NULL;
		s->prefix_index = new_prefix_index;
	}
	if (s->out.oom)
		return NULL;
	if (len)
		*len = s->out.n;
	return s->out.p;
}

const char *tokenizer_stream_flush(mh_detok_stream *s, size_t *len)
{
	if (len)
		*len = 0;
	if (!s)
		return NULL;
	sb_clear(&s->out);
	sb_clear(&s->text);
	if (decode_into(s->t, s->ids.v, s->ids.n, s->skip, &s->text) < 0)
		return NULL;
	size_t common = emitted_part(&s->text, &s->prefix);
	sb_put(&s->out, s->text.p + common, s->text.n - common);
	s->ids.n = 0;
	s->prefix_index = 0;
	sb_clear(&s->prefix);
	if (s->out.oom)
		return NULL;
	if (len)
		*len = s->out.n;
	return s->out.p;
}

void tokenizer_stream_free(mh_detok_stream *s)
{
	if (!s)
		return;
	free(s->ids.v);
	sb_free(&s->prefix);
	sb_free(&s->text);
	sb_free(&s->out);
	free(s);
}

/* ---- small queries ----------------------------------------------------- */

int32_t tokenizer_vocab_size(const mh_tokenizer *t)
{
	return t ? t->n_ids : 0;
}

int32_t tokenizer_token_id(const mh_tokenizer *t, const char *token)
{
	if (!t || !token)
		return -1;
	size_t n = strlen(token);
	int32_t id = sm_get(&t->added_map, token, n);
	return id >= 0 ? id : sm_get(&t->bpe.vocab, token, n);
}

int tokenizer_is_special(const mh_tokenizer *t, int32_t id)
{
	return t && id >= 0 && id < t->n_ids && (t->id_flags[id] & F_SPECIAL);
}

const char *tokenizer_id_to_token(const mh_tokenizer *t, int32_t id)
{
	if (!t || id < 0 || id >= t->n_ids)
		return NULL;
	return t->id_str[id];
}

void tokenizer_free(mh_tokenizer *t)
{
	if (!t)
		return;
	free(t->bpe.vocab.e);
	free(t->bpe.merges.e);
	free(t->bpe.bigrams.e);
	free(t->bpe.prefix);
	free(t->bpe.suffix);
	free(t->id_str);
	free(t->id_len);
	free(t->id_flags);
	free(t->added);
	free(t->added_map.e);
	free(t->raw_trie.v);
	free(t->norm_trie.v);
	norm_free(t->norm);
	pretok_free(t->pre);
	post_free(t->post);
	dec_free(t->dec);
	arena_free(t->arena);
	free(t);
}

/* ========================================================================
 * Loading tokenizer.json
 * ====================================================================== */

typedef struct {
	const char *path;
	char *err;
	size_t errlen;
	bool failed;
	mh_tokenizer *t;
} loadctx;

__attribute__((format(printf, 2, 3)))
static bool fail(loadctx *L, const char *fmt, ...)
{
	if (L->failed)
		return false;
	L->failed = true;
	if (!L->err || !L->errlen)
		return false;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(L->err, L->errlen, "%s: %s", L->path, msg);
	for (char *p = L->err; *p; p++) /* keep it one line */
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	return false;
}

/* A short, printable excerpt of a string from the file for messages. */
static const char *shown(const char *s, char buf[48])
{
	size_t i = 0;
	for (; s && s[i] && i < 40; i++)
		buf[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
	buf[i] = 0;
	if (s && s[i])
		strcpy(buf + (i > 40 ? 40 : i), "...");
	return buf;
}

static const cJSON *jget(const cJSON *o, const char *key)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *jstr(const cJSON *o, const char *key)
{
	const cJSON *v = jget(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool def)
{
	const cJSON *v = jget(o, key);
	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static bool jid(const cJSON *v, int32_t *out)
{
	if (!cJSON_IsNumber(v))
		return false;
	double d = v->valuedouble;
	if (!(d >= 0 && d < MAX_TOKEN_ID) || d != (double)(int32_t)d)
		return false;
	*out = (int32_t)d;
	return true;
}

static char *xstrdup(const char *s, size_t *len)
{
	size_t n = strlen(s);
	char *p = malloc(n + 1);
	if (p)
		memcpy(p, s, n + 1);
	if (len)
		*len = n;
	return p;
}

/* A pattern object {"String": "..."} or {"Regex": "..."}. */
static bool load_pattern(loadctx *L, const cJSON *j, pattern *p, const char *what)
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
	pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
	p->kind = PAT_REGEX;
	return true;
}

static bool compile_regex(loadctx *L, pattern *p, const char *rx)
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

/* One character given as a JSON string (Metaspace replacement, Strip content). */
static bool load_char(loadctx *L, const char *s, uint32_t *cp, const char *what)
{
	size_t n = s ? strlen(s) : 0, l;
	if (!n)
		return fail(L, "%s must be a one-character string", what);
	*cp = u8cp(s, n, &l);
	if (l != n)
		return fail(L, "%s must be a one-character string", what);
	return true;
}

static int load_behavior(const char *s)
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

static int load_prepend_scheme(const cJSON *j)
{
	const char *s = jstr(j, "prepend_scheme");
	if (s)
		return !strcmp(s, "first") ? PREPEND_FIRST :
		       !strcmp(s, "never") ? PREPEND_NEVER :
		       !strcmp(s, "always") ? PREPEND_ALWAYS : -1;
	return jbool(j, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
}

/* Allocate n child pointers for a Sequence-like node. */
static bool load_kids(loadctx *L, const cJSON *arr, void ***kids, size_t *n, const char *what)
{
	if (!cJSON_IsArray(arr))
		return fail(L, "%s: Sequence without a list", what);
	int cnt = cJSON_GetArraySize(arr);
	*kids = calloc(cnt ? (size_t)cnt : 1, sizeof(void *));
	if (!*kids)
		return fail(L, "out of memory");
	*n = 0;
	return true;
}

static bool load_normalizer(loadctx *L, const cJSON *j, normalizer **out, int depth)
{
	*out = NULL;
	if (!j || cJSON_IsNull(j))
		return true;
	char b[48];
	const char *type = jstr(j, "type");
	if (!type)
		return fail(L, "normalizer without a type");
	if (depth > 32)
		return fail(L, "normalizer nested too deeply");
	normalizer *n = calloc(1, sizeof *n);
	if (!n)
		return fail(L, "out of memory");
	*out = n;
	if (!strcmp(type, "Sequence")) {
		n->type = N_SEQ;
		const cJSON *arr = jget(j, "normalizers");
		if (!load_kids(L, arr, (void ***)&n->kids, &n->nkids, "normalizer"))
			return false;
		const cJSON *it;
		cJSON_ArrayForEach(it, arr) {
			bool ok = load_normalizer(L, it, &n->kids[n->nkids], depth + 1);
			if (n->kids[n->nkids]) /* freed with the parent */
				n->nkids++;
			if (!ok)
				return false;
		}
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
		const char *s = jstr(j, "content");
		if (!s)
			return fail(L, "normalizer Replace without content");
		if (!(n->s = xstrdup(s, &n->slen)))
			return fail(L, "out of memory");
		if (!load_pattern(L, jget(j, "pattern"), &n->pat, "normalizer Replace"))
			return false;
	} else if (!strcmp(type, "NFC")) {
		n->type = N_NFC;
	} else if (!strcmp(type, "NFD")) {
		n->type = N_NFD;
	} else if (!strcmp(type, "NFKC")) {
		n->type = N_NFKC;
	} else if (!strcmp(type, "NFKD")) {
		n->type = N_NFKD;
	} else if (!strcmp(type, "Lowercase")) {
		n->type = N_LOWER;
	} else if (!strcmp(type, "Strip")) {
		n->type = N_STRIP;
		n->left = jbool(j, "strip_left", true);
		n->right = jbool(j, "strip_right", true);
	} else if (!strcmp(type, "StripAccents")) {
		n->type = N_STRIP_ACCENTS;
	} else if (!strcmp(type, "ByteLevel")) {
		n->type = N_BYTELEVEL;
	} else if (!strcmp(type, "BertNormalizer")) {
		n->type = N_BERT;
		n->clean = jbool(j, "clean_text", true);
		n->chinese = jbool(j, "handle_chinese_chars", true);
		n->lower = jbool(j, "lowercase", true);
		n->accents = jbool(j, "strip_accents", n->lower);
	} else {
		return fail(L, "normalizer type '%s' is not supported", shown(type, b));
	}
	return true;
}

static bool load_pretok(loadctx *L, const cJSON *j, pretok **out, int depth)
{
	*out = NULL;
	if (!j || cJSON_IsNull(j))
		return true;
	char b[48];
	const char *type = jstr(j, "type");
	if (!type)
		return fail(L, "pre_tokenizer without a type");
	if (depth > 32)
		return fail(L, "pre_tokenizer nested too deeply");
	pretok *p = calloc(1, sizeof *p);
	if (!p)
		return fail(L, "out of memory");
	*out = p;
	if (!strcmp(type, "Sequence")) {
		p->type = P_SEQ;
		const cJSON *arr = jget(j, "pretokenizers");
		if (!load_kids(L, arr, (void ***)&p->kids, &p->nkids, "pre_tokenizer"))
			return false;
		const cJSON *it;
		cJSON_ArrayForEach(it, arr) {
			bool ok = load_pretok(L, it, &p->kids[p->nkids], depth + 1);
			if (p->kids[p->nkids]) /* freed with the parent */
				p->nkids++;
			if (!ok)
				return false;
		}
	} else if (!strcmp(type, "Split")) {
		p->type = P_SPLIT;
		p->behavior = load_behavior(jstr(j, "behavior"));
		if (p->behavior < 0)
			return fail(L, "pre_tokenizer Split: unknown behavior '%s'",
				    shown(jstr(j, "behavior"), b));
		p->invert = jbool(j, "invert", false);
		return load_pattern(L, jget(j, "pattern"), &p->pat, "pre_tokenizer Split");
	} else if (!strcmp(type, "ByteLevel")) {
		p->type = P_BYTELEVEL;
		p->add_prefix_space = jbool(j, "add_prefix_space", true);
		p->use_regex = jbool(j, "use_regex", true);
		p->behavior = SPLIT_ISOLATED;
		if (p->use_regex)
			return compile_regex(L, &p->pat, GPT2_REGEX);
	} else if (!strcmp(type, "Metaspace")) {
		p->type = P_METASPACE;
		const char *r = jstr(j, "replacement");
		uint32_t cp;
		if (!load_char(L, r ? r : "\xE2\x96\x81", &cp, "Metaspace replacement"))
			return false;
		p->rep_len = strlen(r ? r : "\xE2\x96\x81");
		memcpy(p->rep, r ? r : "\xE2\x96\x81", p->rep_len);
		p->prepend_scheme = load_prepend_scheme(j);
		if (p->prepend_scheme < 0)
			return fail(L, "Metaspace: unknown prepend_scheme");
		p->split = jbool(j, "split", true);
		p->behavior = SPLIT_MERGED_NEXT;
		p->pat.kind = PAT_LITERAL;
		p->pat.lit = xstrdup(p->rep, &p->pat.lit_len);
		if (!p->pat.lit)
			return fail(L, "out of memory");
	} else if (!strcmp(type, "Whitespace")) {
		p->type = P_SPLIT;
		p->behavior = SPLIT_REMOVED;
		p->invert = true;
		return compile_regex(L, &p->pat, WHITESPACE_REGEX);
	} else if (!strcmp(type, "WhitespaceSplit")) {
		p->type = P_SPLIT;
		p->behavior = SPLIT_REMOVED;
		p->pat.kind = PAT_CHAR;
		p->pat.pred = is_ws;
	} else if (!strcmp(type, "Digits")) {
		p->type = P_SPLIT;
		p->behavior = jbool(j, "individual_digits", false) ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
		p->pat.kind = PAT_CHAR;
		p->pat.pred = is_numeric;
	} else if (!strcmp(type, "Punctuation")) {
		p->type = P_SPLIT;
		p->behavior = load_behavior(jstr(j, "behavior"));
		if (p->behavior < 0)
			return fail(L, "pre_tokenizer Punctuation: unknown behavior");
		p->pat.kind = PAT_CHAR;
		p->pat.pred = is_punct;
	} else if (!strcmp(type, "BertPreTokenizer")) {
		p->type = P_SEQ;
		p->kids = calloc(2, sizeof *p->kids);
		if (!p->kids)
			return fail(L, "out of memory");
		for (int i = 0; i < 2; i++) {
			pretok *k = calloc(1, sizeof *k);
			if (!k)
				return fail(L, "out of memory");
			p->kids[p->nkids++] = k;
			k->type = P_SPLIT;
			k->behavior = i ? SPLIT_ISOLATED : SPLIT_REMOVED;
			k->pat.kind = PAT_CHAR;
			k->pat.pred = i ? is_punct : is_ws;
		}
	} else {
		return fail(L, "pre_tokenizer type '%s' is not supported", shown(type, b));
	}
	return true;
}

/* Ids of a special token named in a post-processor: TemplateProcessing's
 * special_tokens map, else the vocabulary. */
static bool template_ids(loadctx *L, const cJSON *specials, const char *name, tmpl_item *it)
{
	char b[48];
	const cJSON *sp = jget(specials, name);
	const cJSON *ids = jget(sp, "ids");
	if (cJSON_IsArray(ids)) {
		int cnt = cJSON_GetArraySize(ids);
		it->ids = malloc((cnt ? (size_t)cnt : 1) * sizeof *it->ids);
		if (!it->ids)
			return fail(L, "out of memory");
		const cJSON *x;
		cJSON_ArrayForEach(x, ids) {
			int32_t id;
			if (!jid(x, &id))
				return fail(L, "post_processor: bad id for '%s'", shown(name, b));
			it->ids[it->n++] = id;
		}
		return true;
	}
	int32_t id = tokenizer_token_id(L->t, name);
	if (id < 0)
		return fail(L, "post_processor: special token '%s' is unknown", shown(name, b));
	it->ids = malloc(sizeof *it->ids);
	if (!it->ids)
		return fail(L, "out of memory");
	it->ids[0] = id;
	it->n = 1;
	return true;
}

static bool load_template(loadctx *L, const cJSON *j, postproc *p)
{
	const cJSON *single = jget(j, "single");
	const cJSON *specials = jget(j, "special_tokens");
	if (!cJSON_IsArray(single))
		return fail(L, "TemplateProcessing: 'single' must be a list");
	int cnt = cJSON_GetArraySize(single);
	p->items = calloc(cnt ? (size_t)cnt : 1, sizeof *p->items);
	if (!p->items)
		return fail(L, "out of memory");
	const cJSON *it;
	cJSON_ArrayForEach(it, single) {
		tmpl_item *ti = &p->items[p->nitems++];
		const cJSON *st = jget(it, "SpecialToken");
		if (jget(it, "Sequence")) {
			ti->is_seq = true;
		} else if (st) {
			const char *name = jstr(st, "id");
			if (!name)
				return fail(L, "TemplateProcessing: SpecialToken without id");
			if (!template_ids(L, specials, name, ti))
				return false;
		} else {
			return fail(L, "TemplateProcessing: unknown template piece");
		}
	}
	return true;
}

/* Roberta/Bert: [cls] $A [sep], with "cls": ["<s>", 0] pairs. */
static bool load_cls_sep(loadctx *L, const cJSON *j, postproc *p)
{
	const char *keys[2] = { "cls", "sep" };
	p->items = calloc(3, sizeof *p->items);
	if (!p->items)
		return fail(L, "out of memory");
	p->nitems = 3;
	p->items[1].is_seq = true;
	for (int i = 0; i < 2; i++) {
		const cJSON *pair = jget(j, keys[i]);
		int32_t id;
		if (!cJSON_IsArray(pair) || !jid(cJSON_GetArrayItem(pair, 1), &id))
			return fail(L, "post_processor: '%s' must be [token, id]", keys[i]);
		tmpl_item *ti = &p->items[i ? 2 : 0];
		ti->ids = malloc(sizeof *ti->ids);
		if (!ti->ids)
			return fail(L, "out of memory");
		ti->ids[0] = id;
		ti->n = 1;
	}
	return true;
}

static bool load_post(loadctx *L, const cJSON *j, postproc **out, int depth)
{
	*out = NULL;
	if (!j || cJSON_IsNull(j))
		return true;
	char b[48];
	const char *type = jstr(j, "type");
	if (!type)
		return fail(L, "post_processor without a type");
	if (depth > 32)
		return fail(L, "post_processor nested too deeply");
	postproc *p = calloc(1, sizeof *p);
	if (!p)
		return fail(L, "out of memory");
	*out = p;
	if (!strcmp(type, "Sequence")) {
		p->is_seq = true;
		const cJSON *arr = jget(j, "processors");
		if (!load_kids(L, arr, (void ***)&p->kids, &p->nkids, "post_processor"))
			return false;
		const cJSON *it;
		cJSON_ArrayForEach(it, arr) {
			bool ok = load_post(L, it, &p->kids[p->nkids], depth + 1);
			if (p->kids[p->nkids]) /* freed with the parent */
				p->nkids++;
			if (!ok)
				return false;
		}
		return true;
	}
	if (!strcmp(type, "ByteLevel")) {
		p->noop = true; /* only adjusts offsets */
		return true;
	}
	if (!strcmp(type, "TemplateProcessing"))
		return load_template(L, j, p);
	if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))
		return load_cls_sep(L, j, p);
	return fail(L, "post_processor type '%s' is not supported", shown(type, b));
}

static bool load_decoder(loadctx *L, const cJSON *j, decoder **out, int depth)
{
	*out = NULL;
	if (!j || cJSON_IsNull(j))
		return true;
	char b[48];
	const char *type = jstr(j, "type");
	if (!type)
		return fail(L, "decoder without a type");
	if (depth > 32)
		return fail(L, "decoder nested too deeply");
	decoder *d = calloc(1, sizeof *d);
	if (!d)
		return fail(L, "out of memory");
	*out = d;
	if (!strcmp(type, "Sequence")) {
		d->type = D_SEQ;
		const cJSON *arr = jget(j, "decoders");
		if (!load_kids(L, arr, (void ***)&d->kids, &d->nkids, "decoder"))
			return false;
		const cJSON *it;
		cJSON_ArrayForEach(it, arr) {
			bool ok = load_decoder(L, it, &d->kids[d->nkids], depth + 1);
			if (d->kids[d->nkids]) /* freed with the parent */
				d->nkids++;
			if (!ok)
				return false;
		}
	} else if (!strcmp(type, "ByteLevel")) {
		d->type = D_BYTELEVEL;
	} else if (!strcmp(type, "Metaspace")) {
		d->type = D_METASPACE;
		const char *r = jstr(j, "replacement");
		if (!load_char(L, r ? r : "\xE2\x96\x81", &d->cp, "Metaspace replacement"))
			return false;
		d->prepend_scheme = load_prepend_scheme(j);
		if (d->prepend_scheme < 0)
			return fail(L, "Metaspace: unknown prepend_scheme");
	} else if (!strcmp(type, "Replace")) {
		d->type = D_REPLACE;
		const char *s = jstr(j, "content");
		if (!s)
			return fail(L, "decoder Replace without content");
		if (!(d->s = xstrdup(s, &d->slen)))
			return fail(L, "out of memory");
		return load_pattern(L, jget(j, "pattern"), &d->pat, "decoder Replace");
	} else if (!strcmp(type, "ByteFallback")) {
		d->type = D_BYTEFALLBACK;
	} else if (!strcmp(type, "Fuse")) {
		d->type = D_FUSE;
	} else if (!strcmp(type, "Strip")) {
		d->type = D_STRIP;
		const cJSON *st = jget(j, "start"), *sp = jget(j, "stop");
		if (!load_char(L, jstr(j, "content"), &d->cp, "decoder Strip content"))
			return false;
		if (!cJSON_IsNumber(st) || !cJSON_IsNumber(sp) || st->valuedouble < 0 ||
		    sp->valuedouble < 0 || st->valuedouble > 1e6 || sp->valuedouble > 1e6)
			return fail(L, "decoder Strip: bad start/stop");
		d->start = (size_t)st->valuedouble;
		d->stop = (size_t)sp->valuedouble;
	} else if (!strcmp(type, "BPEDecoder")) {
		d->type = D_BPE;
		const char *s = jstr(j, "suffix");
		if (!(d->s = xstrdup(s ? s : "</w>", &d->slen)))
			return fail(L, "out of memory");
	} else {
		return fail(L, "decoder type '%s' is not supported", shown(type, b));
	}
	return true;
}

static bool load_vocab(loadctx *L, const cJSON *vocab, int32_t *max_id)
{
	mh_tokenizer *t = L->t;
	if (!cJSON_IsObject(vocab))
		return fail(L, "model.vocab must be an object");
	int cnt = cJSON_GetArraySize(vocab);
	if (!sm_reserve(&t->bpe.vocab, (size_t)cnt))
		return fail(L, "out of memory");
	const cJSON *it;
	char b[48];
	cJSON_ArrayForEach(it, vocab) {
		int32_t id;
		if (!jid(it, &id))
			return fail(L, "model.vocab: bad id for token '%s'", shown(it->string, b));
		size_t n = strlen(it->string);
		char *k = arena_strndup(&t->arena, it->string, n);
		if (!k || !sm_put(&t->bpe.vocab, k, n, id))
			return fail(L, "out of memory");
		if (id > *max_id)
			*max_id = id;
	}
	return true;
}

static bool load_added(loadctx *L, const cJSON *arr, int32_t *max_id)
{
	mh_tokenizer *t = L->t;
	if (!arr || cJSON_IsNull(arr))
		return true;
	if (!cJSON_IsArray(arr))
		return fail(L, "added_tokens must be a list");
	int cnt = cJSON_GetArraySize(arr);
	t->added = calloc(cnt ? (size_t)cnt : 1, sizeof *t->added);
	if (!t->added)
		return fail(L, "out of memory");
	const cJSON *it;
	cJSON_ArrayForEach(it, arr) {
		added_tok *a = &t->added[t->n_added];
		const char *content = jstr(it, "content");
		if (!content || !jid(jget(it, "id"), &a->id))
			return fail(L, "added_tokens[%zu]: needs a content string and an id",
				    t->n_added);
		a->len = strlen(content);
		a->content = arena_strndup(&t->arena, content, a->len);
		if (!a->content)
			return fail(L, "out of memory");
		a->special = jbool(it, "special", false);
		a->single_word = jbool(it, "single_word", false);
		a->lstrip = jbool(it, "lstrip", false);
		a->rstrip = jbool(it, "rstrip", false);
		a->normalized = jbool(it, "normalized", !a->special);
		if (!sm_put(&t->added_map, a->content, a->len, a->id))
			return fail(L, "out of memory");
		if (a->id > *max_id)
			*max_id = a->id;
		t->n_added++;
	}
	return true;
}

/* id -> string tables: model vocab first, added tokens override. */
static bool build_id_tables(loadctx *L, int32_t max_id)
{
	mh_tokenizer *t = L->t;
	if (max_id < 0)
		return fail(L, "the vocabulary is empty");
	size_t entries = t->bpe.vocab.n + t->n_added;
	if ((size_t)max_id > 4 * entries + 65536)
		return fail(L, "token ids are too sparse (max id %d for %zu tokens)",
			    (int)max_id, entries);
	t->n_ids = max_id + 1;
	t->id_str = calloc((size_t)t->n_ids, sizeof *t->id_str);
	t->id_len = calloc((size_t)t->n_ids, sizeof *t->id_len);
	t->id_flags = calloc((size_t)t->n_ids, 1);
	if (!t->id_str || !t->id_len || !t->id_flags)
		return fail(L, "out of memory");
	const strmap *v = &t->bpe.vocab;
	for (size_t i = 0; i <= v->mask; i++) {
		const sm_ent *e = &v->e[i];
		if (e->key) {
			t->id_str[e->val] = e->key;
			t->id_len[e->val] = e->len;
		}
	}
	for (size_t i = 0; i < t->n_added; i++) {
		const added_tok *a = &t->added[i];
		t->id_str[a->id] = a->content;
		t->id_len[a->id] = (uint32_t)a->len;
		t->id_flags[a->id] = (uint8_t)(F_ADDED | (a->special ? F_SPECIAL : 0));
	}
	return true;
}

/* Record the adjacent character pairs of a merge result (valid UTF-8). */
static bool add_bigrams(mergemap *bg, const char *s, size_t n)
{
	size_t i = 0, l;
	uint32_t prev = u8cp(s, n, &l);
	for (i = l; i < n; i += l) {
		uint32_t cp = u8cp(s + i, n - i, &l);
		if (!mm_get(bg, (int32_t)prev, (int32_t)cp)) {
			if ((bg->n + 1) * 2 > bg->mask + 1) { /* grow */
				mergemap nb;
				if (!mm_init(&nb, (bg->mask + 1)))
					return false;
				for (size_t k = 0; k <= bg->mask; k++)
					if (bg->e[k].key != UINT64_MAX)
						mm_put(&nb, (int32_t)(bg->e[k].key >> 32),
						       (int32_t)(uint32_t)bg->e[k].key, 0, 0);
				free(bg->e);
				*bg = nb;
			}
			mm_put(bg, (int32_t)prev, (int32_t)cp, 0, 0);
		}
		prev = cp;
	}
	return true;
}

static bool load_merges(loadctx *L, const cJSON *merges)
{
	bpe_model *m = &L->t->bpe;
	if (!cJSON_IsArray(merges))
		return fail(L, "model.merges must be a list");
	int cnt = cJSON_GetArraySize(merges);
	if (!mm_init(&m->merges, (size_t)cnt))
		return fail(L, "out of memory");
	/* only when symbols are plain text (no subword prefix / suffix) */
	if (!m->prefix_len && !m->suffix_len && !mm_init(&m->bigrams, (size_t)cnt * 2))
		return fail(L, "out of memory");
	sbuf buf = { 0 };
	const cJSON *it;
	int32_t rank = 0;
	char b1[48], b2[48];
	bool ok = true;
	cJSON_ArrayForEach(it, merges) {
		const char *a, *bb;
		size_t alen, blen;
		if (cJSON_IsString(it)) {
			a = it->valuestring;
			const char *sp = strchr(a, ' ');
			if (!sp) {
				ok = fail(L, "model.merges[%d]: expected \"a b\"", (int)rank);
				break;
			}
			alen = (size_t)(sp - a);
			bb = sp + 1;
			blen = strlen(bb);
		} else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
			   cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
			   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
			a = cJSON_GetArrayItem(it, 0)->valuestring;
			bb = cJSON_GetArrayItem(it, 1)->valuestring;
			alen = strlen(a);
			blen = strlen(bb);
		} else {
			ok = fail(L, "model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", (int)rank);
			break;
		}
		int32_t ia = sm_get(&m->vocab, a, alen), ib = sm_get(&m->vocab, bb, blen);
		size_t skip = 0;
		if (m->prefix_len && blen >= m->prefix_len && !memcmp(bb, m->prefix, m->prefix_len))
			skip = m->prefix_len;
		sb_clear(&buf);
		sb_put(&buf, a, alen);
		sb_put(&buf, bb + skip, blen - skip);
		if (buf.oom) {
			ok = fail(L, "out of memory");
			break;
		}
		int32_t inew = sm_get(&m->vocab, buf.p, buf.n);
		if (ia < 0 || ib < 0 || inew < 0) {
			buf.p[alen] = 0;
			ok = fail(L, "model.merges[%d]: '%s' + '%s' is not in the vocabulary",
				  (int)rank, shown(buf.p, b1), shown(bb, b2));
			break;
		}
		mm_put(&m->merges, ia, ib, rank, inew);
		rank++;
		if (m->bigrams.e && !add_bigrams(&m->bigrams, buf.p, buf.n)) {
			ok = fail(L, "out of memory");
			break;
		}
	}
	sb_free(&buf);
	return ok;
}

static bool load_model(loadctx *L, const cJSON *model, int32_t *max_id)
{
	bpe_model *m = &L->t->bpe;
	char b[48];
	if (!cJSON_IsObject(model))
		return fail(L, "no model object");
	const char *type = jstr(model, "type");
	if (type && strcmp(type, "BPE"))
		return fail(L, "model.type '%s' is not supported", shown(type, b));
	if (!type && !jget(model, "merges"))
		return fail(L, "model.type is missing and the model is not BPE");
	const cJSON *dropout = jget(model, "dropout");
	if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0 && dropout->valuedouble < 1)
		return fail(L, "model.dropout is not supported");
	m->fuse_unk = jbool(model, "fuse_unk", false);
	m->byte_fallback = jbool(model, "byte_fallback", false);
	m->ignore_merges = jbool(model, "ignore_merges", false);
	const char *pre = jstr(model, "continuing_subword_prefix");
	const char *suf = jstr(model, "end_of_word_suffix");
	if (pre && *pre && !(m->prefix = xstrdup(pre, &m->prefix_len)))
		return fail(L, "out of memory");
	if (suf && *suf && !(m->suffix = xstrdup(suf, &m->suffix_len)))
		return fail(L, "out of memory");
	if (!load_vocab(L, jget(model, "vocab"), max_id))
		return false;
	if (!load_merges(L, jget(model, "merges")))
		return false;
	const char *unk = jstr(model, "unk_token");
	m->unk_id = unk ? sm_get(&m->vocab, unk, strlen(unk)) : -1;
	for (int i = 0; i < 256; i++) {
		char k[8];
		snprintf(k, sizeof k, "<0x%02X>", i);
		m->byte_ids[i] = sm_get(&m->vocab, k, 6);
	}
	return true;
}

/* Tries over added tokens: raw content (normalized=false) and normalized
 * content (normalized=true). */
static bool build_tries(loadctx *L)
{
	mh_tokenizer *t = L->t;
	mctx m = { 0 };
	sbuf nb = { 0 };
	bool ok = true;
	for (size_t i = 0; i < t->n_added && ok; i++) {
		added_tok *a = &t->added[i];
		const char *s = a->content;
		size_t n = a->len;
		if (a->normalized && t->norm) {
			if (norm_run(t->norm, s, n, &nb, &m) < 0 || nb.oom) {
				ok = fail(L, "cannot normalize added token");
				break;
			}
			s = a->norm = arena_strndup(&t->arena, nb.p ? nb.p : "", nb.n);
			n = a->norm_len = nb.n;
			if (!s) {
				ok = fail(L, "out of memory");
				break;
			}
		}
		if (!n)
			continue;
		if (!trie_add(a->normalized ? &t->norm_trie : &t->raw_trie, s, n, (int32_t)i))
			ok = fail(L, "out of memory");
	}
	sb_free(&nb);
	mctx_free(&m);
	return ok;
}

static char *read_file(loadctx *L, size_t *len)
{
	FILE *f = fopen(L->path, "rb");
	if (!f) {
		fail(L, "cannot open: %s", strerror(errno));
		return NULL;
	}
	sbuf b = { 0 };
	char chunk[65536];
	size_t r;
	while ((r = fread(chunk, 1, sizeof chunk, f)) > 0)
		sb_put(&b, chunk, r);
	bool err = ferror(f);
	fclose(f);
	if (err || b.oom) {
		sb_free(&b);
		fail(L, err ? "read error" : "out of memory");
		return NULL;
	}
	*len = b.n;
	return b.p ? b.p : calloc(1, 1);
}

mh_tokenizer *tokenizer_load(const char *path, char *err, size_t errlen)
{
	loadctx L = { path ? path : "(null)", err, errlen, false, NULL };
	if (err && errlen)
		err[0] = 0;
	if (!path) {
		fail(&L, "no path");
		return NULL;
	}
	bytelevel_init();
	size_t len = 0;
	char *text = read_file(&L, &len);
	if (!text)
		return NULL;
	cJSON *root = cJSON_ParseWithLength(text, len);
	free(text);
	if (!root || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		fail(&L, "not valid JSON");
		return NULL;
	}
	mh_tokenizer *t = calloc(1, sizeof *t);
	if (!t) {
		cJSON_Delete(root);
		fail(&L, "out of memory");
		return NULL;
	}
	L.t = t;
	int32_t max_id = -1;
	bool ok = load_model(&L, jget(root, "model"), &max_id) &&
		  load_added(&L, jget(root, "added_tokens"), &max_id) &&
		  build_id_tables(&L, max_id) &&
		  load_normalizer(&L, jget(root, "normalizer"), &t->norm, 0) &&
		  load_pretok(&L, jget(root, "pre_tokenizer"), &t->pre, 0) &&
		  load_post(&L, jget(root, "post_processor"), &t->post, 0) &&
		  load_decoder(&L, jget(root, "decoder"), &t->dec, 0) &&
		  build_tries(&L);
	cJSON_Delete(root);
	if (!ok) {
		tokenizer_free(t);
		return NULL;
	}
	return t;
}
