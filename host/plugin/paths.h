/* SPDX-License-Identifier: MIT */
/* paths.h - where plugins and the bundled model are, installed or running
 * from the build tree. */
#ifndef MH_PATHS_H
#define MH_PATHS_H

#include "plugin/registry.h"

/* The file `make` writes beside the built modelhost, holding the source
 * directory's absolute path on one line.  Its presence next to the running
 * executable is what makes it "uninstalled"; no build path is compiled in. */
#define PATHS_BUILD_MARKER "modelhost-uninstalled"

/* The build directory (the running executable's directory) when this
 * executable is the one in the build tree, else NULL. */
const char *paths_builddir(void);
/* The source directory named by the marker, when uninstalled, else NULL. */
const char *paths_srcdir(void);
/* True when this executable is the one in the build tree. */
int paths_uninstalled(void);
/* The bundled default model directory (malloc'd). */
char *paths_default_model(void);
/* Add the search order: cli dirs, $MODELHOST_PLUGIN_PATH, then either the
 * build tree's plugins (uninstalled: nothing installed is seen, so tests and
 * a build under test never pick up the system's or the user's plugins) or
 * ~/.local/lib/TRIPLET/modelhost/plugins, ~/.local/lib/modelhost/plugins and
 * the system plugin directory. */
void paths_add_plugin_dirs(mh_registry *r, char *const *cli_dirs, int n_cli);
/* The per-user plugin directories, most specific first (NULL-terminated,
 * static; none without $HOME).  On a multiarch system (the compiler names a
 * triplet) the triplet-qualified one comes first; the unqualified one stays
 * searched, so plugins installed there before keep working (a plugin of
 * another architecture there is listed as rejected, never loaded). */
#ifdef MH_MULTIARCH
#define PATHS_USER_DIRS \
	{ ".local/lib/" MH_MULTIARCH "/modelhost/plugins", ".local/lib/modelhost/plugins" }
#define PATHS_USER_DIRS_TEXT \
	"~/.local/lib/" MH_MULTIARCH "/modelhost/plugins, ~/.local/lib/modelhost/plugins"
#else
#define PATHS_USER_DIRS { ".local/lib/modelhost/plugins" }
#define PATHS_USER_DIRS_TEXT "~/.local/lib/modelhost/plugins"
#endif
const char *const *paths_user_plugin_dirs(void);

#endif
