/* SPDX-License-Identifier: MIT */
/* registry.c - see registry.h. */
#include "plugin/registry.h"
#include "plugin/scan.h"
#include "model/modeldir.h"
#include "base/util.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mh_registry {
	const mh_services *svc;
	char **dirs;
	int n_dirs;
	plugin_entry *entries;
	int n_entries;
};

/* Every plugin_lib with a reference, so that a rescan reuses code that is
 * still loaded from an unchanged file. */
static plugin_lib **live;
static int n_live;

static long long mtime_ns(const struct stat *st)
{
	return (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

void plugin_lib_ref(plugin_lib *l)
{
	l->refs++;
}

void plugin_lib_unref(plugin_lib *l)
{
	if (!l || --l->refs > 0)
		return;
	for (int i = 0; i < n_live; i++)
		if (live[i] == l) {
			live[i] = live[--n_live];
			break;
		}
	dlclose(l->handle);
	free(l->path);
	free(l);
}

/* dlopen refuses to load a second copy of a path it already has open (it
 * would hand back the old code), so a file that changed on disk while its
 * old code is still in use is loaded through a private copy. */
static void *open_fresh_copy(const char *path, char *why, size_t whylen)
{
	char tmpl[] = "/tmp/modelhost-plugin-XXXXXX";
	int out = mkstemp(tmpl);
	int in = open(path, O_RDONLY | O_CLOEXEC);
	void *h = NULL;
	if (out >= 0 && in >= 0) {
		char buf[65536];
		ssize_t k;
		int ok = 1;
		while (ok && (k = read(in, buf, sizeof buf)) > 0)
			ok = write(out, buf, (size_t)k) == k;
		if (ok && k == 0 && close(out) == 0) {
			out = -1;
			h = dlopen(tmpl, RTLD_NOW | RTLD_LOCAL);
			if (!h)
				snprintf(why, whylen, "%s", dlerror());
		} else {
			snprintf(why, whylen, "cannot copy for reloading: %s", strerror(errno));
		}
	} else {
		snprintf(why, whylen, "%s", strerror(errno));
	}
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	unlink(tmpl);
	return h;
}

static const char *check_descriptor(const struct model_plugin *p, char *why, size_t whylen)
{
	if (p->abi_major != MODELHOST_ABI_MAJOR) {
		snprintf(why, whylen, "incompatible ABI %u.%u (host: %d.%d): major version differs",
			 p->abi_major, p->abi_minor, MODELHOST_ABI_MAJOR, MODELHOST_ABI_MINOR);
		return why;
	}
	if (p->abi_minor > MODELHOST_ABI_MINOR) {
		snprintf(why, whylen, "built for ABI %u.%u, newer than the host's %d.%d",
			 p->abi_major, p->abi_minor, MODELHOST_ABI_MAJOR, MODELHOST_ABI_MINOR);
		return why;
	}
	if (p->struct_size < offsetof(struct model_plugin, reserved)) {
		snprintf(why, whylen, "descriptor is %u bytes, smaller than ABI %d.0's %zu",
			 p->struct_size, MODELHOST_ABI_MAJOR, offsetof(struct model_plugin, reserved));
		return why;
	}
	if (!p->name || !*p->name)
		return "descriptor has an empty name";
	if (!p->architectures || !p->architectures[0])
		return "descriptor claims no architectures";
	if (!p->load || !p->free || !p->info || !p->forward || !p->reset)
		return "descriptor lacks an entry point (load, free, info, forward, reset)";
	return NULL;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static void copy_descriptor(plugin_entry *e, const struct model_plugin *p)
{
	e->abi_major = p->abi_major;
	e->abi_minor = p->abi_minor;
	if (p->abi_major != MODELHOST_ABI_MAJOR || p->struct_size < offsetof(struct model_plugin, reserved))
		return; /* nothing past the version fields can be trusted */
	e->name = dup_or_empty(p->name);
	e->version = dup_or_empty(p->version);
	e->description = dup_or_empty(p->description);
	e->license = dup_or_empty(p->license);
	int n = 0;
	while (p->architectures && p->architectures[n] && n < 64)
		n++;
	e->archs = calloc(n ? n : 1, sizeof *e->archs);
	for (int i = 0; e->archs && i < n; i++)
		e->archs[e->n_archs++] = strdup(p->architectures[i]);
}

/* What the scanner read of a rejected plugin, for the listing. */
static void take_scan_info(plugin_entry *e, scan_result *sr)
{
	e->abi_major = sr->abi_major;
	e->abi_minor = sr->abi_minor;
	if (!sr->name)
		return;
	e->name = sr->name;
	e->version = sr->version ? sr->version : strdup("");
	e->description = sr->description ? sr->description : strdup("");
	e->license = sr->license ? sr->license : strdup("");
	e->archs = sr->archs;
	e->n_archs = sr->n_archs;
	sr->name = sr->version = sr->description = sr->license = NULL;
	sr->archs = NULL;
	sr->n_archs = 0;
}

static void load_entry(mh_registry *r, plugin_entry *e)
{
	struct stat st;
	if (stat(e->path, &st) != 0 || !S_ISREG(st.st_mode)) {
		e->status = PLUGIN_REJECTED;
		snprintf(e->reason, sizeof e->reason, "not a regular file");
		return;
	}
	plugin_lib *reuse = NULL, *stale = NULL;
	for (int i = 0; i < n_live; i++)
		if (strcmp(live[i]->path, e->path) == 0) {
			if (live[i]->dev == st.st_dev && live[i]->ino == st.st_ino &&
			    live[i]->size == st.st_size && live[i]->mtime_ns == mtime_ns(&st))
				reuse = live[i];
			else
				stale = live[i];
		}
	if (reuse) {
		plugin_lib_ref(reuse);
		e->lib = reuse;
		copy_descriptor(e, reuse->desc);
		e->status = PLUGIN_ACTIVE;
		return;
	}
	/* Nothing of a file is run in this process before the scanner, in a
	 * process of its own, has loaded it and checked every pointer of its
	 * descriptor (scan.h). */
	scan_result sr;
	plugin_scan(e->path, &st, &sr);
	if (!sr.ok) {
		e->status = PLUGIN_REJECTED;
		snprintf(e->reason, sizeof e->reason, "%s", sr.reason);
		take_scan_info(e, &sr);
		scan_result_free(&sr);
		return;
	}
	scan_result_free(&sr);
	dlerror();
	void *h = stale ? open_fresh_copy(e->path, e->reason, sizeof e->reason)
			: dlopen(e->path, RTLD_NOW | RTLD_LOCAL);
	struct stat again;
	if (h && (stat(e->path, &again) != 0 || again.st_dev != st.st_dev ||
		  again.st_ino != st.st_ino || again.st_size != st.st_size ||
		  mtime_ns(&again) != mtime_ns(&st))) {
		/* replaced between the scan and the dlopen: what was scanned is
		 * not what was loaded (the next scan looks at the new file) */
		dlclose(h);
		e->status = PLUGIN_REJECTED;
		snprintf(e->reason, sizeof e->reason, "changed while being scanned");
		return;
	}
	if (!h) {
		e->status = PLUGIN_REJECTED;
		if (!stale) {
			const char *de = dlerror();
			snprintf(e->reason, sizeof e->reason, "cannot load: %s", de ? de : "unknown error");
		}
		return;
	}
	const struct model_plugin *p = dlsym(h, "model_plugin");
	if (!p) {
		e->status = PLUGIN_REJECTED;
		snprintf(e->reason, sizeof e->reason, "no model_plugin descriptor");
		dlclose(h);
		return;
	}
	copy_descriptor(e, p);
	char why[256];
	const char *bad = check_descriptor(p, why, sizeof why);
	if (bad) {
		e->status = PLUGIN_REJECTED;
		snprintf(e->reason, sizeof e->reason, "%s", bad);
		dlclose(h);
		return;
	}
	plugin_lib *l = calloc(1, sizeof *l);
	plugin_lib **nl = realloc(live, (n_live + 1) * sizeof *nl);
	if (!l || !nl || !(l->path = strdup(e->path))) {
		free(l);
		if (nl)
			live = nl;
		e->status = PLUGIN_REJECTED;
		snprintf(e->reason, sizeof e->reason, "out of memory");
		dlclose(h);
		return;
	}
	live = nl;
	l->handle = h;
	l->desc = p;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	l->size = st.st_size;
	l->mtime_ns = mtime_ns(&st);
	l->refs = 1;
	live[n_live++] = l;
	e->lib = l;
	e->status = PLUGIN_ACTIVE;
}

static void clear_entries(mh_registry *r)
{
	for (int i = 0; i < r->n_entries; i++) {
		plugin_entry *e = &r->entries[i];
		plugin_lib_unref(e->lib);
		for (int k = 0; k < e->n_archs; k++)
			free(e->archs[k]);
		free(e->archs);
		free(e->path);
		free(e->name);
		free(e->version);
		free(e->description);
		free(e->license);
	}
	free(r->entries);
	r->entries = NULL;
	r->n_entries = 0;
}

mh_registry *registry_new(const mh_services *svc)
{
	mh_registry *r = calloc(1, sizeof *r);
	if (r)
		r->svc = svc;
	return r;
}

void registry_free(mh_registry *r)
{
	if (!r)
		return;
	clear_entries(r);
	for (int i = 0; i < r->n_dirs; i++)
		free(r->dirs[i]);
	free(r->dirs);
	free(r);
}

void registry_add_dir(mh_registry *r, const char *dir)
{
	if (!dir || !*dir)
		return;
	if (dir[0] != '/') { /* it would mean whatever the working directory is */
		fprintf(stderr, "modelhost: warning: %s: relative plugin directory not searched\n",
			dir);
		return;
	}
	for (int i = 0; i < r->n_dirs; i++)
		if (strcmp(r->dirs[i], dir) == 0)
			return;
	char **nd = realloc(r->dirs, (r->n_dirs + 1) * sizeof *nd);
	if (!nd)
		return;
	r->dirs = nd;
	if ((r->dirs[r->n_dirs] = strdup(dir)))
		r->n_dirs++;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_entry(mh_registry *r, char *path)
{
	plugin_entry *ne = realloc(r->entries, (r->n_entries + 1) * sizeof *ne);
	if (!ne) {
		free(path);
		return;
	}
	r->entries = ne;
	plugin_entry *e = &r->entries[r->n_entries];
	memset(e, 0, sizeof *e);
	e->path = path;
	e->order = r->n_entries++;
	load_entry(r, e);
}

/* Anyone who can add a file to a plugin directory runs code in every host
 * that searches it: a directory others may write to, or that belongs to
 * someone other than root or us, is not searched.  NULL if it may be. */
static const char *untrusted_dir(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return NULL; /* nothing to search anyway */
	if (st.st_mode & S_IWOTH)
		return "anyone may write to it";
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return "it belongs to another user";
	return NULL;
}

void registry_scan(mh_registry *r)
{
	clear_entries(r);
	for (int d = 0; d < r->n_dirs; d++) {
		const char *why = untrusted_dir(r->dirs[d]);
		if (why) {
			fprintf(stderr, "modelhost: warning: %s: plugin directory not searched: %s\n",
				r->dirs[d], why);
			continue;
		}
		DIR *dir = opendir(r->dirs[d]);
		if (!dir)
			continue;
		char **names = NULL;
		int n = 0;
		struct dirent *de;
		while ((de = readdir(dir))) {
			size_t len = strlen(de->d_name);
			if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0 || de->d_name[0] == '.')
				continue;
			char **nn = realloc(names, (n + 1) * sizeof *nn);
			if (!nn)
				break;
			names = nn;
			names[n++] = strdup(de->d_name);
		}
		closedir(dir);
		if (n)
			qsort(names, n, sizeof *names, cmp_str);
		for (int i = 0; i < n; i++) {
			if (names[i])
				add_entry(r, mh_path_join(r->dirs[d], names[i]));
			free(names[i]);
		}
		free(names);
	}
	/* the first plugin of a name wins */
	for (int i = 0; i < r->n_entries; i++) {
		plugin_entry *e = &r->entries[i];
		if (e->status != PLUGIN_ACTIVE)
			continue;
		for (int k = 0; k < i; k++) {
			plugin_entry *f = &r->entries[k];
			if (f->status == PLUGIN_ACTIVE && strcmp(f->name, e->name) == 0) {
				e->status = PLUGIN_SHADOWED;
				snprintf(e->reason, sizeof e->reason, "shadowed by %s", f->path);
				plugin_lib_unref(e->lib);
				e->lib = NULL;
				break;
			}
		}
	}
}

const plugin_entry *registry_entries(const mh_registry *r, int *n)
{
	*n = r->n_entries;
	return r->entries;
}

int registry_n_dirs(const mh_registry *r)
{
	return r->n_dirs;
}

const char *registry_dir(const mh_registry *r, int i)
{
	return r->dirs[i];
}

const mh_services *registry_services(const mh_registry *r)
{
	return r->svc;
}

static int claims(const plugin_entry *e, const mh_dir *dir, const char **what)
{
	for (int k = 0; k < e->n_archs; k++) {
		for (int i = 0;; i++) {
			char key[32];
			snprintf(key, sizeof key, "architectures.%d", i);
			const cJSON *a = modeldir_config(dir, key);
			if (!cJSON_IsString(a))
				break;
			if (strcmp(a->valuestring, e->archs[k]) == 0) {
				*what = e->archs[k];
				return 1;
			}
		}
		const cJSON *mt = modeldir_config(dir, "model_type");
		if (cJSON_IsString(mt) && strcmp(mt->valuestring, e->archs[k]) == 0) {
			*what = e->archs[k];
			return 1;
		}
	}
	return 0;
}

plugin_lib *registry_choose(mh_registry *r, mh_dir *dir, const char *force, char *why,
			    size_t whylen, char *err)
{
	if (force) {
		for (int i = 0; i < r->n_entries; i++) {
			plugin_entry *e = &r->entries[i];
			if (e->status == PLUGIN_ACTIVE && strcmp(e->name, force) == 0) {
				snprintf(why, whylen, "plugin '%s' %s forced with --plugin (%s)", e->name,
					 e->version, e->path);
				plugin_lib_ref(e->lib);
				return e->lib;
			}
		}
		mh_errf(err, "no usable plugin named '%s' (see 'modelhost plugins')", force);
		return NULL;
	}
	plugin_entry *best = NULL;
	const char *best_what = NULL;
	int best_score = -1, candidates = 0;
	for (int i = 0; i < r->n_entries; i++) {
		plugin_entry *e = &r->entries[i];
		const char *what;
		if (e->status != PLUGIN_ACTIVE || !claims(e, dir, &what))
			continue;
		const struct model_plugin *p = e->lib->desc;
		int score = p->probe ? p->probe(r->svc, dir) : 50;
		dir->err[0] = 0; /* a probe's complaints are not the load's */
		if (score < 0)
			continue;
		candidates++;
		if (score > best_score) { /* ties keep the earlier one */
			best = e;
			best_score = score;
			best_what = what;
		}
	}
	if (!best) {
		const char *arch = modeldir_architecture(dir);
		mh_errf(err, "%s/config.json: no plugin handles architecture '%s' (see 'modelhost plugins')",
			dir->path, arch ? arch : "(none given)");
		return NULL;
	}
	snprintf(why, whylen, "plugin '%s' %s claims '%s' (score %d, %d candidate%s; %s)", best->name,
		 best->version, best_what, best_score, candidates, candidates == 1 ? "" : "s",
		 best->path);
	plugin_lib_ref(best->lib);
	return best->lib;
}
