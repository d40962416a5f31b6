/* SPDX-License-Identifier: MIT */
/* mkbigram.c - write a toy BigramLM checkpoint (config.json +
 * model.safetensors) for the bigram example plugin.  libc only.
 *
 *   mkbigram [-v VOCAB] [-t f32|f16|bf16] DIR
 *
 * Token t strongly predicts (t + 1) mod VOCAB; BOS is 0 and EOS is
 * VOCAB - 1, so greedy generation from [1] gives 2 3 4 ... up to EOS.
 * Row t, column j holds 4.0 for j == t + 1 and -0.25 * d otherwise, where d
 * is how far j lies past t + 1 (mod VOCAB): about 95% for the favoured
 * token at temperature 1; every value is exact in F16 and BF16 for a VOCAB
 * up to 256.
 *
 * The safetensors format, written by hand: an 8-byte little-endian header
 * length N, N bytes of JSON (padded with spaces to a multiple of 8), then
 * the tensor data, little-endian, at the offsets the header gives.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *prog = "mkbigram";

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [-v VOCAB] [-t f32|f16|bf16] DIR\n"
		"Write a toy BigramLM checkpoint (config.json, model.safetensors) "
		"to DIR.\n"
		"  -v VOCAB  vocabulary size, 2 to 4096 (default 16)\n"
		"  -t TYPE   dtype of bigram.logits (default f32)\n", prog);
}

static float table_value(int vocab, int row, int col)
{
	int d = ((col - row - 1) % vocab + vocab) % vocab;
	return d == 0 ? 4.0f : -0.25f * (float)d;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

/* Round to nearest even; these values are finite. */
static uint16_t to_bf16(float f)
{
	uint32_t u = f32_bits(f);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Round to nearest even; tiny values flush to zero, huge ones to infinity. */
static uint16_t to_f16(float f)
{
	uint32_t u = f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	int exp = (int)((u >> 23) & 0xffu) - 127 + 15;
	uint32_t mant = u & 0x7fffffu;
	if (exp <= 0)
		return sign;
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00u);
	uint32_t h = ((uint32_t)exp << 10) | (mant >> 13);
	uint32_t rest = mant & 0x1fffu;
	if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
		h++; /* may carry into the exponent, which is still right */
	return (uint16_t)(sign | h);
}

static int put_le(FILE *f, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		if (putc((int)((v >> (8 * i)) & 0xffu), f) == EOF)
			return -1;
	return 0;
}

static int write_config(const char *path, int vocab)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "{\n"
		"  \"architectures\": [\"BigramForCausalLM\"],\n"
		"  \"model_type\": \"bigram\",\n"
		"  \"vocab_size\": %d,\n"
		"  \"max_position_embeddings\": 64,\n"
		"  \"bos_token_id\": 0,\n"
		"  \"eos_token_id\": %d\n"
		"}\n", vocab, vocab - 1);
	int bad = ferror(f);
	if (fclose(f) != 0)
		bad = 1;
	return bad ? -1 : 0;
}

static int write_safetensors(const char *path, int vocab, const char *dtype,
			     int size)
{
	char header[256];
	uint64_t nbytes = (uint64_t)vocab * (uint64_t)vocab * (uint64_t)size;
	int len = snprintf(header, sizeof header,
			   "{\"bigram.logits\":{\"dtype\":\"%s\",\"shape\":[%d,%d],"
			   "\"data_offsets\":[0,%llu]}}", dtype, vocab, vocab,
			   (unsigned long long)nbytes);
	if (len < 0 || (size_t)len + 8 > sizeof header)
		return -1;
	while (len % 8) /* the data area starts 8-byte aligned */
		header[len++] = ' ';

	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int bad = put_le(f, (uint64_t)len, 8) != 0 ||
		  fwrite(header, 1, (size_t)len, f) != (size_t)len;
	for (int r = 0; r < vocab && !bad; r++)
		for (int c = 0; c < vocab && !bad; c++) {
			float v = table_value(vocab, r, c);
			if (size == 4)
				bad = put_le(f, f32_bits(v), 4) != 0;
			else if (!strcmp(dtype, "BF16"))
				bad = put_le(f, to_bf16(v), 2) != 0;
			else
				bad = put_le(f, to_f16(v), 2) != 0;
		}
	if (fclose(f) != 0)
		bad = 1;
	return bad ? -1 : 0;
}

int main(int argc, char **argv)
{
	int vocab = 16;
	const char *dtype = "F32", *dir = NULL;
	int size = 4;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "-v") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 2 || v > 4096) {
				fprintf(stderr, "%s: -v %s: expected 2 to 4096\n",
					prog, argv[i]);
				return 1;
			}
			vocab = (int)v;
		} else if (!strcmp(a, "-t") && i + 1 < argc) {
			const char *t = argv[++i];
			if (!strcmp(t, "f32")) {
				dtype = "F32";
				size = 4;
			} else if (!strcmp(t, "f16")) {
				dtype = "F16";
				size = 2;
			} else if (!strcmp(t, "bf16")) {
				dtype = "BF16";
				size = 2;
			} else {
				fprintf(stderr, "%s: -t %s: expected f32, f16 or "
					"bf16\n", prog, t);
				return 1;
			}
		} else if (a[0] == '-' || dir) {
			usage(stderr);
			return 1;
		} else {
			dir = a;
		}
	}
	if (!dir) {
		usage(stderr);
		return 1;
	}

	if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "%s: %s: %s\n", prog, dir, strerror(errno));
		return 1;
	}
	size_t n = strlen(dir) + 32;
	char *path = malloc(n);
	if (!path) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	snprintf(path, n, "%s/config.json", dir);
	if (write_config(path, vocab) != 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		free(path);
		return 1;
	}
	snprintf(path, n, "%s/model.safetensors", dir);
	if (write_safetensors(path, vocab, dtype, size) != 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		free(path);
		return 1;
	}
	free(path);
	return 0;
}
