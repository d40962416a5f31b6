/* SPDX-License-Identifier: MIT */
/* fuzz_tokenizer_json.c - libFuzzer target: any bytes as tokenizer.json.
 * A file that loads must then encode a set of texts (with and without the
 * post-processor, and with a limit on the ids), decode what it gave and
 * every low id, and stream the ids; one that does not load must say why
 * in one line that starts with the path.  The seeds (tests/fuzz/run.sh)
 * are small files that use every normalizer, pre-tokenizer, post-processor
 * and decoder type the loader accepts, and the reference tokenizers cut to
 * a few hundred tokens by this program:
 *   FUZZ_SHRINK=N fuzz_tokenizer_json IN.json OUT.json
 * keeps the ids below N, the merges among them and every other section.
 * Build and run: tests/fuzz/run.sh tokenizer_json [SECONDS]. */
#define _GNU_SOURCE /* memfd_create */
#include "text/tokenizer.h"

#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64];

static const char *const texts[] = {
	"Hello world! It's 2024, isn't it?",
	"  leading and trailing spaces  ",
	"caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m \xEF\xAC\x81 \xE2\x84\xAB",
	"\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x80\xF0\x9F\x91\x8D",
	"line one\nline two\r\n\ttabbed\x0B",
	"<s>special</s> <unk> <|endoftext|> <0x41>",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbb",
	"123 4567 89.0e-3 $%&*()[]{}",
	"\xE2\x96\x81word \xC4\xA0word",
	"",
};

/* Copy IN to OUT keeping ids below keep (see the comment at the top). */
static int shrink(const char *in, const char *out, int keep)
{
	FILE *f = fopen(in, "rb");
	if (!f)
		return 1;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
		return 1;
	fclose(f);
	cJSON *root = cJSON_ParseWithLength(buf, (size_t)n);
	free(buf);
	cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
	cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
	cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
	if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
		return 1;
	cJSON *v = vocab->child;
	while (v) {
		cJSON *next = v->next;
		if (!cJSON_IsNumber(v) || v->valuedouble >= keep)
			cJSON_Delete(cJSON_DetachItemViaPointer(vocab, v));
		v = next;
	}
	cJSON *m = merges->child;
	while (m) {
		cJSON *next = m->next;
		char a[256], b[256];
		int ok = 0;
		if (cJSON_IsString(m)) {
			const char *sp = strchr(m->valuestring, ' ');
			if (sp && sp - m->valuestring < 255 && strlen(sp + 1) < 255) {
				memcpy(a, m->valuestring, (size_t)(sp - m->valuestring));
				a[sp - m->valuestring] = 0;
				strcpy(b, sp + 1);
				ok = 1;
			}
		} else if (cJSON_GetArraySize(m) == 2) {
			const char *x = cJSON_GetStringValue(cJSON_GetArrayItem(m, 0));
			const char *y = cJSON_GetStringValue(cJSON_GetArrayItem(m, 1));
			ok = x && y && strlen(x) < 255 && strlen(y) < 255;
			if (ok) {
				strcpy(a, x);
				strcpy(b, y);
			}
		}
		char ab[512];
		snprintf(ab, sizeof ab, "%s%s", a, b);
		if (!ok || !cJSON_GetObjectItemCaseSensitive(vocab, a) ||
		    !cJSON_GetObjectItemCaseSensitive(vocab, b) ||
		    !cJSON_GetObjectItemCaseSensitive(vocab, ab))
			cJSON_Delete(cJSON_DetachItemViaPointer(merges, m));
		m = next;
	}
	cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
	cJSON *a = added ? added->child : NULL;
	for (int i = 0; a; i++) { /* a few added tokens, with ids moved below keep */
		cJSON *next = a->next;
		if (i >= 8)
			cJSON_Delete(cJSON_DetachItemViaPointer(added, a));
		else
			cJSON_ReplaceItemInObjectCaseSensitive(a, "id", cJSON_CreateNumber(keep + i));
		a = next;
	}
	char *text = cJSON_Print(root);
	f = fopen(out, "wb");
	if (!text || !f || fputs(text, f) < 0 || fclose(f) != 0)
		return 1;
	free(text);
	cJSON_Delete(root);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *keep = getenv("FUZZ_SHRINK");
	if (keep)
		exit(*argc == 3 ? shrink((*argv)[1], (*argv)[2], atoi(keep)) : 2);
	fd = memfd_create("tokenizer.json", 0);
	if (fd < 0) {
		perror("fuzz_tokenizer_json: memfd_create");
		exit(1);
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	return 0;
}

static void check_ids(const mh_tokenizer *t, const int32_t *ids, size_t n, int skip)
{
	size_t len;
	char *whole = tokenizer_decode(t, ids, n, skip, &len);
	mh_detok_stream *s = tokenizer_stream_new(t, skip);
	if (!s)
		abort();
	size_t got = 0, l;
	for (size_t i = 0; i <= n; i++) {
		const char *piece = i < n ? tokenizer_stream_push(s, ids[i], &l)
					  : tokenizer_stream_flush(s, &l);
		/* NULL only where the whole decode failed too (growth cap) */
		if (!piece && whole)
			abort();
		if (piece && tokenizer_utf8_valid_prefix(piece, l) != l)
			abort();
		got += piece ? l : 0;
	}
	if (whole && tokenizer_utf8_valid_prefix(whole, len) != len)
		abort();
	(void)got;
	tokenizer_stream_free(s);
	free(whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	char err[512] = "";
	mh_tokenizer *t = tokenizer_load(path, err, sizeof err);
	if (!t) {
		if (strncmp(err, path, strlen(path)) != 0 || strchr(err, '\n'))
			abort(); /* a failure must say where and why, in one line */
		return 0;
	}
	int32_t vocab = tokenizer_vocab_size(t);
	if (vocab <= 0)
		abort();
	for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
		for (int special = 0; special < 2; special++) {
			int32_t *ids;
			size_t n, len = strlen(texts[k]);
			int rc = tokenizer_encode_n(t, texts[k], len, special, 0, &ids, &n);
			if (rc == 0) {
				for (size_t i = 0; i < n; i++)
					if (ids[i] < 0 || ids[i] >= vocab)
						abort();
				check_ids(t, ids, n, special);
				/* with a limit: the same ids, or "too long" past it */
				int32_t *cut;
				size_t m;
				size_t max = n / 2; /* 0: no limit */
				int r2 = tokenizer_encode_n(t, texts[k], len, special, max, &cut, &m);
				if (max ? r2 != TOKENIZER_ETOOLONG || m != max + 1 || cut
					: r2 != 0 || m != n || memcmp(cut, ids, n * sizeof *ids))
					abort();
				free(cut);
				free(ids);
			} else if (rc != TOKENIZER_ENOMEM && rc != TOKENIZER_ELIMIT &&
				   rc != TOKENIZER_EGROWTH) {
				abort(); /* valid UTF-8 cannot fail otherwise */
			}
		}
	}
	int32_t low[64];
	size_t nl = 0;
	for (int32_t i = 0; i < vocab && nl < 64; i++)
		low[nl++] = i;
	check_ids(t, low, nl, 0);
	check_ids(t, low, nl, 1);
	tokenizer_free(t);
	return 0;
}
