/* SPDX-License-Identifier: MIT */
/* util.c - small utilities of the tokenizer: arena, UTF-8, character
 * classes, the growing halves of the hash tables. */
#include "text/tokenizer/internal.h"

void *arena_alloc(ablk **head, size_t n)
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

char *arena_strndup(ablk **head, const char *s, size_t n)
{
	char *p = arena_alloc(head, n + 1);
	if (p) {
		if (n)
			memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

void arena_free(ablk *b)
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
size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad)
{
	/* Unicode's table 3-7 of well-formed sequences: by the first byte, the
	 * length and the range of the second (the others are 80..BF) */
	static const struct { unsigned char first, last, len, lo, hi; } lead[] = {
		{ 0xC2, 0xDF, 2, 0x80, 0xBF },
		{ 0xE0, 0xE0, 3, 0xA0, 0xBF },
		{ 0xE1, 0xEC, 3, 0x80, 0xBF },
		{ 0xED, 0xED, 3, 0x80, 0x9F },
		{ 0xEE, 0xEF, 3, 0x80, 0xBF },
		{ 0xF0, 0xF0, 4, 0x90, 0xBF },
		{ 0xF1, 0xF3, 4, 0x80, 0xBF },
		{ 0xF4, 0xF4, 4, 0x80, 0x8F },
	};
	unsigned c = s[0];
	*bad = 1;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t k = 0;
	while (k < sizeof lead / sizeof *lead && c > lead[k].last)
		k++;
	if (k == sizeof lead / sizeof *lead || c < lead[k].first)
		return 0;
	size_t len = lead[k].len;
	unsigned lo = lead[k].lo, hi = lead[k].hi;
	uint32_t v = c & (0x7Fu >> len);
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

bool utf8_valid(const char *s, size_t n)
{
	return tokenizer_utf8_valid_prefix(s, n) == n;
}

/* Append s to out, replacing ill-formed sequences by U+FFFD. */
void utf8_lossy(sbuf *out, const char *s, size_t n)
{
	size_t i = 0, bad;
	uint32_t cp;
	for (;;) {
		size_t ok = tokenizer_utf8_valid_prefix(s + i, n - i);
		sb_put(out, s + i, ok);
		i += ok;
		if (i == n)
			return;
		utf8_seq((const unsigned char *)s + i, n - i, &cp, &bad);
		sb_put(out, "\xEF\xBF\xBD", 3);
		i += bad;
	}
}

/* Rust char::is_whitespace (the White_Space property). */
bool is_ws(uint32_t c)
{
	return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
	       c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_numeric(uint32_t c)
{
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL ||
	       k == UTF8PROC_CATEGORY_NO;
}

bool is_punct(uint32_t c)
{
	if (c < 0x80)
		return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) ||
		       (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* Regex \w: letters, marks, decimal digits, connector punctuation. */
bool is_word_char(uint32_t c)
{
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) ||
	       k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_PC;
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

bool sm_put(strmap *m, const char *k, size_t len, int32_t val)
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

bool sm_reserve(strmap *m, size_t n)
{
	size_t cap = 64;
	while (cap < n * 2 + 2)
		cap *= 2;
	return m->e ? true : sm_rehash(m, cap);
}

bool mm_init(mergemap *m, size_t n)
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

void mm_put(mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
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

void tl_begin(tlist *t)
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
	t->v[t->n++] = (span){ t->b.n, t->b.n, false };
}

void tl_end(tlist *t)
{
	if (t->n)
		t->v[t->n - 1].b = t->b.n;
}

void tl_add(tlist *t, const char *s, size_t n)
{
	tl_begin(t);
	sb_put(&t->b, s, n);
	tl_end(t);
}

void tl_clear(tlist *t)
{
	sb_clear(&t->b);
	t->n = 0;
}

void tl_free(tlist *t)
{
	sb_free(&t->b);
	free(t->v);
	memset(t, 0, sizeof *t);
}
