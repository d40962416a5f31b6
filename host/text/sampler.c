/* SPDX-License-Identifier: MIT */
/* sampler.c - see sampler.h.
 *
 * Candidates live in one preallocated array of (value, id) pairs.  Top-k
 * keeps a heap of the k best while scanning the logits once; top-p is a
 * quickselect on probability mass, so neither sorts the vocabulary (top-p
 * sorts only the last 64 or fewer undecided candidates).  Ties between equal
 * values always go to the lower id, which makes every step deterministic. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, getpid */
#include "text/sampler.h"
#include "compute/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
	float v;    /* a logit, later an unnormalised probability */
	int32_t id;
} cand;

struct mh_sampler {
	mh_sampler_params p;
	int32_t vocab;
	uint64_t rng[4];
	cand *c;          /* [vocab] */
	int32_t *ids;     /* [vocab], sampler_candidates() output */
	float *probs;     /* [vocab], sampler_candidates() output */
	uint32_t *stamp;  /* [vocab], "already penalised in this call" marks */
	uint32_t gen;
};

/* ---- random numbers: splitmix64 to seed xoshiro256** --------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform(mh_sampler *s)
{
	return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

void sampler_seed(mh_sampler *s, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		s->rng[i] = splitmix64(&x);
	s->p.seed = seed;
}

/* ---- parameters -------------------------------------------------------------- */

void sampler_params_default(mh_sampler_params *p)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t x = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	x ^= (uint64_t)getpid() << 32;
	p->temperature = 0.8f;
	p->top_k = 40;
	p->top_p = 0.95f;
	p->min_p = 0.05f;
	p->repeat_penalty = 1.0f;
	p->repeat_last_n = 64;
	p->seed = splitmix64(&x);
}

const char *sampler_params_check(const mh_sampler_params *p)
{
	if (!(p->temperature >= 0) || isinf(p->temperature))
		return "--temp must be a number >= 0 (0: greedy)";
	if (p->top_k < 0)
		return "--top-k must be >= 0 (0: off)";
	if (!(p->top_p > 0 && p->top_p <= 1))
		return "--top-p must be in (0, 1]";
	if (!(p->min_p >= 0 && p->min_p <= 1))
		return "--min-p must be in [0, 1]";
	if (!(p->repeat_penalty > 0) || isinf(p->repeat_penalty))
		return "--repeat-penalty must be a number > 0 (1: off)";
	if (p->repeat_last_n < 0)
		return "--repeat-last-n must be >= 0 (0: all)";
	return NULL;
}

/* ---- lifetime --------------------------------------------------------------- */

mh_sampler *sampler_new(const mh_sampler_params *p, int32_t vocab_size)
{
	if (vocab_size <= 0)
		return NULL;
	/* one block: the sampler, then its four arrays of vocab entries (all
	 * 4-byte aligned, after a struct of 8-byte alignment) */
	size_t n = (size_t)vocab_size;
	if (n > (SIZE_MAX - sizeof(mh_sampler)) / 16)
		return NULL;
	mh_sampler *s = calloc(1, sizeof *s + n * (sizeof(cand) + sizeof(int32_t) + sizeof(float) +
						  sizeof(uint32_t)));
	if (!s)
		return NULL;
	s->c = (cand *)(s + 1);
	s->ids = (int32_t *)(s->c + n);
	s->probs = (float *)(s->ids + n);
	s->stamp = (uint32_t *)(s->probs + n);
	s->p = *p;
	s->vocab = vocab_size;
	sampler_seed(s, p->seed);
	return s;
}

int sampler_refit(mh_sampler **s, int32_t vocab_size)
{
	if ((*s)->vocab == vocab_size)
		return 0;
	mh_sampler *n = sampler_new(&(*s)->p, vocab_size);
	if (!n)
		return -1;
	memcpy(n->rng, (*s)->rng, sizeof n->rng); /* the random sequence goes on */
	sampler_free(*s);
	*s = n;
	return 0;
}

int32_t sampler_vocab(const mh_sampler *s)
{
	return s ? s->vocab : 0;
}

void sampler_free(mh_sampler *s)
{
	free(s);
}

/* ---- the steps ------------------------------------------------------------------ */

static void repetition_penalty(mh_sampler *s, float *logits,
			       const int32_t *history, size_t n_history)
{
	float pen = s->p.repeat_penalty;
	if (pen == 1.0f || !(pen > 0) || !history || n_history == 0)
		return;
	size_t first = 0;
	size_t last_n = s->p.repeat_last_n > 0 ? (size_t)s->p.repeat_last_n : 0;
	if (last_n && n_history > last_n)
		first = n_history - last_n;
	if (++s->gen == 0) { /* wrapped: forget every old mark */
		memset(s->stamp, 0, (size_t)s->vocab * sizeof *s->stamp);
		s->gen = 1;
	}
	for (size_t i = first; i < n_history; i++) {
		int32_t id = history[i];
		if (id < 0 || id >= s->vocab || s->stamp[id] == s->gen)
			continue;
		s->stamp[id] = s->gen;
		float l = logits[id];
		logits[id] = l > 0 ? l / pen : l * pen;
	}
}


static inline float clean(float v)
{
	return v != v ? -INFINITY : v;
}

/* The total order candidates are ranked by: higher value, then lower id. */
static inline int better(cand a, cand b)
{
	return a.v > b.v || (a.v == b.v && a.id < b.id);
}

static inline void swap_cand(cand *a, cand *b)
{
	cand t = *a;
	*a = *b;
	*b = t;
}

/* h[0..n) is a heap with its worst element at the root. */
static void sift_down(cand *h, size_t n, size_t i)
{
	cand x = h[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && better(h[c], h[c + 1]))
			c++; /* the worse child */
		if (!better(x, h[c]))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = x;
}

static void heapify(cand *h, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(h, n, i);
}

/* Move the best m of a[0..len) to a[0..m), best first. */
static void select_sorted(cand *a, size_t len, size_t m)
{
	heapify(a, m);
	for (size_t j = m; j < len; j++)
		if (better(a[j], a[0])) {
			swap_cand(&a[0], &a[j]);
			sift_down(a, m, 0);
		}
	for (size_t end = m; end-- > 1;) {
		swap_cand(&a[0], &a[end]);
		sift_down(a, end, 0);
	}
}

/* Top-k straight from the logits: c[0..k) ends up holding the k best. */
static void top_k(cand *c, const float *logits, size_t vocab, size_t k)
{
	for (size_t i = 0; i < k; i++)
		c[i] = (cand){ clean(logits[i]), (int32_t)i };
	heapify(c, k);
	for (size_t i = k; i < vocab; i++) {
		float v = clean(logits[i]);
		/* a later id loses ties, so only a strictly higher value enters */
		if (v > c[0].v) {
			c[0] = (cand){ v, (int32_t)i };
			sift_down(c, k, 0);
		}
	}
}

/* Top-p over c[0..n) (unnormalised probabilities, total z): the count of
 * the best tokens to keep, which it moves to the front (in no particular
 * order): in best-first order a token is kept while the mass before it is
 * below target = top_p * z.  A quickselect on mass: each round partitions
 * the undecided range around a pivot and continues on the side that holds
 * the cut, so it costs O(n) on average, not a sort; only the last few
 * candidates are sorted.  Deep recursion (bad pivots) falls back to a heap
 * sort of what is left, which bounds it at O(n log n). */
static size_t top_p(cand *c, size_t n, double target)
{
	/* c[0..lo) are better than c[lo..), and their mass cum < target;
	 * c[lo..hi) are better than c[hi..); the cut is in (lo, hi] */
	size_t lo = 0, hi = n;
	double cum = 0;
	int budget = 64;
	while (hi - lo > 64 && budget-- > 0) {
		/* median of three as the pivot, moved to c[hi - 1] */
		size_t mid = lo + (hi - lo) / 2;
		if (better(c[mid], c[lo]))
			swap_cand(&c[mid], &c[lo]);
		if (better(c[hi - 1], c[lo]))
			swap_cand(&c[hi - 1], &c[lo]);
		if (better(c[mid], c[hi - 1]))
			swap_cand(&c[mid], &c[hi - 1]);
		cand pivot = c[hi - 1];
		size_t q = lo;
		double mass = 0;
		for (size_t i = lo; i < hi - 1; i++)
			if (better(c[i], pivot)) {
				mass += c[i].v;
				swap_cand(&c[i], &c[q++]);
			}
		swap_cand(&c[q], &c[hi - 1]); /* the pivot's place in the order */
		if (cum + mass >= target) {
			hi = q; /* the mass before the pivot already reaches it */
		} else {
			cum += mass + pivot.v;
			lo = q + 1;
			if (cum >= target)
				return lo;
		}
	}
	select_sorted(c + lo, hi - lo, hi - lo);
	for (size_t i = lo; i < hi; i++) {
		if (cum >= target)
			return i;
		cum += c[i].v;
	}
	return hi;
}

/* Steps 1-5 for temperature > 0.  Leaves c[0..n) holding unnormalised
 * probabilities (all > 0) and returns n; *sum gets their total. */
static size_t filter(mh_sampler *s, float *logits, double *sum)
{
	cand *c = s->c;
	size_t vocab = (size_t)s->vocab, n = vocab;
	const mh_sampler_params *p = &s->p;

	if (p->top_k > 0 && (size_t)p->top_k < vocab) {
		n = (size_t)p->top_k;
		top_k(c, logits, vocab, n);
	} else {
		for (size_t i = 0; i < vocab; i++)
			c[i] = (cand){ clean(logits[i]), (int32_t)i };
	}

	/* softmax numerators exp((v - max) / T) */
	float mx = -INFINITY;
	for (size_t i = 0; i < n; i++)
		if (c[i].v > mx)
			mx = c[i].v;
	if (mx == -INFINITY) { /* nothing is possible: fall back to id 0 */
		c[0] = (cand){ 1.0f, 0 };
		*sum = 1.0;
		return 1;
	}
	float inv_t = 1.0f / p->temperature;
	double z = 0;
	for (size_t i = 0; i < n; i++) {
		/* the best get exactly 1, also when inv_t overflowed to inf */
		float v = c[i].v;
		c[i].v = v == mx ? 1.0f
			: isinf(mx) ? 0.0f : expf((v - mx) * inv_t);
		z += c[i].v;
	}

	if (p->top_p < 1.0f)
		n = top_p(c, n, (double)p->top_p * z);

	/* min-p (the best token has weight exactly 1) and zero weights */
	float min_p = p->min_p > 0 ? (p->min_p < 1 ? p->min_p : 1) : 0;
	size_t k = 0;
	double total = 0;
	for (size_t i = 0; i < n; i++)
		if (c[i].v > 0 && c[i].v >= min_p) {
			total += c[i].v;
			c[k++] = c[i];
		}
	*sum = total;
	return k;
}

int sampler_is_greedy(const mh_sampler *s)
{
	return !(s->p.temperature > 0);
}

int32_t sampler_sample(mh_sampler *s, float *logits, const int32_t *history,
		       size_t n_history)
{
	repetition_penalty(s, logits, history, n_history);
	if (!(s->p.temperature > 0))
		return (int32_t)kern_argmax(logits, s->vocab);
	double sum;
	size_t n = filter(s, logits, &sum);
	double r = uniform(s) * sum, cum = 0;
	for (size_t i = 0; i < n; i++) {
		cum += s->c[i].v;
		if (r < cum)
			return s->c[i].id;
	}
	return s->c[n - 1].id; /* r rounded up to the total */
}

size_t sampler_candidates(mh_sampler *s, float *logits, const int32_t *history,
			  size_t n_history, const int32_t **ids,
			  const float **probs)
{
	repetition_penalty(s, logits, history, n_history);
	size_t n;
	if (!(s->p.temperature > 0)) {
		s->ids[0] = (int32_t)kern_argmax(logits, s->vocab);
		s->probs[0] = 1.0f;
		n = 1;
	} else {
		double sum;
		n = filter(s, logits, &sum);
		for (size_t i = 0; i < n; i++) {
			s->ids[i] = s->c[i].id;
			s->probs[i] = (float)(s->c[i].v / sum);
		}
	}
	*ids = s->ids;
	*probs = s->probs;
	return n;
}
