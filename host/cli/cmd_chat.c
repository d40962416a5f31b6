/* SPDX-License-Identifier: MIT */
/* cmd_chat.c - `modelhost chat-template`: a chat template rendered for a
 * context file, exactly; `modelhost chat`: a conversation through a model's
 * chat template. */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "text/chat_template.h"
#include "plugin/paths.h"
#include "base/util.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* The file parsed as JSON into *j (NULL when it is not JSON); -1 after a
 * message when it cannot be read. */
static int parse_file(const char *path, cJSON **j)
{
	char err[MH_ERRLEN];
	size_t len;
	char *text = mh_read_file(path, &len, err);
	if (!text)
		return cli_fail("%s", err), -1;
	*j = cJSON_ParseWithLength(text, len);
	free(text);
	return 0;
}

static cJSON *read_json(const char *path)
{
	cJSON *j;
	if (parse_file(path, &j) != 0)
		return NULL;
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

/* ---- chat ------------------------------------------------------------------------ */
static const char chat_help[] =
	"Usage: modelhost chat [-m DIR] [--system TEXT] [--chat-template FILE]\n"
	"                      [--messages FILE.json] [-n N] [OPTIONS]\n"
	"A conversation with an instruction-tuned model through its chat template\n"
	"(tokenizer_config.json's chat_template, or --chat-template FILE): a message\n"
	"per line of stdin, the reply streamed as it comes, until the template's\n"
	"end-of-turn token.  Each turn renders the whole conversation again and\n"
	"keeps the longest common prefix of the KV cache.\n\n"
	"  -m, --model DIR          Hugging Face model directory (default: the bundled\n"
	"                           model, which has no chat template: give one)\n"
	"      --system TEXT        a system message first\n"
	"      --chat-template FILE a Jinja2 chat template instead of the model's\n"
	"      --messages FILE      not interactive: the conversation so far (a JSON\n"
	"                           array of {\"role\", \"content\"}, or an object with\n"
	"                           \"messages\" and other template variables such as\n"
	"                           \"tools\"); prints the assistant's reply\n"
	"  -n, --n-predict N        at most N tokens a reply (default: to the end of\n"
	"                           the turn or of the context)\n"
	"      --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty R,\n"
	"      --repeat-last-n N, --seed S   sampling, as for generate\n"
	"  -t, --threads N, -c, --ctx-size N, --plugin NAME, --plugin-dir DIR\n\n"
	"Interactive commands: /reset (a new conversation; the system message stays),\n"
	"/reload (or SIGHUP: rescan the plugins, move the model to the one that\n"
	"should now serve it), /quit.  A line of timings per reply goes to stderr.\n";

typedef struct chat {
	cli_common *o;
	mh_registry *r;
	const char *dir;
	mh_session *s;
	mh_tokenizer *tk;
	mh_sampler *sm;
	mh_chat_template *tpl;
	const char *stop;       /* the text that ends a turn, or NULL */
	cJSON *ctx;             /* the template's variables, "messages" among them */
	int n_keep;             /* messages /reset keeps */
	int32_t *cache;         /* the tokens in the KV cache, in order */
	size_t n_cache;
	int n_predict;          /* -1: no limit */
} chat;

static cJSON *messages(chat *c)
{
	return cJSON_GetObjectItemCaseSensitive(c->ctx, "messages");
}

static int add_message(chat *c, const char *role, const char *content)
{
	cJSON *m = cJSON_CreateObject();
	if (!m || !cJSON_AddStringToObject(m, "role", role) ||
	    !cJSON_AddStringToObject(m, "content", content) || !cJSON_AddItemToArray(messages(c), m)) {
		cJSON_Delete(m);
		return cli_fail("out of memory");
	}
	return 0;
}

static void drop_last_message(chat *c)
{
	cJSON_DeleteItemFromArray(messages(c), cJSON_GetArraySize(messages(c)) - 1);
}

/* Text that may be printed: all of it once the turn is over, else all but
 * what could still become the start of the stop text. */
static size_t printable(const char *text, size_t len, const char *stop, int done)
{
	if (done || !stop)
		return len;
	size_t k = strlen(stop) - 1;
	for (; k > 0; k--)
		if (len >= k && memcmp(text + len - k, stop, k) == 0)
			return len - k;
	return len;
}

/* p[0..n) after *text (*len bytes, NUL-terminated); -1 after a message. */
static int append(char **text, size_t *len, const char *p, size_t n)
{
	char *t = realloc(*text, *len + n + 1);
	if (!t)
		return cli_fail("out of memory"), -1;
	*text = t;
	memcpy(t + *len, p, n);
	*len += n;
	t[*len] = 0;
	return 0;
}

enum { REPLY_OK, REPLY_FAILED, REPLY_TOO_LONG };

/* The assistant's next turn for the conversation in c->ctx, streamed to
 * stdout when stream; *out gets it (malloc'd). */
static int reply(chat *c, int stream, char **out)
{
	char err[MH_ERRLEN] = "";
	mh_session *s = c->s;
	cJSON_DeleteItemFromObjectCaseSensitive(c->ctx, "add_generation_prompt");
	cJSON_AddBoolToObject(c->ctx, "add_generation_prompt", 1);
	char *prompt = chat_template_render(c->tpl, c->ctx, 0, err, sizeof err);
	if (!prompt)
		return cli_fail("%s", err), REPLY_FAILED;
	int32_t *ids = NULL;
	size_t n = 0, len = strlen(prompt);
	if (tokenizer_utf8_valid_prefix(prompt, len) < len) {
		free(prompt);
		return cli_fail("chat: the conversation is not valid UTF-8"), REPLY_FAILED;
	}
	int enc = tokenizer_encode(c->tk, prompt, len, 0, &ids, &n);
	free(prompt);
	if (enc != 0)
		return cli_fail("chat: out of memory tokenizing the conversation"), REPLY_FAILED;
	if (n == 0 || n >= (size_t)s->info->n_ctx) {
		free(ids);
		if (n == 0)
			return cli_fail("chat: the template rendered nothing"), REPLY_FAILED;
		cli_fail("chat: the conversation has grown to %zu tokens, the context holds %d: "
			 "/reset starts a new one", n, s->info->n_ctx);
		return REPLY_TOO_LONG;
	}
	/* keep the longest common prefix of the cache; one token at least is
	 * fed again, for its logits */
	size_t keep = 0;
	while (keep < c->n_cache && keep < n && c->cache[keep] == ids[keep])
		keep++;
	if (keep == n)
		keep--;
	if ((int)keep > s->pos)
		keep = (size_t)s->pos;
	keep = (size_t)session_rewind(s, (int)keep);
	size_t cap = (size_t)s->info->n_ctx;
	int32_t *cache = realloc(c->cache, cap * sizeof *cache);
	float *logits = malloc((size_t)s->info->vocab_size * sizeof *logits);
	mh_detok_stream *ds = tokenizer_stream_new(c->tk, 1);
	char *text = NULL;
	size_t tlen = 0, printed = 0, generated = 0;
	int rc = REPLY_FAILED;
	const char *why = NULL;
	if (cache)
		c->cache = cache;
	if (!cache || !logits || !ds) {
		cli_fail("out of memory");
		goto out;
	}
	memcpy(c->cache, ids, n * sizeof *ids);
	c->n_cache = keep; /* until the forward succeeds */
	double t0 = mh_now();
	if (session_forward(s, ids + keep, (int)(n - keep), logits, MH_LOGITS_LAST, err) != 0) {
		cli_fail("%s", err);
		goto out;
	}
	c->n_cache = n;
	double t1 = mh_now();
	for (;;) {
		if (c->n_predict >= 0 && generated == (size_t)c->n_predict) {
			why = "length";
			break;
		}
		int32_t next = sampler_sample(c->sm, logits, c->cache, c->n_cache);
		generated++;
		if (session_is_eos(s, next)) {
			why = "end of turn";
			break;
		}
		size_t plen;
		const char *piece = tokenizer_stream_push(ds, next, &plen);
		if (append(&text, &tlen, piece, plen) != 0)
			goto out;
		char *hit = c->stop ? strstr(text + (printed > strlen(c->stop) ? printed - strlen(c->stop) : 0), c->stop) : NULL;
		if (hit) {
			tlen = (size_t)(hit - text);
			text[tlen] = 0;
			why = "end of turn";
			break;
		}
		size_t ok = printable(text, tlen, c->stop, 0);
		if (stream && ok > printed) {
			if (fwrite(text + printed, 1, ok - printed, stdout) != ok - printed || fflush(stdout))
				goto write_error;
			printed = ok;
		}
		if (s->pos >= s->info->n_ctx) {
			why = "context full";
			break;
		}
		if (session_forward(s, &next, 1, logits, MH_LOGITS_LAST, err) != 0) {
			cli_fail("%s", err);
			goto out;
		}
		c->cache[c->n_cache++] = next;
	}
	if (strcmp(why, "end of turn") != 0) {
		/* what the detokenizer still holds (a character cut short) */
		size_t plen;
		const char *rest = tokenizer_stream_flush(ds, &plen);
		if (append(&text, &tlen, rest, plen) != 0)
			goto out;
		char *hit = c->stop ? strstr(text, c->stop) : NULL;
		if (hit)
			text[tlen = (size_t)(hit - text)] = 0;
	}
	double t2 = mh_now();
	rc = REPLY_OK;
	fprintf(stderr, "modelhost: prompt %zu tokens (%zu from the cache, %zu new, %.1f t/s), "
		"generated %zu tokens", n, keep, n - keep, (n - keep) / (t1 - t0 > 0 ? t1 - t0 : 1e-9),
		generated);
	if (generated > 1)
		fprintf(stderr, " (%.1f t/s)", (generated - 1) / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
	fprintf(stderr, ", stopped: %s\n", why);
	if (!strcmp(why, "context full"))
		fprintf(stderr, "modelhost: the context is full: /reset starts a new conversation\n");
	goto out;
write_error:
	cli_fail("chat: cannot write to stdout");
out:
	tokenizer_stream_free(ds);
	free(logits);
	free(ids);
	if (rc == REPLY_OK && stream && tlen > printed &&
	    fwrite(text + printed, 1, tlen - printed, stdout) != tlen - printed)
		rc = REPLY_FAILED;
	if (rc == REPLY_OK && stream && (fputc('\n', stdout) == EOF || fflush(stdout) != 0))
		rc = REPLY_FAILED;
	if (rc == REPLY_OK)
		*out = text ? text : strdup("");
	else
		free(text);
	if (rc == REPLY_OK && !*out)
		rc = REPLY_FAILED;
	return rc;
}

static void chat_reset(chat *c)
{
	while (cJSON_GetArraySize(messages(c)) > c->n_keep)
		drop_last_message(c);
	session_reset(c->s);
	c->n_cache = 0;
}

static int interactive_chat(chat *c)
{
	char b[600];
	cli_watch_hup();
	fprintf(stderr, "modelhost: chat with %s, served by %s; a message per line, or /reset, "
		"/reload, /quit; SIGHUP reloads too\n", c->dir, cli_served_by(c->s, b, sizeof b));
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0, tty = isatty(STDIN_FILENO);
	for (;;) {
		if (tty)
			fputs("> ", stderr);
		if ((len = getline(&line, &cap, stdin)) < 0)
			break;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (cli_take_hup() || strcmp(line, "/reload") == 0) {
			mh_session *before = c->s;
			cli_reload(c->o, c->r, c->dir, &c->s);
			if (c->s != before)
				c->n_cache = 0; /* a new session starts with an empty cache */
			/* its vocabulary may differ: the sampler must fit it */
			if (sampler_refit(&c->sm, c->s->info->vocab_size) != 0) {
				rc = cli_fail("out of memory");
				break;
			}
			if (strcmp(line, "/reload") == 0)
				continue;
		}
		if (strcmp(line, "/quit") == 0)
			break;
		if (strcmp(line, "/reset") == 0) {
			chat_reset(c);
			fprintf(stderr, "modelhost: a new conversation\n");
			continue;
		}
		if (line[0] == '/') {
			cli_fail("chat: unknown command '%s' (/reset, /reload, /quit)", line);
			continue;
		}
		if (!*line)
			continue;
		if (strlen(line) != (size_t)len) {
			cli_fail("chat: the message contains a NUL byte");
			continue;
		}
		if (add_message(c, "user", line) != 0) {
			rc = 1;
			break;
		}
		char *answer = NULL;
		int r = reply(c, 1, &answer);
		if (r != REPLY_OK) {
			drop_last_message(c);
			if (ferror(stdout)) {
				rc = 1;
				break;
			}
			continue;
		}
		int a = add_message(c, "assistant", answer);
		free(answer);
		if (a != 0) {
			rc = 1;
			break;
		}
	}
	free(line);
	return rc;
}

typedef struct {
	const char *model, *system, *tfile, *mfile;
	int *n_predict;
	mh_sampler_params sp;
	int seed_given;
} chat_opts;

static int chat_opt(void *ctx, int c, const char *arg)
{
	chat_opts *co = ctx;
	int r = cli_sampling_opt("chat", &co->sp, &co->seed_given, c, arg);
	if (r)
		return r < 0 ? -1 : 0;
	switch (c) {
	case 'm': co->model = arg; return 0;
	case OPT_CONTEXT: co->system = arg; return 0;
	case OPT_TEMPLATE: co->tfile = arg; return 0;
	case OPT_NOW: co->mfile = arg; return 0;
	case 'n': return cli_int("chat", "-n", arg, 0, 1 << 24, co->n_predict);
	}
	return -1;
}

/* --messages FILE: an array of messages, or an object of template variables. */
static cJSON *load_conversation(const char *path)
{
	cJSON *j, *ctx = NULL;
	if (parse_file(path, &j) != 0)
		return NULL;
	if (cJSON_IsArray(j)) {
		ctx = cJSON_CreateObject();
		if (ctx)
			cJSON_AddItemToObject(ctx, "messages", j);
		else
			cJSON_Delete(j);
	} else if (cJSON_IsObject(j) && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "messages"))) {
		ctx = j;
	} else {
		cJSON_Delete(j);
		cli_fail("%s: expected a JSON array of messages, or an object with \"messages\"", path);
		return NULL;
	}
	if (!ctx)
		cli_fail("out of memory");
	return ctx;
}

int cmd_chat(int argc, char **argv)
{
	static const struct option lo[] = {
		COMMON_LONG_OPTIONS,
		SAMPLING_LONG_OPTIONS,
		{ "model", required_argument, NULL, 'm' },
		{ "system", required_argument, NULL, OPT_CONTEXT },
		{ "chat-template", required_argument, NULL, OPT_TEMPLATE },
		{ "messages", required_argument, NULL, OPT_NOW },
		{ "n-predict", required_argument, NULL, 'n' },
		{ 0 },
	};
	cli_common o = { .cmd = "chat" };
	chat c = { .o = &o, .n_predict = -1 };
	chat_opts co = { .n_predict = &c.n_predict };
	mh_sampler_params *sp = &co.sp;
	sampler_params_default(sp);
	int status = cli_parse_dir(&o, argc, argv, "m:n:", lo, chat_opt, &co, chat_help, NULL);
	if (status != CLI_CONTINUE)
		return status;
	const char *model = co.model, *system = co.system, *tfile = co.tfile, *mfile = co.mfile;
	const char *bad = sampler_params_check(sp);
	if (bad)
		return cli_fail("chat: %s", bad);
	char *def = model ? NULL : paths_default_model();
	c.dir = model ? model : def;
	int rc = 1;
	char err[MH_ERRLEN];
	if (!c.dir) {
		cli_fail("out of memory");
		goto out;
	}
	/* the template first: without one there is nothing to do */
	if (tfile) {
		char *cfg = mh_path_join(c.dir, "tokenizer_config.json");
		c.tpl = chat_template_from_file(tfile, cfg && mh_is_file(cfg) ? c.dir : NULL, err, sizeof err);
		free(cfg);
	} else
		c.tpl = chat_template_from_dir(c.dir, err, sizeof err);
	if (!c.tpl) {
		cli_fail("%s", err);
		goto out;
	}
	c.stop = chat_template_eos(c.tpl);
	c.ctx = mfile ? load_conversation(mfile) : cJSON_CreateObject();
	if (!c.ctx || (!mfile && !cJSON_AddArrayToObject(c.ctx, "messages")))
		goto out;
	if (system) {
		cJSON *m = cJSON_CreateObject();
		cJSON_AddStringToObject(m, "role", "system");
		cJSON_AddStringToObject(m, "content", system);
		cJSON_InsertItemInArray(messages(&c), 0, m);
	}
	c.n_keep = cJSON_GetArraySize(messages(&c));
	if (!mfile)
		cli_watch_hup(); /* before the load: an early SIGHUP must not end us */
	if (!(c.r = cli_registry(&o)) || !(c.s = cli_open_model(&o, c.r, c.dir)) ||
	    !(c.tk = cli_tokenizer(c.dir, NULL)))
		goto out;
	if (!(c.sm = sampler_new(sp, c.s->info->vocab_size))) {
		cli_fail("out of memory");
		goto out;
	}
	if (mfile) {
		char *answer = NULL;
		rc = reply(&c, 1, &answer) == REPLY_OK ? 0 : 1;
		free(answer);
	} else
		rc = interactive_chat(&c);
out:
	cJSON_Delete(c.ctx);
	free(c.cache);
	chat_template_free(c.tpl);
	sampler_free(c.sm);
	tokenizer_free(c.tk);
	session_close(c.s);
	registry_free(c.r);
	free(def);
	return rc;
}
