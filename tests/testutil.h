/* testutil.h - helpers shared by the Check suites. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* $MODELHOST_SHARED (or ../shared); exits 77 (skip) with a message when the
 * reference data is absent. */
const char *tu_shared(void);
/* $MODELHOST_SHARED/REL, malloc'd. */
char *tu_shared_path(const char *rel);
/* A fresh temporary directory (removed by tu_rmtree). */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);
/* Write a text file DIR/NAME. */
void tu_write(const char *dir, const char *name, const char *text);
/* Copy a file. */
void tu_copy(const char *from, const char *to);
/* Registry search dirs for the build tree's plugins (plugins/<name>/.libs). */
char *tu_plugin_dir(const char *name);

/* Run a suite; the process exit status (0: every test passed). */
int tu_run(Suite *s);

#endif
