/* chat.c - /v1/chat/completions' prompt: the messages (and tools) through
 * the model's chat template, tokenized.  The template engine is the
 * chat-template work (host/text/chat_template.h); until it is in, no model
 * has a template here and every chat request gets the 400 a model without
 * one gets. */
#include "server/server.h"

#include <stdio.h>

int chat_setup(server *sv, const char *dir, const char *file, char *err)
{
	(void)dir;
	sv->tmpl = NULL;
	if (file) {
		mh_errf(err, "serve: --chat-template: this build cannot read chat templates yet");
		return -1;
	}
	return 0;
}

void chat_free(server *sv)
{
	sv->tmpl = NULL;
}

int chat_prompt(server *sv, const cJSON *body, int32_t **ids, int *n, api_error *e)
{
	(void)body, (void)ids, (void)n;
	return api_error_set(e, 400, "messages",
			     "the model '%s' has no chat template: use /v1/completions, or start the "
			     "server with --chat-template FILE",
			     sv->model_name);
}
