/* SPDX-License-Identifier: MIT */
/* fuzz_tokenizer.c - libFuzzer target: any bytes as text to encode, and as
 * token ids to decode (whole and streamed), with the tokenizer.json named
 * by $FUZZ_TOKENIZER.  Encoding must take any valid UTF-8 and refuse
 * anything else; decoding any in-range ids must give a string; the stream
 * must give out valid UTF-8, and exactly what decoding the whole list
 * gives unless that holds a U+FFFD.
 * Build and run: tests/fuzz/run.sh tokenizer [SECONDS]. */
#define _GNU_SOURCE /* memmem */
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mh_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	const char *path = getenv("FUZZ_TOKENIZER");
	char err[512];
	if (!path || !(tok = tokenizer_load(path, err, sizeof err))) {
		fprintf(stderr, "fuzz_tokenizer: set FUZZ_TOKENIZER to a tokenizer.json (%s)\n",
			path ? err : "unset");
		exit(1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int32_t *ids = NULL;
	size_t n = 0;
	int valid = tokenizer_utf8_valid_prefix((const char *)data, size) == size;
	if ((tokenizer_encode(tok, (const char *)data, size, size & 1, &ids, &n) == 0) != valid)
		abort(); /* refused valid UTF-8, or took invalid */
	char *text = tokenizer_decode(tok, ids, n, 0, NULL);
	if (!text)
		abort();
	free(text);
	free(ids);

	/* the same bytes as ids: a stream must add up to the whole decode */
	int32_t vocab = tokenizer_vocab_size(tok);
	size_t m = size / 2;
	int32_t *rnd = malloc((m ? m : 1) * sizeof *rnd);
	if (!rnd)
		return 0;
	for (size_t i = 0; i < m; i++)
		rnd[i] = (int32_t)((data[2 * i] | data[2 * i + 1] << 8) % vocab);
	int skip = size > 0 && data[0] & 1;
	size_t wl;
	char *whole = tokenizer_decode(tok, rnd, m, skip, &wl);
	mh_detok_stream *s = tokenizer_stream_new(tok, skip);
	if (!whole || !s)
		abort();
	/* the pieces against the whole decode */
	size_t got = 0, len, cap = 64;
	char *acc = malloc(cap);
	for (size_t i = 0; acc && i <= m; i++) {
		const char *piece = i < m ? tokenizer_stream_push(s, rnd[i], &len)
					  : tokenizer_stream_flush(s, &len);
		if (!piece)
			abort();
		while (got + len > cap)
			cap *= 2;
		char *grown = realloc(acc, cap);
		if (!grown)
			abort();
		acc = grown;
		memcpy(acc + got, piece, len);
		got += len;
	}
	if (!acc)
		abort();
	if (tokenizer_utf8_valid_prefix(acc, got) != got)
		abort(); /* a piece cut a character */
	/* Byte-fallback groups with an invalid byte turn into U+FFFD as a whole,
	 * bytes shown earlier included, which a stream cannot take back; any
	 * other decode the stream must give exactly. */
	if (!memmem(whole, wl, "\xEF\xBF\xBD", 3) && (got != wl || memcmp(acc, whole, wl) != 0))
		abort(); /* the stream ran ahead of, or away from, the whole decode */
	free(acc);
	tokenizer_stream_free(s);
	free(whole);
	free(rnd);
	return 0;
}
