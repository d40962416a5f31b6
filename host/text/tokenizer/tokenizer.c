/* SPDX-License-Identifier: MIT */
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
 * A loaded tokenizer is read-only; each encode/decode call keeps its scratch
 * state (PCRE2 match data, heap, cache) on its own, so calls are thread-safe.
 *
 * Each stage lives in a file of its own, named as in the tokenizers crate
 * (the map is at the top of internal.h); this file runs them in order.
 */
#include "text/tokenizer/internal.h"

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

/* ---- encode ---------------------------------------------------------- */

struct bpe_sink {
	const mh_tokenizer *t;
	ectx *c;
	i32vec *out;
};

/* BPE over pieces, stopping once the ids pass max_ids. */
static int bpe_pieces(void *arg, const tlist *pieces)
{
	struct bpe_sink *k = arg;
	for (size_t i = 0; i < pieces->n; i++)
		if (bpe_piece(&k->t->bpe, TOK(pieces, i), TOKLEN(pieces, i), k->c, k->out) < 0 ||
		    past_max(k->c, k->out))
			return -1;
	return 0;
}

static int encode_pretokenized(const mh_tokenizer *t, ectx *c, const char *s, size_t n,
			       bool first, i32vec *out)
{
	if (!n)
		return 0;
	if (!t->pre)
		return bpe_piece(&t->bpe, s, n, c, out);
	struct bpe_sink k = { t, c, out };
	int rc = pretok_stream(t->pre, s, n, first, c, bpe_pieces, &k);
	if (rc <= 0)
		return rc;
	tlist in = { .b.max = c->max_text }, pieces = { .b.max = c->max_text };
	pl_add(&in, s, n, first);
	rc = in.oom || in.b.oom ? -1 : pretok_run(t->pre, &in, &pieces, c);
	if (rc == 0)
		rc = bpe_pieces(&k, &pieces);
	tl_free(&in);
	tl_free(&pieces);
	return rc;
}

static int encode_segment(const mh_tokenizer *t, ectx *c, const char *s, size_t n,
			  bool first, i32vec *out)
{
	sbuf norm = { .max = c->max_text };
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
			if (rc == 0 && past_max(c, out))
				rc = -1;
		}
		free(segs.v);
	} else {
		rc = encode_pretokenized(t, c, s, n, first, out);
	}
	sb_free(&norm);
	return rc;
}

int tokenizer_encode_n(const mh_tokenizer *t, const char *text, size_t len, int add_special,
		       size_t max_ids, int32_t **ids, size_t *n_ids)
{
	if (ids)
		*ids = NULL;
	if (n_ids)
		*n_ids = 0;
	if (!t || !ids || !n_ids || (!text && len))
		return TOKENIZER_ENOMEM;
	if (!text)
		text = "";
	if (!utf8_valid(text, len))
		return TOKENIZER_EUTF8;
	ectx c = { .max_ids = max_ids, .max_text = growth_cap(len) };
	c.tmp.max = c.tmp2.max = c.max_text;
	i32vec out = { 0 };
	segvec segs = { 0 };
	int rc = added_split(t, &t->raw_trie, text, len, &segs);
	for (size_t i = 0; rc == 0 && i < segs.n; i++) {
		if (segs.v[i].tok >= 0)
			iv_push(&out, t->added[segs.v[i].tok].id);
		else
			rc = encode_segment(t, &c, text + segs.v[i].a, segs.v[i].b - segs.v[i].a,
					    segs.v[i].a == 0, &out);
		if (rc == 0 && past_max(&c, &out))
			rc = -1;
	}
	if (rc == 0 && add_special && t->post)
		rc = post_run(t->post, &out);
	if (rc == 0 && past_max(&c, &out))
		rc = -1;
	if (rc == 0 && !out.v && !(out.v = malloc(sizeof *out.v)))
		rc = -1; /* a non-NULL array even when empty */
	int err = c.m.err ? c.m.err : TOKENIZER_ENOMEM;
	free(segs.v);
	ectx_free(&c);
	if (rc < 0 || out.oom) {
		free(out.v);
		if (err == TOKENIZER_ETOOLONG)
			*n_ids = max_ids + 1;
		return err;
	}
	*ids = out.v;
	*n_ids = out.n;
	return 0;
}

int tokenizer_encode(const mh_tokenizer *t, const char *text, size_t len, int add_special,
		     int32_t **ids, size_t *n_ids)
{
	return tokenizer_encode_n(t, text, len, add_special, 0, ids, n_ids) < 0 ? -1 : 0;
}

const char *tokenizer_strerror(int code)
{
	switch (code) {
	case 0:
		return "no error";
	case TOKENIZER_EUTF8:
		return "the text is not valid UTF-8";
	case TOKENIZER_ETOOLONG:
		return "the text gives more tokens than allowed";
	case TOKENIZER_ELIMIT:
		return "a regex of the tokenizer needs too much work on this text";
	case TOKENIZER_EGROWTH:
		return "a normalizer or pre-tokenizer step makes the text too long "
		       "(more than 64 times)";
	default:
		return "out of memory";
	}
}

/* ---- decode ---------------------------------------------------------- */

/* Decoded text appended to out: valid UTF-8, or with raw the bytes as the
 * tokens make them (a byte token's byte, even in the middle of a character). */
static int decode_ids(const mh_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
		      bool raw, sbuf *out)
{
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		if (ids[i] >= 0 && ids[i] < t->n_ids)
			bytes += t->id_len[ids[i]];
	/* decoder steps may not grow the text without bound */
	size_t most = growth_cap(bytes + n);
	tlist toks = { .b.max = most }, res = { .b.max = most };
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
	mctx m = { .raw = raw };
	if (rc == 0 && t->dec) {
		rc = dec_run(t->dec, &toks, &res, &m);
		fin = &res;
	}
	if (rc == 0) {
		sbuf joined = { .max = most };
		for (size_t i = 0; i < fin->n; i++) {
			if (i && !t->dec)
				sb_putc(&joined, ' ');
			sb_put(&joined, TOK(fin, i), TOKLEN(fin, i));
		}
		if (raw)
			sb_put(out, joined.p ? joined.p : "", joined.n);
		else
			utf8_lossy(out, joined.p ? joined.p : "", joined.n);
		if (joined.oom)
			rc = -1;
		sb_free(&joined);
	}
	mctx_free(&m);
	tl_free(&toks);
	tl_free(&res);
	return rc < 0 || out->oom ? -1 : 0;
}

int decode_into(const mh_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
		sbuf *out)
{
	return decode_ids(t, ids, n, skip_special, false, out);
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

/* A token whose text alone is one ASCII letter or digit: what tokenizer_pieces
 * puts before each token, so that the decoder's rules for a text's first
 * token (Metaspace's dropped space, Strip) leave the token itself alone. */
static int32_t plain_anchor(const mh_tokenizer *t)
{
	for (int32_t id = 0; id < t->n_ids; id++) {
		const char *s = t->id_str[id];
		if (s && t->id_len[id] == 1 && !(t->id_flags[id] & F_SPECIAL) &&
		    ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
			return id;
	}
	return -1;
}

int tokenizer_pieces(const mh_tokenizer *t, int first, char **blob, uint32_t **off)
{
	*blob = NULL;
	*off = NULL;
	if (!t)
		return -1;
	sbuf all = { 0 }, one = { 0 }, base = { 0 };
	uint32_t *o = malloc(((size_t)t->n_ids + 1) * sizeof *o);
	int32_t pair[2] = { first ? -1 : plain_anchor(t), 0 };
	int with = pair[0] >= 0, rc = o ? 0 : -1;
	if (rc == 0 && with && decode_ids(t, pair, 1, false, true, &base) < 0)
		rc = -1;
	for (int32_t id = 0; rc == 0 && id < t->n_ids; id++) {
		o[id] = (uint32_t)all.n;
		if (!t->id_str[id] || (t->id_flags[id] & F_SPECIAL))
			continue;
		pair[1] = id;
		sb_clear(&one);
		if (decode_ids(t, pair + !with, 1 + (size_t)with, false, true, &one) < 0) {
			rc = -1;
			break;
		}
		/* a decoder that rewrites the anchor too: the token cannot be told apart */
		if (one.n >= base.n && (!base.n || !memcmp(one.p, base.p, base.n)))
			sb_put(&all, one.p + base.n, one.n - base.n);
		if (all.oom || all.n > UINT32_MAX)
			rc = -1;
	}
	if (rc == 0) {
		o[t->n_ids] = (uint32_t)all.n;
		if (!sb_reserve(&all, 1))
			rc = -1;
	}
	sb_free(&one);
	sb_free(&base);
	if (rc != 0) {
		sb_free(&all);
		free(o);
		return -1;
	}
	*blob = all.p;
	*off = o;
	return 0;
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
	bpe_free(&t->bpe);
	free(t->id_str);
	free(t->id_len);
	free(t->id_flags);
	free(t->added);
	free(t->added_map.e);
	free(t->raw_trie.v);
	free(t->norm_trie.v);
	tree_free(&normalizer_stage, t->norm);
	tree_free(&pretok_stage, t->pre);
	tree_free(&post_stage, t->post);
	tree_free(&decoder_stage, t->dec);
	arena_free(t->arena);
	free(t);
}
