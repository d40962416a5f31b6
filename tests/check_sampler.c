/* SPDX-License-Identifier: MIT */
/* check_sampler.c - the sampler: greedy, repetition penalty, top-k, top-p,
 * min-p, seeding and the distribution it draws from. */
#include "text/sampler.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parameters with every filter off, so a test switches on only what it tests. */
static mh_sampler_params plain(float temperature, uint64_t seed)
{
	mh_sampler_params p = {
		.temperature = temperature, .top_k = 0, .top_p = 1.0f,
		.min_p = 0.0f, .repeat_penalty = 1.0f, .repeat_last_n = 0,
		.seed = seed,
	};
	return p;
}

/* Logits whose softmax (at temperature 1) is exactly probs. */
static void logits_from_probs(float *logits, const double *probs, int n)
{
	for (int i = 0; i < n; i++)
		logits[i] = probs[i] > 0 ? (float)log(probs[i]) : -INFINITY;
}

/* Draw `draws` tokens from a fresh copy of base each time; count them. */
static void histogram(mh_sampler *s, const float *base, int vocab, int draws,
		      long *count)
{
	float *l = malloc((size_t)vocab * sizeof *l);
	ck_assert_ptr_nonnull(l);
	memset(count, 0, (size_t)vocab * sizeof *count);
	for (int d = 0; d < draws; d++) {
		memcpy(l, base, (size_t)vocab * sizeof *l);
		int32_t t = sampler_sample(s, l, NULL, 0);
		ck_assert_int_ge(t, 0);
		ck_assert_int_lt(t, vocab);
		count[t]++;
	}
	free(l);
}

/* A small deterministic generator for test data (not the sampler's). */
static uint64_t lcg_state;
static float rand_logit(void)
{
	lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((lcg_state >> 40) & 0xffffff) / (float)0x1000000 * 20.0f - 10.0f;
}

/* ---- greedy ------------------------------------------------------------------ */

START_TEST(greedy_argmax)
{
	mh_sampler_params p = plain(0.0f, 1);
	mh_sampler *s = sampler_new(&p, 6);
	ck_assert_ptr_nonnull(s);
	float a[6] = { 0.5f, -2.0f, 3.25f, 3.0f, -INFINITY, 1.0f };
	ck_assert_int_eq(sampler_sample(s, a, NULL, 0), 2);
	float b[6] = { -5.0f, -4.0f, -3.0f, -2.0f, -1.0f, -1.5f };
	ck_assert_int_eq(sampler_sample(s, b, NULL, 0), 4);
	/* ties go to the lowest id */
	float c[6] = { 1.0f, 7.0f, 2.0f, 7.0f, 7.0f, 0.0f };
	ck_assert_int_eq(sampler_sample(s, c, NULL, 0), 1);
	/* NaN never wins */
	float d[6] = { NAN, 1.0f, NAN, 2.0f, NAN, -3.0f };
	ck_assert_int_eq(sampler_sample(s, d, NULL, 0), 3);
	/* negative temperature is greedy too */
	sampler_free(s);
	p.temperature = -1.0f;
	s = sampler_new(&p, 6);
	float e[6] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.1f };
	ck_assert_int_eq(sampler_sample(s, e, NULL, 0), 5);
	sampler_free(s);
}
END_TEST

START_TEST(greedy_last_element)
{
	/* the argmax at the very end and at the very start of a big vocabulary */
	int v = 151936;
	float *l = calloc((size_t)v, sizeof *l);
	ck_assert_ptr_nonnull(l);
	mh_sampler_params p = plain(0.0f, 1);
	mh_sampler *s = sampler_new(&p, v);
	ck_assert_ptr_nonnull(s);
	l[v - 1] = 1.0f;
	ck_assert_int_eq(sampler_sample(s, l, NULL, 0), v - 1);
	l[v - 1] = 0.0f;
	ck_assert_int_eq(sampler_sample(s, l, NULL, 0), 0);
	sampler_free(s);
	free(l);
}
END_TEST

/* ---- repetition penalty ---------------------------------------------------------- */

START_TEST(penalty_positive)
{
	mh_sampler_params p = plain(0.0f, 1);
	p.repeat_penalty = 1.25f;
	mh_sampler *s = sampler_new(&p, 4);
	ck_assert_ptr_nonnull(s);
	/* 2.0 / 1.25 = 1.6 < 1.9: the repeated token loses */
	float l[4] = { 2.0f, 1.9f, 0.0f, -1.0f };
	int32_t hist[] = { 0, 0, 0 };
	ck_assert_int_eq(sampler_sample(s, l, hist, 3), 1);
	/* applied once per distinct token, not once per occurrence */
	ck_assert_float_eq_tol(l[0], 1.6f, 1e-6f);
	ck_assert_float_eq(l[1], 1.9f);
	ck_assert_float_eq(l[3], -1.0f);
	/* without history nothing changes */
	float m[4] = { 2.0f, 1.9f, 0.0f, -1.0f };
	ck_assert_int_eq(sampler_sample(s, m, NULL, 0), 0);
	ck_assert_float_eq(m[0], 2.0f);
	sampler_free(s);
}
END_TEST

START_TEST(penalty_negative)
{
	mh_sampler_params p = plain(0.0f, 1);
	p.repeat_penalty = 1.5f;
	mh_sampler *s = sampler_new(&p, 4);
	ck_assert_ptr_nonnull(s);
	/* -1.0 * 1.5 = -1.5 < -1.2: a negative logit is multiplied (pushed
	 * down), not divided (which would pull it up to -0.67) */
	float l[4] = { -1.0f, -1.2f, -3.0f, -4.0f };
	int32_t hist[] = { 0, 3 };
	ck_assert_int_eq(sampler_sample(s, l, hist, 2), 1);
	ck_assert_float_eq_tol(l[0], -1.5f, 1e-6f);
	ck_assert_float_eq_tol(l[3], -6.0f, 1e-6f);
	/* a penalty < 1 encourages repetition: -1.2 * 0.5 = -0.6 > -1.0 */
	sampler_free(s);
	p.repeat_penalty = 0.5f;
	s = sampler_new(&p, 4);
	float m[4] = { -1.0f, -1.2f, -3.0f, -4.0f };
	int32_t h1[] = { 1 };
	ck_assert_int_eq(sampler_sample(s, m, h1, 1), 1);
	sampler_free(s);
}
END_TEST

START_TEST(penalty_last_n)
{
	mh_sampler_params p = plain(0.0f, 1);
	p.repeat_penalty = 2.0f;
	p.repeat_last_n = 2;
	mh_sampler *s = sampler_new(&p, 5);
	ck_assert_ptr_nonnull(s);
	/* only the last two history ids (3, 4) are penalised */
	float l[5] = { 4.0f, 4.0f, 4.0f, 4.0f, 4.0f };
	int32_t hist[] = { 0, 1, 3, 4 };
	sampler_sample(s, l, hist, 4);
	ck_assert_float_eq(l[0], 4.0f);
	ck_assert_float_eq(l[1], 4.0f);
	ck_assert_float_eq(l[2], 4.0f);
	ck_assert_float_eq(l[3], 2.0f);
	ck_assert_float_eq(l[4], 2.0f);
	/* out-of-range history ids are ignored */
	float m[5] = { 1.0f, 1.0f, 1.0f, 1.0f, 1.0f };
	int32_t bad[] = { -1, 99 };
	sampler_sample(s, m, bad, 2);
	for (int i = 0; i < 5; i++)
		ck_assert_float_eq(m[i], 1.0f);
	/* many calls: every call starts with fresh marks */
	for (int k = 0; k < 1000; k++) {
		float n[5] = { 4.0f, 4.0f, 4.0f, 4.0f, 4.0f };
		int32_t h[] = { k % 5 };
		sampler_sample(s, n, h, 1);
		ck_assert_float_eq(n[k % 5], 2.0f);
	}
	sampler_free(s);
}
END_TEST

START_TEST(penalty_before_sampling)
{
	/* the penalty also applies when sampling, before temperature */
	mh_sampler_params p = plain(1.0f, 5);
	p.top_k = 1;
	p.repeat_penalty = 4.0f;
	mh_sampler *s = sampler_new(&p, 3);
	ck_assert_ptr_nonnull(s);
	int32_t hist[] = { 0 };
	for (int i = 0; i < 100; i++) {
		float l[3] = { 3.0f, 1.0f, 0.5f }; /* 3/4 = 0.75 < 1.0 */
		ck_assert_int_eq(sampler_sample(s, l, hist, 1), 1);
	}
	sampler_free(s);
}
END_TEST

/* ---- top-k ------------------------------------------------------------------------ */

START_TEST(top_k_1_is_greedy)
{
	enum { V = 1000 };
	static float base[V], l[V];
	const float temps[] = { 0.05f, 0.8f, 1.0f, 1.7f, 50.0f };
	lcg_state = 42;
	for (size_t t = 0; t < sizeof temps / sizeof *temps; t++) {
		mh_sampler_params p = plain(temps[t], 1000 + t);
		p.top_k = 1;
		mh_sampler *s = sampler_new(&p, V);
		ck_assert_ptr_nonnull(s);
		for (int round = 0; round < 50; round++) {
			for (int i = 0; i < V; i++)
				base[i] = rand_logit();
			if (round % 5 == 0) /* a tie for the maximum */
				base[(round * 13 + 500) % V] = base[(round * 7) % V] = 11.0f;
			int32_t best = 0;
			for (int i = 1; i < V; i++)
				if (base[i] > base[best])
					best = i;
			memcpy(l, base, sizeof l);
			ck_assert_int_eq(sampler_sample(s, l, NULL, 0), best);
		}
		sampler_free(s);
	}
}
END_TEST

START_TEST(top_k_distribution)
{
	/* top-k 3 at temperature 1: only the 3 best, renormalised */
	enum { V = 6, N = 20000 };
	const double probs[V] = { 0.05, 0.3, 0.1, 0.4, 0.15, 0.0 };
	float base[V];
	long count[V];
	logits_from_probs(base, probs, V);
	mh_sampler_params p = plain(1.0f, 7);
	p.top_k = 3;
	mh_sampler *s = sampler_new(&p, V);
	ck_assert_ptr_nonnull(s);
	histogram(s, base, V, N, count);
	ck_assert_int_eq(count[0], 0);
	ck_assert_int_eq(count[2], 0);
	ck_assert_int_eq(count[5], 0);
	const double kept = 0.3 + 0.4 + 0.15;
	ck_assert_double_eq_tol((double)count[1] / N, 0.3 / kept, 0.015);
	ck_assert_double_eq_tol((double)count[3] / N, 0.4 / kept, 0.015);
	ck_assert_double_eq_tol((double)count[4] / N, 0.15 / kept, 0.015);
	sampler_free(s);
}
END_TEST

/* ---- top-p and min-p --------------------------------------------------------------- */

/* Sample N times from probs with p; assert exactly the ids in `allowed`
 * (a bit mask) occur. */
static void expect_support(mh_sampler_params p, const double *probs, int v,
			   unsigned allowed)
{
	float base[16];
	long count[16];
	ck_assert_int_le(v, 16);
	logits_from_probs(base, probs, v);
	mh_sampler *s = sampler_new(&p, v);
	ck_assert_ptr_nonnull(s);
	histogram(s, base, v, 5000, count);
	for (int i = 0; i < v; i++) {
		if (allowed & (1u << i))
			ck_assert_msg(count[i] > 0, "token %d never drawn", i);
		else
			ck_assert_msg(count[i] == 0, "token %d drawn %ld times",
				      i, count[i]);
	}
	/* the candidate list agrees */
	float l[16];
	const int32_t *ids;
	const float *pr;
	memcpy(l, base, (size_t)v * sizeof *l);
	size_t n = sampler_candidates(s, l, NULL, 0, &ids, &pr);
	unsigned got = 0;
	float total = 0;
	for (size_t i = 0; i < n; i++) {
		got |= 1u << ids[i];
		total += pr[i];
	}
	ck_assert_uint_eq(got, allowed);
	ck_assert_float_eq_tol(total, 1.0f, 1e-5f);
	sampler_free(s);
}

static const double P4[4] = { 0.5, 0.3, 0.15, 0.05 };

START_TEST(top_p_excludes)
{
	mh_sampler_params p = plain(1.0f, 11);
	/* masses before each token, best first: 0, 0.5, 0.8, 0.95 */
	p.top_p = 0.75f;
	expect_support(p, P4, 4, 0x3);
	p.top_p = 0.85f;
	expect_support(p, P4, 4, 0x7);
	p.top_p = 0.4f; /* the best token alone already crosses */
	expect_support(p, P4, 4, 0x1);
	p.top_p = 1.0f;
	expect_support(p, P4, 4, 0xf);
	/* the order of the ids does not matter */
	const double shuffled[5] = { 0.05, 0.15, 0.0, 0.3, 0.5 };
	p.top_p = 0.75f;
	expect_support(p, shuffled, 5, 0x18);
}
END_TEST

START_TEST(ties_exact_boundaries)
{
	/* eight equal logits: ties rank by id, so top-k 3 keeps 0, 1, 2 */
	const double flat[8] = { 0.125, 0.125, 0.125, 0.125,
				 0.125, 0.125, 0.125, 0.125 };
	mh_sampler_params p = plain(1.0f, 14);
	p.top_k = 3;
	expect_support(p, flat, 8, 0x07);
	/* top-p 0.5 is reached exactly after four tokens (HF drops tokens
	 * whose ascending cumulative mass is <= 1 - top_p): 0..3 stay */
	p.top_k = 0;
	p.top_p = 0.5f;
	expect_support(p, flat, 8, 0x0f);
	p.top_p = 0.25f;
	expect_support(p, flat, 8, 0x03);
	/* min-p 1 keeps every token as good as the best */
	p.top_p = 1.0f;
	p.min_p = 1.0f;
	expect_support(p, flat, 8, 0xff);
}
END_TEST

START_TEST(top_p_after_top_k)
{
	/* top-p sees the top-k survivors renormalised: 0.5/0.8 = 0.625 >= 0.6
	 * leaves token 0 alone; without top-k, 0.5 < 0.6 keeps token 1 too */
	mh_sampler_params p = plain(1.0f, 12);
	p.top_p = 0.6f;
	expect_support(p, P4, 4, 0x3);
	p.top_k = 2;
	expect_support(p, P4, 4, 0x1);
}
END_TEST

START_TEST(min_p_excludes)
{
	mh_sampler_params p = plain(1.0f, 13);
	p.min_p = 0.2f; /* threshold 0.1: 0.05 goes */
	expect_support(p, P4, 4, 0x7);
	p.min_p = 0.5f; /* threshold 0.25: 0.15 goes */
	expect_support(p, P4, 4, 0x3);
	p.min_p = 1.0f; /* only the best */
	expect_support(p, P4, 4, 0x1);
	/* after temperature: at T=2 the probabilities go as sqrt(p), ratios
	 * to the best 1, 0.77, 0.55, 0.32, so min-p 0.5 keeps three */
	p.min_p = 0.5f;
	p.temperature = 2.0f;
	expect_support(p, P4, 4, 0x7);
	/* combined with top-p (0.75 keeps {0, 1}): the stricter one wins */
	p.temperature = 1.0f;
	p.min_p = 0.2f;
	p.top_p = 0.75f;
	expect_support(p, P4, 4, 0x3);
}
END_TEST

/* The filters, written the obvious way: full sort, double precision. */
typedef struct { float v; int32_t id; } ref_cand;
static int ref_cmp(const void *a, const void *b)
{
	const ref_cand *x = a, *y = b;
	if (x->v != y->v)
		return x->v > y->v ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static size_t reference(const float *logits, int v, mh_sampler_params p,
			int32_t *ids, double *probs)
{
	ref_cand *c = malloc((size_t)v * sizeof *c);
	ck_assert_ptr_nonnull(c);
	for (int i = 0; i < v; i++)
		c[i] = (ref_cand){ logits[i], i };
	qsort(c, (size_t)v, sizeof *c, ref_cmp);
	size_t n = p.top_k > 0 && p.top_k < v ? (size_t)p.top_k : (size_t)v;
	double z = 0;
	for (size_t i = 0; i < n; i++) {
		probs[i] = exp(((double)c[i].v - c[0].v) / p.temperature);
		z += probs[i];
	}
	for (size_t i = 0; i < n; i++)
		probs[i] /= z;
	if (p.top_p < 1) {
		double cum = 0;
		size_t keep = n;
		for (size_t i = 0; i < n; i++) {
			if (cum >= p.top_p) {
				keep = i;
				break;
			}
			cum += probs[i];
		}
		n = keep;
	}
	size_t k = 0;
	double total = 0;
	for (size_t i = 0; i < n; i++)
		if (probs[i] >= p.min_p * probs[0]) {
			ids[k] = c[i].id;
			probs[k] = probs[i];
			total += probs[k++];
		}
	for (size_t i = 0; i < k; i++)
		probs[i] /= total;
	free(c);
	return k;
}

static int id_cmp(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

START_TEST(large_vocab_matches_reference)
{
	enum { V = 151936 };
	struct { float t; int k; float top_p, min_p; } cases[] = {
		{ 1.0f, 0, 0.9f, 0.0f },      /* top-p alone over a big flat tail */
		{ 1.5f, 0, 0.5f, 0.0f },      /* thousands kept: many chunks */
		{ 0.7f, 40, 0.95f, 0.05f },   /* the defaults */
		{ 1.0f, 1000, 0.3f, 0.0f },
		{ 1.0f, 0, 1.0f, 0.01f },     /* min-p alone */
		{ 0.3f, 0, 0.99f, 0.0f },     /* peaked */
		{ 2.0f, 5000, 1.0f, 0.0f },   /* top-k alone, big k */
	};
	float *base = malloc(V * sizeof *base), *l = malloc(V * sizeof *l);
	int32_t *rid = malloc(V * sizeof *rid), *sid = malloc(V * sizeof *sid);
	double *rp = malloc(V * sizeof *rp);
	ck_assert(base && l && rid && sid && rp);
	lcg_state = 7;
	for (int i = 0; i < V; i++)
		base[i] = rand_logit();
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		mh_sampler_params p = plain(cases[c].t, 3);
		p.top_k = cases[c].k;
		p.top_p = cases[c].top_p;
		p.min_p = cases[c].min_p;
		size_t rn = reference(base, V, p, rid, rp);

		mh_sampler *s = sampler_new(&p, V);
		ck_assert_ptr_nonnull(s);
		memcpy(l, base, V * sizeof *l);
		const int32_t *ids;
		const float *pr;
		size_t n = sampler_candidates(s, l, NULL, 0, &ids, &pr);
		ck_assert_msg(n == rn, "case %zu: %zu candidates, expected %zu",
			      c, n, rn);
		/* same probabilities for the same ids */
		float *byid = calloc(V, sizeof *byid);
		ck_assert_ptr_nonnull(byid);
		for (size_t i = 0; i < n; i++) {
			sid[i] = ids[i];
			byid[ids[i]] = pr[i];
		}
		for (size_t i = 0; i < rn; i++)
			ck_assert_msg(fabs(byid[rid[i]] - rp[i]) <= 1e-5 + 1e-4 * rp[i],
				      "case %zu: id %d prob %g, expected %g", c,
				      rid[i], byid[rid[i]], rp[i]);
		qsort(sid, n, sizeof *sid, id_cmp);
		qsort(rid, rn, sizeof *rid, id_cmp);
		ck_assert_int_eq(memcmp(sid, rid, n * sizeof *sid), 0);

		/* and draws stay inside the set */
		for (int d = 0; d < 50; d++) {
			memcpy(l, base, V * sizeof *l);
			int32_t t = sampler_sample(s, l, NULL, 0);
			ck_assert(bsearch(&t, rid, rn, sizeof *rid, id_cmp) != NULL);
		}
		free(byid);
		sampler_free(s);
	}
	free(base);
	free(l);
	free(rid);
	free(sid);
	free(rp);
}
END_TEST

/* ---- seeding and the distribution --------------------------------------------------- */

static void sequence(uint64_t seed, int32_t *out, int n)
{
	enum { V = 50 };
	float base[V], l[V];
	for (int i = 0; i < V; i++)
		base[i] = (float)(i % 7) * 0.3f;
	mh_sampler_params p;
	sampler_params_default(&p);
	p.seed = seed;
	p.top_k = 0;
	p.top_p = 1.0f;
	p.min_p = 0.0f;
	p.temperature = 1.0f;
	mh_sampler *s = sampler_new(&p, V);
	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < n; i++) {
		memcpy(l, base, sizeof l);
		out[i] = sampler_sample(s, l, NULL, 0);
	}
	sampler_free(s);
}

START_TEST(same_seed_same_tokens)
{
	int32_t a[200], b[200], c[200];
	sequence(42, a, 200);
	sequence(42, b, 200);
	sequence(43, c, 200);
	ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
	ck_assert_int_ne(memcmp(a, c, sizeof a), 0);
	int same = 0;
	for (int i = 0; i < 200; i++)
		same += a[i] == c[i];
	ck_assert_int_lt(same, 40); /* about 200 / 50 * 2 by chance */
	/* the sequence is not constant either */
	int distinct = 0;
	for (int i = 1; i < 200; i++)
		distinct += a[i] != a[0];
	ck_assert_int_gt(distinct, 100);

	/* sampler_seed() restarts the sequence */
	float base[50], l[50];
	for (int i = 0; i < 50; i++)
		base[i] = (float)(i % 7) * 0.3f;
	mh_sampler_params p = plain(1.0f, 99);
	mh_sampler *s = sampler_new(&p, 50);
	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < 10; i++) {
		memcpy(l, base, sizeof l);
		sampler_sample(s, l, NULL, 0);
	}
	sampler_seed(s, 42);
	for (int i = 0; i < 200; i++) {
		memcpy(l, base, sizeof l);
		ck_assert_int_eq(sampler_sample(s, l, NULL, 0), a[i]);
	}
	sampler_free(s);
}
END_TEST

static void check_frequencies(const float *base, int v, float temperature,
			      uint64_t seed)
{
	enum { N = 20000 };
	long count[16];
	double prob[16], z = 0, mx = -INFINITY;
	for (int i = 0; i < v; i++)
		if (base[i] > mx)
			mx = base[i];
	for (int i = 0; i < v; i++)
		z += prob[i] = exp((base[i] - mx) / temperature);
	mh_sampler_params p = plain(temperature, seed);
	mh_sampler *s = sampler_new(&p, v);
	ck_assert_ptr_nonnull(s);
	histogram(s, base, v, N, count);
	double chi2 = 0;
	for (int i = 0; i < v; i++) {
		prob[i] /= z;
		double f = (double)count[i] / N;
		double sigma = sqrt(prob[i] * (1 - prob[i]) / N);
		ck_assert_msg(fabs(f - prob[i]) <= 4.5 * sigma + 1e-9,
			      "T=%g token %d: frequency %.4f, softmax %.4f",
			      temperature, i, f, prob[i]);
		if (prob[i] > 0)
			chi2 += (count[i] - N * prob[i]) * (count[i] - N * prob[i]) /
				(N * prob[i]);
	}
	/* chi-square with v-1 <= 7 degrees of freedom; 0.1% critical value 24.3 */
	ck_assert_msg(chi2 < 24.3, "T=%g: chi-square %.2f", temperature, chi2);
	sampler_free(s);
}

START_TEST(frequencies_match_softmax)
{
	const float a[6] = { 1.0f, 2.0f, 0.5f, 3.0f, -1.0f, 0.0f };
	check_frequencies(a, 6, 1.0f, 1);
	check_frequencies(a, 6, 0.7f, 2);
	check_frequencies(a, 6, 2.5f, 3);
	const float b[8] = { 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f };
	check_frequencies(b, 8, 1.0f, 4);
}
END_TEST

START_TEST(impossible_tokens)
{
	mh_sampler_params p = plain(1.0f, 21);
	mh_sampler *s = sampler_new(&p, 5);
	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < 200; i++) {
		float l[5] = { -INFINITY, NAN, -INFINITY, 0.0f, -INFINITY };
		ck_assert_int_eq(sampler_sample(s, l, NULL, 0), 3);
	}
	sampler_free(s);
	/* a temperature so small that 1/T overflows: the argmax, no NaN */
	p = plain(1e-45f, 22);
	s = sampler_new(&p, 5);
	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < 50; i++) {
		float l[5] = { 1.0f, 2.0f, 2.5f, 2.4999f, -INFINITY };
		ck_assert_int_eq(sampler_sample(s, l, NULL, 0), 2);
	}
	/* nothing possible at all: id 0, no crash */
	float m[5] = { -INFINITY, NAN, -INFINITY, -INFINITY, -INFINITY };
	ck_assert_int_eq(sampler_sample(s, m, NULL, 0), 0);
	sampler_free(s);
}
END_TEST

START_TEST(candidates_greedy)
{
	mh_sampler_params p = plain(0.0f, 1);
	p.top_k = 3;
	mh_sampler *s = sampler_new(&p, 4);
	ck_assert_ptr_nonnull(s);
	float l[4] = { 0.0f, 5.0f, 1.0f, 2.0f };
	const int32_t *ids;
	const float *pr;
	ck_assert_uint_eq(sampler_candidates(s, l, NULL, 0, &ids, &pr), 1);
	ck_assert_int_eq(ids[0], 1);
	ck_assert_float_eq(pr[0], 1.0f);
	sampler_free(s);
}
END_TEST

/* ---- parameters ------------------------------------------------------------------------ */

START_TEST(params_default_and_check)
{
	mh_sampler_params p, q;
	sampler_params_default(&p);
	ck_assert_float_eq(p.temperature, 0.8f);
	ck_assert_int_eq(p.top_k, 40);
	ck_assert_float_eq(p.top_p, 0.95f);
	ck_assert_float_eq(p.min_p, 0.05f);
	ck_assert_float_eq(p.repeat_penalty, 1.0f);
	ck_assert_int_eq(p.repeat_last_n, 64);
	ck_assert_ptr_null(sampler_params_check(&p));

#define REJECT(field, value, word)                                            \
	do {                                                                  \
		q = p;                                                        \
		q.field = value;                                              \
		const char *msg = sampler_params_check(&q);                   \
		ck_assert_msg(msg != NULL, #field " = " #value " accepted"); \
		ck_assert_msg(strstr(msg, word) != NULL, "%s", msg);          \
	} while (0)
#define ACCEPT(field, value)                                                  \
	do {                                                                  \
		q = p;                                                        \
		q.field = value;                                              \
		ck_assert_msg(sampler_params_check(&q) == NULL,               \
			      #field " = " #value " rejected");               \
	} while (0)

	REJECT(temperature, -0.5f, "--temp");
	REJECT(temperature, NAN, "--temp");
	REJECT(temperature, INFINITY, "--temp");
	ACCEPT(temperature, 0.0f);
	ACCEPT(temperature, 100.0f);
	REJECT(top_k, -1, "--top-k");
	ACCEPT(top_k, 0);
	ACCEPT(top_k, 1);
	REJECT(top_p, 0.0f, "--top-p");
	REJECT(top_p, -0.1f, "--top-p");
	REJECT(top_p, 1.01f, "--top-p");
	REJECT(top_p, NAN, "--top-p");
	ACCEPT(top_p, 1.0f);
	ACCEPT(top_p, 0.01f);
	REJECT(min_p, -0.01f, "--min-p");
	REJECT(min_p, 1.5f, "--min-p");
	REJECT(min_p, NAN, "--min-p");
	ACCEPT(min_p, 0.0f);
	ACCEPT(min_p, 1.0f);
	REJECT(repeat_penalty, 0.0f, "--repeat-penalty");
	REJECT(repeat_penalty, -1.0f, "--repeat-penalty");
	REJECT(repeat_penalty, NAN, "--repeat-penalty");
	REJECT(repeat_penalty, INFINITY, "--repeat-penalty");
	ACCEPT(repeat_penalty, 1.3f);
	ACCEPT(repeat_penalty, 0.9f);
	REJECT(repeat_last_n, -1, "--repeat-last-n");
	ACCEPT(repeat_last_n, 0);
#undef REJECT
#undef ACCEPT

	/* two defaults a moment apart get different seeds */
	sampler_params_default(&q);
	ck_assert(p.seed != q.seed);
}
END_TEST

START_TEST(new_rejects_empty_vocab)
{
	mh_sampler_params p = plain(1.0f, 1);
	ck_assert_ptr_null(sampler_new(&p, 0));
	ck_assert_ptr_null(sampler_new(&p, -5));
	sampler_free(NULL);
}
END_TEST

static Suite *sampler_suite(void)
{
	Suite *s = suite_create("sampler");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, greedy_argmax);
	tcase_add_test(t, greedy_last_element);
	tcase_add_test(t, penalty_positive);
	tcase_add_test(t, penalty_negative);
	tcase_add_test(t, penalty_last_n);
	tcase_add_test(t, penalty_before_sampling);
	tcase_add_test(t, top_k_1_is_greedy);
	tcase_add_test(t, top_k_distribution);
	tcase_add_test(t, top_p_excludes);
	tcase_add_test(t, ties_exact_boundaries);
	tcase_add_test(t, top_p_after_top_k);
	tcase_add_test(t, min_p_excludes);
	tcase_add_test(t, large_vocab_matches_reference);
	tcase_add_test(t, same_seed_same_tokens);
	tcase_add_test(t, frequencies_match_softmax);
	tcase_add_test(t, impossible_tokens);
	tcase_add_test(t, candidates_greedy);
	tcase_add_test(t, params_default_and_check);
	tcase_add_test(t, new_rejects_empty_vocab);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return tu_run(sampler_suite());
}
