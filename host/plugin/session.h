/* session.h - a model loaded through a plugin: the directory, the plugin
 * reference that keeps its code mapped, and the checks the host makes on
 * every call (context length, token ids) whatever the plugin does. */
#ifndef MH_SESSION_H
#define MH_SESSION_H

#include "plugin/registry.h"
#include "base/util.h"

typedef struct mh_session {
	plugin_lib *lib;
	mh_dir *dir;
	mh_model *model;
	const mh_model_info *info;
	char why[320];            /* which plugin and why */
	int32_t eos[MH_MAX_EOS * 2];
	int n_eos;
	int pos;                  /* tokens in the KV cache */
	int populated;            /* the weights have been faulted in */
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
int session_is_eos(const mh_session *s, int32_t id);

#endif
