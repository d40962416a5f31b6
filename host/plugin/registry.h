/* SPDX-License-Identifier: MIT */
/* host/plugin/: the plugin machinery (search paths, registry, the services
 * table, sessions).  May include base/, model/, compute/ and the SDK. */
/* registry.h - plugin discovery, validation, ranking and runtime rescans.
 *
 * Directories are searched in the order they were added.  Every *.so in
 * them is dlopen'ed (RTLD_NOW | RTLD_LOCAL) and checked; anything wrong is
 * kept as a "rejected" entry with its reason and never loaded again until
 * the next scan.  A name seen earlier in the search order shadows later
 * plugins of the same name.
 *
 * Loaded code is reference counted (plugin_lib): the registry holds one
 * reference per active entry and every model holds one, so a rescan can
 * replace a plugin on disk while models loaded from the old file keep
 * running it; the old code is dlclose'd when its last model is freed. */
#ifndef MH_REGISTRY_H
#define MH_REGISTRY_H

#include <modelhost/plugin.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct plugin_lib {
	void *handle;
	const struct model_plugin *desc;
	char *path;      /* the file as found in the search path */
	dev_t dev;
	ino_t ino;
	off_t size;
	long long mtime_ns;
	int refs;
} plugin_lib;

typedef enum { PLUGIN_ACTIVE, PLUGIN_SHADOWED, PLUGIN_REJECTED } plugin_status;

typedef struct plugin_entry {
	char *path;
	int order;                 /* position in the search order */
	plugin_status status;
	char reason[256];          /* why rejected or shadowed */
	/* copied from the descriptor (empty when it could not be read) */
	char *name, *version, *description, *license;
	char **archs;
	int n_archs;
	uint32_t abi_major, abi_minor;
	plugin_lib *lib;           /* active entries only */
} plugin_entry;

typedef struct mh_registry mh_registry;

mh_registry *registry_new(const mh_services *svc);
void registry_free(mh_registry *r);
/* Append a directory to the search order (duplicates are ignored). */
void registry_add_dir(mh_registry *r, const char *dir);
/* (Re)scan every directory. */
void registry_scan(mh_registry *r);
const plugin_entry *registry_entries(const mh_registry *r, int *n);
int registry_n_dirs(const mh_registry *r);
const char *registry_dir(const mh_registry *r, int i);
const mh_services *registry_services(const mh_registry *r);

/* The plugin that should load the model in dir: `force` (a plugin name) if
 * given, else the active plugins claiming its architecture ranked by probe
 * score, then search order.  Returns a new reference (plugin_lib_unref it)
 * and a sentence saying why in `why`; NULL + err on failure. */
plugin_lib *registry_choose(mh_registry *r, mh_dir *dir, const char *force, char *why,
			    size_t whylen, char *err);

void plugin_lib_ref(plugin_lib *l);
void plugin_lib_unref(plugin_lib *l);

#endif
