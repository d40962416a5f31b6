/* SPDX-License-Identifier: MIT */
/* testutil.c - see testutil.h. */
#include "testutil.h"
#include "plugin/registry.h"
#include "plugin/services.h"

#include <check.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *data_roots(void)
{
	const char *r = getenv("MODELHOST_TESTDATA");
	return r && *r ? r : "tests/data:data";
}

char *tu_data(const char *rel)
{
	const char *roots = data_roots();
	while (*roots) {
		size_t n = strcspn(roots, ":");
		char *p = malloc(n + strlen(rel) + 2);
		sprintf(p, "%.*s/%s", (int)n, roots, rel);
		if (n && access(p, R_OK) == 0)
			return p;
		free(p);
		roots += n + (roots[n] == ':');
	}
	return NULL;
}

char *tu_data_path(const char *rel)
{
	char *p = tu_data(rel);
	if (!p) {
		printf("skipping: %s not found in %s (MODELHOST_TESTDATA)\n", rel, data_roots());
		exit(77);
	}
	return p;
}

char *tu_data_optional(const char *rel)
{
	char *p = tu_data(rel);
	if (!p)
		printf("skipping this case: %s is not shipped (its licence keeps it out of the "
		       "tarball); configure --with-shared-dir=DIR to run it\n", rel);
	return p;
}

char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *t = malloc(4096);
	snprintf(t, 4096, "%s/modelhost-test-XXXXXX", base && *base ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(t));
	return t;
}

void tu_rmtree(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
}

void tu_write(const char *dir, const char *name, const char *text)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

void tu_copy(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
}

struct mh_registry *tu_registry(int test_plugins)
{
	mh_registry *reg = registry_new(services_init(2));
	const char *b = getenv("MODELHOST_BUILDDIR");
	char pat[4200];
	snprintf(pat, sizeof pat, "%s/plugins/*/.libs", b && *b ? b : ".");
	glob_t g;
	ck_assert_int_eq(glob(pat, GLOB_ONLYDIR, NULL, &g), 0);
	for (size_t i = 0; i < g.gl_pathc; i++)
		registry_add_dir(reg, g.gl_pathv[i]);
	globfree(&g);
	if (test_plugins) {
		snprintf(pat, sizeof pat, "%s/tests/plugins/.libs", b && *b ? b : ".");
		registry_add_dir(reg, pat);
	}
	registry_scan(reg);
	return reg;
}

int tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
