/* SPDX-License-Identifier: MIT */
/* session.h - a model loaded through a plugin: the directory, the plugin
 * reference that keeps its code mapped, and the checks the host makes on
 * every call (context length, token ids) whatever the plugin does. */
#ifndef MH_SESSION_H
#define MH_SESSION_H

#include "plugin/registry.h"
#include "base/util.h"

/* One sequence of a session: its own KV cache in the model (a 1.2 plugin's
 * sequence `id`) or, with a 1.0/1.1 plugin, a model of its own loaded over
 * the same directory (and so the same mapped weights). */
typedef struct mh_seq {
	int open;
	int len;                  /* positions held */
	int id;                   /* the plugin's sequence id (batched plugins) */
	mh_model *model;          /* 1.0/1.1 plugins: this sequence's model */
} mh_seq;

typedef struct mh_session {
	plugin_lib *lib;
	mh_dir *dir;
	mh_model *model;          /* sequence 0's model, and every sequence's with 1.2 */
	const mh_model_info *info;
	char why[320];            /* which plugin and why */
	int32_t eos[MH_MAX_EOS * 2];
	int n_eos;
	int pos;                  /* tokens in sequence 0's KV cache */
	int populated;            /* the weights have been faulted in */
	/* sequences */
	const mh_services *svc;
	int n_ctx_asked;          /* session_open's n_ctx, for per-sequence loads */
	int batched;              /* the plugin has seq_new, seq_free and batch (ABI 1.2) */
	mh_seq *seq;
	int n_seq;
	mh_batch_item *items;     /* scratch: a batch in the plugin's sequence ids */
	float *scratch;           /* scratch logits of 1.0/1.1 plugins */
	size_t items_len, scratch_len;
} mh_session;

/* Load DIR.  force: a plugin name or NULL; n_ctx 0: the model's limit. */
mh_session *session_open(mh_registry *r, const char *path, const char *force, int n_ctx,
			 char *err);
/* How weights are loaded (--quant, --quant-io): MH_F32 for "as stored". */
typedef struct session_quant {
	mh_dtype quant;      /* 2-D weights whose rows are whole blocks */
	mh_dtype quant_io;   /* the embedding table and output layer */
} session_quant;
/* session_open with weights quantized at load (q NULL: none). */
mh_session *session_open_quant(mh_registry *r, const char *path, const char *force, int n_ctx,
			       const session_quant *q, char *err);
void session_close(mh_session *s);
/* Append n tokens at the current position; logits per MH_LOGITS_*. */
int session_forward(mh_session *s, const int32_t *ids, int n, float *logits, int flags, char *err);
void session_reset(mh_session *s);
/* Keep the first pos tokens of the KV cache (0 <= pos <= s->pos) so that
 * the next forward continues from there; returns the position kept: pos, or
 * 0 after a reset when the model attends through a sliding window shorter
 * than its context (its plugin may keep the cache as a ring, where later
 * tokens overwrote the ones pos needs). */
int session_rewind(mh_session *s, int pos);

/* Sequences of a loaded model: each its own KV cache (paid for as it fills).
 * Sequence 0 is open from session_open on and is the one session_forward
 * and session_reset use.  With a 1.0/1.1 plugin the host loads the model once
 * per sequence over the same mapped weights and runs them one after another. */
int session_seq_open(mh_session *s, char *err);           /* new empty sequence: id >= 0, or -1 + err */
void session_seq_close(mh_session *s, int seq);           /* unknown ids are ignored */
int session_seq_rewind(mh_session *s, int seq, int pos);  /* keep positions < pos; 0 or -1 */
int session_seq_len(const mh_session *s, int seq);        /* positions held; -1 if not open */
/* mh_batch_item (modelhost/plugin.h): { seq, pos, id, logits }; logits != 0: want this row. */
/* One forward over n items from any open sequences (a sequence's items consecutive, positions
 * contiguous from its current length), prompt chunks and decode tokens mixed; writes the rows
 * asked for, in item order, to logits[k][vocab].  0, or -1 + one-line err (unknown sequence,
 * position past the context, empty batch...) with no state changed for the sequences.  A
 * sequence's logits do not depend on what else is in the batch (1.2 plugins on the scaffold,
 * bit for bit: docs/batching.md). */
int session_batch(mh_session *s, const mh_batch_item *items, int n, float *logits, char *err);
int session_is_eos(const mh_session *s, int32_t id);

#endif
