/* SPDX-License-Identifier: MIT */
/* cmd_chat.c - `modelhost chat-template`: a chat template rendered for a
 * context file, exactly; `modelhost chat`: a conversation through a model's
 * chat template. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "text/chat_template.h"
#include "base/util.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
	OPT_TEMPLATE = OPT_FIRST_COMMAND_OPT,
	OPT_CONTEXT,
	OPT_NOW,
};

/* "YYYY-MM-DDTHH:MM:SS" (or "YYYY-MM-DD") as local time, as Python's
 * datetime.now() would see it. */
static int parse_now(const char *s, time_t *out)
{
	struct tm tm = { 0 };
	char tail;
	int n = sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		       &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &tail);
	if (n != 6 && !(n == 3 && strlen(s) == 10))
		return -1;
	if (tm.tm_year < 1900 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	tm.tm_isdst = -1;
	*out = mktime(&tm);
	return *out == (time_t)-1 ? -1 : 0;
}

static cJSON *read_json(const char *path)
{
	char err[MH_ERRLEN];
	size_t len;
	char *text = mh_read_file(path, &len, err);
	if (!text) {
		cli_fail("%s", err);
		return NULL;
	}
	cJSON *j = cJSON_ParseWithLength(text, len);
	free(text);
	if (!j || !cJSON_IsObject(j)) {
		cli_fail("%s: not a JSON object", path);
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

static const char template_help[] =
	"Usage: modelhost chat-template (-m DIR | --template FILE) --context FILE.json\n"
	"                               [--now YYYY-MM-DDTHH:MM:SS]\n"
	"Print a chat template's rendering of a conversation, exactly as Hugging Face\n"
	"transformers' apply_chat_template renders it, nothing added.\n\n"
	"  -m, --model DIR        the template of DIR/tokenizer_config.json\n"
	"      --template FILE    a template file (special tokens from -m DIR's config\n"
	"                         when -m is given too)\n"
	"      --context FILE     JSON object: \"messages\", and optionally \"tools\",\n"
	"                         \"documents\", \"add_generation_prompt\", \"bos_token\",\n"
	"                         \"eos_token\" or any other variable the template reads\n"
	"      --now TIME         the time strftime_now() sees (default: now)\n\n"
	"Exit status 1 with one line on stderr when the template fails, including\n"
	"the message of the template's own raise_exception().\n";

int cmd_chat_template(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "template", required_argument, NULL, OPT_TEMPLATE },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "now", required_argument, NULL, OPT_NOW },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *model = NULL, *file = NULL, *context = NULL;
	time_t now = 0;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+m:h", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(template_help, stdout);
			return 0;
		case 'm': model = optarg; break;
		case OPT_TEMPLATE: file = optarg; break;
		case OPT_CONTEXT: context = optarg; break;
		case OPT_NOW:
			if (parse_now(optarg, &now) != 0)
				return cli_fail("chat-template: --now expects YYYY-MM-DDTHH:MM:SS, not '%s'",
						optarg);
			break;
		default:
			cli_fail("chat-template: invalid option or missing value: %s", argv[optind - 1]);
			return cli_usage("chat-template", template_help);
		}
	}
	if (optind < argc) {
		cli_fail("chat-template: unexpected argument '%s'", argv[optind]);
		return cli_usage("chat-template", template_help);
	}
	if ((!model && !file) || !context) {
		cli_fail("chat-template: give -m DIR or --template FILE, and --context FILE");
		return cli_usage("chat-template", template_help);
	}
	char err[MH_ERRLEN];
	cJSON *ctx = read_json(context);
	if (!ctx)
		return 1;
	mh_chat_template *t = file ? chat_template_from_file(file, model, err, sizeof err)
				   : chat_template_from_dir(model, err, sizeof err);
	int rc = 1;
	if (!t) {
		cli_fail("%s", err);
	} else {
		char *out = chat_template_render(t, ctx, now, err, sizeof err);
		if (!out)
			cli_fail("%s", err);
		else if (fputs(out, stdout) < 0)
			cli_fail("chat-template: cannot write to stdout");
		else
			rc = 0;
		free(out);
	}
	chat_template_free(t);
	cJSON_Delete(ctx);
	return rc;
}
