/* SPDX-License-Identifier: MIT */
/* host/server/: `modelhost serve`.  http.c (routes, errors, auth, limits),
 * api.c (the OpenAI request and response shapes, SSE), engine.c (slots,
 * queue, scheduler, plugin reloads), metrics.c.  May include every host
 * folder but cli/. */
/* engine.h - the one thread that runs the model.
 *
 * Every call into a plugin and into the registry happens on the engine
 * thread, so neither needs locks.  HTTP threads submit requests and wait on
 * them; the engine admits queued requests into free slots, runs one step
 * over every busy slot (a prompt chunk or one token each), samples, turns
 * tokens into text and publishes it under the engine lock.
 *
 * A request is shared by its HTTP thread and the engine, reference counted
 * under the engine lock: whichever lets go last frees it. */
#ifndef MH_ENGINE_H
#define MH_ENGINE_H

#include "plugin/registry.h"
#include "plugin/session.h"
#include "text/constrain.h"
#include "text/sampler.h"
#include "text/tokenizer.h"
#include "base/util.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define ENGINE_MAX_STOP 5 /* a request's 4 and the chat template's end of turn */
#define ENGINE_MAX_PARALLEL 64

typedef struct engine engine;

typedef struct engine_req {
	/* --- set before engine_submit, read-only afterwards */
	int32_t *prompt;       /* malloc'd, owned by the request */
	int n_prompt;
	int max_tokens;        /* > 0 */
	mh_sampler_params sp;
	int ignore_eos;
	char *stop[ENGINE_MAX_STOP]; /* malloc'd, non-empty */
	int n_stop;
	const char *hold;      /* text from which output is held back to the end
				* (the start of a tool call), or NULL */
	cn_grammar *shape;     /* the form the reply is held to (owned), or
				* NULL: free */
	/* --- under the engine lock */
	char *text;            /* generated text, valid UTF-8, NUL-terminated */
	size_t len, cap;
	size_t safe;           /* bytes of text that can be sent now: no stop
				* string or hold text can begin before it */
	long hold_at;          /* where the hold text begins, -1: nowhere */
	size_t held;           /* with hold_at >= 0: text up to here can be read
				* (no stop string can begin before it), to
				* stream a tool call as it is written */
	size_t *ends;          /* where each token's text ends, for one event a token */
	int n_ends, cap_ends;
	int n_gen;             /* tokens generated */
	int done;              /* finished: finish or err says why */
	const char *finish;    /* "stop", "length" */
	int status;            /* HTTP status when err is set */
	char err[MH_ERRLEN];
	int cancelled;         /* the client went away */
	pthread_cond_t cond;   /* signalled when text, safe or done change */
	int refs;
	double t_submit, t_first, t_last;
	char plugin[160];      /* the plugin that ran it, as system_fingerprint */
} engine_req;

typedef struct engine_config {
	const char *model_dir;
	const char *force_plugin;
	int n_ctx;
	int parallel;          /* slots */
	int queue;             /* waiting requests beyond the slots */
	mh_registry *registry; /* owned by the caller, used only by the engine thread */
	const mh_tokenizer *tk;
	const session_quant *quant; /* --quant, or NULL (every slot's session) */
} engine_config;

typedef struct engine_info {
	int32_t vocab_size, bos_id;
	int n_ctx;
} engine_info;

/* Start the thread, which loads the model into every slot; NULL + err. */
engine *engine_start(const engine_config *c, char *err);
/* Wait for the load: 0, or -1 and its error. */
int engine_wait_ready(engine *e, char *err);
/* Stop taking requests; let what is queued and running finish until
 * `deadline` (mh_now() seconds), then cancel the rest.  Every request is
 * done when this returns. */
void engine_drain(engine *e, double deadline);
/* Stop the thread and free everything. */
void engine_free(engine *e);
/* The model's numbers, or NULL while it is loading. */
const engine_info *engine_model(engine *e);

/* A new request with its prompt (taken over); NULL on out of memory. */
engine_req *engine_req_new(int32_t *prompt, int n_prompt);
/* 0: queued.  -1: the queue is full or the engine is stopping (503). */
int engine_submit(engine *e, engine_req *r);
/* What a reader of r can act on: bytes safe, or once a hold text is
 * found, bytes held (only grows). */
size_t engine_readable(const engine_req *r);
/* Wait until engine_readable(r) > have, or r is done, or `ms` pass. */
void engine_wait(engine *e, engine_req *r, size_t have, int ms);
/* The client is gone: the engine frees its slot at the next step. */
void engine_cancel(engine *e, engine_req *r);
/* Drop the caller's reference. */
void engine_release(engine *e, engine_req *r);
void engine_lock(engine *e);
void engine_unlock(engine *e);

/* Rescan the plugin directories and move the model to the plugin that
 * should now serve it; requests in flight finish on their own.  Waits up
 * to `ms` for the engine; 0 and a message when done, -1 and a message when
 * the new plugin failed (the old one keeps serving) or the engine is busy. */
int engine_reload(engine *e, char *msg, size_t msglen, int ms);
/* Ask for a reload without waiting (from a signal). */
void engine_reload_async(engine *e);

typedef struct engine_stats {
	int queued, busy, parallel;
	int ready;
	char plugin[64], version[64];
} engine_stats;
void engine_get_stats(engine *e, engine_stats *st);

#endif
