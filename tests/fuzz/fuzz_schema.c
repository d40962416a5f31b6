/* SPDX-License-Identifier: MIT */
/* fuzz_schema.c - libFuzzer target: any bytes as a JSON Schema and a reply,
 * split at the first NUL (no schema: any object).  A schema either
 * compiles or is refused with a
 * message; one that compiles has the reply fed to it a byte at a time
 * (stories260K's byte tokens, $FUZZ_TOKENIZER), and at every step the
 * mask must keep exactly the tokens constraint_allows takes.
 * Build and run: tests/fuzz/run.sh schema [SECONDS]. */
#include "text/constrain.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* constraint_sample is not fuzzed here: the sampler stays out of the build */
int sampler_is_greedy(const mh_sampler *s)
{
	(void)s;
	abort();
}

int32_t sampler_sample(mh_sampler *s, float *logits, const int32_t *h, size_t n)
{
	(void)s, (void)logits, (void)h, (void)n;
	abort();
}

static mh_tokenizer *tok;
static cn_vocab *voc;
static int32_t byte_id[256], n_vocab;
static float *logits;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	const char *path = getenv("FUZZ_TOKENIZER");
	char err[512], name[8];
	if (!path || !(tok = tokenizer_load(path, err, sizeof err)) || !(voc = cn_vocab_new(tok))) {
		fprintf(stderr, "fuzz_schema: set FUZZ_TOKENIZER to a byte-fallback tokenizer.json (%s)\n",
			path ? err : "unset");
		exit(1);
	}
	n_vocab = tokenizer_vocab_size(tok);
	logits = malloc((size_t)n_vocab * sizeof *logits);
	for (int b = 0; b < 256; b++) {
		snprintf(name, sizeof name, "<0x%02X>", b);
		if ((byte_id[b] = tokenizer_token_id(tok, name)) < 0 || !logits)
			exit(1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	if (!nul || size > 4096)
		return 0;
	char err[256] = "";
	/* no schema text: any object */
	cJSON *schema = nul > data ? cJSON_ParseWithLength((const char *)data, (size_t)(nul - data))
				   : NULL;
	if (nul > data && !schema)
		return 0;
	cn_grammar *g = cn_grammar_json(schema, err, sizeof err);
	cJSON_Delete(schema);
	if (!g && !err[0])
		abort(); /* refused without saying why */
	mh_constraint *c = g ? constraint_new(voc, g) : NULL;
	int32_t end = 2; /* </s> */
	for (const uint8_t *p = nul + 1; c && p <= data + size; p++) {
		for (int32_t id = 0; id < n_vocab; id++)
			logits[id] = 0.0f;
		int left = constraint_mask(c, logits, n_vocab, &end, 1), count = 0;
		for (int32_t id = 0; id < n_vocab; id++) {
			int want = constraint_allows(c, id) || (id == end && constraint_may_end(c));
			if ((logits[id] == 0.0f) != want)
				abort();
			count += want;
		}
		if (count != left || p == data + size || constraint_feed(c, byte_id[*p]) != 0)
			break;
	}
	constraint_free(c);
	cn_grammar_free(g);
	return 0;
}
