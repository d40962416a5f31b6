/* SPDX-License-Identifier: MIT */
/* hostile.c - plugins that try to take the host down while it merely
 * looks at them, built several ways by the test suite (HOSTILE_*):
 *   CTOR_CRASH   its constructor dereferences NULL
 *   CTOR_HANG    its constructor never returns
 *   CTOR_EXIT    its constructor calls exit(3)
 *   WILD_NAME    the descriptor's name points at unmapped memory
 *   LONG_NAME    the name never ends (no NUL in 8 KiB)
 *   WILD_ARCHS   the architectures array points at unmapped memory
 *   NO_NULL      the architectures array has no NULL within 100 entries
 *   WILD_FN      the load entry point points outside the plugin
 *   ABI2         a well-formed descriptor for ABI major 2
 *   NO_DESC      no descriptor at all
 * Every build also has a constructor that, when MODELHOST_TEST_MARKER
 * names a file, appends the pid it runs in: the host must never run a
 * rejected plugin's code in its own process. */
#include <modelhost/plugin.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void hostile_ctor(void)
{
	const char *m = getenv("MODELHOST_TEST_MARKER");
	if (m && *m) {
		char b[32];
		int fd = open(m, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int n = snprintf(b, sizeof b, "%d\n", (int)getpid());
		if (fd >= 0) {
			ssize_t w = write(fd, b, (size_t)n);
			(void)w;
			close(fd);
		}
	}
#ifdef HOSTILE_CTOR_CRASH
	*(volatile int *)(uintptr_t)0 = 1;
#endif
#ifdef HOSTILE_CTOR_HANG
	for (;;)
		pause();
#endif
#ifdef HOSTILE_CTOR_EXIT
	exit(3);
#endif
}

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	(void)n_ctx;
	svc->error(dir, NULL, "hostile plugin");
	return NULL;
}
static void model_free(mh_model *m) { (void)m; }
static const mh_model_info *info(const mh_model *m) { (void)m; return NULL; }
static int forward(mh_model *m, const int32_t *ids, int n, int pos, float *logits, int flags)
{
	(void)m, (void)ids, (void)n, (void)pos, (void)logits, (void)flags;
	return -1;
}
static void reset(mh_model *m) { (void)m; }

#define WILD ((const void *)(uintptr_t)0x10)

#ifdef HOSTILE_NO_NULL
static const char *const archs[100] = { [0 ... 99] = "HostileForCausalLM" };
#else
static const char *const archs[] = { "HostileForCausalLM", NULL };
#endif
#ifdef HOSTILE_LONG_NAME
static const char long_name[8192] = { [0 ... 8191] = 'a' };
#endif

#ifdef HOSTILE_NO_DESC
MODELHOST_EXPORT int hostile_not_a_plugin = 1;
#else
MODELHOST_EXPORT extern const struct model_plugin model_plugin;
const struct model_plugin model_plugin = {
#ifdef HOSTILE_ABI2
	.abi_major = 2,
#else
	.abi_major = MODELHOST_ABI_MAJOR,
#endif
	.abi_minor = MODELHOST_ABI_MINOR,
	.struct_size = sizeof(struct model_plugin),
#if defined(HOSTILE_WILD_NAME)
	.name = WILD,
#elif defined(HOSTILE_LONG_NAME)
	.name = long_name,
#else
	.name = "hostile",
#endif
	.version = "6.6.6",
#ifdef HOSTILE_WILD_ARCHS
	.architectures = WILD,
#else
	.architectures = archs,
#endif
#ifdef HOSTILE_WILD_FN
	.load = (mh_model *(*)(const mh_services *, mh_dir *, int32_t))(uintptr_t)0x1234,
#else
	.load = load,
#endif
	.free = model_free,
	.info = info,
	.forward = forward,
	.reset = reset,
};
#endif
