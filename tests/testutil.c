/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tu_shared(void)
{
	const char *s = getenv("MODELHOST_SHARED");
	if (!s || !*s)
		s = "../shared";
	struct stat st;
	if (stat(s, &st) != 0 || !S_ISDIR(st.st_mode)) {
		printf("skipping: reference data not found at %s (set MODELHOST_SHARED or "
		       "configure --with-shared-dir)\n", s);
		exit(77);
	}
	return s;
}

char *tu_shared_path(const char *rel)
{
	const char *s = tu_shared();
	char *p = malloc(strlen(s) + strlen(rel) + 2);
	sprintf(p, "%s/%s", s, rel);
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

char *tu_plugin_dir(const char *name)
{
	const char *b = getenv("MODELHOST_BUILDDIR");
	char *p = malloc(4096);
	snprintf(p, 4096, "%s/plugins/%s/.libs", b && *b ? b : ".", name);
	return p;
}

int tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
