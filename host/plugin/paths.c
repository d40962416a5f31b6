/* paths.c - see paths.h. */
#include "plugin/paths.h"
#include "base/util.h"

#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int paths_uninstalled(void)
{
	static int cached = -1;
	if (cached >= 0)
		return cached;
	char exe[PATH_MAX], build[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	cached = 0;
	if (n > 0 && realpath(MH_BUILDDIR, build)) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = 0;
		cached = strcmp(exe, build) == 0;
	}
	return cached;
}

char *paths_default_model(void)
{
	const char *env = getenv("MODELHOST_DEFAULT_MODEL");
	if (env && *env)
		return strdup(env);
	return mh_path_join(paths_uninstalled() ? MH_SRCDIR "/data/models" : MH_PKGDATADIR "/models",
			    "stories260K");
}

void paths_add_plugin_dirs(mh_registry *r, char *const *cli_dirs, int n_cli)
{
	for (int i = 0; i < n_cli; i++)
		registry_add_dir(r, cli_dirs[i]);
	const char *env = getenv("MODELHOST_PLUGIN_PATH");
	if (env) {
		char *copy = strdup(env), *save = NULL;
		for (char *tok = copy ? strtok_r(copy, ":", &save) : NULL; tok;
		     tok = strtok_r(NULL, ":", &save))
			registry_add_dir(r, tok);
		free(copy);
	}
	if (paths_uninstalled()) {
		glob_t g;
		if (glob(MH_BUILDDIR "/plugins/*/.libs", GLOB_ONLYDIR, NULL, &g) == 0) {
			for (size_t i = 0; i < g.gl_pathc; i++)
				registry_add_dir(r, g.gl_pathv[i]);
			globfree(&g);
		}
	}
	const char *home = getenv("HOME");
	if (home && *home) {
		char *p = mh_path_join(home, ".local/lib/modelhost/plugins");
		registry_add_dir(r, p);
		free(p);
	}
	registry_add_dir(r, MH_PLUGINDIR);
}
