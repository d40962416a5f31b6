/* SPDX-License-Identifier: MIT */
/* check_registry.c - plugin discovery: rejection reasons, shadowing,
 * ranking, forcing, and replacing a plugin at runtime while a model loaded
 * from the old file keeps running. */
#include "plugin/registry.h"
#include "plugin/scan.h"
#include "model/safetensors.h"
#include "plugin/services.h"
#include "plugin/session.h"
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp, *plugdir, *plugdir2, *model;
static char err[MH_ERRLEN];
static const mh_services *svc;

/* Copy the test plugin build NAME (tests/plugins/.libs/NAME.so, or
 * tests/plugins/hostile/.libs/ for the hostile ones) to DIR/AS. */
static void install(const char *name, const char *dir, const char *as)
{
	const char *b = getenv("MODELHOST_BUILDDIR");
	char from[4200], to[4200], tmpto[4300];
	snprintf(from, sizeof from, "%s/tests/plugins/%s.libs/%s.so", b ? b : ".",
		 strncmp(name, "hostile_", 8) == 0 ? "hostile/" : "", name);
	snprintf(to, sizeof to, "%s/%s", dir, as);
	/* replace atomically, as `install` does: never rewrite a mapped file */
	snprintf(tmpto, sizeof tmpto, "%s.new", to);
	tu_copy(from, tmpto);
	ck_assert_int_eq(rename(tmpto, to), 0);
}

static void setup(void)
{
	svc = services_init(1);
	tmp = tu_tmpdir();
	plugdir = malloc(4200);
	plugdir2 = malloc(4200);
	model = malloc(4200);
	snprintf(plugdir, 4200, "%s/a", tmp);
	snprintf(plugdir2, 4200, "%s/b", tmp);
	snprintf(model, 4200, "%s/model", tmp);
	ck_assert_int_eq(mkdir(plugdir, 0755), 0);
	ck_assert_int_eq(mkdir(plugdir2, 0755), 0);
	ck_assert_int_eq(mkdir(model, 0755), 0);
	tu_write(model, "config.json",
		 "{\"architectures\": [\"ToyForCausalLM\"], \"vocab_size\": 4, \"eos_token_id\": 3}");
	float logits[4] = { 0.5f, 1.5f, -1.0f, 0.0f };
	mh_tensor t = { .name = "toy.logits", .dtype = MH_F32, .ndim = 1, .shape = { 4 },
			.nelem = 4, .data = logits, .nbytes = sizeof logits };
	char p[4300];
	snprintf(p, sizeof p, "%s/model.safetensors", model);
	ck_assert_int_eq(st_write(p, &t, 1, err), 0);
}

static void teardown(void)
{
	tu_rmtree(tmp);
	free(tmp);
	free(plugdir);
	free(plugdir2);
	free(model);
	services_shutdown();
}

static mh_registry *scan(void)
{
	mh_registry *r = registry_new(svc);
	registry_add_dir(r, plugdir);
	registry_add_dir(r, plugdir2);
	registry_scan(r);
	return r;
}

static const plugin_entry *entry(mh_registry *r, const char *file)
{
	int n;
	const plugin_entry *e = registry_entries(r, &n);
	for (int i = 0; i < n; i++) {
		const char *base = strrchr(e[i].path, '/');
		if (strcmp(base + 1, file) == 0)
			return &e[i];
	}
	ck_abort_msg("no entry for %s", file);
	return NULL;
}

static void expect(mh_registry *r, const char *file, plugin_status st, const char *reason)
{
	const plugin_entry *e = entry(r, file);
	ck_assert_msg(e->status == st, "%s: status %d, reason '%s'", file, e->status, e->reason);
	if (reason)
		ck_assert_msg(strstr(e->reason, reason) != NULL, "%s: reason '%s' lacks '%s'", file,
			      e->reason, reason);
}

START_TEST(broken_plugins_are_rejected_with_reasons)
{
	install("toy_v1", plugdir, "toy.so");
	install("toy_badabi", plugdir, "badabi.so");
	install("toy_newminor", plugdir, "newminor.so");
	install("toy_oldminor", plugdir, "oldminor.so");
	install("toy_nodesc", plugdir, "nodesc.so");
	install("toy_noname", plugdir, "noname.so");
	tu_write(plugdir, "text.so", "this is not a shared object\n");
	tu_write(plugdir, "README", "not a plugin, not even looked at\n");
	mh_registry *r = scan();
	int n;
	registry_entries(r, &n);
	ck_assert_int_eq(n, 7);
	expect(r, "toy.so", PLUGIN_ACTIVE, NULL);
	expect(r, "oldminor.so", PLUGIN_ACTIVE, NULL); /* ABI 1.0 loads in every 1.x host */
	expect(r, "badabi.so", PLUGIN_REJECTED, "incompatible ABI 2.0");
	expect(r, "newminor.so", PLUGIN_REJECTED, "built for ABI 1.99, newer than the host's");
	expect(r, "nodesc.so", PLUGIN_REJECTED, "no model_plugin descriptor");
	expect(r, "noname.so", PLUGIN_REJECTED, "empty name");
	expect(r, "text.so", PLUGIN_REJECTED, "cannot load");
	ck_assert_str_eq(entry(r, "toy.so")->version, "1.0.0");
	registry_free(r);
}
END_TEST

START_TEST(first_in_search_order_shadows)
{
	install("toy_v1", plugdir, "toy.so");
	install("toy_v2", plugdir2, "toy.so");
	mh_registry *r = scan();
	int n;
	const plugin_entry *e = registry_entries(r, &n);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(e[0].status, PLUGIN_ACTIVE);
	ck_assert_str_eq(e[0].version, "1.0.0");
	ck_assert_int_eq(e[1].status, PLUGIN_SHADOWED);
	ck_assert_ptr_nonnull(strstr(e[1].reason, plugdir));
	registry_free(r);
}
END_TEST

static float first_logit(mh_session *s)
{
	float lg[4];
	int32_t id = 1;
	ck_assert_int_eq(session_forward(s, &id, 1, lg, MH_LOGITS_LAST, err), 0);
	return lg[0];
}

START_TEST(ranked_by_probe_score_then_forced)
{
	install("toy_v1", plugdir, "toy.so");       /* no probe: 50 */
	install("toy_fast", plugdir2, "toyfast.so"); /* probe: 80, later in the order */
	mh_registry *r = scan();
	mh_session *s = session_open(r, model, NULL, 0, err);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert_str_eq(s->lib->desc->name, "toyfast");
	ck_assert_ptr_nonnull(strstr(s->why, "score 80, 2 candidates"));
	ck_assert_float_eq(first_logit(s), 2.5f);
	session_close(s);
	s = session_open(r, model, "toy", 0, err);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert_str_eq(s->lib->desc->name, "toy");
	ck_assert_float_eq(first_logit(s), 0.5f);
	session_close(s);
	ck_assert_ptr_null(session_open(r, model, "nosuch", 0, err));
	ck_assert_ptr_nonnull(strstr(err, "no usable plugin named 'nosuch'"));
	registry_free(r);
}
END_TEST

START_TEST(unknown_architecture)
{
	install("toy_v1", plugdir, "toy.so");
	tu_write(model, "config.json", "{\"architectures\": [\"GrokForCausalLM\"], \"vocab_size\": 4}");
	mh_registry *r = scan();
	ck_assert_ptr_null(session_open(r, model, NULL, 0, err));
	ck_assert_msg(strstr(err, "config.json: no plugin handles architecture 'GrokForCausalLM'"),
		      "%s", err);
	registry_free(r);
}
END_TEST

START_TEST(replace_plugin_at_runtime)
{
	install("toy_v1", plugdir, "toy.so");
	mh_registry *r = scan();
	mh_session *old = session_open(r, model, NULL, 0, err);
	ck_assert_msg(old != NULL, "%s", err);
	ck_assert_str_eq(old->lib->desc->version, "1.0.0");

	install("toy_v2", plugdir, "toy.so"); /* a new build lands on disk */
	registry_scan(r);
	ck_assert_str_eq(entry(r, "toy.so")->version, "2.0.0");
	mh_session *fresh = session_open(r, model, NULL, 0, err);
	ck_assert_msg(fresh != NULL, "%s", err);
	ck_assert_str_eq(fresh->lib->desc->version, "2.0.0");
	ck_assert_float_eq(first_logit(fresh), 1.5f);

	/* the old model still runs the old code */
	ck_assert_str_eq(old->lib->desc->version, "1.0.0");
	ck_assert_float_eq(first_logit(old), 0.5f);
	ck_assert_int_eq(old->lib->refs, 1); /* only the model holds v1 now */
	session_close(old);

	/* a rescan with no change reuses the loaded code */
	plugin_lib *before = fresh->lib;
	registry_scan(r);
	mh_session *again = session_open(r, model, NULL, 0, err);
	ck_assert_ptr_eq(again->lib, before);
	session_close(again);
	session_close(fresh);
	registry_free(r);
}
END_TEST

/* Issue 16 #8, #9: rejected plugins never run code in the host (their
 * constructors run in the scanner's process), and a plugin that crashes,
 * hangs or exits while scanned, or whose descriptor has wild pointers, is
 * rejected with that reason while the host carries on. */
START_TEST(hostile_plugins_never_run_in_the_host)
{
	char marker[4300];
	snprintf(marker, sizeof marker, "%s/marker", tmp);
	setenv("MODELHOST_TEST_MARKER", marker, 1);
	setenv("MODELHOST_PLUGIN_SCAN_TIMEOUT", "1", 1);
	static const struct {
		const char *build, *reason;
	} cases[] = {
		{ "hostile_crash", "during the scan" }, /* a signal, or ASan's exit */
		{ "hostile_hang", "hung during the scan" },
		{ "hostile_exit", "exited during the scan (status 3)" },
		{ "hostile_wildname", "field 'name' is not a readable string" },
		{ "hostile_longname", "field 'name' is not a readable string" },
		{ "hostile_wildarchs", "the architectures array is not readable" },
		{ "hostile_nonull", "no NULL within 64 entries" },
		{ "hostile_wildfn", "entry point 'load' points outside the plugin" },
		{ "hostile_abi2", "incompatible ABI 2." },
		{ "hostile_nodesc", "no model_plugin descriptor" },
	};
	int nc = (int)(sizeof cases / sizeof *cases);
	for (int i = 0; i < nc; i++) {
		char as[64];
		snprintf(as, sizeof as, "%s.so", cases[i].build);
		install(cases[i].build, plugdir, as);
	}
	install("toy_v1", plugdir2, "toy.so");
	int before = plugin_scan_count();
	mh_registry *r = scan();
	int n;
	registry_entries(r, &n);
	ck_assert_int_eq(n, nc + 1);
	for (int i = 0; i < nc; i++) {
		char as[64];
		snprintf(as, sizeof as, "%s.so", cases[i].build);
		expect(r, as, PLUGIN_REJECTED, cases[i].reason);
	}
	expect(r, "toy.so", PLUGIN_ACTIVE, NULL);
	/* listed with its ABI; nothing past the version fields of another
	 * major's layout is read */
	ck_assert_int_eq(entry(r, "hostile_abi2.so")->abi_major, 2);
	ck_assert_ptr_null(entry(r, "hostile_abi2.so")->name);
	ck_assert_str_eq(entry(r, "hostile_wildfn.so")->version, "6.6.6");
	/* the good one works after all that */
	mh_session *s = session_open(r, model, NULL, 0, err);
	ck_assert_msg(s != NULL, "%s", err);
	ck_assert_float_eq(first_logit(s), 0.5f);
	session_close(s);
	ck_assert_int_eq(plugin_scan_count() - before, nc + 1);
	/* every constructor ran, each in a scanner, none in this process */
	FILE *f = fopen(marker, "r");
	ck_assert_ptr_nonnull(f);
	int pid, runs = 0;
	while (fscanf(f, "%d", &pid) == 1) {
		ck_assert_int_ne(pid, (int)getpid());
		runs++;
	}
	fclose(f);
	ck_assert_int_eq(runs, nc);
	/* a rescan of unchanged files starts no scanner: results are cached */
	registry_scan(r);
	ck_assert_int_eq(plugin_scan_count() - before, nc + 1);
	expect(r, "hostile_hang.so", PLUGIN_REJECTED, "hung during the scan");
	registry_free(r);
	unsetenv("MODELHOST_TEST_MARKER");
}
END_TEST

/* Who may add files to a plugin directory runs code in the host: a
 * world-writable one is not searched, nor is a relative path. */
START_TEST(untrusted_directories_are_not_searched)
{
	install("toy_v1", plugdir, "toy.so");
	install("toy_v2", plugdir2, "toy.so");
	ck_assert_int_eq(chmod(plugdir, 0777), 0);
	mh_registry *r = registry_new(svc);
	registry_add_dir(r, plugdir);
	registry_add_dir(r, "relative/plugins");
	registry_add_dir(r, plugdir2);
	ck_assert_int_eq(registry_n_dirs(r), 2);
	registry_scan(r);
	int n;
	const plugin_entry *e = registry_entries(r, &n);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(e[0].version, "2.0.0");
	ck_assert_int_eq(chmod(plugdir, 0755), 0);
	registry_scan(r);
	e = registry_entries(r, &n);
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(e[0].version, "1.0.0");
	registry_free(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, broken_plugins_are_rejected_with_reasons);
	tcase_add_test(tc, first_in_search_order_shadows);
	tcase_add_test(tc, ranked_by_probe_score_then_forced);
	tcase_add_test(tc, unknown_architecture);
	tcase_add_test(tc, replace_plugin_at_runtime);
	tcase_add_test(tc, hostile_plugins_never_run_in_the_host);
	tcase_add_test(tc, untrusted_directories_are_not_searched);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
