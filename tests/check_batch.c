/* SPDX-License-Identifier: MIT */
/* check_batch.c - several sequences of one model (session_seq_*, session_batch):
 * a sequence's logits are bit for bit those of the same tokens run alone,
 * whatever else is in the batch (prompts and decode tokens mixed, at another
 * thread count), for every first-party plugin; rewinds of one sequence while
 * others continue; sliding windows in a batch; a plugin built against ABI 1.1
 * serving several sequences over one mapping of the weights; and bad batches
 * refused with a clear error and no state changed. */
#include "compute/decoder.h"
#include "model/modeldir.h"
#include "plugin/registry.h"
#include "plugin/services.h"
#include "plugin/session.h"
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const models[] = {
	"fixtures/models/llama", "fixtures/models/llama-bf16", "models/stories260K",
	"fixtures/models/mistral-swa-sharded", "fixtures/models/phi2", "fixtures/models/phi3",
	"fixtures/models/qwen2-tied", "fixtures/models/qwen3-headdim",
};
#define N_MODELS (int)(sizeof models / sizeof *models)

static mh_registry *reg;
static char err[MH_ERRLEN];

static void setup(void)
{
	reg = tu_registry(1);
}

static void teardown(void)
{
	registry_free(reg);
	services_shutdown();
}

static mh_session *open_at(const char *rel, const char *plugin, int n_ctx)
{
	char *dir = tu_data_path(rel);
	mh_session *s = session_open(reg, dir, plugin, n_ctx, err);
	ck_assert_msg(s != NULL, "%s", err);
	free(dir);
	return s;
}

/* Token i of sequence q: any ids will do, as long as they differ. */
static int32_t tok(int q, int i, int vocab)
{
	return (int32_t)((q * 7919 + i * 104729 + 13) % vocab);
}

/* A sequence's script: a prompt of `prompt` tokens, then `decode` tokens one
 * at a time; logits are kept after the prompt and after every decode token. */
typedef struct {
	int prompt, decode, start; /* start: the batch step at which it joins */
} script;

#define STEPS_MAX 64

/* The script run alone in a fresh session: out[k] is the k-th logits row. */
static float *solo(const char *rel, const char *plugin, int q, const script *sc, int n_ctx)
{
	mh_session *s = open_at(rel, plugin, n_ctx);
	int vocab = s->info->vocab_size;
	float *out = malloc((size_t)(sc->decode + 1) * vocab * sizeof *out);
	int32_t *ids = malloc((size_t)sc->prompt * sizeof *ids);
	for (int i = 0; i < sc->prompt; i++)
		ids[i] = tok(q, i, vocab);
	ck_assert_msg(session_forward(s, ids, sc->prompt, out, MH_LOGITS_LAST, err) == 0, "%s", err);
	for (int k = 0; k < sc->decode; k++) {
		int32_t id = tok(q, sc->prompt + k, vocab);
		ck_assert_msg(session_forward(s, &id, 1, out + (size_t)(k + 1) * vocab, MH_LOGITS_LAST,
					      err) == 0, "%s", err);
	}
	free(ids);
	session_close(s);
	return out;
}

/* All scripts in one session, step by step: at each step a sequence that has
 * joined adds its whole prompt (the step it joins) or its next token. */
static float **batched(mh_session *s, const script *sc, int n_seq)
{
	int vocab = s->info->vocab_size, seq[8], done[8] = { 0 }, items_max = 0;
	float **out = calloc((size_t)n_seq, sizeof *out);
	for (int q = 0; q < n_seq; q++) {
		seq[q] = q == 0 ? 0 : session_seq_open(s, err);
		ck_assert_msg(seq[q] >= 0, "%s", err);
		out[q] = malloc((size_t)(sc[q].decode + 1) * vocab * sizeof **out);
		items_max += sc[q].prompt + 1;
	}
	mh_batch_item *it = malloc((size_t)items_max * sizeof *it);
	float *lg = malloc((size_t)n_seq * vocab * sizeof *lg);
	for (int step = 0; step < STEPS_MAX; step++) {
		int n = 0, who[8], nw = 0;
		for (int q = 0; q < n_seq; q++) {
			if (step < sc[q].start || done[q] > sc[q].decode)
				continue;
			int len = session_seq_len(s, seq[q]);
			int k = done[q] == 0 ? sc[q].prompt : 1;
			for (int i = 0; i < k; i++)
				it[n++] = (mh_batch_item){ seq[q], len + i, tok(q, len + i, vocab),
							   i == k - 1 };
			who[nw++] = q;
		}
		if (n == 0)
			break;
		ck_assert_msg(session_batch(s, it, n, lg, err) == 0, "%s", err);
		for (int w = 0; w < nw; w++) {
			int q = who[w];
			memcpy(out[q] + (size_t)done[q] * vocab, lg + (size_t)w * vocab,
			       vocab * sizeof *lg);
			done[q]++;
		}
	}
	free(it);
	free(lg);
	return out;
}

static void expect_same(const float *a, const float *b, int rows, int vocab, const char *what,
			int q)
{
	for (int r = 0; r < rows; r++)
		ck_assert_msg(memcmp(a + (size_t)r * vocab, b + (size_t)r * vocab,
				     vocab * sizeof *a) == 0,
			      "%s: sequence %d, logits row %d differ from the sequence run alone", what,
			      q, r);
}

/* The n scripts run together in batches on s: every sequence's logits the
 * same as alone[q], its run alone (freed here). */
static void batched_as_alone(mh_session *s, const script *sc, int n, float **alone, const char *rel)
{
	float **got = batched(s, sc, n);
	for (int q = 0; q < n; q++) {
		expect_same(got[q], alone[q], sc[q].decode + 1, s->info->vocab_size, rel, q);
		free(got[q]);
		free(alone[q]);
	}
	free(got);
}

/* Prompts of 1 to 40 tokens (the row kernels, and the GEMM past 8 rows
 * for F32 weights, past 32 for 16-bit ones), joining at different steps,
 * so that prompt pieces and decode tokens share batches, two GEMM pieces
 * share one (step 3: one pass over the weights for both) and a
 * 12-token prompt takes its own route beside 80 other rows; the solo runs
 * use two threads, the batches one or two. */
START_TEST(batch_is_bit_identical_to_solo)
{
	const char *rel = models[_i % N_MODELS];
	const script sc[6] = { { 5, 6, 0 }, { 20, 4, 0 }, { 1, 7, 2 },
			       { 33, 3, 3 }, { 40, 2, 3 }, { 12, 3, 3 } };
	float *alone[6];
	for (int q = 0; q < 6; q++)
		alone[q] = solo(rel, NULL, q, &sc[q], 64);
	services_init(_i < N_MODELS ? 2 : 1);
	mh_session *s = open_at(rel, NULL, 64);
	ck_assert_msg(s->batched, "%s: the plugin has no batch entry point", rel);
	batched_as_alone(s, sc, 6, alone, rel);
	session_close(s);
}
END_TEST

/* Sequence 1 rewinds and takes other tokens while sequence 0 goes on: both
 * match fresh runs of the tokens they end up holding. */
START_TEST(rewind_one_sequence_while_others_continue)
{
	mh_session *s = open_at("fixtures/models/llama", NULL, 64);
	int vocab = s->info->vocab_size;
	int b = session_seq_open(s, err);
	ck_assert_msg(b > 0, "%s", err);
	int32_t hist[2][40];
	int len[2] = { 0, 0 };
	float *lg = malloc(2 * (size_t)vocab * sizeof *lg), last[2][512];
	mh_batch_item it[2];
	for (int step = 0; step < 14; step++) {
		if (step == 8) { /* sequence b back to 3 positions, then other tokens */
			ck_assert_int_eq(session_seq_rewind(s, b, 3), 0);
			ck_assert_int_eq(session_seq_len(s, b), 3);
			len[1] = 3;
		}
		for (int q = 0; q < 2; q++) {
			hist[q][len[q]] = tok(q + (step >= 8 ? 5 : 0), len[q], vocab);
			it[q] = (mh_batch_item){ q ? b : 0, len[q], hist[q][len[q]], 1 };
			len[q]++;
		}
		ck_assert_msg(session_batch(s, it, 2, lg, err) == 0, "%s", err);
		memcpy(last[0], lg, vocab * sizeof *lg);
		memcpy(last[1], lg + vocab, vocab * sizeof *lg);
	}
	ck_assert_int_eq(session_seq_rewind(s, b, 12), -1); /* past its length */
	ck_assert_int_eq(session_seq_len(s, 0), 14);
	ck_assert_int_eq(session_seq_len(s, b), 9);
	for (int q = 0; q < 2; q++) {
		mh_session *a = open_at("fixtures/models/llama", NULL, 64);
		for (int i = 0; i < len[q]; i++)
			ck_assert_msg(session_forward(a, &hist[q][i], 1, lg, MH_LOGITS_LAST, err) == 0,
				      "%s", err);
		ck_assert_msg(memcmp(lg, last[q], vocab * sizeof *lg) == 0,
			      "sequence %d differs from a fresh run of its tokens", q);
		session_close(a);
	}
	free(lg);
	session_close(s);
}
END_TEST

/* Mistral's window of 8 over a ring of 8 + 255 slots: a 280-token prompt in
 * pieces beside a decoding sequence, past the ring's wrap, as alone. */
START_TEST(sliding_window_in_a_batch)
{
	const char *rel = "fixtures/models/mistral-swa-sharded";
	const script sc[3] = { { 280, 10, 0 }, { 2, 40, 0 }, { 150, 20, 5 } };
	float *alone[3];
	for (int q = 0; q < 3; q++)
		alone[q] = solo(rel, NULL, q, &sc[q], 400);
	mh_session *s = open_at(rel, NULL, 400);
	batched_as_alone(s, sc, 3, alone, rel);
	/* a rewind past what the ring still holds is refused, not answered
	 * from overwritten slots; one inside it works */
	float *lg = malloc((size_t)s->info->vocab_size * sizeof *lg);
	ck_assert_int_eq(session_seq_len(s, 0), 290);
	ck_assert_int_eq(session_seq_rewind(s, 0, 20), 0);
	ck_assert_int_eq(session_batch(s, (mh_batch_item[]){ { 0, 20, 1, 1 } }, 1, lg, err), -1);
	ck_assert_msg(strstr(err, "sequence 0 no longer holds position 13") != NULL, "%s", err);
	ck_assert_int_eq(session_seq_len(s, 0), 20);
	ck_assert_int_eq(session_seq_rewind(s, 0, 0), 0);
	ck_assert_msg(session_batch(s, (mh_batch_item[]){ { 0, 0, 1, 1 } }, 1, lg, err) == 0, "%s",
		      err);
	free(lg);
	session_close(s);
}
END_TEST

/* Mappings of the checkpoint in this process. */
static int mappings_of(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	char line[8192];
	int n = 0;
	while (fgets(line, sizeof line, f))
		n += strstr(line, name) != NULL;
	fclose(f);
	return n;
}

/* llama11 has no batch entry point: every sequence is a model of its own,
 * over the one mapping of the weights, and serves as the 1.2 llama does. */
START_TEST(abi_1_1_plugin_serves_several_sequences)
{
	const char *rel = "fixtures/models/llama";
	const script sc[3] = { { 4, 5, 0 }, { 12, 3, 0 }, { 1, 6, 1 } };
	float *alone[3];
	for (int q = 0; q < 3; q++)
		alone[q] = solo(rel, "llama", q, &sc[q], 64);
	mh_session *s = open_at(rel, "llama11", 64);
	ck_assert_int_eq(s->lib->desc->abi_minor, 1);
	ck_assert(!s->batched);
	int maps = mappings_of("model.safetensors");
	ck_assert_int_gt(maps, 0);
	float **got = batched(s, sc, 3);
	ck_assert_int_eq(mappings_of("model.safetensors"), maps); /* no second copy */
	for (int q = 0; q < 3; q++) {
		ck_assert(s->seq[q].model != NULL);
		expect_same(got[q], alone[q], sc[q].decode + 1, s->info->vocab_size, "llama11", q);
		free(got[q]);
		free(alone[q]);
	}
	free(got);
	session_seq_close(s, 2);
	ck_assert_int_eq(session_seq_len(s, 2), -1);
	ck_assert_int_eq(session_seq_open(s, err), 2); /* the freed id again */
	session_close(s);
}
END_TEST

static void expect_refused(mh_session *s, const mh_batch_item *it, int n, const char *what)
{
	float *lg = malloc((size_t)(n > 0 ? n : 1) * s->info->vocab_size * sizeof *lg);
	int len0 = session_seq_len(s, 0), len1 = session_seq_len(s, 1);
	ck_assert_int_eq(session_batch(s, it, n, lg, err), -1);
	ck_assert_msg(strstr(err, what) != NULL, "error '%s' lacks '%s'", err, what);
	ck_assert_msg(strchr(err, '\n') == NULL, "error '%s' is not one line", err);
	ck_assert_int_eq(session_seq_len(s, 0), len0);
	ck_assert_int_eq(session_seq_len(s, 1), len1);
	free(lg);
}

START_TEST(bad_batches_are_refused)
{
	mh_session *s = open_at("fixtures/models/llama", _i ? "llama11" : NULL, 16);
	ck_assert_int_eq(session_seq_open(s, err), 1);
	int vocab = s->info->vocab_size;
	float *lg = malloc(2 * (size_t)vocab * sizeof *lg);
	mh_batch_item ok[2] = { { 0, 0, 3, 1 }, { 1, 0, 4, 1 } };
	ck_assert_msg(session_batch(s, ok, 2, lg, err) == 0, "%s", err);

	expect_refused(s, ok, 0, "an empty batch");
	expect_refused(s, (mh_batch_item[]){ { 7, 0, 1, 1 } }, 1, "sequence 7 is not open");
	expect_refused(s, (mh_batch_item[]){ { -1, 0, 1, 1 } }, 1, "sequence -1 is not open");
	expect_refused(s, (mh_batch_item[]){ { 0, 5, 1, 1 } }, 1, "next position is 1, not 5");
	expect_refused(s, (mh_batch_item[]){ { 0, 1, 1, 0 }, { 1, 1, 2, 0 }, { 0, 2, 3, 1 } }, 3,
		       "sequence 0's items are not consecutive");
	expect_refused(s, (mh_batch_item[]){ { 1, 1, vocab, 1 } }, 1, "token id 512 is outside");
	mh_batch_item full[16];
	for (int i = 0; i < 16; i++)
		full[i] = (mh_batch_item){ 0, 1 + i, 5, 0 };
	expect_refused(s, full, 16, "position 16 of sequence 0 is past the context length of 16");
	session_seq_close(s, 1);
	expect_refused(s, (mh_batch_item[]){ { 1, 1, 1, 1 } }, 1, "sequence 1 is not open");

	/* nothing changed: sequence 0 goes on as a fresh run of its tokens */
	ck_assert_msg(session_batch(s, (mh_batch_item[]){ { 0, 1, 9, 1 } }, 1, lg, err) == 0, "%s",
		      err);
	mh_session *a = open_at("fixtures/models/llama", _i ? "llama11" : NULL, 16);
	ck_assert(session_forward(a, (int32_t[]){ 3, 9 }, 2, lg + vocab, MH_LOGITS_LAST, err) == 0);
	ck_assert(memcmp(lg, lg + vocab, vocab * sizeof *lg) == 0);
	session_close(a);
	free(lg);
	session_close(s);
}
END_TEST

/* ---- the scaffold's hooks, with a model of the test's own ---------------------- */

struct mh_model {
	mh_dir *dir;
	mh_decoder *d;
	int fail_layer;         /* >= 0: that layer reports failure */
	int calls;
};

/* x[r][0] += 1000 * pos[r]: a learned position table, as GPT-2's */
static int add_positions(mh_model *m, float *x, const int32_t *pos, int n)
{
	for (int r = 0; r < n; r++)
		x[(size_t)r * 4] += 1000.0f * (float)pos[r];
	m->calls++;
	return 0;
}

static int test_layer(mh_model *m, int l, int n)
{
	(void)n;
	if (l == m->fail_layer) {
		modeldir_error(m->dir, NULL, "layer %d failed on purpose", l);
		return -1;
	}
	return 0;
}

/* logits[r][j] = x[r][0] + j */
static void test_head(mh_model *m, float *logits, const float *x, int n)
{
	(void)m;
	for (int r = 0; r < n; r++)
		for (int j = 0; j < 8; j++)
			logits[r * 8 + j] = x[(size_t)r * 4] + (float)j;
}

START_TEST(scaffold_positions_hook_limit_and_layer_failure)
{
	char *path = tu_data_path("fixtures/models/llama");
	mh_dir *dir = modeldir_open(path, err);
	ck_assert_msg(dir != NULL, "%s", err);
	mh_decoder_config hp = { .struct_size = sizeof hp, .vocab = 8, .dim = 4, .n_layers = 2,
				 .n_heads = 1, .n_kv_heads = 1, .head_dim = 4, .ffn_dim = 4,
				 .max_pos = 16, .n_ctx = 16 };
	mh_decoder *d = decoder_new(dir, &hp, 0);
	ck_assert_ptr_nonnull(d);
	float table[8 * 4];
	for (int i = 0; i < 32; i++)
		table[i] = (float)i;
	mh_tensor embed = { .name = "embed", .dtype = MH_F32, .ndim = 2, .shape = { 8, 4 },
			    .nelem = 32, .data = table, .nbytes = sizeof table };
	mh_model m = { dir, d, -1, 0 };
	mh_decoder_step st = { .struct_size = sizeof st, .model = &m, .embed = &embed,
			       .head = test_head, .layer_rows = test_layer,
			       .positions = add_positions, .max_positions = 3 };
	int q = decoder_seq_new(d, dir);
	ck_assert_int_eq(q, 1);
	float lg[5 * 8];
	mh_batch_item it[5] = { { 0, 0, 1, 1 }, { 0, 1, 2, 0 }, { 0, 2, 3, 1 }, { q, 0, 5, 1 },
				{ q, 1, 6, 1 } };
	ck_assert_msg(decoder_batch(d, dir, &st, it, 5, lg) == 0, "%s", dir->err);
	/* the wanted rows in item order: embedding row id's first value + 1000 pos */
	const float want[4] = { 4, 12 + 2000, 20, 24 + 1000 };
	for (int k = 0; k < 4; k++)
		ck_assert_msg(lg[k * 8 + 3] == want[k] + 3, "row %d: %g", k, lg[k * 8 + 3]);
	ck_assert_int_eq(m.calls, 1); /* one chunk */

	dir->err[0] = 0;
	it[0] = (mh_batch_item){ q, 3, 1, 1 }; /* past the 3 learned positions */
	ck_assert_int_eq(decoder_batch(d, dir, &st, it, 1, lg), -1);
	ck_assert_msg(strstr(dir->err, "position 3 is past the model's 3 learned positions"), "%s",
		      dir->err);
	dir->err[0] = 0;
	m.fail_layer = 1;
	it[0] = (mh_batch_item){ q, 2, 1, 1 };
	ck_assert_int_eq(decoder_batch(d, dir, &st, it, 1, lg), -1);
	ck_assert_msg(strstr(dir->err, "layer 1 failed on purpose"), "%s", dir->err);
	dir->err[0] = 0;
	ck_assert_int_eq(decoder_batch(d, dir, &st, it, 0, lg), -1);
	ck_assert_msg(strstr(dir->err, "an empty batch"), "%s", dir->err);
	decoder_seq_free(d, q);
	dir->err[0] = 0;
	ck_assert_int_eq(decoder_batch(d, dir, &st, it, 1, lg), -1);
	ck_assert_msg(strstr(dir->err, "sequence 1 is not open"), "%s", dir->err);
	decoder_free(d);
	modeldir_close(dir);
	free(path);
}
END_TEST

/* GPT-2's key names through decoder_config_keys: the same checks, messages
 * naming the plugin's keys; n_inner null means 4 * n_embd. */
START_TEST(decoder_config_with_other_key_names)
{
	const mh_services *svc = services_init(2);
	char *tmp = tu_tmpdir(), to[4200];
	char *w = tu_data_path("fixtures/models/llama/model.safetensors");
	snprintf(to, sizeof to, "%s/model.safetensors", tmp);
	tu_copy(w, to);
	tu_write(tmp, "config.json", "{\"architectures\": [\"GPT2LMHeadModel\"], \"n_embd\": 64, "
		 "\"n_layer\": 2, \"n_head\": 4, \"n_positions\": 32, \"n_inner\": null, "
		 "\"vocab_size\": 512, \"activation_function\": \"gelu_new\"}");
	mh_dir *dir = modeldir_open(tmp, err);
	ck_assert_msg(dir != NULL, "%s", err);
	const mh_decoder_keys gpt2 = { .struct_size = sizeof gpt2, .dim = "n_embd",
				       .n_layers = "n_layer", .n_heads = "n_head",
				       .max_pos = "n_positions", .ffn_dim = "n_inner",
				       .hidden_act = "activation_function", .ffn_mult = 4 };
	mh_decoder_config hp = { .struct_size = sizeof hp };
	ck_assert_msg(svc->decoder_config_keys(dir, 0, &gpt2, &hp) == 0, "%s", dir->err);
	ck_assert_int_eq(hp.dim, 64);
	ck_assert_int_eq(hp.n_layers, 2);
	ck_assert_int_eq(hp.n_heads, 4);
	ck_assert_int_eq(hp.n_kv_heads, 4);
	ck_assert_int_eq(hp.head_dim, 16);
	ck_assert_int_eq(hp.ffn_dim, 256);
	ck_assert_int_eq(hp.max_pos, 32);
	ck_assert_int_eq(hp.n_ctx, 32);
	ck_assert_str_eq(hp.hidden_act, "gelu_new");
	/* the standard names are not there: the Llama-style call fails naming one */
	mh_decoder_config std = { .struct_size = sizeof std };
	ck_assert_int_eq(svc->decoder_config(dir, 0, &std), -1);
	ck_assert_msg(strstr(dir->err, "'hidden_size' is missing"), "%s", dir->err);
	modeldir_close(dir);
	tu_write(tmp, "config.json", "{\"n_embd\": 60, \"n_layer\": 2, \"n_head\": 8, "
		 "\"n_positions\": 32, \"vocab_size\": 512}");
	dir = modeldir_open(tmp, err);
	ck_assert_msg(dir != NULL, "%s", err);
	ck_assert_int_eq(svc->decoder_config_keys(dir, 0, &gpt2, &hp), -1);
	ck_assert_msg(strstr(dir->err, "n_embd 60 is not a multiple of n_head 8"), "%s", dir->err);
	modeldir_close(dir);
	tu_rmtree(tmp);
	free(tmp);
	free(w);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("batch");
	TCase *tc = tcase_create("batch");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, batch_is_bit_identical_to_solo, 0, 2 * N_MODELS);
	tcase_add_test(tc, rewind_one_sequence_while_others_continue);
	tcase_add_test(tc, sliding_window_in_a_batch);
	tcase_add_test(tc, abi_1_1_plugin_serves_several_sequences);
	tcase_add_loop_test(tc, bad_batches_are_refused, 0, 2);
	tcase_add_test(tc, scaffold_positions_hook_limit_and_layer_failure);
	tcase_add_test(tc, decoder_config_with_other_key_names);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
