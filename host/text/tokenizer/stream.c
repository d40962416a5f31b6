/* SPDX-License-Identifier: MIT */
/* stream.c - the streaming detokenizer.
 *
 * The streaming detokenizer is tokenizers' DecodeStream: it re-decodes a
 * small window of ids (the ids of the previous chunk as context, plus new
 * ones) and emits the text past the previous decode, holding back while the
 * window ends in U+FFFD (an incomplete UTF-8 sequence).
 */
#include "text/tokenizer/internal.h"

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
