/* SPDX-License-Identifier: MIT */
/* bpe.c - the BPE model: initial symbols, merging by rank, the per-call
 * word cache, and loading vocab and merges from tokenizer.json. */
#include "text/tokenizer/internal.h"

#include <stdio.h>

#define CACHE_MAX_PIECE 256          /* bytes; longer pieces are not cached */
#define CACHE_MAX_ENTRIES 200000

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
		if (out->n > start) /* out->v may still be NULL */
			iv_put(&c->cache_ids, out->v + start, out->n - start);
		if (!key || c->cache_ids.oom || !sm_put(&c->cache, key, n, pos))
			return -1;
	}
	return 0;
}

/* A long word (e.g. a whole sentence without a pre-tokenizer) is merged in
 * independent chunks, cut where no merge can cross (see bpe_model.bigrams);
 * the result is the same as merging it whole, only faster and cacheable. */
int bpe_piece(const bpe_model *m, const char *w, size_t n, ectx *c, i32vec *out)
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
			if (bpe_cached(m, w + start, i - start, c, out) < 0 || past_max(c, out))
				return -1;
			start = i;
		}
		prev = cp;
		prev_in_vocab = in_vocab;
		i += l;
	}
	return bpe_cached(m, w + start, n - start, c, out);
}

void bpe_free(bpe_model *m)
{
	free(m->vocab.e);
	free(m->merges.e);
	free(m->bigrams.e);
	free(m->prefix);
	free(m->suffix);
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

bool load_model(loadctx *L, const cJSON *model, int32_t *max_id)
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
