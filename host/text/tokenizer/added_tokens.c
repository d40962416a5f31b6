/* SPDX-License-Identifier: MIT */
/* added_tokens.c - added tokens (tokenizers' AddedVocabulary): a byte trie
 * over their contents, and the split of a text at them. */
#include "text/tokenizer/internal.h"

/* The child of node for byte b, -1 if none. */
static int32_t trie_child(const trie *t, int32_t node, unsigned char b)
{
	int32_t ch = t->v[node].child;
	while (ch >= 0 && t->v[ch].byte != b)
		ch = t->v[ch].sibling;
	return ch;
}

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
		int32_t ch = trie_child(t, node, b);
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
		int32_t ch = trie_child(t, node, b);
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

static void seg_push(segvec *s, size_t a, size_t b, int32_t tok)
{
	seg *e = vec_more((void **)&s->v, &s->cap, s->n, sizeof *s->v, &s->oom);
	if (e) {
		*e = (seg){ a, b, tok };
		s->n++;
	}
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
int added_split(const mh_tokenizer *t, const trie *tr, const char *s, size_t n,
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

bool load_added(loadctx *L, const cJSON *arr, int32_t *max_id)
{
	mh_tokenizer *t = L->t;
	if (!arr || cJSON_IsNull(arr))
		return true;
	if (!(t->added = load_list(L, arr, sizeof *t->added, "added_tokens")))
		return false;
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

/* Tries over added tokens: raw content (normalized=false) and normalized
 * content (normalized=true). */
bool build_tries(loadctx *L)
{
	mh_tokenizer *t = L->t;
	mctx m = { 0 };
	sbuf nb = { 0 };
	bool ok = true;
	/* all normalized contents together may grow as one text may */
	size_t total = 0, used = 0;
	for (size_t i = 0; i < t->n_added; i++)
		total += t->added[i].len;
	size_t most = growth_cap(total);
	for (size_t i = 0; i < t->n_added && ok; i++) {
		added_tok *a = &t->added[i];
		const char *s = a->content;
		size_t n = a->len;
		if (a->normalized && t->norm) {
			char b[48];
			nb.max = most - used;
			if (norm_run(t->norm, s, n, &nb, &m) < 0) {
				ok = m.err == TOKENIZER_EGROWTH
				     ? fail(L, "the normalizer makes the added tokens more than %d "
						    "times as long (at '%s')", TOKENIZER_MAX_GROWTH,
						    shown(a->content, b))
					     : m.err == TOKENIZER_ELIMIT
					     ? fail(L, "a normalizer regex needs too much work on "
						    "added token '%s'", shown(a->content, b))
					     : fail(L, "cannot normalize added token");
				break;
			}
			used += nb.n;
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
