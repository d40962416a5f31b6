/* SPDX-License-Identifier: MIT */
/* cli.h - host/cli/: the modelhost command line.  main.c dispatches to one
 * file per command; common.c holds what they share.  May include every other
 * host folder; nothing outside host/cli/ includes this. */
#ifndef MH_CLI_H
#define MH_CLI_H

#include "plugin/registry.h"
#include "plugin/session.h"
#include "text/sampler.h"
#include "text/tokenizer.h"

#include <getopt.h>
#include <stdio.h>

/* Long-only option codes shared by every command. */
enum {
	OPT_PLUGIN_DIR = 1000,
	OPT_PLUGIN,
	OPT_TOKENIZER,
	OPT_IDS,
	OPT_JSON,
	OPT_QUANT,
	OPT_QUANT_IO,
	OPT_PRECISE,
	OPT_TEMP,              /* sampling: generate, chat */
	OPT_TOP_K,
	OPT_TOP_P,
	OPT_MIN_P,
	OPT_REPEAT_PENALTY,
	OPT_REPEAT_LAST_N,
	OPT_SEED,
	OPT_FIRST_COMMAND_OPT /* commands number their own options from here */
};

#define COMMON_LONG_OPTIONS                                                   \
	{ "plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR },            \
	{ "plugin", required_argument, NULL, OPT_PLUGIN },                    \
	{ "threads", required_argument, NULL, 't' },                          \
	{ "ctx-size", required_argument, NULL, 'c' },                         \
	{ "verbose", no_argument, NULL, 'v' },                                \
	{ "quant", required_argument, NULL, OPT_QUANT },                      \
	{ "quant-io", required_argument, NULL, OPT_QUANT_IO },                \
	{ "precise", no_argument, NULL, OPT_PRECISE },                        \
	{ "help", no_argument, NULL, 'h' }
#define COMMON_SHORT_OPTIONS "t:c:vh"

#define SAMPLING_LONG_OPTIONS                                                 \
	{ "temp", required_argument, NULL, OPT_TEMP },                        \
	{ "top-k", required_argument, NULL, OPT_TOP_K },                      \
	{ "top-p", required_argument, NULL, OPT_TOP_P },                      \
	{ "min-p", required_argument, NULL, OPT_MIN_P },                      \
	{ "repeat-penalty", required_argument, NULL, OPT_REPEAT_PENALTY },    \
	{ "repeat-last-n", required_argument, NULL, OPT_REPEAT_LAST_N },      \
	{ "seed", required_argument, NULL, OPT_SEED }

typedef struct cli_common {
	char *plugin_dirs[32];
	int n_plugin_dirs;
	const char *plugin;   /* --plugin NAME */
	int threads;          /* 0: all cores */
	int n_ctx;            /* 0: the model's */
	session_quant quant;  /* --quant, --quant-io */
	int quant_io_set;
	const char *cmd;
	int long_only;        /* getopt_long_only: -np as --np (serve, as llama-server) */
} cli_common;

/* Handle a shared option; 1 if it was one, 0 if not, -1 on a bad value
 * (message printed). */
int cli_common_opt(cli_common *o, int c, const char *arg);
/* Parse the shared options plus the command's own (own returns 0 when it
 * took the option); returns the index of the first operand, or -1
 * (message printed) / -2 (help printed). */
typedef int (*cli_own_opt_fn)(void *ctx, int c, const char *arg);
int cli_parse(cli_common *o, int argc, char **argv, const char *shortopts,
	      const struct option *longopts, cli_own_opt_fn own, void *ctx, const char *help);
/* cli_parse for a command whose operand, if any, is its model directory:
 * one operand goes to *dir unless -m set it (dir NULL: none is taken), any
 * other is refused.  CLI_CONTINUE to go on, else the status to exit with
 * (0 after --help). */
#define CLI_CONTINUE (-1)
int cli_parse_dir(cli_common *o, int argc, char **argv, const char *shortopts,
		  const struct option *longopts, cli_own_opt_fn own, void *ctx, const char *help,
		  const char **dir);
/* Build the registry in the standard search order and scan it. */
mh_registry *cli_registry(cli_common *o);
/* How --quant and --quant-io ask weights to be loaded. */
const session_quant *cli_quant(cli_common *o);
/* Load a model; prints the error and returns NULL on failure. */
mh_session *cli_open_model(cli_common *o, mh_registry *r, const char *dir);
/* DIR/tokenizer.json or FILE; prints the error. */
mh_tokenizer *cli_tokenizer(const char *dir, const char *file);
/* For commands that work without one: FILE, or DIR/tokenizer.json when the
 * directory has one, else *tk = NULL; -1 (message printed) when it cannot
 * be loaded. */
int cli_tokenizer_if_any(const char *dir, const char *file, mh_tokenizer **tk);

/* A sampling option (SAMPLING_LONG_OPTIONS) into sp: 1 if it was one, 0 if
 * not, -1 on a bad value (message printed). */
int cli_sampling_opt(const char *cmd, mh_sampler_params *sp, int *seed_given, int c, const char *arg);

/* Interactive sessions: SIGHUP asks for a reload, taken between prompts;
 * cli_reload rescans the plugin directories and, if another plugin should
 * now serve the model, loads it with that one (the old stays on failure). */
void cli_watch_hup(void);
int cli_take_hup(void);   /* 1 once after each SIGHUP */
void cli_reload(cli_common *o, mh_registry *r, const char *dir, mh_session **s);
const char *cli_served_by(const mh_session *s, char *b, size_t n);

/* The text form of `modelhost plugins`. */
void cli_print_plugins(FILE *f, const mh_registry *r);

int cli_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, int *out);
int cli_float(const char *cmd, const char *opt, const char *arg, double lo, double hi, float *out);
/* "modelhost: CMD: message" on stderr; returns 1. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_usage(const char *cmd, const char *usage);
/* stdout failed (errno says why): one line, once; nothing at all when the
 * reader has gone away (a pipe into `head`). */
void cli_stdout_failed(const char *cmd);
/* At exit: flush stdout; rc when all went out, CLI_EXIT_PIPE when the
 * reader went away (quietly, the status a shell shows for `cat` killed by
 * SIGPIPE), else 1 after one line. */
#define CLI_EXIT_PIPE 141
int cli_finish_stdout(int rc);

int cmd_plugins(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_chat(int argc, char **argv);

#endif
