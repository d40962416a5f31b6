/* SPDX-License-Identifier: MIT */
/* fuzz_config.c - libFuzzer target: any bytes as config.json, beside the
 * real weights of the checkpoint folder $FUZZ_MODEL, with the plugins in
 * $FUZZ_PLUGINS.  Opening the folder must either fail with one line that
 * names it, or give a model that runs (or, with one line, refuses) a
 * forward pass over two tokens.
 * Build and run: tests/fuzz/run.sh config [SECONDS]. */
#define _GNU_SOURCE
#include "plugin/registry.h"
#include "plugin/services.h"
#include "plugin/session.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mh_registry *reg;
static char dir[] = "/tmp/modelhost-fuzz-config-XXXXXX";
static char config[sizeof dir + 16];

static void cleanup(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[4200];
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	const char *model = getenv("FUZZ_MODEL"), *plugins = getenv("FUZZ_PLUGINS");
	DIR *d = model && plugins ? opendir(model) : NULL;
	if (!d || !mkdtemp(dir)) {
		fprintf(stderr, "fuzz_config: set FUZZ_MODEL (a checkpoint folder) and "
				"FUZZ_PLUGINS (a folder of plugin .so files)\n");
		exit(1);
	}
	atexit(cleanup);
	struct dirent *e;
	char from[4200], abs[PATH_MAX], to[4200];
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && strcmp(e->d_name, "config.json") != 0) {
			snprintf(from, sizeof from, "%s/%s", model, e->d_name);
			snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
			if (!realpath(from, abs) || symlink(abs, to) != 0)
				exit(1);
		}
	closedir(d);
	snprintf(config, sizeof config, "%s/config.json", dir);
	reg = registry_new(services_init(1));
	registry_add_dir(reg, plugins);
	registry_scan(reg);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = open(config, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size || close(fd) != 0)
		abort();
	char err[MH_ERRLEN];
	mh_session *s = session_open(reg, dir, NULL, 8, err);
	if (!s) {
		if (!strstr(err, dir) || strchr(err, '\n'))
			abort(); /* one line, naming the folder or a file in it */
		return 0;
	}
	int vocab = s->info->vocab_size;
	int32_t ids[2] = { 1 % vocab, 2 % vocab };
	float *logits = malloc((size_t)vocab * sizeof *logits);
	if (!logits)
		abort();
	if (session_forward(s, ids, 2, logits, MH_LOGITS_LAST, err) != 0 &&
	    (!err[0] || strchr(err, '\n')))
		abort(); /* a refusal (a 1-token context, say) is one line */
	free(logits);
	session_close(s);
	return 0;
}
