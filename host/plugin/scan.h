/* SPDX-License-Identifier: MIT */
/* scan.h - plugin files are probed by modelhost-plugin-scanner, a process
 * of its own (scanner.c), before the host dlopens them: a plugin whose
 * constructor crashes, hangs or exits, or whose descriptor holds wild
 * pointers, is rejected with that reason and the host carries on.
 *
 * Results are cached for the life of the process, keyed by path, device,
 * inode, size, mtime and ctime (packages may install files with fixed
 * mtimes; ctime changes on any install), so a rescan (/reload, SIGHUP)
 * probes only files that changed. */
#ifndef MH_SCAN_H
#define MH_SCAN_H

#include <stdint.h>
#include <sys/stat.h>

typedef struct scan_result {
	int ok;                /* passed: the host may dlopen it */
	char reason[256];      /* why not */
	uint32_t abi_major, abi_minor;
	char *name, *version, *description, *license; /* NULL when not read */
	char **archs;
	int n_archs;
} scan_result;

/* Scan path (st: its stat).  Fills r (free with scan_result_free); r->ok
 * says whether it passed.  Never fails otherwise: a scanner that cannot
 * run is a reason too. */
void plugin_scan(const char *path, const struct stat *st, scan_result *r);
void scan_result_free(scan_result *r);
/* Forget every cached result (tests). */
void plugin_scan_forget(void);
/* How many scanner processes this process has started (tests). */
int plugin_scan_count(void);

#endif
