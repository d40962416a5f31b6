/* SPDX-License-Identifier: MIT */
/* common.c - what every command shares: option parsing, messages, the
 * registry in search order, opening a model and its tokenizer.  Command
 * files call this; nothing here calls a command. */
#include "cli/cli.h"
#include "plugin/paths.h"
#include "plugin/services.h"
#include "compute/kernels.h"
#include "base/util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

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

static int stdout_reported;

/* A reader that went away (`| head`) is not an error worth a message:
 * the write end of a pipe whose read end is closed polls POLLERR. */
static int stdout_reader_gone(void)
{
	struct stat st;
	struct pollfd p = { .fd = STDOUT_FILENO, .events = POLLOUT };
	return fstat(STDOUT_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) &&
	       poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

void cli_stdout_failed(const char *cmd)
{
	int e = errno;
	if (stdout_reported++ || stdout_reader_gone())
		return;
	if (cmd)
		cli_fail("%s: cannot write to stdout: %s", cmd, strerror(e ? e : EIO));
	else
		cli_fail("cannot write to stdout: %s", strerror(e ? e : EIO));
}

int cli_finish_stdout(int rc)
{
	if (!stdout_reported && fflush(stdout) == 0 && !ferror(stdout))
		return rc;
	if (stdout_reader_gone())
		return CLI_EXIT_PIPE;
	cli_stdout_failed(NULL);
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
	case OPT_QUANT:
		if (mh_quant_from_name(arg, &o->quant.quant) != 0) {
			cli_fail("%s: --quant expects q8_0 or q4_0, not '%s'", o->cmd, arg);
			return -1;
		}
		return 1;
	case OPT_QUANT_IO:
		if (strcmp(arg, "keep") == 0) {
			o->quant.quant_io = MH_F32;
		} else if (mh_quant_from_name(arg, &o->quant.quant_io) != 0) {
			cli_fail("%s: --quant-io expects keep, q8_0 or q4_0, not '%s'", o->cmd, arg);
			return -1;
		}
		o->quant_io_set = 1;
		return 1;
	case OPT_PRECISE:
		kern_set_precise(1);
		return 1;
	default:
		return 0;
	}
}

int cli_parse(cli_common *o, int argc, char **argv, const char *shortopts,
	      const struct option *longopts, cli_own_opt_fn own, void *ctx, const char *help)
{
	optind = 1;
	opterr = 0;
	int c;
	char shorts[64];
	snprintf(shorts, sizeof shorts, "+%s%s", COMMON_SHORT_OPTIONS, shortopts);
	while ((c = (o->long_only ? getopt_long_only : getopt_long)(argc, argv, shorts, longopts,
								     NULL)) != -1) {
		if (c == 'h') {
			fputs(help, stdout);
			return -2;
		}
		if (c == '?' || c == ':') {
			/* a short option by its letter (-vx: -x), a long one as typed */
			const char *arg = argv[optind - 1];
			if (optopt && optopt < 256 && !o->long_only && strncmp(arg, "--", 2) != 0)
				cli_fail("%s: invalid option or missing value: -%c", o->cmd, optopt);
			else
				cli_fail("%s: invalid option or missing value: %s", o->cmd, arg);
			cli_usage(o->cmd, help);
			return -1;
		}
		int r = cli_common_opt(o, c, optarg);
		if (r < 0)
			return -1;
		if (r == 0 && (!own || own(ctx, c, optarg) != 0))
			return -1;
	}
	return optind;
}

int cli_parse_dir(cli_common *o, int argc, char **argv, const char *shortopts,
		  const struct option *longopts, cli_own_opt_fn own, void *ctx, const char *help,
		  const char **dir)
{
	int first = cli_parse(o, argc, argv, shortopts, longopts, own, ctx, help);
	if (first < 0)
		return first == -2 ? 0 : 1;
	if (dir && !*dir && first < argc)
		*dir = argv[first++];
	if (first < argc)
		return cli_fail("%s: unexpected argument '%s'", o->cmd, argv[first]),
		       cli_usage(o->cmd, help);
	return CLI_CONTINUE;
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

const session_quant *cli_quant(cli_common *o)
{
	/* the embedding table and output layer: Q8_0 unless told, as
	 * llama.cpp keeps its output layer at the higher precision */
	if (!o->quant_io_set)
		o->quant.quant_io = o->quant.quant != MH_F32 ? MH_Q8_0 : MH_F32;
	return &o->quant;
}

mh_session *cli_open_model(cli_common *o, mh_registry *r, const char *dir)
{
	char err[MH_ERRLEN] = "";
	mh_session *s = session_open_quant(r, dir, o->plugin, o->n_ctx, cli_quant(o), err);
	if (!s)
		cli_fail("%s", err);
	return s;
}

mh_tokenizer *cli_tokenizer(const char *dir, const char *file)
{
	char err[MH_ERRLEN] = "";
	char *path = file ? strdup(file) : mh_path_join(dir, "tokenizer.json");
	if (!path) {
		cli_fail("out of memory");
		return NULL;
	}
	mh_tokenizer *t = tokenizer_load(path, err, sizeof err);
	if (!t)
		cli_fail("%s", err);
	free(path);
	return t;
}

int cli_tokenizer_if_any(const char *dir, const char *file, mh_tokenizer **tk)
{
	char *path = file ? NULL : mh_path_join(dir, "tokenizer.json");
	int have = file || (path && mh_is_file(path));
	free(path);
	*tk = have ? cli_tokenizer(dir, file) : NULL;
	return have && !*tk ? -1 : 0;
}

int cli_sampling_opt(const char *cmd, mh_sampler_params *sp, int *seed_given, int c, const char *arg)
{
	switch (c) {
	case OPT_TEMP: return cli_float(cmd, "--temp", arg, 0, 100, &sp->temperature) ? -1 : 1;
	case OPT_TOP_K: return cli_int(cmd, "--top-k", arg, 0, 1 << 24, &sp->top_k) ? -1 : 1;
	case OPT_TOP_P: return cli_float(cmd, "--top-p", arg, 0, 1, &sp->top_p) ? -1 : 1;
	case OPT_MIN_P: return cli_float(cmd, "--min-p", arg, 0, 1, &sp->min_p) ? -1 : 1;
	case OPT_REPEAT_PENALTY:
		return cli_float(cmd, "--repeat-penalty", arg, 0, 100, &sp->repeat_penalty) ? -1 : 1;
	case OPT_REPEAT_LAST_N:
		return cli_int(cmd, "--repeat-last-n", arg, 0, 1 << 24, &sp->repeat_last_n) ? -1 : 1;
	case OPT_SEED: {
		char *end;
		sp->seed = strtoull(arg, &end, 10);
		if (!*arg || *end || *arg == '-') {
			cli_fail("%s: --seed expects a non-negative whole number, not '%s'", cmd, arg);
			return -1;
		}
		*seed_given = 1;
		return 1;
	}
	default:
		return 0;
	}
}

/* ---- interactive sessions: plugins swapped without a restart ---------------- */
static volatile sig_atomic_t hup;

static void on_hup(int sig)
{
	(void)sig;
	hup = 1;
}

void cli_watch_hup(void)
{
	struct sigaction sa = { .sa_handler = on_hup, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
}

int cli_take_hup(void)
{
	if (!hup)
		return 0;
	hup = 0;
	return 1;
}

const char *cli_served_by(const mh_session *s, char *b, size_t n)
{
	snprintf(b, n, "%s %s (%s)", s->lib->desc->name, s->lib->desc->version, s->lib->path);
	return b;
}

void cli_reload(cli_common *o, mh_registry *r, const char *dir, mh_session **s)
{
	char err[MH_ERRLEN] = "", why[320], b[600];
	registry_scan(r);
	plugin_lib *l = registry_choose(r, (*s)->dir, o->plugin, why, sizeof why, err);
	if (l && l == (*s)->lib) {
		plugin_lib_unref(l);
		fprintf(stderr, "modelhost: plugins rescanned; %s still serves %s\n",
			cli_served_by(*s, b, sizeof b), dir);
		return;
	}
	mh_session *ns = NULL;
	if (l) { /* session_open makes the same choice and takes its own reference */
		plugin_lib_unref(l);
		ns = session_open_quant(r, dir, o->plugin, o->n_ctx, &o->quant, err);
	}
	if (!ns) {
		fprintf(stderr, "modelhost: reload: %s; %s keeps serving %s\n", err,
			cli_served_by(*s, b, sizeof b), dir);
		return;
	}
	session_close(*s);
	*s = ns;
	fprintf(stderr, "modelhost: %s is now served by %s\n", dir, cli_served_by(*s, b, sizeof b));
}
