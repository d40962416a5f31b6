/* SPDX-License-Identifier: MIT */
/* server.h - `modelhost serve`: what cmd_serve.c configures, http.c runs
 * and api.c reads.  See engine.h for the folder's layout. */
#ifndef MH_SERVER_H
#define MH_SERVER_H

#include "server/engine.h"

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct mh_chat_template mh_chat_template;

typedef struct server_config {
	const char *host;        /* an IPv4 or IPv6 address */
	int port;                /* 0: any free port */
	const char *api_key;     /* NULL: none */
	size_t body_limit;       /* bytes */
	int timeout;             /* seconds: idle clients, and the drain on SIGTERM */
	int max_connections;
} server_config;

typedef struct server {
	server_config c;
	engine *eng;
	const mh_tokenizer *tk;
	mh_chat_template *tmpl;  /* NULL: the model has none */
	char model_name[256];
	struct MHD_Daemon *d;
	int port;                /* as bound */
} server;

/* Start listening; 0, or -1 and err. */
int http_start(server *sv, char *err);
/* Stop accepting connections (those open keep going). */
void http_quiesce(server *sv);
/* Wait until every request has sent its last byte, or the deadline. */
void http_wait_idle(double deadline);
/* Close everything; every request must be done (engine_drain). */
void http_stop(server *sv);

/* ---- api.c: the OpenAI shapes ------------------------------------------------- */

typedef struct api_error {
	int status;
	char message[MH_ERRLEN];
	const char *type, *param, *code;
} api_error;

/* One completion, from its parsed body to its last byte out. */
typedef struct api_call {
	int chat, stream, include_usage;
	int tools, one_call; /* tool calls parsed from the reply; only the first kept */
	engine_req *req;
	char id[48];
	long long created;
	/* streaming: what has gone out */
	size_t sent, seen;  /* text bytes sent; engine_readable() when last looked */
	int started, finished;
	int calls_open;     /* tool calls whose id and name have gone out */
	size_t args_sent;   /* bytes of the last one's arguments gone out */
} api_call;

int api_error_set(api_error *e, int status, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* {"error": {...}} as a malloc'd string. */
char *api_error_json(const api_error *e);

/* Parse a /v1/completions (chat 0) or /v1/chat/completions (chat 1) body
 * into c->req; -1 and e on a bad request. */
int api_parse(server *sv, int chat, const cJSON *body, api_call *c, api_error *e);
/* The response of a finished call (non-streaming), malloc'd; or -1 and e. */
char *api_result(server *sv, api_call *c, api_error *e);
/* The server-sent events that are ready, malloc'd ("" when none yet);
 * *end is set once the last one ("data: [DONE]") is in.  NULL: out of memory. */
char *api_events(server *sv, api_call *c, int *end);
void api_call_free(server *sv, api_call *c);

/* Bytes as valid UTF-8 without NULs (a byte that starts no character, or a
 * NUL, becomes U+FFFD), malloc'd; NULL on out of memory. */
char *api_clean_utf8(const char *p, size_t n);
/* chat.c: the messages (and, when with_tools, the tools) of a chat request
 * through the model's chat template, tokenized; -1 and e on a bad request. */
int chat_prompt(server *sv, const cJSON *body, int with_tools, int32_t **ids, int *n,
		api_error *e);
/* The template of dir (or file when given): 0, or -1 and err. */
int chat_setup(server *sv, const char *dir, const char *file, char *err);
void chat_free(server *sv);
/* The end-of-turn text the template uses (a stop string), or NULL. */
const char *chat_stop(server *sv);

/* The other endpoints: a malloc'd JSON body, or NULL and e. */
char *api_models(server *sv, api_error *e);
char *api_tokenize(server *sv, const cJSON *body, api_error *e);
char *api_detokenize(server *sv, const cJSON *body, api_error *e);

#endif
