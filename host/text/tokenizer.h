/* SPDX-License-Identifier: MIT */
/* host/text/: text in and out (tokenizer, sampler).  May include base/ and compute/;
 * knows nothing of plugins or models. */
/* tokenizer.h - Hugging Face tokenizer.json (BPE models) for modelhost.
 *
 * Encoding follows the Hugging Face tokenizers pipeline:
 *   added/special tokens split -> normalize -> pre-tokenize -> BPE
 *   -> post-process (BOS/EOS templates)
 * and decoding runs the file's decoder chain (ByteLevel, Metaspace,
 * ByteFallback, Fuse, Strip, Replace, ...).
 *
 * A loaded tokenizer is immutable: encode/decode may run concurrently from
 * several threads on the same mh_tokenizer.  A stream is not thread-safe.
 */
#ifndef MH_TOKENIZER_H
#define MH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct mh_tokenizer mh_tokenizer;
/* Load tokenizer.json. On failure returns NULL and writes one line "PATH: problem" into err. */
mh_tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
void tokenizer_free(mh_tokenizer *t);
/* Encode len bytes of UTF-8. add_special: apply the post-processor (e.g. BOS). 0 ok (*ids malloc'd, caller frees), -1 on error (out of memory, or text not valid UTF-8). */
int tokenizer_encode(const mh_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids, size_t *n_ids);
/* tokenizer_encode that stops once the text has given more than max_ids
 * ids (0: no limit), so that a text longer than a context costs little
 * more than the context, and says why it failed: */
enum {
	TOKENIZER_ENOMEM = -1,   /* out of memory */
	TOKENIZER_EUTF8 = -2,    /* the text is not valid UTF-8 */
	TOKENIZER_ETOOLONG = -3, /* more than max_ids ids (*n_ids is max_ids + 1) */
	TOKENIZER_ELIMIT = -4,   /* a regex of the file needs too much work on this text */
	TOKENIZER_EGROWTH = -5,  /* a normalizer or pre-tokenizer step makes the text more
				  * than TOKENIZER_MAX_GROWTH times as long */
};
#define TOKENIZER_MAX_GROWTH 64  /* times the input, plus 4 KiB; decoders too */
int tokenizer_encode_n(const mh_tokenizer *t, const char *text, size_t len, int add_special,
		       size_t max_ids, int32_t **ids, size_t *n_ids);
/* A TOKENIZER_E* code as a phrase ("out of memory", ...). */
const char *tokenizer_strerror(int code);
/* How many leading bytes of s form valid UTF-8 (n when all do): what
 * encode accepts, for saying where a text goes wrong. */
size_t tokenizer_utf8_valid_prefix(const char *s, size_t n);
/* Decode to a malloc'd NUL-terminated string; skip_special drops special tokens. NULL on OOM.
 * *len (if len) gets its length: a byte token <0x00> decodes to a NUL inside the text. */
char *tokenizer_decode(const mh_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
		       size_t *len);
int32_t tokenizer_vocab_size(const mh_tokenizer *t);  /* max id + 1, including added tokens */
int32_t tokenizer_token_id(const mh_tokenizer *t, const char *token); /* -1 if none */
int tokenizer_is_special(const mh_tokenizer *t, int32_t id);
/* Streaming detokenizer for generation: push ids one at a time, get back only newly completed text,
   never a broken UTF-8 sequence (byte-fallback pieces like <0xE2> and byte-level tokens can end mid-character).
   Returned buffer is owned by the stream, valid until the next call. flush returns whatever remains. */
typedef struct mh_detok_stream mh_detok_stream;
mh_detok_stream *tokenizer_stream_new(const mh_tokenizer *t, int skip_special);
const char *tokenizer_stream_push(mh_detok_stream *s, int32_t id, size_t *len);
const char *tokenizer_stream_flush(mh_detok_stream *s, size_t *len);
void tokenizer_stream_free(mh_detok_stream *s);

/* Every id's bytes as it adds them to a text: with first, as the text's
 * first token (the decoder's rules for one apply: Metaspace's dropped
 * space, Strip), otherwise after other tokens.  Raw bytes: a byte token
 * gives its byte, also in the middle of a character.  For constrained
 * decoding (host/text/constrain.h).  *blob holds them back to back, id i's
 * at [off[i], off[i+1]) for i < tokenizer_vocab_size(); special tokens get
 * none.  0, or -1 when out of memory; free() both. */
int tokenizer_pieces(const mh_tokenizer *t, int first, char **blob, uint32_t **off);

/* Extras. */
/* The text of one token as stored in the vocabulary (e.g. "▁the", "Ġthe",
 * "<0x0A>"), NULL if id is out of range. Not decoded. */
const char *tokenizer_id_to_token(const mh_tokenizer *t, int32_t id);

#endif
