/* SPDX-License-Identifier: MIT */
/* check_safetensors.c - the checkpoint reader: safetensors validation
 * (hostile and truncated files), sharded directories, config.json access
 * through the service table (single keys, and the decoder hyper-parameters). */
#include "model/modeldir.h"
#include "model/safetensors.h"
#include "plugin/services.h"
#include "compute/threadpool.h"
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *tmp;
static char err[MH_ERRLEN];

static void setup(void)
{
	tmp = tu_tmpdir();
	err[0] = 0;
}

static void teardown(void)
{
	tu_rmtree(tmp);
	free(tmp);
}

/* Write NAME with header JSON (length field = hlen_override if >= 0) and
 * `data_len` bytes of data 0,1,2,... */
static char *write_st(const char *name, const char *json, long long hlen_override, size_t data_len)
{
	char *p = malloc(4200);
	snprintf(p, 4200, "%s/%s", tmp, name);
	FILE *f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	unsigned long long hl = hlen_override >= 0 ? (unsigned long long)hlen_override : strlen(json);
	for (int i = 0; i < 8; i++)
		fputc((int)((hl >> (8 * i)) & 0xff), f);
	fputs(json, f);
	for (size_t i = 0; i < data_len; i++)
		fputc((int)(i & 0xff), f);
	fclose(f);
	return p;
}

/* Expect st_open to fail with a message containing `what` and the path. */
static void expect_bad(const char *json, long long hlen, size_t data_len, const char *what)
{
	char *p = write_st("bad.safetensors", json, hlen, data_len);
	st_file f;
	ck_assert_int_eq(st_open(&f, p, err), -1);
	ck_assert_msg(strstr(err, what) != NULL, "error '%s' lacks '%s'", err, what);
	ck_assert_msg(strncmp(err, p, strlen(p)) == 0, "error '%s' does not name the file", err);
	free(p);
}

START_TEST(valid_file)
{
	char *p = write_st("ok.safetensors",
			   "{\"__metadata__\":{\"format\":\"pt\"},"
			   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
			   "\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}",
			   -1, 16);
	st_file f;
	ck_assert_int_eq(st_open(&f, p, err), 0);
	ck_assert_int_eq(f.n, 2);
	const mh_tensor *a = st_find(&f, "a"), *b = st_find(&f, "b");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_null(st_find(&f, "c"));
	ck_assert_int_eq(a->dtype, MH_BF16);
	ck_assert_int_eq(a->ndim, 2);
	ck_assert_int_eq(a->nelem, 4);
	ck_assert_uint_eq(b->nbytes, 8);
	ck_assert_uint_eq(((const unsigned char *)b->data)[0], 8); /* data byte 8 */
	st_close(&f);
	free(p);
}
END_TEST

START_TEST(misaligned_data_is_copied)
{
	/* header of odd length: data starts misaligned; tensor at offset 1 */
	char *p = write_st("mis.safetensors",
			   "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}", -1, 9);
	st_file f;
	ck_assert_int_eq(st_open(&f, p, err), 0);
	const mh_tensor *x = st_find(&f, "x");
	ck_assert_uint_eq((uintptr_t)x->data % 4, 0);
	ck_assert_uint_eq(((const unsigned char *)x->data)[0], 1);
	ck_assert_uint_eq(((const unsigned char *)x->data)[7], 8);
	st_close(&f);
	free(p);
}
END_TEST

START_TEST(hostile_files)
{
	const char *t1 = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
	expect_bad(t1, -1, 4, "ends past the end of the file");
	expect_bad(t1, 1LL << 40, 8, "larger than");
	expect_bad(t1, 4000, 8, "runs past the end of the file");
	expect_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", -1, 8,
		   "not valid JSON");
	expect_bad("[1,2]", -1, 0, "not a JSON object");
	expect_bad("{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8,
		   "unknown dtype");
	expect_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8,
		   "does not match its shape");
	expect_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, 8,
		   "malformed shape");
	expect_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
		   "\"data_offsets\":[0,8]}}", -1, 8, "too large");
	expect_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", -1, 8,
		   "end before they begin");
	expect_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12, "overlap");
	expect_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", -1, 16, "twice");
	expect_bad("{\"x\":{\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "no dtype");
	expect_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", -1, 8,
		   "malformed data_offsets");
	/* a hostile name cannot break the one-line message */
	expect_bad("{\"evil\\nname\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8,
		   "tensor 'evil\\x0aname' has an unknown dtype");
	ck_assert_ptr_null(strchr(err, '\n'));
	/* shorter than the length field */
	char p[4200];
	snprintf(p, sizeof p, "%s/short.safetensors", tmp);
	FILE *f = fopen(p, "wb");
	fputs("abc", f);
	fclose(f);
	st_file sf;
	ck_assert_int_eq(st_open(&sf, p, err), -1);
	ck_assert_ptr_nonnull(strstr(err, "too short"));
	snprintf(p, sizeof p, "%s/missing.safetensors", tmp);
	ck_assert_int_eq(st_open(&sf, p, err), -1);
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
}
END_TEST

START_TEST(every_truncation_is_refused)
{
	/* a real checkpoint cut at many lengths: never a crash, always an error */
	char *src = tu_data_path("fixtures/models/llama/model.safetensors");
	size_t len;
	char *all = mh_read_file(src, &len, err);
	ck_assert_ptr_nonnull(all);
	char p[4200];
	snprintf(p, sizeof p, "%s/cut.safetensors", tmp);
	for (size_t cut = 0; cut < len; cut += cut < 4096 ? 97 : 65521) {
		FILE *f = fopen(p, "wb");
		fwrite(all, 1, cut, f);
		fclose(f);
		st_file sf;
		ck_assert_msg(st_open(&sf, p, err) == -1, "truncated at %zu accepted", cut);
	}
	free(all);
	free(src);
}
END_TEST

START_TEST(write_roundtrip)
{
	float v[6] = { 1, 2, 3, 4, 5, 6 };
	mh_tensor t = { .name = "w", .dtype = MH_F32, .ndim = 2, .shape = { 2, 3 }, .nelem = 6,
			.data = v, .nbytes = sizeof v };
	char p[4200];
	snprintf(p, sizeof p, "%s/rt.safetensors", tmp);
	ck_assert_int_eq(st_write(p, &t, 1, err), 0);
	st_file f;
	ck_assert_int_eq(st_open(&f, p, err), 0);
	const mh_tensor *w = st_find(&f, "w");
	ck_assert_int_eq(w->shape[1], 3);
	ck_assert_float_eq(((const float *)w->data)[5], 6.0f);
	st_close(&f);
	/* a failed write leaves nothing behind */
	snprintf(p, sizeof p, "%s/no/such/dir/x.safetensors", tmp);
	ck_assert_int_eq(st_write(p, &t, 1, err), -1);
	ck_assert_int_eq(mh_is_file(p), 0);
}
END_TEST

/* Quantized tensors (ABI 1.2): U8 [rows, row bytes] marked in
 * __metadata__, back as their block dtype; every way such a file can be
 * wrong is refused with a message naming the tensor. */
START_TEST(quantized_tensors)
{
	char *p = write_st("q.safetensors",
			   "{\"__metadata__\":{\"format\":\"pt\",\"modelhost.quant.w\":\"q8_0\","
			   "\"modelhost.quant.v\":\"Q4_0\"},"
			   "\"w\":{\"dtype\":\"U8\",\"shape\":[2,34],\"data_offsets\":[0,68]},"
			   "\"v\":{\"dtype\":\"U8\",\"shape\":[1,36],\"data_offsets\":[68,104]}}",
			   -1, 104);
	st_file f;
	ck_assert_msg(st_open(&f, p, err) == 0, "%s", err);
	const mh_tensor *w = st_find(&f, "w"), *v = st_find(&f, "v");
	ck_assert_int_eq(w->dtype, MH_Q8_0);
	ck_assert_int_eq(w->shape[0], 2);
	ck_assert_int_eq(w->shape[1], 32);
	ck_assert_int_eq(w->nelem, 64);
	ck_assert_uint_eq(w->nbytes, 68);
	ck_assert_int_eq(v->dtype, MH_Q4_0);
	ck_assert_int_eq(v->shape[1], 64);
	/* written back, the same bytes and dtypes */
	char q[4200];
	snprintf(q, sizeof q, "%s/q2.safetensors", tmp);
	mh_tensor both[2] = { *w, *v };
	ck_assert_int_eq(st_write(q, both, 2, err), 0);
	st_file g;
	ck_assert_msg(st_open(&g, q, err) == 0, "%s", err);
	ck_assert_int_eq(st_find(&g, "w")->dtype, MH_Q8_0);
	ck_assert_int_eq(st_find(&g, "v")->shape[1], 64);
	ck_assert_mem_eq(st_find(&g, "v")->data, v->data, 36);
	st_close(&g);
	st_close(&f);
	free(p);
	/* the dtype names are not safetensors dtypes */
	expect_bad("{\"w\":{\"dtype\":\"Q8_0\",\"shape\":[1,32],\"data_offsets\":[0,34]}}", -1, 34,
		   "unknown dtype");
	expect_bad("{\"__metadata__\":{\"modelhost.quant.w\":\"q8_0\"},"
		   "\"w\":{\"dtype\":\"U8\",\"shape\":[1,35],\"data_offsets\":[0,35]}}", -1, 35,
		   "not a multiple of 34");
	expect_bad("{\"__metadata__\":{\"modelhost.quant.w\":\"q4_0\"},"
		   "\"w\":{\"dtype\":\"U8\",\"shape\":[1,34],\"data_offsets\":[0,34]}}", -1, 34,
		   "not a multiple of 18");
	expect_bad("{\"__metadata__\":{\"modelhost.quant.w\":\"q5_k\"},"
		   "\"w\":{\"dtype\":\"U8\",\"shape\":[1,34],\"data_offsets\":[0,34]}}", -1, 34,
		   "unknown quantization format");
	expect_bad("{\"__metadata__\":{\"modelhost.quant.nope\":\"q8_0\"},"
		   "\"w\":{\"dtype\":\"U8\",\"shape\":[1,34],\"data_offsets\":[0,34]}}", -1, 34,
		   "'nope' is marked quantized in __metadata__ but is not in the file");
	expect_bad("{\"__metadata__\":{\"modelhost.quant.w\":\"q8_0\"},"
		   "\"w\":{\"dtype\":\"I16\",\"shape\":[1,17],\"data_offsets\":[0,34]}}", -1, 34,
		   "not stored as U8");
	/* data bytes are 0, 1, 2...: a block at 123 has scale 0x7c7b, an F16 NaN */
	expect_bad("{\"__metadata__\":{\"modelhost.quant.w\":\"q8_0\"},"
		   "\"w\":{\"dtype\":\"U8\",\"shape\":[1,34],\"data_offsets\":[123,157]}}", -1, 157,
		   "'w' has a block scale that is not a finite number");
	/* finite scales open eagerly; with a NaN one, deferred (as model
	 * directories open), the file opens and st_bad_scale finds the block:
	 * data at 90.. gives blocks at 90, 124 and 158 the scales 0x5b5a,
	 * 0x7d7c (NaN) and 0x9f9e */
	p = write_st("defer.safetensors", "{\"__metadata__\":{\"modelhost.quant.w\":\"q8_0\","
		     "\"modelhost.quant.v\":\"q4_0\"},"
		     "\"w\":{\"dtype\":\"U8\",\"shape\":[2,34],\"data_offsets\":[68,136]},"
		     "\"v\":{\"dtype\":\"U8\",\"shape\":[1,36],\"data_offsets\":[0,36]}}", -1, 136);
	ck_assert_int_eq(st_open(&f, p, err), 0);
	st_close(&f);
	free(p);
	p = write_st("defer.safetensors", "{\"__metadata__\":{\"modelhost.quant.w\":\"q8_0\"},"
		     "\"w\":{\"dtype\":\"U8\",\"shape\":[3,34],\"data_offsets\":[90,192]}}", -1, 192);
	ck_assert_int_eq(st_open(&f, p, err), -1);
	ck_assert_int_eq(st_open_flags(&f, p, ST_DEFER_SCALES, err), 0);
	w = st_find(&f, "w");
	ck_assert_int_eq(w->dtype, MH_Q8_0);
	ck_assert_uint_eq(st_bad_scale(w, 0, 34), (size_t)-1);
	ck_assert_uint_eq(st_bad_scale(w, 0, 102), 34);
	ck_assert_uint_eq(st_bad_scale(w, 68, 102), (size_t)-1);
	st_close(&f);
	free(p);
}
END_TEST

START_TEST(dtype_conversions)
{
	ck_assert_float_eq(mh_bf16_to_f32(0x3f80), 1.0f);
	ck_assert_float_eq(mh_f16_to_f32(0x3c00), 1.0f);
	ck_assert_float_eq(mh_f16_to_f32(0xc000), -2.0f);
	ck_assert_float_eq(mh_f16_to_f32(0x0001), 5.960464477539063e-08f);
	ck_assert_uint_eq(mh_f32_to_f16(1.0f), 0x3c00);
	ck_assert_uint_eq(mh_f32_to_f16(65504.0f), 0x7bff);
	ck_assert_uint_eq(mh_f32_to_f16(1e6f), 0x7c00);
	ck_assert_uint_eq(mh_f32_to_bf16(1.0f), 0x3f80);
	/* round to nearest even: 1 + 2^-8 is halfway between bf16 neighbours */
	ck_assert_uint_eq(mh_f32_to_bf16(1.00390625f), 0x3f80);
	ck_assert_uint_eq(mh_f32_to_bf16(1.01171875f), 0x3f82);
	for (uint32_t h = 0; h < 0x7c00; h += 7)
		ck_assert_uint_eq(mh_f32_to_f16(mh_f16_to_f32((uint16_t)h)), h);
}
END_TEST

START_TEST(sharded_directory)
{
	char *dir = tu_data_path("fixtures/models/mistral-swa-sharded");
	mh_dir *d = modeldir_open(dir, err);
	ck_assert_msg(d != NULL, "%s", err);
	ck_assert_int_eq(d->n_shards, 10);
	const mh_tensor *t = modeldir_tensor(d, "model.norm.weight");
	ck_assert_ptr_nonnull(t);
	ck_assert_str_eq(modeldir_file_of(d, t), "model-00010-of-00010.safetensors");
	ck_assert_str_eq(modeldir_architecture(d), "MistralForCausalLM");
	modeldir_close(d);
	free(dir);
}
END_TEST

/* A copy of the llama fixture with one file replaced. */
static void llama_copy(const char *with_name, const char *with_text)
{
	const char *files[] = { "config.json", "model.safetensors" };
	for (int i = 0; i < 2; i++) {
		char rel[256], to[4200];
		snprintf(rel, sizeof rel, "fixtures/models/llama/%s", files[i]);
		char *from = tu_data_path(rel);
		snprintf(to, sizeof to, "%s/%s", tmp, files[i]);
		tu_copy(from, to);
		free(from);
	}
	if (with_name)
		tu_write(tmp, with_name, with_text);
}

START_TEST(bad_directories)
{
	ck_assert_ptr_null(modeldir_open("/nonexistent/model", err));
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/model"));
	llama_copy("config.json", "{\"hidden_size\": 64,");
	ck_assert_ptr_null(modeldir_open(tmp, err));
	ck_assert_msg(strstr(err, "config.json: malformed JSON") != NULL, "%s", err);
	/* an index naming a tensor its shard lacks, and one escaping the dir */
	llama_copy("model.safetensors.index.json",
		   "{\"weight_map\": {\"model.norm.weight\": \"model.safetensors\","
		   " \"ghost.weight\": \"model.safetensors\"}}");
	ck_assert_ptr_null(modeldir_open(tmp, err));
	ck_assert_msg(strstr(err, "'ghost.weight'") && strstr(err, "missing"), "%s", err);
	llama_copy("model.safetensors.index.json",
		   "{\"weight_map\": {\"x\": \"../../etc/passwd\"}}");
	ck_assert_ptr_null(modeldir_open(tmp, err));
	ck_assert_msg(strstr(err, "invalid file name") != NULL, "%s", err);
}
END_TEST

START_TEST(config_through_services)
{
	const mh_services *svc = services_init(1);
	llama_copy("config.json",
		   "{\"a\": 3, \"f\": 0.5, \"s\": \"x\", \"b\": true, \"n\": null,"
		   " \"ids\": [2, 7], \"o\": {\"k\": 9}, \"arr\": [\"LlamaForCausalLM\"]}");
	mh_dir *d = modeldir_open(tmp, err);
	ck_assert_msg(d != NULL, "%s", err);
	int64_t i;
	double f;
	int b;
	const char *s;
	int32_t ids[4];
	ck_assert_int_eq(svc->config_int(d, "a", 0, &i), 1);
	ck_assert_int_eq(i, 3);
	ck_assert_int_eq(svc->config_int(d, "o.k", 0, &i), 1);
	ck_assert_int_eq(i, 9);
	ck_assert_int_eq(svc->config_int(d, "n", 5, &i), 0);
	ck_assert_int_eq(i, 5);
	ck_assert_int_eq(svc->config_int(d, "missing", 6, &i), 0);
	ck_assert_int_eq(i, 6);
	ck_assert_int_eq(svc->config_float(d, "f", 0, &f), 1);
	ck_assert_double_eq(f, 0.5);
	ck_assert_int_eq(svc->config_bool(d, "b", 0, &b), 1);
	ck_assert_int_eq(b, 1);
	ck_assert_int_eq(svc->config_string(d, "arr.0", NULL, &s), 1);
	ck_assert_str_eq(s, "LlamaForCausalLM");
	ck_assert_int_eq(svc->config_ids(d, "ids", ids, 4), 2);
	ck_assert_int_eq(ids[1], 7);
	ck_assert_int_eq(svc->config_ids(d, "a", ids, 4), 1);
	ck_assert_int_eq(ids[0], 3);
	/* wrong type: -1, and the first error is kept with file and key */
	ck_assert_int_eq(svc->config_int(d, "f", 0, &i), -1);
	ck_assert_int_eq(svc->config_bool(d, "a", 0, &b), -1);
	ck_assert_msg(strstr(d->err, "config.json: 'f' should be an integer") != NULL, "%s", d->err);
	/* weights: shape and presence checks name the tensor */
	d->err[0] = 0;
	ck_assert_ptr_null(svc->weight(d, "model.norm.weight", 1, 65, 0));
	ck_assert_msg(strstr(d->err, "model.safetensors: tensor 'model.norm.weight' has shape [64], "
				     "expected [65]") != NULL, "%s", d->err);
	d->err[0] = 0;
	ck_assert_ptr_null(svc->weight(d, "nope", 1, 1, 0));
	ck_assert_ptr_nonnull(strstr(d->err, "tensor 'nope' is missing"));
	ck_assert_ptr_null(svc->weight_opt(d, "nope", 1, 1, 0));
	const mh_tensor *w = svc->weight(d, "lm_head.weight", 2, 512, 64), *v;
	mh_tensor view;
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(svc->rows(w, 10, 5, &view), 0);
	ck_assert_int_eq(view.shape[0], 5);
	ck_assert_ptr_eq(view.data, (const float *)w->data + 10 * 64);
	ck_assert_int_eq(svc->rows(w, 510, 5, &view), -1);
	v = svc->weight(d, "model.norm.weight", 1, 64, 0);
	ck_assert_ptr_eq(svc->vec_f32(d, v), v->data); /* F32, aligned: in place */
	modeldir_close(d);
	services_shutdown();
}
END_TEST

/* svc->decoder_config on a config.json (a fresh dir each time: the first
 * error recorded wins).  The dir's error goes to e, hidden_act to act. */
static int decoder_config_of(const mh_services *svc, const char *json, int32_t n_ctx,
			     mh_decoder_config *hp, char *e, char *act)
{
	llama_copy("config.json", json);
	mh_dir *d = modeldir_open(tmp, err);
	ck_assert_msg(d != NULL, "%s", err);
	int rc = svc->decoder_config(d, n_ctx, hp);
	snprintf(e, MH_ERRLEN, "%s", d->err);
	snprintf(act, 32, "%s", rc == 0 ? hp->hidden_act : ""); /* owned by d */
	modeldir_close(d);
	return rc;
}

#define DECODER_DIMS "\"vocab_size\": 512, \"hidden_size\": 64, \"num_hidden_layers\": 2, " \
		     "\"intermediate_size\": 176"

START_TEST(decoder_config_through_services)
{
	const mh_services *svc = services_init(1);
	char e[MH_ERRLEN], act[32];
	mh_decoder_config hp = { .struct_size = sizeof hp, .max_pos = 2048 };
	/* everything given */
	ck_assert_int_eq(decoder_config_of(svc,
		"{" DECODER_DIMS ", \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
		" \"head_dim\": 32, \"max_position_embeddings\": 256, \"tie_word_embeddings\": true,"
		" \"bos_token_id\": 1, \"eos_token_id\": [2, 7], \"hidden_act\": \"gelu\"}",
		0, &hp, e, act), 0);
	ck_assert_int_eq(hp.struct_size, sizeof hp);
	ck_assert_int_eq(hp.vocab, 512);
	ck_assert_int_eq(hp.dim, 64);
	ck_assert_int_eq(hp.n_layers, 2);
	ck_assert_int_eq(hp.n_heads, 4);
	ck_assert_int_eq(hp.n_kv_heads, 2);
	ck_assert_int_eq(hp.head_dim, 32); /* not 64 / 4 */
	ck_assert_int_eq(hp.ffn_dim, 176);
	ck_assert_int_eq(hp.max_pos, 256);
	ck_assert_int_eq(hp.n_ctx, 256);
	ck_assert_int_eq(hp.tied, 1);
	ck_assert_int_eq(hp.bos, 1);
	ck_assert_int_eq(hp.n_eos, 2);
	ck_assert_int_eq(hp.eos[0], 2);
	ck_assert_int_eq(hp.eos[1], 7);
	ck_assert_str_eq(act, "gelu");
	/* defaults: kv heads = heads, head_dim = hidden / heads, the caller's
	 * max_pos and hidden_act, no bos/eos; n_ctx as asked, even past max_pos */
	hp = (mh_decoder_config){ .struct_size = sizeof hp, .max_pos = 2048 };
	ck_assert_int_eq(decoder_config_of(svc, "{" DECODER_DIMS ", \"num_attention_heads\": 8}",
					   4096, &hp, e, act), 0);
	ck_assert_int_eq(hp.n_kv_heads, 8);
	ck_assert_int_eq(hp.head_dim, 8);
	ck_assert_int_eq(hp.max_pos, 2048);
	ck_assert_int_eq(hp.n_ctx, 4096);
	ck_assert_int_eq(hp.tied, 0);
	ck_assert_int_eq(hp.bos, -1);
	ck_assert_int_eq(hp.n_eos, 0);
	ck_assert_str_eq(act, "silu");
	hp = (mh_decoder_config){ .struct_size = sizeof hp, .max_pos = 2048, .hidden_act = "gelu_new" };
	ck_assert_int_eq(decoder_config_of(svc, "{" DECODER_DIMS ", \"num_attention_heads\": 8}",
					   0, &hp, e, act), 0);
	ck_assert_int_eq(hp.n_ctx, 2048);
	ck_assert_str_eq(act, "gelu_new");
	/* invalid: each error names config.json and the key */
	const struct {
		const char *json;
		const char *error;
	} bad[] = {
		{ "{" DECODER_DIMS ", \"num_attention_heads\": 3}",
		  "config.json: hidden_size 64 is not a multiple of num_attention_heads 3 and "
		  "head_dim is not given" },
		{ "{" DECODER_DIMS ", \"num_attention_heads\": 4, \"num_key_value_heads\": 3}",
		  "config.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3" },
		{ "{" DECODER_DIMS ", \"num_attention_heads\": 4, \"head_dim\": 15}",
		  "config.json: head_dim 15 is not supported (even, at most 1024)" },
		{ "{" DECODER_DIMS ", \"num_attention_heads\": 0}",
		  "config.json: 'num_attention_heads' is 0, expected 1..1048576" },
		{ "{\"hidden_size\": 64}", "config.json: 'vocab_size' is missing" },
		{ "{" DECODER_DIMS ", \"num_attention_heads\": 4, \"eos_token_id\": \"</s>\"}",
		  "config.json: 'eos_token_id' should be a token id or a list of them" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		hp = (mh_decoder_config){ .struct_size = sizeof hp, .max_pos = 2048 };
		ck_assert_int_eq(decoder_config_of(svc, bad[i].json, 0, &hp, e, act), -1);
		ck_assert_msg(strstr(e, bad[i].error) != NULL, "error '%s' lacks '%s'", e, bad[i].error);
	}
	/* max_pos 0: max_position_embeddings is required */
	hp = (mh_decoder_config){ .struct_size = sizeof hp };
	ck_assert_int_eq(decoder_config_of(svc, "{" DECODER_DIMS ", \"num_attention_heads\": 4}", 0,
					   &hp, e, act), -1);
	ck_assert_msg(strstr(e, "config.json: 'max_position_embeddings' is missing") != NULL, "%s", e);

	/* the KV cache: zeroed, [layer][position][kv_dim] for k and for v */
	mh_kv_cache *kv = svc->kv_new(3, 8, 16);
	ck_assert_ptr_nonnull(kv);
	ck_assert_int_eq(kv->n_layers, 3);
	ck_assert_int_eq(kv->n_ctx, 8);
	ck_assert_int_eq(kv->kv_dim, 16);
	ck_assert_uint_eq(kv->bytes, 2 * 3 * 8 * 16 * sizeof(float));
	ck_assert_ptr_eq(mh_kv_k(kv, 0), kv->k);
	ck_assert_ptr_eq(mh_kv_k(kv, 2), kv->k + 2 * 8 * 16);
	ck_assert_ptr_eq(mh_kv_v(kv, 1), kv->v + 8 * 16);
	for (int i = 0; i < 3 * 8 * 16; i++)
		ck_assert(kv->k[i] == 0 && kv->v[i] == 0);
	svc->kv_free(kv);
	svc->kv_free(NULL);
	ck_assert_ptr_null(svc->kv_new(0, 8, 16));
	ck_assert_ptr_null(svc->kv_new(1 << 30, 1 << 30, 1 << 30));

	/* mh_model_info from the hyper-parameters */
	hp = (mh_decoder_config){ .vocab = 512, .n_ctx = 64, .max_pos = 256, .bos = 1, .n_eos = 2,
				  .eos = { 2, 7 } };
	mh_model_info info;
	mh_model_info_init(&info, &hp, 1234);
	ck_assert_int_eq(info.struct_size, sizeof info);
	ck_assert_int_eq(info.vocab_size, 512);
	ck_assert_int_eq(info.n_ctx, 64);
	ck_assert_int_eq(info.max_context, 256);
	ck_assert_int_eq(info.bos_id, 1);
	ck_assert_int_eq(info.n_eos, 2);
	ck_assert_int_eq(info.eos_ids[1], 7);
	ck_assert_uint_eq(info.kv_cache_bytes, 1234);
	services_shutdown();
}
END_TEST

/* A mapped file truncated in place: the next read of a vanished page
 * raises SIGBUS in whichever thread reads it (here a pool worker, as in a
 * forward pass).  st_open's handler says which file changed and exits 1;
 * without it the process died of SIGBUS.  Before that, st_changed()
 * reports it without a signal. */
static void touch_pages(void *ctx, int64_t begin, int64_t end, int thread)
{
	const volatile char *p = ctx;
	volatile char sum = 0;
	(void)thread;
	for (int64_t i = begin; i < end; i++)
		sum += p[i * 4096];
	(void)sum;
}

START_TEST(truncated_while_mapped)
{
	char *dir = tu_tmpdir(), path[4200];
	static float data[64 * 1024];
	mh_tensor t = { .name = "w", .dtype = MH_F32, .ndim = 1, .shape = { 64 * 1024 },
			.nelem = 64 * 1024, .data = data, .nbytes = sizeof data };
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	ck_assert_int_eq(st_write(path, &t, 1, err), 0);
	st_file f;
	ck_assert_int_eq(st_open(&f, path, err), 0);
	ck_assert_int_eq(st_changed(&f, err), 0);
	ck_assert_int_eq(truncate(path, 4096), 0);
	ck_assert_int_eq(st_changed(&f, err), 1);
	ck_assert_msg(strstr(err, "model.safetensors: changed while in use"), "%s", err);
	unlink(path); /* the mapping stays */
	tu_rmtree(dir);
	free(dir);
	mh_pool *pool = pool_new(2);
	int64_t pages = (int64_t)(f.size / 4096);
	/* every page but the first from the workers: the second thread's part
	 * is all past the end */
	pool_run(pool, pages, touch_pages, f.map);
	ck_abort_msg("read past the end of a truncated mapping without SIGBUS");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("safetensors");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_file);
	tcase_add_test(tc, misaligned_data_is_copied);
	tcase_add_test(tc, hostile_files);
	tcase_add_test(tc, every_truncation_is_refused);
	tcase_add_test(tc, write_roundtrip);
	tcase_add_test(tc, quantized_tensors);
	tcase_add_test(tc, dtype_conversions);
	tcase_add_test(tc, sharded_directory);
	tcase_add_test(tc, bad_directories);
	tcase_add_test(tc, config_through_services);
	tcase_add_test(tc, decoder_config_through_services);
	suite_add_tcase(s, tc);
	TCase *bus = tcase_create("sigbus");
	tcase_add_exit_test(bus, truncated_while_mapped, 1);
	suite_add_tcase(s, bus);
	return tu_run(s);
}
