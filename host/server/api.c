/* SPDX-License-Identifier: MIT */
/* api.c - OpenAI's request and response shapes (see server.h): parameters
 * checked one by one with the name of the one that is wrong, completions
 * and chat completions whole or as server-sent events, tool calls. */
#include "server/server.h"
#include "server/toolcall.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STOP 4 /* as OpenAI's */
#define MAX_STOP_LEN 256

int api_error_set(api_error *e, int status, const char *param, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	va_end(ap);
	mh_one_line(e->message);
	e->status = status;
	e->param = param;
	e->code = NULL;
	switch (status) {
	case 401: e->type = "authentication_error"; e->code = "invalid_api_key"; break;
	case 500: e->type = "server_error"; break;
	case 503: e->type = "server_error"; e->code = "unavailable"; break;
	default: e->type = "invalid_request_error"; break;
	}
	return -1;
}

char *api_error_json(const api_error *e)
{
	cJSON *o = cJSON_CreateObject(), *er = cJSON_AddObjectToObject(o, "error");
	if (er) {
		cJSON_AddStringToObject(er, "message", e->message);
		cJSON_AddStringToObject(er, "type", e->type ? e->type : "invalid_request_error");
		if (e->param)
			cJSON_AddStringToObject(er, "param", e->param);
		else
			cJSON_AddNullToObject(er, "param");
		if (e->code)
			cJSON_AddStringToObject(er, "code", e->code);
		else
			cJSON_AddNullToObject(er, "code");
	}
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

/* ---- parameters ----------------------------------------------------------------- */

/* A member that is absent or null: 0; present: 1; `e` set on a wrong type: -1. */
static int get_number(const cJSON *b, const char *name, double lo, double hi, double *out,
		      api_error *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, name);
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
		return api_error_set(e, 400, name, "'%s' must be a number from %g to %g", name, lo,
				     hi);
	*out = v->valuedouble;
	return 1;
}

static int get_int(const cJSON *b, const char *name, int64_t lo, int64_t hi, int64_t *out,
		   api_error *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, name);
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || mh_whole(v->valuedouble, lo, hi, out) != 0)
		return api_error_set(e, 400, name, "'%s' must be a whole number from %lld to %lld",
				     name, (long long)lo, (long long)hi);
	return 1;
}

static int get_bool(const cJSON *b, const char *name, int *out, api_error *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, name);
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsBool(v))
		return api_error_set(e, 400, name, "'%s' must be true or false", name);
	*out = cJSON_IsTrue(v);
	return 1;
}

/* tool_choice: "auto" (the default): the reply may call the tools or not;
 * "none": the tools are neither rendered nor parsed, the reply is text;
 * "required": the reply is held to calls of the tools (text/constrain.h);
 * {"type": "function", "function": {"name": N}}: to one call of N.  *forced
 * gets NULL, "" (any tool) or N.  parallel_tool_calls: false keeps the
 * reply's first call, and holds a required reply to one. */
static int parse_tool_choice(const cJSON *b, api_call *c, const char **forced, api_error *e)
{
	const cJSON *tc = cJSON_GetObjectItemCaseSensitive(b, "tool_choice");
	const char *s = cJSON_IsString(tc) ? tc->valuestring : NULL;
	*forced = NULL;
	if (s && strcmp(s, "none") == 0) {
		c->tools = 0;
	} else if (s && strcmp(s, "required") == 0) {
		*forced = "";
	} else if (cJSON_IsObject(tc)) {
		const cJSON *ty = cJSON_GetObjectItemCaseSensitive(tc, "type");
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
		if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function") != 0 ||
		    !cJSON_IsString(name))
			return api_error_set(e, 400, "tool_choice",
					     "'tool_choice' as an object must be {\"type\": \"function\", "
					     "\"function\": {\"name\": ...}}");
		*forced = name->valuestring;
	} else if (tc && !cJSON_IsNull(tc) && !(s && strcmp(s, "auto") == 0)) {
		return api_error_set(e, 400, "tool_choice",
				     "'tool_choice' must be \"auto\", \"none\", \"required\" or an "
				     "object naming a function");
	}
	if (*forced && !c->tools)
		return api_error_set(e, 400, "tool_choice",
				     "'tool_choice' asks for a tool call, but there are no 'tools'");
	int parallel = 1;
	if (get_bool(b, "parallel_tool_calls", &parallel, e) < 0)
		return -1;
	c->one_call = !parallel;
	return 0;
}

/* response_format: {"type": "text"} (the default), {"type": "json_object"}
 * (one JSON object) or {"type": "json_schema", "json_schema": {"name",
 * "schema", "strict"}} (an object the schema allows; no schema: any).
 * *json: 0 text, 1 JSON, with *schema the schema or NULL. */
static int parse_response_format(const cJSON *b, int *json, const cJSON **schema, api_error *e)
{
	const cJSON *rf = cJSON_GetObjectItemCaseSensitive(b, "response_format");
	const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rf, "type");
	*json = 0;
	*schema = NULL;
	if (!rf || cJSON_IsNull(rf))
		return 0;
	if (cJSON_IsObject(rf) && cJSON_IsString(ty)) {
		if (strcmp(ty->valuestring, "text") == 0)
			return 0;
		if (strcmp(ty->valuestring, "json_object") == 0)
			return *json = 1, 0;
		const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
		const cJSON *sc = cJSON_GetObjectItemCaseSensitive(js, "schema");
		if (strcmp(ty->valuestring, "json_schema") == 0) {
			if (!cJSON_IsObject(js) || (sc && !cJSON_IsObject(sc)))
				return api_error_set(e, 400, "response_format",
						     "'response_format' json_schema needs \"json_schema\": "
						     "{\"name\": ..., \"schema\": {...}}");
			*schema = sc;
			return *json = 1, 0;
		}
	}
	return api_error_set(e, 400, "response_format",
			     "'response_format' must be {\"type\": \"text\"}, {\"type\": "
			     "\"json_object\"} or {\"type\": \"json_schema\", ...}");
}

/* A forced call's form: to any of the tools, or to the one forced, with
 * the arguments its parameters allow. */
static int forced_calls(const cJSON *b, const char *forced, int many, engine_req *r,
			api_error *e)
{
	const cJSON *tools = cJSON_GetObjectItemCaseSensitive(b, "tools"), *t;
	const char *names[CN_MAX_NAMES];
	const cJSON *params[CN_MAX_NAMES];
	int k = 0;
	if (cJSON_GetArraySize(tools) > CN_MAX_NAMES)
		return api_error_set(e, 400, "tools", "a forced tool call may choose among at most %d "
				     "tools", CN_MAX_NAMES);
	cJSON_ArrayForEach(t, tools) {
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
		if (!cJSON_IsString(name) || !cn_name_ok(name->valuestring))
			return api_error_set(e, 400, "tools",
					     "every tool needs a function whose 'name' is 1 to %d letters, "
					     "digits, '_' or '-'", CN_MAX_NAME);
		if (*forced && strcmp(forced, name->valuestring) != 0)
			continue;
		names[k] = name->valuestring;
		params[k++] = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
	}
	if (k == 0)
		return api_error_set(e, 400, "tool_choice", "'tool_choice' names the function '%.64s', "
				     "which is not one of 'tools'", forced);
	char err[MH_ERRLEN];
	if (!(r->shape = cn_grammar_tools(names, params, k, many, err, sizeof err)))
		return api_error_set(e, strcmp(err, "out of memory") ? 400 : 500, "tools",
				     "a function's parameters: %s", err);
	return 0;
}

/* o printed as a response body, and freed; NULL with e set when out of memory. */
static char *body_json(cJSON *o, api_error *e)
{
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		api_error_set(e, 500, NULL, "out of memory");
	return s;
}

char *api_clean_utf8(const char *p, size_t n)
{
	char *out = malloc(n * 3 + 1), *o = out;
	while (out && n) {
		size_t ok = tokenizer_utf8_valid_prefix(p, n);
		const char *nul = memchr(p, 0, ok);
		if (nul)
			ok = (size_t)(nul - p);
		memcpy(o, p, ok);
		o += ok;
		p += ok;
		n -= ok;
		if (n) {
			memcpy(o, "\xEF\xBF\xBD", 3);
			o += 3;
			p++;
			n--;
		}
	}
	if (out)
		*o = 0;
	return out;
}

static int valid_utf8(const char *s)
{
	size_t n = strlen(s);
	return tokenizer_utf8_valid_prefix(s, n) == n;
}

static int parse_stop(const cJSON *b, engine_req *r, api_error *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, "stop");
	if (!v || cJSON_IsNull(v))
		return 0;
	const cJSON *one = v, *it;
	int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
	if (!cJSON_IsString(v) && !cJSON_IsArray(v))
		return api_error_set(e, 400, "stop", "'stop' must be a string or a list of strings");
	if (n > MAX_STOP)
		return api_error_set(e, 400, "stop", "'stop' may hold at most %d strings", MAX_STOP);
	for (int i = 0; i < n; i++) {
		it = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, i) : one;
		if (!cJSON_IsString(it))
			return api_error_set(e, 400, "stop", "'stop' must be a string or a list of strings");
		size_t len = strlen(it->valuestring);
		if (len == 0 || len > MAX_STOP_LEN)
			return api_error_set(e, 400, "stop",
					     "a stop string must have 1 to %d bytes", MAX_STOP_LEN);
		if (!(r->stop[r->n_stop] = strdup(it->valuestring)))
			return api_error_set(e, 500, NULL, "out of memory");
		r->n_stop++;
	}
	return 0;
}

static int parse_sampling(const cJSON *b, engine_req *r, api_error *e)
{
	static uint64_t counter;
	double d = 0;
	int64_t i = 0;
	int rc;
	mh_sampler_params *sp = &r->sp;
	sampler_params_default(sp);
	/* requests without a seed each get their own */
	sp->seed ^= __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0x9E3779B97F4A7C15ull;
	/* checked in this order: the first wrong one is the one reported */
	const struct { const char *name; double hi; float *to; } num[] = {
		{ "temperature", 100, &sp->temperature },
		{ "top_p", 1, &sp->top_p },
		{ "min_p", 1, &sp->min_p },
		{ "repeat_penalty", 100, &sp->repeat_penalty },
	};
	const struct { const char *name; int *to; } whole[] = {
		{ "top_k", &sp->top_k },
		{ "repeat_last_n", &sp->repeat_last_n },
	};
	for (size_t k = 0; k < sizeof num / sizeof *num; k++) {
		if ((rc = get_number(b, num[k].name, 0, num[k].hi, &d, e)) < 0)
			return -1;
		if (rc)
			*num[k].to = (float)d;
	}
	for (size_t k = 0; k < sizeof whole / sizeof *whole; k++) {
		if ((rc = get_int(b, whole[k].name, 0, 1 << 24, &i, e)) < 0)
			return -1;
		if (rc)
			*whole[k].to = (int)i;
	}
	if ((rc = get_int(b, "seed", 0, (int64_t)1 << 53, &i, e)) < 0)
		return -1;
	if (rc)
		sp->seed = (uint64_t)i;
	const char *bad = sampler_params_check(sp);
	if (bad)
		return api_error_set(e, 400, NULL, "%s", bad);
	return get_bool(b, "ignore_eos", &r->ignore_eos, e) < 0 ? -1 : 0;
}

/* A completion's prompt: a string (tokenized as generate does: BOS where
 * the tokenizer adds it) or a list of token ids, taken as they are. */
static int parse_prompt(server *sv, const cJSON *b, int32_t **ids, int *n, api_error *e)
{
	const engine_info *mi = engine_model(sv->eng);
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(b, "prompt");
	if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child))
		p = p->child; /* ["text"]: one prompt */
	if (cJSON_IsString(p)) {
		if (!sv->tk)
			return api_error_set(e, 400, "prompt",
					     "the model has no tokenizer.json: give the prompt as token ids");
		size_t len = strlen(p->valuestring), k;
		if (!valid_utf8(p->valuestring))
			return api_error_set(e, 400, "prompt", "the prompt is not valid UTF-8");
		int32_t *t;
		if (tokenizer_encode(sv->tk, p->valuestring, len, 1, &t, &k) != 0)
			return api_error_set(e, 500, NULL, "out of memory tokenizing the prompt");
		if (k == 0) {
			free(t);
			if (mi->bos_id < 0)
				return api_error_set(e, 400, "prompt", "the prompt is empty");
			if (!(t = malloc(sizeof *t)))
				return api_error_set(e, 500, NULL, "out of memory");
			t[0] = mi->bos_id;
			k = 1;
		}
		if (k > (size_t)mi->n_ctx) {
			free(t);
			return api_error_set(e, 400, "prompt",
					     "the prompt has %zu tokens, more than the context length of %d",
					     k, mi->n_ctx);
		}
		*ids = t;
		*n = (int)k;
		return 0;
	}
	if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0)
		return api_error_set(e, 400, "prompt",
				     "'prompt' must be a string or a non-empty list of token ids");
	int k = cJSON_GetArraySize(p);
	if (k > mi->n_ctx)
		return api_error_set(e, 400, "prompt",
				     "the prompt has %d tokens, more than the context length of %d", k,
				     mi->n_ctx);
	int32_t *t = malloc((size_t)k * sizeof *t);
	if (!t)
		return api_error_set(e, 500, NULL, "out of memory");
	int j = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, p) {
		int64_t v;
		if (!cJSON_IsNumber(it) || mh_whole(it->valuedouble, 0, mi->vocab_size - 1, &v) != 0) {
			free(t);
			return api_error_set(e, 400, "prompt",
					     "token ids must be whole numbers from 0 to %d",
					     mi->vocab_size - 1);
		}
		t[j++] = (int32_t)v;
	}
	*ids = t;
	*n = k;
	return 0;
}

int api_parse(server *sv, int chat, const cJSON *b, api_call *c, api_error *e)
{
	memset(c, 0, sizeof *c);
	c->chat = chat;
	const engine_info *mi = engine_model(sv->eng);
	if (!mi)
		return api_error_set(e, 503, NULL, "the model is still loading");
	if (!cJSON_IsObject(b))
		return api_error_set(e, 400, NULL, "the body must be a JSON object");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(b, "model");
	if (m && !cJSON_IsNull(m) && !cJSON_IsString(m))
		return api_error_set(e, 400, "model", "'model' must be a string");
	if (cJSON_IsString(m) && strcmp(m->valuestring, sv->model_name) != 0) {
		api_error_set(e, 404, "model", "the model '%.200s' does not exist (this server has '%s')",
			      m->valuestring, sv->model_name);
		e->code = "model_not_found";
		return -1;
	}
	int64_t n = 1, max_tokens = -1;
	if (get_int(b, "n", 1, 1, &n, e) < 0)
		return -1;
	int rc = get_int(b, "max_tokens", 1, INT32_MAX, &max_tokens, e);
	if (rc == 0 && chat)
		rc = get_int(b, "max_completion_tokens", 1, INT32_MAX, &max_tokens, e);
	if (rc < 0) {
		if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(b, "max_tokens")) ||
		    cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(b, "max_completion_tokens")))
			snprintf(e->message, sizeof e->message, "'%s' must be at least 1", e->param);
		return -1;
	}
	if (get_bool(b, "stream", &c->stream, e) < 0)
		return -1;
	const cJSON *so = cJSON_GetObjectItemCaseSensitive(b, "stream_options");
	if (so && !cJSON_IsNull(so)) {
		if (!cJSON_IsObject(so))
			return api_error_set(e, 400, "stream_options", "'stream_options' must be an object");
		if (get_bool(so, "include_usage", &c->include_usage, e) < 0)
			return -1;
	}
	int32_t *ids = NULL;
	int n_ids = 0, json = 0;
	const char *forced = NULL;
	const cJSON *schema = NULL;
	if (chat) {
		const cJSON *tools = cJSON_GetObjectItemCaseSensitive(b, "tools");
		if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools))
			return api_error_set(e, 400, "tools", "'tools' must be a list");
		c->tools = cJSON_GetArraySize(tools) > 0;
		if (parse_tool_choice(b, c, &forced, e) != 0 ||
		    parse_response_format(b, &json, &schema, e) != 0 ||
		    chat_prompt(sv, b, c->tools, &ids, &n_ids, e) != 0)
			return -1;
	} else if (parse_response_format(b, &json, &schema, e) != 0 ||
		   parse_prompt(sv, b, &ids, &n_ids, e) != 0) {
		return -1;
	}
	if (!(c->req = engine_req_new(ids, n_ids))) {
		free(ids);
		return api_error_set(e, 500, NULL, "out of memory");
	}
	engine_req *r = c->req;
	if (parse_sampling(b, r, e) != 0 || parse_stop(b, r, e) != 0)
		return -1;
	if ((forced || json) && !sv->tk)
		return api_error_set(e, 400, forced ? "tool_choice" : "response_format",
				     "the model has no tokenizer.json: its replies cannot be held to a "
				     "form");
	char err[MH_ERRLEN];
	if (forced && forced_calls(b, forced, !*forced && !c->one_call, r, e) != 0)
		return -1;
	if (!forced && json && !(r->shape = cn_grammar_json(schema, err, sizeof err)))
		return api_error_set(e, strcmp(err, "out of memory") ? 400 : 500, "response_format",
				     "'response_format': %s", err);
	const char *eot = chat ? chat_stop(sv) : NULL;
	if (eot && *eot && r->n_stop < ENGINE_MAX_STOP) { /* the end of the turn, as text */
		if (!(r->stop[r->n_stop] = strdup(eot)))
			return api_error_set(e, 500, NULL, "out of memory");
		r->n_stop++;
	}
	/* completions: 16 as OpenAI's; chat: to the end of the turn or of the context */
	int room = mi->n_ctx - n_ids + 1; /* the last token sampled needs no room */
	if (max_tokens < 0)
		max_tokens = chat ? room : 16;
	r->max_tokens = max_tokens < room ? (int)max_tokens : room;
	r->hold = c->tools ? TOOL_OPEN : NULL;
	static unsigned long long serial;
	c->created = (long long)time(NULL);
	snprintf(c->id, sizeof c->id, "%s-%llx%04llx", chat ? "chatcmpl" : "cmpl",
		 (unsigned long long)c->created,
		 __atomic_add_fetch(&serial, 1, __ATOMIC_RELAXED) & 0xffff);
	return 0;
}

void api_call_free(server *sv, api_call *c)
{
	if (c->req)
		engine_release(sv->eng, c->req);
	c->req = NULL;
}

/* ---- tool calls --------------------------------------------------------------------- */

static int blank(const char *s, const char *end)
{
	for (; s < end; s++)
		if (*s != ' ' && *s != '\n' && *s != '\r' && *s != '\t')
			return 0;
	return 1;
}

/* <tool_call>{"name": ..., "arguments": {...}}</tool_call>, one or more,
 * as Qwen2.5's and Hermes' templates teach: OpenAI tool_calls, or NULL when
 * the text is not exactly that, JSON and all (then it stays text, as
 * llama.cpp and vLLM return a reply whose tool call does not parse). */
static cJSON *parse_tool_calls(const char *s, const char *call_id)
{
	cJSON *calls = cJSON_CreateArray();
	int k = 0;
	while (calls) {
		while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
			s++;
		if (!*s)
			break;
		if (strncmp(s, TOOL_OPEN, strlen(TOOL_OPEN)) != 0)
			goto bad;
		s += strlen(TOOL_OPEN);
		const char *end = strstr(s, TOOL_CLOSE);
		size_t n = end ? (size_t)(end - s) : strlen(s);
		const char *after = NULL;
		cJSON *j = cJSON_ParseWithLengthOpts(s, n, &after, 0);
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
		const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "arguments");
		if (!cJSON_IsString(name) || !after || !blank(after, s + n)) {
			cJSON_Delete(j);
			goto bad;
		}
		char *a = args ? (cJSON_IsString(args) ? strdup(args->valuestring)
						   : cJSON_PrintUnformatted(args))
			       : strdup("{}");
		cJSON *call = cJSON_CreateObject(), *fn;
		char id[64];
		snprintf(id, sizeof id, "call_%s_%d", call_id, k++);
		if (a && call && (fn = cJSON_CreateObject())) {
			cJSON_AddStringToObject(call, "id", id);
			cJSON_AddStringToObject(call, "type", "function");
			cJSON_AddStringToObject(fn, "name", name->valuestring);
			cJSON_AddStringToObject(fn, "arguments", a);
			cJSON_AddItemToObject(call, "function", fn);
		}
		free(a);
		cJSON_Delete(j);
		cJSON_AddItemToArray(calls, call);
		s += n;
		if (end)
			s += strlen(TOOL_CLOSE);
	}
	if (cJSON_GetArraySize(calls) > 0)
		return calls;
bad:
	cJSON_Delete(calls);
	return NULL;
}

/* ---- responses ------------------------------------------------------------------------ */

typedef struct snap {
	char *text;      /* new text (malloc'd) */
	size_t n;
	size_t cuts[64]; /* where tokens end in text, the last at n */
	int n_cuts;
	char *tail;      /* text from the hold on, when done with one */
	char *held;      /* the same so far, while not done */
	size_t readable; /* engine_readable() */
	int done, status, n_gen;
	const char *finish;
	char err[MH_ERRLEN];
	char fingerprint[160];
} snap;

/* What the engine has published past `from`; `upto_safe`: only what can
 * be sent. */
static int take(server *sv, api_call *c, size_t from, snap *s)
{
	engine_req *r = c->req;
	memset(s, 0, sizeof *s);
	engine_lock(sv->eng);
	size_t end = r->safe;
	if (r->done && r->hold_at >= 0 && !r->err[0]) {
		end = (size_t)r->hold_at;
		s->tail = strdup(r->text + r->hold_at);
	} else if (r->hold_at >= 0 && r->held > (size_t)r->hold_at) {
		s->held = strndup(r->text + r->hold_at, r->held - (size_t)r->hold_at);
	}
	s->readable = engine_readable(r);
	if (end < from)
		end = from;
	s->n = end - from;
	for (int i = 0; i < r->n_ends && s->n_cuts < 63; i++)
		if (r->ends[i] > from && r->ends[i] < end)
			s->cuts[s->n_cuts++] = r->ends[i] - from;
	s->cuts[s->n_cuts++] = s->n;
	s->text = malloc(s->n + 1);
	if (s->text) {
		memcpy(s->text, r->text ? r->text + from : "", s->n);
		s->text[s->n] = 0;
	}
	s->done = r->done;
	s->status = r->status;
	s->finish = r->finish;
	s->n_gen = r->n_gen;
	snprintf(s->err, sizeof s->err, "%s", r->err);
	snprintf(s->fingerprint, sizeof s->fingerprint, "%s", r->plugin);
	int lost = (r->done && r->hold_at >= 0 && !s->err[0] && !s->tail) ||
		   (!r->done && r->hold_at >= 0 && r->held > (size_t)r->hold_at && !s->held);
	engine_unlock(sv->eng);
	if (!s->text || lost) {
		free(s->text);
		free(s->tail);
		free(s->held);
		return -1;
	}
	return 0;
}

static void add_usage(cJSON *o, const api_call *c, int n_gen)
{
	cJSON *u = cJSON_AddObjectToObject(o, "usage");
	cJSON_AddNumberToObject(u, "prompt_tokens", c->req->n_prompt);
	cJSON_AddNumberToObject(u, "completion_tokens", n_gen);
	cJSON_AddNumberToObject(u, "total_tokens", c->req->n_prompt + n_gen);
}

static cJSON *envelope(server *sv, const api_call *c, const char *object, const snap *s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", c->id);
	cJSON_AddStringToObject(o, "object", object);
	cJSON_AddNumberToObject(o, "created", (double)c->created);
	cJSON_AddStringToObject(o, "model", sv->model_name);
	if (s->fingerprint[0]) /* the plugin that ran the request, and the swap count */
		cJSON_AddStringToObject(o, "system_fingerprint", s->fingerprint);
	return o;
}

static void add_finish(cJSON *ch, const char *finish)
{
	if (finish)
		cJSON_AddStringToObject(ch, "finish_reason", finish);
	else
		cJSON_AddNullToObject(ch, "finish_reason");
}

/* The reply's tool calls (the text held from the first <tool_call> on), as
 * the request allows them; NULL when there are none or they do not parse. */
static cJSON *reply_calls(const api_call *c, const char *tail)
{
	cJSON *calls = tail ? parse_tool_calls(tail, c->id) : NULL;
	while (calls && c->one_call && cJSON_GetArraySize(calls) > 1)
		cJSON_DeleteItemFromArray(calls, 1);
	return calls;
}

char *api_result(server *sv, api_call *c, api_error *e)
{
	snap s;
	if (take(sv, c, 0, &s) != 0)
		return api_error_set(e, 500, NULL, "out of memory"), NULL;
	if (s.err[0]) {
		api_error_set(e, s.status ? s.status : 500, NULL, "%s", s.err);
		free(s.text);
		free(s.tail);
		free(s.held);
		return NULL;
	}
	cJSON *calls = reply_calls(c, s.tail);
	const char *finish = calls ? "tool_calls" : s.finish;
	cJSON *o = envelope(sv, c, c->chat ? "chat.completion" : "text_completion", &s);
	cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
	cJSON_AddItemToArray(choices, ch);
	cJSON_AddNumberToObject(ch, "index", 0);
	if (c->chat) {
		cJSON *msg = cJSON_AddObjectToObject(ch, "message");
		cJSON_AddStringToObject(msg, "role", "assistant");
		if (calls) {
			if (!blank(s.text, s.text + s.n)) /* what the model said before its calls */
				cJSON_AddStringToObject(msg, "content", s.text);
			else
				cJSON_AddNullToObject(msg, "content");
			cJSON_AddItemToObject(msg, "tool_calls", calls);
		} else {
			char *all = s.tail ? malloc(s.n + strlen(s.tail) + 1) : NULL;
			if (all)
				strcat(strcpy(all, s.text), s.tail);
			cJSON_AddStringToObject(msg, "content", all ? all : s.text);
			free(all);
		}
	} else {
		cJSON_AddStringToObject(ch, "text", s.text);
	}
	cJSON_AddNullToObject(ch, "logprobs");
	add_finish(ch, finish);
	add_usage(o, c, s.n_gen);
	free(s.text);
	free(s.tail);
	free(s.held);
	return body_json(o, e);
}

/* ---- server-sent events ---------------------------------------------------------------- */

typedef struct sse {
	char *p;
	size_t len;
	int oom;
} sse;

static void sse_put(sse *b, cJSON *o)
{
	char *j = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	size_t n = j ? strlen(j) : 0;
	char *q = j ? realloc(b->p, b->len + n + 9) : NULL;
	if (!q) {
		b->oom = 1;
		free(j);
		return;
	}
	b->p = q;
	b->len += (size_t)sprintf(b->p + b->len, "data: %s\n\n", j);
	free(j);
}

/* One chunk: text (may be NULL), tool-call deltas (taken), a finish reason. */
static cJSON *chunk(server *sv, api_call *c, const snap *s, const char *text, cJSON *calls,
		    const char *finish, int role)
{
	cJSON *o = envelope(sv, c, c->chat ? "chat.completion.chunk" : "text_completion", s);
	cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
	cJSON_AddItemToArray(choices, ch);
	cJSON_AddNumberToObject(ch, "index", 0);
	if (c->chat) {
		cJSON *d = cJSON_AddObjectToObject(ch, "delta");
		if (role)
			cJSON_AddStringToObject(d, "role", "assistant");
		if (text)
			cJSON_AddStringToObject(d, "content", text);
		if (calls)
			cJSON_AddItemToObject(d, "tool_calls", calls);
	} else {
		cJSON_AddStringToObject(ch, "text", text ? text : "");
	}
	cJSON_AddNullToObject(ch, "logprobs");
	add_finish(ch, finish);
	return o;
}

/* tool_calls of a delta: one call's index, and its id and name when given. */
static cJSON *call_delta(int index, const char *id, const char *name, const char *args)
{
	cJSON *a = cJSON_CreateArray(), *d = cJSON_CreateObject(), *fn;
	if (!a || !d) {
		cJSON_Delete(a);
		cJSON_Delete(d);
		return NULL;
	}
	cJSON_AddItemToArray(a, d);
	cJSON_AddNumberToObject(d, "index", index);
	if (id) {
		cJSON_AddStringToObject(d, "id", id);
		cJSON_AddStringToObject(d, "type", "function");
	}
	if ((fn = cJSON_AddObjectToObject(d, "function"))) {
		if (name)
			cJSON_AddStringToObject(fn, "name", name);
		cJSON_AddStringToObject(fn, "arguments", args);
	}
	return a;
}

/* Each call as OpenAI streams one: a delta with its index, id, type and
 * name (arguments ""), then its arguments under the same index; from
 * call `from` on (those before went out as they were written). */
static void put_tool_calls(server *sv, api_call *c, const snap *s, sse *b, cJSON *calls,
			   int from)
{
	int i = 0;
	const cJSON *call;
	cJSON_ArrayForEach(call, calls) {
		if (i < from) {
			i++;
			continue;
		}
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(call, "id"));
		const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fn, "name"));
		const char *args = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fn, "arguments"));
		cJSON *head = call_delta(i, id, name, ""), *rest = call_delta(i, NULL, NULL, args);
		if (!id || !name || !args || !head || !rest) {
			cJSON_Delete(head);
			cJSON_Delete(rest);
			b->oom = 1;
			return;
		}
		sse_put(b, chunk(sv, c, s, NULL, head, NULL, 0));
		sse_put(b, chunk(sv, c, s, NULL, rest, NULL, 0));
		i++;
	}
}

/* The tool calls in held text h[0..n) (all of it when final) that can go
 * out as they are written: each call's head once, then its arguments'
 * text past what has gone out (c->calls_open, c->args_sent). */
static void stream_calls(server *sv, api_call *c, const snap *s, sse *b, const char *h, size_t n)
{
	tc_span sp[TC_MAX];
	int stop, k = toolcall_scan(h, n, sp, c->one_call ? 1 : TC_MAX, &stop);
	for (int i = c->calls_open ? c->calls_open - 1 : 0; i < k; i++) {
		if (i >= c->calls_open) {
			/* a new call: when its arguments object has begun, and the
			 * calls before it went out this way */
			if (!sp[i].obj || (i > 0 && !sp[i - 1].complete))
				break;
			char id[80];
			snprintf(id, sizeof id, "call_%s_%d", c->id, i);
			cJSON *head = call_delta(i, id, sp[i].name, "");
			if (!head) {
				b->oom = 1;
				break;
			}
			sse_put(b, chunk(sv, c, s, NULL, head, NULL, 0));
			c->calls_open = i + 1;
			c->args_sent = 0;
		}
		size_t len = sp[i].a1 - sp[i].a0;
		if (len > c->args_sent) {
			char *a = strndup(h + sp[i].a0 + c->args_sent, len - c->args_sent);
			cJSON *d = a ? call_delta(i, NULL, NULL, a) : NULL;
			free(a);
			if (!d) {
				b->oom = 1;
				break;
			}
			sse_put(b, chunk(sv, c, s, NULL, d, NULL, 0));
			c->args_sent = len;
		}
		if (!sp[i].complete)
			break;
	}
	toolcall_free(sp, k);
}

char *api_events(server *sv, api_call *c, int *end)
{
	sse b = { .p = strdup("") };
	snap s;
	*end = 0;
	if (!b.p || take(sv, c, c->sent, &s) != 0) {
		free(b.p);
		return NULL;
	}
	if (c->chat && !c->started)
		sse_put(&b, chunk(sv, c, &s, "", NULL, NULL, 1));
	c->started = 1;
	if (s.err[0]) {
		api_error e;
		api_error_set(&e, s.status ? s.status : 500, NULL, "%s", s.err);
		char *j = api_error_json(&e);
		sse_put(&b, j ? cJSON_Parse(j) : NULL);
		free(j);
	} else {
		/* one event a token (the rest of a long backlog in the last) */
		for (int i = 0, at = 0; i < s.n_cuts; i++) {
			size_t k = s.cuts[i] - (size_t)at;
			if (!k)
				continue;
			char save = s.text[s.cuts[i]];
			s.text[s.cuts[i]] = 0;
			sse_put(&b, chunk(sv, c, &s, s.text + at, NULL, NULL, 0));
			s.text[s.cuts[i]] = save;
			at = (int)s.cuts[i];
		}
		c->sent += s.n;
		if (c->chat && s.held)
			stream_calls(sv, c, &s, &b, s.held, strlen(s.held));
		if (s.done) {
			/* the calls that went out as they were written stay calls,
			 * whatever follows them */
			if (c->chat && c->calls_open && s.tail)
				stream_calls(sv, c, &s, &b, s.tail, strlen(s.tail));
			cJSON *calls = reply_calls(c, s.tail);
			if (calls)
				put_tool_calls(sv, c, &s, &b, calls, c->calls_open);
			else if (s.tail && *s.tail && !c->calls_open)
				sse_put(&b, chunk(sv, c, &s, s.tail, NULL, NULL, 0));
			sse_put(&b, chunk(sv, c, &s, c->chat ? NULL : "", NULL,
					  calls || c->calls_open ? "tool_calls" : s.finish, 0));
			cJSON_Delete(calls);
			if (c->include_usage) {
				cJSON *o = envelope(sv, c, c->chat ? "chat.completion.chunk"
								   : "text_completion", &s);
				cJSON_AddArrayToObject(o, "choices");
				add_usage(o, c, s.n_gen);
				sse_put(&b, o);
			}
		}
	}
	if (s.done || s.err[0]) {
		char *q = realloc(b.p, b.len + 15);
		if (q) {
			b.p = q;
			b.len += (size_t)sprintf(b.p + b.len, "data: [DONE]\n\n");
		} else {
			b.oom = 1;
		}
		*end = 1;
	}
	c->seen = s.readable;
	free(s.text);
	free(s.tail);
	free(s.held);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* ---- models, tokenize, detokenize -------------------------------------------------------- */

char *api_models(server *sv, api_error *e)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "object", "list");
	cJSON *data = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
	cJSON_AddItemToArray(data, m);
	cJSON_AddStringToObject(m, "id", sv->model_name);
	cJSON_AddStringToObject(m, "object", "model");
	cJSON_AddNumberToObject(m, "created", 0);
	cJSON_AddStringToObject(m, "owned_by", "modelhost");
	const engine_info *mi = engine_model(sv->eng);
	if (mi) {
		cJSON *meta = cJSON_AddObjectToObject(m, "meta");
		cJSON_AddNumberToObject(meta, "n_ctx", mi->n_ctx);
		cJSON_AddNumberToObject(meta, "n_vocab", mi->vocab_size);
	}
	return body_json(o, e);
}

char *api_tokenize(server *sv, const cJSON *b, api_error *e)
{
	if (!sv->tk)
		return api_error_set(e, 400, NULL, "the model has no tokenizer.json"), NULL;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "content");
	if (!cJSON_IsString(t))
		return api_error_set(e, 400, "content", "'content' must be a string"), NULL;
	if (!valid_utf8(t->valuestring))
		return api_error_set(e, 400, "content", "'content' is not valid UTF-8"), NULL;
	int special = 1;
	if (get_bool(b, "add_special", &special, e) < 0)
		return NULL;
	int32_t *ids;
	size_t n;
	if (tokenizer_encode(sv->tk, t->valuestring, strlen(t->valuestring), special, &ids, &n) != 0)
		return api_error_set(e, 500, NULL, "out of memory"), NULL;
	cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "tokens");
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
	free(ids);
	return body_json(o, e);
}

char *api_detokenize(server *sv, const cJSON *b, api_error *e)
{
	if (!sv->tk)
		return api_error_set(e, 400, NULL, "the model has no tokenizer.json"), NULL;
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(b, "tokens"), *it;
	int32_t vocab = tokenizer_vocab_size(sv->tk);
	if (!cJSON_IsArray(a))
		return api_error_set(e, 400, "tokens", "'tokens' must be a list of token ids"), NULL;
	int n = cJSON_GetArraySize(a), k = 0;
	int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
	if (!ids)
		return api_error_set(e, 500, NULL, "out of memory"), NULL;
	cJSON_ArrayForEach(it, a) {
		int64_t v;
		if (!cJSON_IsNumber(it) || mh_whole(it->valuedouble, 0, vocab - 1, &v) != 0) {
			free(ids);
			return api_error_set(e, 400, "tokens",
					     "token ids must be whole numbers from 0 to %d", vocab - 1),
			       NULL;
		}
		ids[k++] = (int32_t)v;
	}
	size_t len;
	char *text = tokenizer_decode(sv->tk, ids, (size_t)n, 0, &len);
	free(ids);
	char *clean = text ? api_clean_utf8(text, len) : NULL;
	free(text);
	if (!clean)
		return api_error_set(e, 500, NULL,
				     "decoding failed: out of memory, or a decoder step of tokenizer.json "
				     "grows the text more than %d times", TOKENIZER_MAX_GROWTH),
		       NULL;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "content", clean);
	free(clean);
	return body_json(o, e);
}
