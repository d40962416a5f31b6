/* paths.h - where plugins and the bundled model are, installed or running
 * from the build tree. */
#ifndef MH_PATHS_H
#define MH_PATHS_H

#include "plugin/registry.h"

/* True when this executable is the one in the build tree. */
int paths_uninstalled(void);
/* The bundled default model directory (malloc'd). */
char *paths_default_model(void);
/* Add the search order: cli dirs, $MODELHOST_PLUGIN_PATH, the build tree's
 * plugins (uninstalled only), ~/.local/lib/modelhost/plugins, the system
 * plugin directory. */
void paths_add_plugin_dirs(mh_registry *r, char *const *cli_dirs, int n_cli);

#endif
