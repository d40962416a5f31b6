/* SPDX-License-Identifier: MIT */
/* main.c - `modelhost COMMAND [OPTIONS]`: the table of commands and the
 * dispatch to them.  What commands share is in common.c. */
#include "config.h"
#include "cli/cli.h"
#include "plugin/paths.h"
#include "plugin/services.h"

#include <errno.h>
#include <signal.h>
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
	{ "perplexity", cmd_perplexity, "perplexity of a text, and KL divergence from a saved run" },
	{ "quantize", cmd_quantize, "write a copy of a model with Q8_0 or Q4_0 weights" },
	{ "serve", cmd_serve, "serve a model over HTTP with OpenAI's API" },
	{ "chat", cmd_chat, "a conversation through the model's chat template" },
	{ "chat-template", cmd_chat_template, "print a chat template's rendering of a conversation" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: modelhost COMMAND [OPTIONS]\n"
		   "       modelhost          (same as: modelhost generate)\n\n"
		   "A plugin-based host for large language models.\n\nCommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
		fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nOptions every command takes:\n"
		   "  --plugin-dir DIR   search DIR for plugins first (repeatable)\n"
		   "  --plugin NAME      use this plugin whatever the model's architecture\n"
		   "  -t, --threads N    worker threads (default: all cores)\n"
		   "  -c, --ctx-size N   KV cache positions (default: the model's context)\n"
		   "  -v, --verbose      say more on stderr\n"
		   "  --quant q8_0|q4_0  quantize the 2-D weights at load (commands that load a model)\n"
		   "  --quant-io T       the embedding table and output layer: keep, q8_0 (default\n"
		   "                     with --quant) or q4_0\n"
		   "  --precise          F32 activations with quantized weights (for verification)\n"
		   "  -h, --help         help for a command\n"
		   "  --version          print the version and plugin ABI (alone, before any command)\n\n"
		   "Plugins are searched in --plugin-dir, $MODELHOST_PLUGIN_PATH,\n"
		   "%s and %s.\n"
		   "Run 'modelhost COMMAND --help' for a command's own options.\n",
		PATHS_USER_DIRS_TEXT, MH_PLUGINDIR);
}

int main(int argc, char **argv)
{
	/* A closed pipe is an error return (EPIPE) to handle, not a signal that
	 * kills us midway: see cli_finish_stdout(). */
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return cli_finish_stdout(0);
	}
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("modelhost %s (plugin ABI %d.%d)\n", PACKAGE_VERSION, MODELHOST_ABI_MAJOR,
		       MODELHOST_ABI_MINOR);
		return cli_finish_stdout(0);
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
	return cli_finish_stdout(rc);
}
