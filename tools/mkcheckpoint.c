/* SPDX-License-Identifier: MIT */
/* mkcheckpoint.c - write a random-weight Hugging Face checkpoint
 * (config.json + model.safetensors, no tokenizer) with the shape of a real
 * model, for benchmarking.  Standalone: libc only.  Tensors are generated
 * and written in small blocks, so memory use stays at a few MB whatever
 * the checkpoint size.
 *
 *   mkcheckpoint --shape tinyllama|qwen2.5-0.5b|tiny [--dtype f32|bf16|f16]
 *                [--seed N] [--data-offset N] OUT_DIR
 *
 * Tensor data starts 64-byte aligned, unless --data-offset N (a multiple
 * of 8 below 64) puts it at N mod 64, as Hugging Face's writers leave it
 * (they pad the header to 8 bytes only): the decode kernels' speed and
 * their head path depend on it (host/compute/kernels.c, peel()).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct shape {
	const char *name, *arch, *model_type;
	int hidden, inter, layers, heads, kv_heads, vocab, max_pos;
	int tied, qkv_bias;
	double rope_theta, eps;
	int bos, eos;
} shape;

static const shape shapes[] = {
	{ "tinyllama", "LlamaForCausalLM", "llama", 2048, 5632, 22, 32, 4, 32000, 2048, 0, 0,
	  10000.0, 1e-5, 1, 2 },
	{ "qwen2.5-0.5b", "Qwen2ForCausalLM", "qwen2", 896, 4864, 24, 14, 2, 151936, 32768, 1, 1,
	  1000000.0, 1e-6, 151643, 151643 },
	{ "tiny", "LlamaForCausalLM", "llama", 256, 688, 4, 8, 2, 1024, 1024, 0, 0, 10000.0, 1e-5,
	  1, 2 },
};

enum { DT_F32, DT_BF16, DT_F16 };
static const char *dt_names[] = { "F32", "BF16", "F16" };
static const char *dt_torch[] = { "float32", "bfloat16", "float16" };
static const int dt_size[] = { 4, 2, 2 };

typedef struct tdesc {
	char name[96];
	int64_t d0, d1; /* d1 == 0: 1-D */
	int kind;       /* 0 random, 1 ones (norm weights) */
	uint64_t offset, nbytes;
} tdesc;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static size_t data_offset; /* where tensor data starts, mod 64 */

static inline uint64_t rng_next(void)
{
	/* xorshift64* */
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint16_t to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7FFF + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

static uint16_t to_f16(float f)
{
	/* values are small and normal or zero: round to nearest even */
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000;
	int32_t exp = (int32_t)((u >> 23) & 0xFF) - 127 + 15;
	uint32_t man = u & 0x7FFFFF;
	if ((u & 0x7FFFFFFF) == 0)
		return (uint16_t)sign;
	if (exp <= 0) { /* subnormal half */
		if (exp < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		int shift = 14 - exp;
		uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
	if (exp >= 31)
		return (uint16_t)(sign | 0x7C00);
	uint32_t h = ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1FFF;
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

static int n_t;
static tdesc *ts;

static void add(const char *name, int64_t d0, int64_t d1, int kind, int dt)
{
	tdesc *t = &ts[n_t++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->d0 = d0;
	t->d1 = d1;
	t->kind = kind;
	t->nbytes = (uint64_t)d0 * (d1 ? d1 : 1) * dt_size[dt];
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const tdesc *)a)->name, ((const tdesc *)b)->name);
}

static int write_config(const char *dir, const shape *s, int dt)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/config.json", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f,
		"{\n"
		"  \"architectures\": [\"%s\"],\n"
		"  \"model_type\": \"%s\",\n"
		"  \"hidden_size\": %d,\n"
		"  \"intermediate_size\": %d,\n"
		"  \"num_hidden_layers\": %d,\n"
		"  \"num_attention_heads\": %d,\n"
		"  \"num_key_value_heads\": %d,\n"
		"  \"vocab_size\": %d,\n"
		"  \"max_position_embeddings\": %d,\n"
		"  \"rms_norm_eps\": %g,\n"
		"  \"rope_theta\": %.1f,\n"
		"  \"hidden_act\": \"silu\",\n"
		"  \"tie_word_embeddings\": %s,\n"
		"  \"attention_bias\": %s,\n%s"
		"  \"bos_token_id\": %d,\n"
		"  \"eos_token_id\": %d,\n"
		"  \"torch_dtype\": \"%s\"\n"
		"}\n",
		s->arch, s->model_type, s->hidden, s->inter, s->layers, s->heads, s->kv_heads,
		s->vocab, s->max_pos, s->eps, s->rope_theta, s->tied ? "true" : "false",
		s->qkv_bias && strcmp(s->model_type, "llama") == 0 ? "true" : "false",
		strcmp(s->model_type, "qwen2") == 0 ? "  \"use_sliding_window\": false,\n" : "", s->bos,
		s->eos, dt_torch[dt]);
	return fclose(f);
}

static int usage(void)
{
	fprintf(stderr, "Usage: mkcheckpoint --shape tinyllama|qwen2.5-0.5b|tiny "
			"[--dtype f32|bf16|f16] [--seed N] [--data-offset 0|8|...|56] OUT_DIR\n");
	return 2;
}

int main(int argc, char **argv)
{
	const shape *s = NULL;
	int dt = DT_F32;
	const char *out = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
			const char *v = argv[++i];
			for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
				if (!strcmp(v, shapes[k].name))
					s = &shapes[k];
			if (!s) {
				fprintf(stderr, "mkcheckpoint: unknown shape '%s'\n", v);
				return usage();
			}
		} else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
			const char *v = argv[++i];
			if (!strcmp(v, "f32"))
				dt = DT_F32;
			else if (!strcmp(v, "bf16"))
				dt = DT_BF16;
			else if (!strcmp(v, "f16"))
				dt = DT_F16;
			else {
				fprintf(stderr, "mkcheckpoint: unknown dtype '%s'\n", v);
				return usage();
			}
		} else if (!strcmp(argv[i], "--data-offset") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 0 || v > 56 || v % 8) {
				fprintf(stderr, "mkcheckpoint: --data-offset must be 0, 8, ..., 56\n");
				return usage();
			}
			data_offset = (size_t)v;
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			rng_state = strtoull(argv[++i], NULL, 0) * 0x9E3779B97F4A7C15ull + 1;
		} else if (argv[i][0] == '-') {
			return usage();
		} else if (!out) {
			out = argv[i];
		} else {
			return usage();
		}
	}
	if (!s || !out)
		return usage();
	if (mkdir(out, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "mkcheckpoint: %s: %s\n", out, strerror(errno));
		return 1;
	}

	int hd = s->hidden / s->heads, kvd = s->kv_heads * hd;
	ts = calloc((size_t)s->layers * 16 + 8, sizeof *ts);
	if (!ts)
		return 1;
	char nm[96];
	add("model.embed_tokens.weight", s->vocab, s->hidden, 0, dt);
	add("model.norm.weight", s->hidden, 0, 1, dt);
	if (!s->tied)
		add("lm_head.weight", s->vocab, s->hidden, 0, dt);
	for (int l = 0; l < s->layers; l++) {
#define L(suffix, d0, d1, kind)                                                \
	do {                                                                   \
		snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);      \
		add(nm, d0, d1, kind, dt);                                     \
	} while (0)
		L("input_layernorm.weight", s->hidden, 0, 1);
		L("post_attention_layernorm.weight", s->hidden, 0, 1);
		L("self_attn.q_proj.weight", s->hidden, s->hidden, 0);
		L("self_attn.k_proj.weight", kvd, s->hidden, 0);
		L("self_attn.v_proj.weight", kvd, s->hidden, 0);
		L("self_attn.o_proj.weight", s->hidden, s->hidden, 0);
		if (s->qkv_bias) {
			L("self_attn.q_proj.bias", s->hidden, 0, 0);
			L("self_attn.k_proj.bias", kvd, 0, 0);
			L("self_attn.v_proj.bias", kvd, 0, 0);
		}
		L("mlp.gate_proj.weight", s->inter, s->hidden, 0);
		L("mlp.up_proj.weight", s->inter, s->hidden, 0);
		L("mlp.down_proj.weight", s->hidden, s->inter, 0);
#undef L
	}
	qsort(ts, n_t, sizeof *ts, cmp_name);

	/* header */
	size_t hcap = (size_t)n_t * 200 + 256, hl = 0;
	char *h = malloc(hcap);
	if (!h)
		return 1;
	uint64_t off = 0;
	hl += snprintf(h + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (int i = 0; i < n_t; i++) {
		ts[i].offset = off;
		if (ts[i].d1)
			hl += snprintf(h + hl, hcap - hl,
				       ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],"
				       "\"data_offsets\":[%llu,%llu]}",
				       ts[i].name, dt_names[dt], (long long)ts[i].d0,
				       (long long)ts[i].d1, (unsigned long long)off,
				       (unsigned long long)(off + ts[i].nbytes));
		else
			hl += snprintf(h + hl, hcap - hl,
				       ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],"
				       "\"data_offsets\":[%llu,%llu]}",
				       ts[i].name, dt_names[dt], (long long)ts[i].d0,
				       (unsigned long long)off,
				       (unsigned long long)(off + ts[i].nbytes));
		off += ts[i].nbytes;
	}
	h[hl++] = '}';
	while ((hl + 8) % 64 != data_offset) /* where tensor data starts, mod 64 */
		h[hl++] = ' ';

	char path[4096], tmp[4200];
	snprintf(path, sizeof path, "%s/model.safetensors", out);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "wb");
	if (!f) {
		fprintf(stderr, "mkcheckpoint: %s: %s\n", tmp, strerror(errno));
		return 1;
	}
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	fwrite(len8, 1, 8, f);
	fwrite(h, 1, hl, f);
	free(h);

	enum { BLOCK = 1 << 18 };
	static float fb[BLOCK];
	static unsigned char ob[BLOCK * 4];
	const float scale = 0.02f / 2147483648.0f; /* uniform in [-0.02, 0.02) */
	for (int i = 0; i < n_t; i++) {
		uint64_t n = ts[i].nbytes / dt_size[dt];
		for (uint64_t done = 0; done < n;) {
			size_t k = n - done < BLOCK ? (size_t)(n - done) : BLOCK;
			for (size_t j = 0; j < k; j++)
				fb[j] = ts[i].kind == 1
						? 1.0f
						: (float)(int32_t)(uint32_t)(rng_next() >> 32) * scale;
			if (dt == DT_F32) {
				memcpy(ob, fb, k * 4);
			} else {
				uint16_t *o16 = (uint16_t *)ob;
				for (size_t j = 0; j < k; j++)
					o16[j] = dt == DT_BF16 ? to_bf16(fb[j]) : to_f16(fb[j]);
			}
			if (fwrite(ob, dt_size[dt], k, f) != k) {
				fprintf(stderr, "mkcheckpoint: %s: %s\n", tmp, strerror(errno));
				fclose(f);
				remove(tmp);
				return 1;
			}
			done += k;
		}
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "mkcheckpoint: %s: %s\n", path, strerror(errno));
		remove(tmp);
		return 1;
	}
	if (write_config(out, s, dt) != 0) {
		fprintf(stderr, "mkcheckpoint: %s/config.json: %s\n", out, strerror(errno));
		return 1;
	}
	uint64_t params = 0;
	for (int i = 0; i < n_t; i++)
		params += ts[i].nbytes / dt_size[dt];
	printf("%s: %s %s, %d tensors, %llu parameters, %.2f GB\n", out, s->name, dt_names[dt],
	       n_t, (unsigned long long)params, (off + hl + 8) / 1e9);
	free(ts);
	return 0;
}
