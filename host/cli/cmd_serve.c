/* SPDX-License-Identifier: MIT */
/* cmd_serve.c - `modelhost serve`: options, signals, and the server's life
 * from listening to a graceful stop.  The server itself is host/server/. */
#include "cli/cli.h"
#include "plugin/paths.h"
#include "server/server.h"
#include "base/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	OPT_HOST = OPT_FIRST_COMMAND_OPT,
	OPT_PORT,
	OPT_API_KEY,
	OPT_API_KEY_FILE,
	OPT_CHAT_TEMPLATE,
	OPT_QUEUE,
	OPT_TIMEOUT,
	OPT_BODY_LIMIT,
};

static const char help[] =
	"Usage: modelhost serve [-m DIR] [--host ADDR] [--port N] [--parallel N] [OPTIONS]\n"
	"Serve a model over HTTP with OpenAI's API (/v1/completions, /v1/chat/completions,\n"
	"/v1/models) and /health, /metrics, /tokenize, /detokenize, /admin/reload.\n"
	"Without -m, the bundled model (stories260K).\n\n"
	"  -m, --model DIR         Hugging Face model directory\n"
	"      --host ADDR         address to listen on (default 127.0.0.1)\n"
	"      --port N            port (default 8080; 0: any free port, printed)\n"
	"  -np, --parallel N       sequences decoded together (default 4)\n"
	"      --queue N           requests that may wait for a sequence (default 64);\n"
	"                          more are turned away with 503 and Retry-After\n"
	"      --api-key KEY       require 'Authorization: Bearer KEY' (not /health)\n"
	"      --api-key-file F    the same, the key read from F's first line\n"
	"      --chat-template F   a Jinja chat template instead of the model's own\n"
	"                          (tokenizer_config.json's)\n"
	"      --timeout S         idle clients are dropped after S seconds; SIGTERM\n"
	"                          waits S seconds for running requests (default 60)\n"
	"      --body-limit N      largest request body in bytes (default 1048576)\n"
	"      --tokenizer FILE    tokenizer.json to use (default: DIR/tokenizer.json)\n"
	"  -t, --threads N         worker threads (default: all cores)\n"
	"  -c, --ctx-size N        KV cache positions per sequence (default: the model's)\n"
	"      --plugin NAME       force a plugin; --plugin-dir DIR adds a plugin directory\n\n"
	"SIGHUP (or POST /admin/reload) rescans the plugin directories: requests in\n"
	"flight finish on their plugin, new ones go to the new one.  SIGTERM stops\n"
	"accepting, lets running requests finish, and exits 0.\n";

typedef struct serve_opts {
	const char *model, *tokenizer, *key, *key_file, *chat_template;
	server_config sc;
	int parallel, queue;
} serve_opts;

static int serve_opt(void *ctx, int c, const char *arg)
{
	serve_opts *g = ctx;
	const char *cmd = "serve";
	int v;
	switch (c) {
	case 'm': g->model = arg; return 0;
	case 'P': return cli_int(cmd, "--parallel", arg, 1, ENGINE_MAX_PARALLEL, &g->parallel);
	case OPT_HOST: g->sc.host = arg; return 0;
	case OPT_PORT: return cli_int(cmd, "--port", arg, 0, 65535, &g->sc.port);
	case OPT_API_KEY: g->key = arg; return 0;
	case OPT_API_KEY_FILE: g->key_file = arg; return 0;
	case OPT_CHAT_TEMPLATE: g->chat_template = arg; return 0;
	case OPT_QUEUE: return cli_int(cmd, "--queue", arg, 1, 100000, &g->queue);
	case OPT_TIMEOUT: return cli_int(cmd, "--timeout", arg, 1, 86400, &g->sc.timeout);
	case OPT_BODY_LIMIT:
		if (cli_int(cmd, "--body-limit", arg, 64, 1 << 30, &v) != 0)
			return -1;
		g->sc.body_limit = (size_t)v;
		return 0;
	case OPT_TOKENIZER: g->tokenizer = arg; return 0;
	}
	return -1;
}

static int parse_serve(cli_common *o, serve_opts *g, int argc, char **argv)
{
	static const struct option lo[] = {
		COMMON_LONG_OPTIONS,
		{ "model", required_argument, NULL, 'm' },
		{ "parallel", required_argument, NULL, 'P' },
		{ "np", required_argument, NULL, 'P' },
		{ "host", required_argument, NULL, OPT_HOST },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "api-key", required_argument, NULL, OPT_API_KEY },
		{ "api-key-file", required_argument, NULL, OPT_API_KEY_FILE },
		{ "chat-template", required_argument, NULL, OPT_CHAT_TEMPLATE },
		{ "queue", required_argument, NULL, OPT_QUEUE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "body-limit", required_argument, NULL, OPT_BODY_LIMIT },
		{ "tokenizer", required_argument, NULL, OPT_TOKENIZER },
		{ 0 },
	};
	/* long options alone (o->long_only), so that llama-server's -np works
	 * as it does there */
	int status = cli_parse_dir(o, argc, argv, "m:", lo, serve_opt, g, help, NULL);
	if (status != CLI_CONTINUE)
		return status;
	if (g->key && g->key_file)
		return cli_fail("serve: give either --api-key or --api-key-file, not both");
	return CLI_CONTINUE;
}

/* The key from the file's first line, without its line end or trailing
 * blanks; never echoed. */
static char *read_key(const char *path)
{
	char err[MH_ERRLEN];
	char *k = mh_read_file(path, NULL, err);
	if (!k) {
		cli_fail("%s", err);
		return NULL;
	}
	k[strcspn(k, "\r\n")] = 0;
	size_t n = strlen(k);
	while (n && (k[n - 1] == ' ' || k[n - 1] == '\t'))
		k[--n] = 0;
	if (!n) {
		cli_fail("%s: the first line holds no API key", path);
		free(k);
		return NULL;
	}
	return k;
}

/* The directory's last component, as /v1/models lists it. */
static void model_name(const char *dir, char *out, size_t n)
{
	size_t len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	size_t start = len;
	while (start > 0 && dir[start - 1] != '/')
		start--;
	snprintf(out, n, "%.*s", (int)(len - start), dir + start);
}

int cmd_serve(int argc, char **argv)
{
	cli_common o = { .cmd = "serve", .long_only = 1 };
	serve_opts g = { .parallel = 4, .queue = 64,
			 .sc = { .host = "127.0.0.1", .port = 8080, .body_limit = 1 << 20,
				 .timeout = 60 } };
	int status = parse_serve(&o, &g, argc, argv);
	if (status != CLI_CONTINUE)
		return status;
	/* every thread started from here on leaves these signals to sigwait */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	char *def = g.model ? NULL : paths_default_model();
	const char *dir = g.model ? g.model : def;
	char *key = g.key_file ? read_key(g.key_file) : NULL;
	server sv = { .c = g.sc };
	engine *eng = NULL;
	mh_tokenizer *tk = NULL;
	mh_registry *r = NULL;
	int rc = 1;
	char err[MH_ERRLEN] = "";
	if (g.key_file && !key)
		goto out;
	sv.c.api_key = key ? key : g.key;
	sv.c.max_connections = g.parallel + g.queue + 16;
	if (!mh_is_dir(dir)) {
		cli_fail("%s: not a model directory", dir);
		goto out;
	}
	if (cli_tokenizer_if_any(dir, g.tokenizer, &tk) != 0)
		goto out;
	if (chat_setup(&sv, dir, g.chat_template, err) != 0) {
		cli_fail("%s", err);
		goto out;
	}
	if (!(r = cli_registry(&o)))
		goto out;
	model_name(dir, sv.model_name, sizeof sv.model_name);
	sv.tk = tk;
	engine_config ec = { .model_dir = dir, .force_plugin = o.plugin, .n_ctx = o.n_ctx,
			     .parallel = g.parallel, .queue = g.queue, .registry = r, .tk = tk,
			     .quant = cli_quant(&o) };
	if (!(eng = engine_start(&ec, err))) {
		cli_fail("%s", err);
		goto out;
	}
	sv.eng = eng;
	if (http_start(&sv, err) != 0) {
		cli_fail("%s", err);
		goto out;
	}
	fprintf(stderr, "modelhost: serve: listening on http://%s%s%s:%d/ (model %s, %d sequences)\n",
		strchr(sv.c.host, ':') ? "[" : "", sv.c.host, strchr(sv.c.host, ':') ? "]" : "",
		sv.port, sv.model_name, g.parallel);
	if (engine_wait_ready(eng, err) != 0) {
		cli_fail("%s", err);
		goto out;
	}
	engine_stats st;
	engine_get_stats(eng, &st);
	fprintf(stderr, "modelhost: serve: ready: %s served by %s %s\n", dir, st.plugin, st.version);
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			engine_reload_async(eng);
			continue;
		}
		fprintf(stderr, "modelhost: serve: %s: finishing what runs (at most %d s), then exiting\n",
			sig == SIGTERM ? "SIGTERM" : "SIGINT", sv.c.timeout);
		break;
	}
	http_quiesce(&sv);
	double deadline = mh_now() + sv.c.timeout;
	engine_drain(eng, deadline);
	http_wait_idle(deadline + 1);
	rc = 0;
out:
	http_stop(&sv);
	engine_free(eng);
	chat_free(&sv);
	tokenizer_free(tk);
	registry_free(r);
	free(key);
	free(def);
	return rc;
}
