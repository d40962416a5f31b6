/* SPDX-License-Identifier: MIT */
/* chat_template.h - a model's chat template (the Jinja2 program in its
 * tokenizer_config.json) rendered as transformers' apply_chat_template does:
 * Jinja2 3.1 in an ImmutableSandboxedEnvironment with trim_blocks,
 * lstrip_blocks and loopcontrols, tojson (ensure_ascii=False, key order
 * kept), raise_exception(msg) and strftime_now(fmt).  The engine, a subset
 * of Jinja2 written for this, is in host/text/template/ (docs/chat-templates.md).
 *
 * A loaded template is immutable: renders may run concurrently from several
 * threads on the same mh_chat_template. */
#ifndef MH_CHAT_TEMPLATE_H
#define MH_CHAT_TEMPLATE_H

#include <cJSON.h>
#include <stddef.h>
#include <time.h>

typedef struct mh_chat_template mh_chat_template;
/* DIR/tokenizer_config.json's chat_template (a string, or a list of {"name","template"}: the one named
 * "default", or the first), with bos_token/eos_token/other special tokens from that file as variables.
 * NULL + one-line err naming the file when the model has none. */
mh_chat_template *chat_template_from_dir(const char *dir, char *err, size_t errlen);
/* A template file's text; special tokens from dir's tokenizer_config.json when dir != NULL. */
mh_chat_template *chat_template_from_file(const char *path, const char *dir, char *err, size_t errlen);
/* ctx: a cJSON object with "messages" and optionally "tools", "documents", "add_generation_prompt",
 * and any variable overriding the defaults (bos_token...). now: strftime_now's time (0: the current time).
 * A malloc'd string, or NULL + one-line err (raise_exception's message included). */
char *chat_template_render(const mh_chat_template *t, const cJSON *ctx, time_t now, char *err, size_t errlen);
/* The end-of-turn/eos token text the template uses, if known (for stopping), else NULL. */
const char *chat_template_eos(const mh_chat_template *t);
void chat_template_free(mh_chat_template *t);

/* The same from a template's text (name: what errors call it), for tests
 * and tools; special tokens from dir's tokenizer_config.json when dir != NULL. */
mh_chat_template *chat_template_from_string(const char *text, size_t len, const char *name,
					   const char *dir, char *err, size_t errlen);

#endif
