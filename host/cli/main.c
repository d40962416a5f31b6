/* main.c - `modelhost COMMAND [OPTIONS]`: dispatch, and the helpers the
 * commands share. */
#include "config.h"
#include "cli/cli.h"
#include "plugin/paths.h"
#include "plugin/services.h"
#include "base/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "generate", cmd_generate, "generate text (the bundled model if no -m)" },
	{ "plugins", cmd_plugins, "list the plugins found and why any was rejected" },
	{ "info", cmd_info, "describe a model directory and the plugin that loads it" },
	{ "tokenize", cmd_tokenize, "print the token ids of a text" },
	{ "detokenize", cmd_detokenize, "print the text of token ids" },
	{ "logits", cmd_logits, "write the logits of a token sequence to a safetensors file" },
	{ "verify", cmd_verify, "check a model against reference logits (expected.safetensors)" },
	{ "bench", cmd_bench, "measure prompt processing and generation speed" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: modelhost COMMAND [OPTIONS]\n"
		   "       modelhost          (same as: modelhost generate)\n\n"
		   "A plugin-based host for large language models.\n\nCommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
		fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nOptions every command takes:\n"
		   "  --plugin-dir DIR   search DIR for plugins first (repeatable)\n"
		   "  --plugin NAME      use this plugin whatever the model's architecture\n"
		   "  -t, --threads N    worker threads (default: all cores)\n"
		   "  -c, --ctx-size N   KV cache positions (default: the model's context)\n"
		   "  -v, --verbose      say more on stderr\n"
		   "  -h, --help         help for a command\n\n"
		   "Plugins are searched in --plugin-dir, $MODELHOST_PLUGIN_PATH, "
		   "~/.local/lib/modelhost/plugins\nand %s.\n"
		   "Run 'modelhost COMMAND --help' for a command's own options.\n",
		MH_PLUGINDIR);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("modelhost %s (plugin ABI %d.%d)\n", PACKAGE_VERSION, MODELHOST_ABI_MAJOR,
		       MODELHOST_ABI_MINOR);
		return 0;
	}
	int rc;
	if (argc < 2 || argv[1][0] == '-') {
		/* no command: generate with the bundled model */
		rc = cmd_generate(argc, argv);
	} else {
		const struct command *c = NULL;
		for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
			if (strcmp(argv[1], commands[i].name) == 0)
				c = &commands[i];
		if (!c) {
			cli_fail("unknown command '%s'", argv[1]);
			fputs("Try 'modelhost --help'.\n", stderr);
			return 1;
		}
		rc = c->run(argc - 1, argv + 1);
	}
	services_shutdown();
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "modelhost: error writing to stdout: %s\n", strerror(errno));
		return 1;
	}
	return rc;
}

/* ---- shared helpers ------------------------------------------------------- */

int cli_fail(const char *fmt, ...)
{
	char msg[2 * MH_ERRLEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "modelhost: %s\n", mh_one_line(msg));
	return 1;
}

int cli_usage(const char *cmd, const char *text)
{
	fprintf(stderr, "Try 'modelhost %s --help'.\n", cmd);
	(void)text;
	return 1;
}

int cli_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(arg, &end, 10);
	if (!*arg || *end || errno || v < lo || v > hi) {
		cli_fail("%s: %s expects a whole number from %ld to %ld, not '%s'", cmd, opt, lo, hi,
			 arg);
		return -1;
	}
	*out = (int)v;
	return 0;
}

int cli_float(const char *cmd, const char *opt, const char *arg, double lo, double hi, float *out)
{
	char *end;
	errno = 0;
	double v = strtod(arg, &end);
	if (!*arg || *end || errno || !(v >= lo && v <= hi)) {
		cli_fail("%s: %s expects a number from %g to %g, not '%s'", cmd, opt, lo, hi, arg);
		return -1;
	}
	*out = (float)v;
	return 0;
}

int cli_common_opt(cli_common *o, int c, const char *arg)
{
	switch (c) {
	case OPT_PLUGIN_DIR:
		if (o->n_plugin_dirs == (int)(sizeof o->plugin_dirs / sizeof *o->plugin_dirs)) {
			cli_fail("%s: too many --plugin-dir options", o->cmd);
			return -1;
		}
		o->plugin_dirs[o->n_plugin_dirs++] = (char *)arg;
		return 1;
	case OPT_PLUGIN:
		o->plugin = arg;
		return 1;
	case 't':
		return cli_int(o->cmd, "--threads", arg, 1, 256, &o->threads) ? -1 : 1;
	case 'c':
		return cli_int(o->cmd, "--ctx-size", arg, 1, 1 << 24, &o->n_ctx) ? -1 : 1;
	case 'v':
		services_set_verbosity(MH_LOG_DEBUG);
		return 1;
	default:
		return 0;
	}
}

mh_registry *cli_registry(cli_common *o)
{
	mh_registry *r = registry_new(services_init(o->threads));
	if (!r) {
		cli_fail("out of memory");
		return NULL;
	}
	paths_add_plugin_dirs(r, o->plugin_dirs, o->n_plugin_dirs);
	registry_scan(r);
	return r;
}

mh_session *cli_open_model(cli_common *o, mh_registry *r, const char *dir)
{
	char err[MH_ERRLEN] = "";
	mh_session *s = session_open(r, dir, o->plugin, o->n_ctx, err);
	if (!s)
		cli_fail("%s", err);
	return s;
}

mh_tokenizer *cli_tokenizer(const char *dir, const char *file, int quiet_missing)
{
	char err[MH_ERRLEN] = "";
	char *path = file ? strdup(file) : mh_path_join(dir, "tokenizer.json");
	if (!path) {
		cli_fail("out of memory");
		return NULL;
	}
	if (!file && quiet_missing && !mh_is_file(path)) {
		free(path);
		return NULL;
	}
	mh_tokenizer *t = tokenizer_load(path, err, sizeof err);
	if (!t)
		cli_fail("%s", err);
	free(path);
	return t;
}
