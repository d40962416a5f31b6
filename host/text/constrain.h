/* SPDX-License-Identifier: MIT */
/* constrain.h - a reply held to a shape, token by token.
 *
 * Two shapes, for the server's requests that ask for one:
 *   CN_JSON   one JSON object, and the reply ends: response_format
 *             json_object.  RFC 8259 with valid UTF-8 in strings (no NUL, no
 *             lone surrogate), at most CN_MAX_DEPTH levels, and whitespace
 *             as printers write it: between tokens one space, or a newline
 *             and up to CN_MAX_INDENT spaces or tabs; none before the '{'.
 *   CN_TOOLS  <tool_call>\n{"name": "N", "arguments": {...}}\n</tool_call>,
 *             the form Qwen2.5's and Hermes' templates teach, with N one of
 *             the given names and the arguments a JSON object; with `many`
 *             more calls may follow, each after a newline, before the reply
 *             ends: tool_choice "required" or a named function.
 *
 * A byte automaton follows the reply.  Before each draw, every token whose
 * bytes it would refuse gets logit -inf, so the sampler, greedy or not,
 * draws from the model's own distribution restricted to the tokens that
 * keep the reply a prefix of the shape.  A reply's first token is read as
 * it decodes at the start of a text (SentencePiece drops its leading
 * space there), the others as they add to it.  The model's end tokens are allowed
 * only where the shape may end; where it must end (it is complete and
 * nothing may follow) constraint_feed says so and the caller stops.
 *
 * The mask walks the vocabulary sorted by bytes: tokens that share a prefix
 * share its steps, and a refused prefix refuses every token that starts
 * with it, so a step costs about one automaton move per node of the
 * vocabulary's trie (a few milliseconds for 150k tokens).
 */
#ifndef MH_CONSTRAIN_H
#define MH_CONSTRAIN_H

#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

#define CN_MAX_DEPTH 32 /* nested objects and arrays */
#define CN_MAX_INDENT 20 /* spaces or tabs after a newline */
#define CN_MAX_NAMES 128
#define CN_MAX_NAME 64  /* OpenAI's limit on a function's name */

enum { CN_JSON = 1, CN_TOOLS };

/* The vocabulary's pieces (tokenizer_pieces), sorted for the mask: made
 * once per tokenizer, read-only afterwards, shared by every constraint on
 * it.  NULL when out of memory. */
typedef struct cn_vocab cn_vocab;
cn_vocab *cn_vocab_new(const mh_tokenizer *t);
void cn_vocab_free(cn_vocab *v);

/* A name as a function's name may be: 1 to CN_MAX_NAME of [A-Za-z0-9_-]. */
int cn_name_ok(const char *name);

typedef struct mh_constraint mh_constraint;
/* A constraint at the start of a reply.  names[n] (CN_TOOLS only; copied,
 * in any order, duplicates allowed) must each pass cn_name_ok.  NULL when
 * out of memory or a name is not one. */
mh_constraint *constraint_new(const cn_vocab *v, int kind, const char *const *names, int n,
			      int many);
void constraint_free(mh_constraint *c);

/* Before the draw: logits[n_logits] gets -inf on every token that cannot
 * come next; the end tokens end[n_end] keep theirs where the reply may end.
 * Ids the tokenizer does not have are refused.  Returns how many tokens are
 * left: 0 when no token can continue the shape (a vocabulary without some
 * byte the shape needs). */
int constraint_mask(mh_constraint *c, float *logits, int32_t n_logits, const int32_t *end,
		    int n_end);
/* Can token id come next (end tokens aside)? */
int constraint_allows(const mh_constraint *c, int32_t id);
/* The shape is complete and may end here (the end tokens are allowed). */
int constraint_may_end(const mh_constraint *c);
/* After the draw: follow token id.  1: the shape is complete and nothing
 * may follow, so the reply ends; 0: it goes on; -1: id is not allowed (the
 * state is unchanged). */
int constraint_feed(mh_constraint *c, int32_t id);

#endif
