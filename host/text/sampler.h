/* SPDX-License-Identifier: MIT */
/* sampler.h - pick the next token from a row of logits.
 *
 * The steps and their order follow Hugging Face generate():
 *   1. repetition penalty (every distinct id of the last repeat_last_n
 *      history ids: logit > 0 ? logit / p : logit * p)
 *   2. temperature (temperature <= 0: greedy, the argmax after step 1,
 *      ties going to the lowest id; the remaining steps are skipped)
 *   3. top-k: keep the k highest logits
 *   4. top-p: of those, renormalised, keep the most probable tokens until
 *      their mass reaches top_p (the token that crosses it is kept)
 *   5. min-p: keep tokens whose probability is >= min_p * the highest one
 *   6. draw from the softmax of what is left with the sampler's own
 *      seeded generator (xoshiro256**): the same seed, parameters and
 *      logits give the same tokens on every platform with IEEE floats.
 *
 * A sampler allocates everything in sampler_new(); sampling never allocates.
 * It costs O(vocab) per token (at worst O(vocab log k) for top-k and
 * O(vocab log vocab) for top-p; no full sort in the common case).  Not thread-safe: one per session.
 */
#ifndef MH_SAMPLER_H
#define MH_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct mh_sampler_params {
	float temperature;     /* <= 0: greedy (argmax) */
	int top_k;             /* <= 0: off */
	float top_p;           /* >= 1: off */
	float min_p;           /* <= 0: off */
	float repeat_penalty;  /* 1: off; HF semantics: for each distinct token
				* in history, logit > 0 ? logit / p : logit * p */
	int repeat_last_n;     /* how much history the penalty looks at; 0 = all */
	uint64_t seed;
} mh_sampler_params;

/* temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0
 * (off), repeat_last_n 64, seed from the clock and the process id. */
void sampler_params_default(mh_sampler_params *p);

/* Validate values a user gave; NULL if they are fine, otherwise a static
 * message naming the option, such as "--top-p must be in (0, 1]". */
const char *sampler_params_check(const mh_sampler_params *p);

typedef struct mh_sampler mh_sampler;

/* NULL on out-of-memory or a vocab_size <= 0.  The parameters are copied;
 * they are assumed to have passed sampler_params_check(). */
mh_sampler *sampler_new(const mh_sampler_params *p, int32_t vocab_size);
void sampler_free(mh_sampler *s);
/* The vocabulary size it was made for (0 for NULL). */
int32_t sampler_vocab(const mh_sampler *s);
/* Make *s fit a vocabulary of vocab_size (a reload may bring a model with
 * another one: a sampler of the old size reads past the logits), with the
 * same parameters and random sequence.  0, or -1 (out of memory, *s kept). */
int sampler_refit(mh_sampler **s, int32_t vocab_size);

/* Temperature 0: sampler_sample is the argmax. */
int sampler_is_greedy(const mh_sampler *s);

/* Restart the random sequence as if the sampler had been created with seed. */
void sampler_seed(mh_sampler *s, uint64_t seed);

/* Pick the next token.  logits[vocab_size] may be modified (the repetition
 * penalty is applied in place).  history = the ids so far (prompt +
 * generated); ids outside [0, vocab_size) are ignored.  NaN logits count as
 * -infinity; if every logit is -infinity or NaN the result is 0. */
int32_t sampler_sample(mh_sampler *s, float *logits, const int32_t *history,
		       size_t n_history);

/* Steps 1-5 without the draw: the tokens that could be picked and their
 * probabilities (summing to 1), in no particular order.  *ids and *probs
 * point into the sampler and stay valid until its next call.  Returns the
 * count (>= 1).  For the verbose output, tests and tools; it does not
 * advance the random sequence. */
size_t sampler_candidates(mh_sampler *s, float *logits, const int32_t *history,
			  size_t n_history, const int32_t **ids,
			  const float **probs);

#endif
