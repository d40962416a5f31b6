/* SPDX-License-Identifier: MIT */
/* testutil.h - helpers shared by the Check suites. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Reference data by its path relative to a data root (the layout of
 * ../shared): ROOT/REL for the first root of $MODELHOST_TESTDATA (colon-
 * separated; make check sets it: the build tree's and source tree's
 * tests/data, data/, then configure's --with-shared-dir) that holds it,
 * malloc'd; NULL when none does. */
char *tu_data(const char *rel);
/* The same for data the tarball ships (tests/data/README): when it is
 * missing the suite cannot run at all, so it exits 77 naming the file. */
char *tu_data_path(const char *rel);
/* The same for data a Debian main package cannot carry (the Llama
 * tokenizers, some chat templates): NULL after printing that the case is
 * skipped and which file it needs; the test then returns. */
char *tu_data_optional(const char *rel);
/* A fresh temporary directory (removed by tu_rmtree). */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);
/* Write a text file DIR/NAME. */
void tu_write(const char *dir, const char *name, const char *text);
/* Copy a file. */
void tu_copy(const char *from, const char *to);
/* A registry of the build tree's plugins (every plugins/NAME/.libs) and, with
 * test_plugins, the test plugins (tests/plugins/.libs), scanned. */
struct mh_registry;
struct mh_registry *tu_registry(int test_plugins);

/* Run a suite; the process exit status (0: every test passed). */
int tu_run(Suite *s);

#endif
