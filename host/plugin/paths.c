/* SPDX-License-Identifier: MIT */
/* paths.c - see paths.h. */
#define _GNU_SOURCE /* secure_getenv */
#include "config.h"
#include "plugin/paths.h"
#include "base/util.h"

#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char build_dir[PATH_MAX], src_dir[PATH_MAX];

/* Once: the executable's directory, and whether the build marker is there.
 * An installed modelhost has no marker beside it, so it never looks at any
 * build tree; two builds at different paths compile to the same bytes. */
static void detect(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return;
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return;
	*slash = 0;
	char marker[PATH_MAX + sizeof PATHS_BUILD_MARKER + 1];
	snprintf(marker, sizeof marker, "%s/%s", exe, PATHS_BUILD_MARKER);
	FILE *f = fopen(marker, "r");
	if (!f)
		return;
	char line[PATH_MAX];
	if (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (line[0] == '/' && mh_is_dir(line)) {
			snprintf(build_dir, sizeof build_dir, "%s", exe);
			snprintf(src_dir, sizeof src_dir, "%s", line);
		}
	}
	fclose(f);
}

const char *paths_builddir(void)
{
	detect();
	return build_dir[0] ? build_dir : NULL;
}

const char *paths_srcdir(void)
{
	detect();
	return src_dir[0] ? src_dir : NULL;
}

int paths_uninstalled(void)
{
	return paths_builddir() != NULL;
}

char *paths_default_model(void)
{
	const char *env = getenv("MODELHOST_DEFAULT_MODEL");
	if (env && *env)
		return strdup(env);
	char *models = paths_uninstalled() ? mh_path_join(paths_srcdir(), "data/models")
					   : strdup(MH_PKGDATADIR "/models");
	char *dir = models ? mh_path_join(models, "stories260K") : NULL;
	free(models);
	return dir;
}

const char *const *paths_user_plugin_dirs(void)
{
	static char *dirs[3];
	static int done;
	if (!done) {
		done = 1;
		static const char *const rel[] = PATHS_USER_DIRS;
		/* secure_getenv: nothing from the environment of a set-id
		 * program; HOME=. would search the working directory */
		const char *home = secure_getenv("HOME");
		for (size_t i = 0; home && home[0] == '/' && i < sizeof rel / sizeof *rel; i++)
			dirs[i] = mh_path_join(home, rel[i]);
	}
	return (const char *const *)dirs;
}

void paths_add_plugin_dirs(mh_registry *r, char *const *cli_dirs, int n_cli)
{
	/* --plugin-dir is the user's own words: relative to where they are */
	for (int i = 0; i < n_cli; i++) {
		char *abs = cli_dirs[i][0] != '/' ? realpath(cli_dirs[i], NULL) : NULL;
		registry_add_dir(r, abs ? abs : cli_dirs[i]);
		free(abs);
	}
	const char *env = secure_getenv("MODELHOST_PLUGIN_PATH");
	if (env) {
		char *copy = strdup(env), *save = NULL;
		for (char *tok = copy ? strtok_r(copy, ":", &save) : NULL; tok;
		     tok = strtok_r(NULL, ":", &save))
			registry_add_dir(r, tok);
		free(copy);
	}
	if (paths_uninstalled()) {
		char *pat = mh_path_join(paths_builddir(), "plugins/*/.libs");
		glob_t g;
		if (pat && glob(pat, GLOB_ONLYDIR, NULL, &g) == 0) {
			for (size_t i = 0; i < g.gl_pathc; i++)
				registry_add_dir(r, g.gl_pathv[i]);
			globfree(&g);
		}
		free(pat);
		return;
	}
	for (const char *const *d = paths_user_plugin_dirs(); *d; d++)
		registry_add_dir(r, *d);
	registry_add_dir(r, MH_PLUGINDIR);
}
