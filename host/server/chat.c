/* SPDX-License-Identifier: MIT */
/* chat.c - /v1/chat/completions' prompt: the messages (and tools) through
 * the model's chat template (host/text/chat_template.h), tokenized as
 * `modelhost chat` does (the template writes any BOS itself). */
#include "server/server.h"
#include "text/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int chat_setup(server *sv, const char *dir, const char *file, char *err)
{
	char e[MH_ERRLEN] = "";
	sv->tmpl = NULL;
	if (file) {
		char *cfg = mh_path_join(dir, "tokenizer_config.json");
		sv->tmpl = chat_template_from_file(file, cfg && mh_is_file(cfg) ? dir : NULL, e, sizeof e);
		free(cfg);
		if (!sv->tmpl) {
			mh_errf(err, "%s", e);
			return -1;
		}
		return 0;
	}
	/* a model without a template still serves completions; chat says why not */
	sv->tmpl = chat_template_from_dir(dir, e, sizeof e);
	return 0;
}

void chat_free(server *sv)
{
	chat_template_free(sv->tmpl);
	sv->tmpl = NULL;
}

const char *chat_stop(server *sv)
{
	return sv->tmpl ? chat_template_eos(sv->tmpl) : NULL;
}

/* A message's content as the templates expect it: a string (OpenAI's list
 * of parts has its text parts joined), or null. */
static int content_of(const cJSON *m, cJSON **out, api_error *e)
{
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
	if (!c || cJSON_IsNull(c) || cJSON_IsString(c)) {
		*out = NULL;
		return 0;
	}
	if (!cJSON_IsArray(c))
		return api_error_set(e, 400, "messages",
				     "a message's content must be a string, null or a list of parts");
	size_t n = 1;
	const cJSON *p;
	cJSON_ArrayForEach(p, c) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
		const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
		if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") != 0 || !cJSON_IsString(t))
			return api_error_set(e, 400, "messages",
					     "only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
		n += strlen(t->valuestring);
	}
	char *s = malloc(n), *q = s;
	if (!s)
		return api_error_set(e, 500, NULL, "out of memory");
	cJSON_ArrayForEach(p, c) {
		const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
		size_t k = strlen(t);
		memcpy(q, t, k);
		q += k;
	}
	*q = 0;
	*out = cJSON_CreateString(s);
	free(s);
	return *out ? 0 : api_error_set(e, 500, NULL, "out of memory");
}

/* An assistant message's tool calls as the templates expect them: OpenAI
 * sends each call's arguments as a JSON string, while Qwen2.5's template
 * (and Hermes', for anything but a string) writes them with `tojson`, which
 * would quote the string: the model would see its own call rendered as it
 * never wrote it.  Arguments that parse as a JSON object become that object,
 * as transformers documents and vLLM does; anything else stays as sent. */
static void tool_call_arguments(cJSON *m)
{
	cJSON *call, *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
	if (!cJSON_IsArray(calls))
		return;
	cJSON_ArrayForEach(call, calls) {
		cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
		cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
		if (!cJSON_IsString(args))
			continue;
		cJSON *o = cJSON_ParseWithOpts(args->valuestring, NULL, 1);
		if (!cJSON_IsObject(o) || !cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", o))
			cJSON_Delete(o);
	}
}

int chat_prompt(server *sv, const cJSON *body, int with_tools, int32_t **ids, int *n,
		api_error *e)
{
	char err[MH_ERRLEN] = "";
	if (!sv->tmpl)
		return api_error_set(e, 400, "messages",
				     "the model '%s' has no chat template: use /v1/completions, or start the "
				     "server with --chat-template FILE",
				     sv->model_name);
	if (!sv->tk)
		return api_error_set(e, 400, NULL, "the model has no tokenizer.json");
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages"), *m;
	if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
		return api_error_set(e, 400, "messages", "'messages' must be a non-empty list");
	cJSON_ArrayForEach(m, msgs) {
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
		if (!cJSON_IsObject(m) || !cJSON_IsString(role))
			return api_error_set(e, 400, "messages",
					     "every message must be an object with a 'role' string");
	}
	cJSON *ctx = cJSON_CreateObject(), *copy = cJSON_Duplicate(msgs, 1);
	if (!ctx || !copy) {
		cJSON_Delete(ctx);
		cJSON_Delete(copy);
		return api_error_set(e, 500, NULL, "out of memory");
	}
	cJSON_AddItemToObject(ctx, "messages", copy);
	cJSON *cm;
	cJSON_ArrayForEach(cm, copy) {
		cJSON *text = NULL;
		if (content_of(cm, &text, e) != 0) {
			cJSON_Delete(ctx);
			return -1;
		}
		if (text)
			cJSON_ReplaceItemInObjectCaseSensitive(cm, "content", text);
		tool_call_arguments(cm);
	}
	const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
	if (with_tools && cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0)
		cJSON_AddItemToObject(ctx, "tools", cJSON_Duplicate(tools, 1));
	cJSON_AddBoolToObject(ctx, "add_generation_prompt", 1);
	char *prompt = chat_template_render(sv->tmpl, ctx, 0, err, sizeof err);
	cJSON_Delete(ctx);
	if (!prompt)
		return api_error_set(e, 400, "messages", "%s", err);
	size_t len = strlen(prompt), k;
	if (tokenizer_utf8_valid_prefix(prompt, len) < len) {
		free(prompt);
		return api_error_set(e, 400, "messages", "the conversation is not valid UTF-8");
	}
	int32_t *t;
	int enc = tokenizer_encode(sv->tk, prompt, len, 0, &t, &k);
	free(prompt);
	if (enc != 0)
		return api_error_set(e, 500, NULL, "out of memory tokenizing the conversation");
	const engine_info *mi = engine_model(sv->eng);
	if (k == 0 || k > (size_t)mi->n_ctx) {
		free(t);
		return k ? api_error_set(e, 400, "messages",
					 "the conversation has %zu tokens, more than the context length of %d",
					 k, mi->n_ctx)
			 : api_error_set(e, 400, "messages", "the chat template rendered nothing");
	}
	*ids = t;
	*n = (int)k;
	return 0;
}
