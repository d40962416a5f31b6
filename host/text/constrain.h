/* SPDX-License-Identifier: MIT */
/* constrain.h - a reply held to a form, token by token.
 *
 * The forms, for the server's requests that ask for one:
 *   JSON      one JSON object, and the reply ends: response_format
 *             json_object (any object) or json_schema (an object its
 *             schema allows; see below).
 *   tools     <tool_call>\n{"name": "N", "arguments": {...}}\n</tool_call>,
 *             the form Qwen2.5's and Hermes' templates teach, with N one of
 *             the given names and the arguments an object N's parameters
 *             schema allows; with `many`, more calls may follow, each after
 *             a newline, before the reply ends: tool_choice "required" or a
 *             named function.
 * JSON is RFC 8259 with valid UTF-8 in strings (no NUL, no lone surrogate),
 * at most CN_MAX_DEPTH levels, numbers of at most 17 digits before and
 * after the point and 3 in the exponent (what a double holds), and
 * whitespace as printers write it: between tokens one space, or a newline
 * and up to CN_MAX_INDENT spaces or tabs; none before the first '{'.
 *
 * JSON Schema, the part that decides what may be written: type (one or a
 * list), enum, const, properties (written in the schema's order, each
 * required one present, no others), required, items, minItems, maxItems,
 * minLength, maxLength, anyOf/oneOf whose branches start differently
 * (an object or a string, say; not two objects), $ref to "#" or
 * "#/$defs/..." ("#/definitions/..."), recursion included.  Keywords that
 * only describe (title, description, default, examples, $schema, $id,
 * format, pattern, minimum, maximum, ...) are not enforced; keywords whose
 * meaning would be lost (allOf, not, if, prefixItems, patternProperties,
 * dependentSchemas, ...) make cn_grammar_* fail, naming them.
 *
 * A grammar is compiled once per request (cn_grammar_*, where a schema that
 * cannot be held is an error for the client); a constraint follows one
 * reply with it.  Before each draw, every token whose bytes would leave the
 * form gets logit -inf, so the sampler, greedy or not, draws from the
 * model's own distribution restricted to the tokens that keep the reply a
 * prefix of the form.  A reply's first token is read as it decodes at the
 * start of a text (SentencePiece drops its leading space there), the others
 * as they add to it.  The model's end tokens are allowed only where the
 * form may end; where it must end (it is complete and nothing may follow)
 * constraint_feed says so and the caller stops.
 *
 * The mask walks the vocabulary sorted by bytes: tokens that share a prefix
 * share its steps, and a refused prefix refuses every token that starts
 * with it, so a step costs about one automaton move per node of the
 * vocabulary's trie (a few milliseconds for 150k tokens).
 */
#ifndef MH_CONSTRAIN_H
#define MH_CONSTRAIN_H

#include "text/sampler.h"
#include "text/tokenizer.h"

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define CN_MAX_DEPTH 32  /* nested objects and arrays */
#define CN_MAX_INDENT 20 /* spaces or tabs after a newline */
/* the tool-call form's tags (server/toolcall.h parses replies by them) */
#define CN_TOOL_OPEN "<tool_call>"
#define CN_TOOL_CLOSE "</tool_call>"
#define CN_MAX_NAMES 128
#define CN_MAX_NAME 64   /* OpenAI's limit on a function's name */

/* The vocabulary's pieces (tokenizer_pieces), sorted for the mask: made
 * once per tokenizer, read-only afterwards, shared by every constraint on
 * it.  NULL when out of memory. */
typedef struct cn_vocab cn_vocab;
cn_vocab *cn_vocab_new(const mh_tokenizer *t);
void cn_vocab_free(cn_vocab *v);

/* A name as a function's name may be: 1 to CN_MAX_NAME of [A-Za-z0-9_-]. */
int cn_name_ok(const char *name);

/* A form, compiled: read-only, shared by the constraints made from it. */
typedef struct cn_grammar cn_grammar;
/* One JSON object that schema allows (NULL: any object).  NULL with err
 * set (one line, naming the keyword or the part of the schema) when the
 * schema cannot be held, or is not one for an object. */
cn_grammar *cn_grammar_json(const cJSON *schema, char *err, size_t errlen);
/* Tool calls: to one of names[n] (each passing cn_name_ok; any order),
 * with arguments that params[i] allows (params may be NULL, or an entry
 * NULL: any object); with many, several calls.  NULL with err set as
 * above. */
cn_grammar *cn_grammar_tools(const char *const *names, const cJSON *const *params, int n,
			     int many, char *err, size_t errlen);
void cn_grammar_free(cn_grammar *g);

typedef struct mh_constraint mh_constraint;
/* A constraint at the start of a reply (g and v must outlive it).  NULL
 * when out of memory. */
mh_constraint *constraint_new(const cn_vocab *v, const cn_grammar *g);
void constraint_free(mh_constraint *c);

/* Before the draw: logits[n_logits] gets -inf on every token that cannot
 * come next; the end tokens end[n_end] keep theirs where the reply may end.
 * Ids the tokenizer does not have are refused.  Returns how many tokens are
 * left: 0 when no token can continue the form (a vocabulary without some
 * byte the form needs). */
int constraint_mask(mh_constraint *c, float *logits, int32_t n_logits, const int32_t *end,
		    int n_end);
/* Can token id come next (end tokens aside)? */
int constraint_allows(const mh_constraint *c, int32_t id);
/* The form is complete and may end here (the end tokens are allowed). */
int constraint_may_end(const mh_constraint *c);
/* The draw itself: sm's choice among the tokens the form allows (end[]
 * where it may end), from logits[n_logits] (changed); -1 when none can
 * continue it.  A greedy sampler first chooses from a copy in
 * scratch[n_logits], unrestricted: when the form allows that token it is
 * also the best allowed one, and the mask's walk is saved.  The token is
 * not followed: constraint_feed does that. */
int32_t constraint_sample(mh_constraint *c, mh_sampler *sm, float *logits, float *scratch,
			  int32_t n_logits, const int32_t *hist, size_t n_hist,
			  const int32_t *end, int n_end);
/* After the draw: follow token id.  1: the form is complete and nothing
 * may follow, so the reply ends; 0: it goes on; -1: id is not allowed (the
 * state is unchanged). */
int constraint_feed(mh_constraint *c, int32_t id);

#endif
