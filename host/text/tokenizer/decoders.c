/* SPDX-License-Identifier: MIT */
/* decoders.c - decoders over a list of token strings (tokenizers'
 * decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
 * BPEDecoder, Sequence), and loading them. */
#include "text/tokenizer/internal.h"

#include <stddef.h>

enum { D_SEQ, D_BYTELEVEL, D_METASPACE, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_BPE };

struct decoder {
	int type;
	struct decoder **kids;
	size_t nkids;
	pattern pat;     /* Replace */
	char *s;         /* Replace content; BPE suffix */
	size_t slen;
	uint32_t cp;     /* Metaspace replacement; Strip content */
	int prepend_scheme;
	size_t start, stop;
};

static void dec_fields_free(void *node)
{
	decoder *d = node;
	pat_free(&d->pat);
	free(d->s);
}

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

static void dec_flush_bytes(tlist *out, sbuf *bytes, bool raw)
{
	if (!bytes->n)
		return;
	if (raw || utf8_valid(bytes->p, bytes->n)) {
		tl_add(out, bytes->p, bytes->n);
	} else {
		for (size_t i = 0; i < bytes->n; i++)
			tl_add(out, "\xEF\xBF\xBD", 3);
	}
	sb_clear(bytes);
}

static int dec_bytelevel(const tlist *in, tlist *out, bool keep)
{
	sbuf raw = { .max = out->b.max };
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
	if (keep)
		sb_put(&out->b, raw.p ? raw.p : "", raw.n);
	else
		utf8_lossy(&out->b, raw.p ? raw.p : "", raw.n);
	tl_end(out);
	bool oom = raw.oom;
	sb_free(&raw);
	return oom ? -1 : 0;
}

static int dec_replace(const decoder *d, const tlist *in, tlist *out, mctx *c)
{
	rangevec m = { 0 };
	int rc = 0;
	for (size_t i = 0; i < in->n && rc == 0; i++) {
		tl_begin(out);
		rc = pat_replace(&d->pat, TOK(in, i), TOKLEN(in, i), d->s, d->slen, &out->b, c, &m);
		tl_end(out);
	}
	free(m.v);
	return rc;
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

int dec_run(const decoder *d, const tlist *in, tlist *out, mctx *c)
{
	tl_clear(out);
	switch (d->type) {
	case D_SEQ: {
		tlist a = { .b.max = out->b.max }, b = { .b.max = out->b.max };
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
		if (dec_bytelevel(in, out, c->raw) < 0)
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
		sbuf bytes = { .max = out->b.max };
		for (size_t i = 0; i < in->n; i++) {
			unsigned char byte;
			if (parse_byte_token(TOK(in, i), TOKLEN(in, i), &byte)) {
				sb_put(&bytes, &byte, 1);
			} else {
				dec_flush_bytes(out, &bytes, c->raw);
				tl_add(out, TOK(in, i), TOKLEN(in, i));
			}
		}
		dec_flush_bytes(out, &bytes, c->raw);
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

static bool setup_decoder(loadctx *L, const cJSON *j, const char *type, void *node)
{
	decoder *d = node;
	if (!strcmp(type, "Sequence")) {
		d->type = D_SEQ;
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
		return load_replace(L, j, &d->s, &d->slen, &d->pat, "decoder Replace");
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
		return false; /* not a type of this stage */
	}
	return true;
}

const stage decoder_stage = STAGE(decoder, "decoder", "decoders", setup_decoder, dec_fields_free);
