/* SPDX-License-Identifier: MIT */
/* scanner.c - modelhost-plugin-scanner FILE: dlopen one plugin in a
 * process of its own and say what it is (host/plugin/scanproto.h) on
 * stdout.  The host (scan.c) dlopens only the files this accepts, so a
 * plugin whose constructor crashes, hangs or exits, or whose descriptor
 * has wild pointers, takes down this process, never the host.
 *
 * Nothing of the descriptor is dereferenced directly: every read goes
 * through process_vm_readv() on our own memory, which fails with EFAULT on
 * an unmapped address where a plain read would fault.  Strings must end
 * within SCAN_MAX_STRING bytes, the architectures array within
 * SCAN_MAX_ARCHS entries, and every entry point must lie inside the plugin
 * file itself.  Links nothing of the host; includes only the SDK. */
#define _GNU_SOURCE
#include "plugin/scanproto.h"
#include <modelhost/plugin.h>

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static FILE *out;

/* n bytes at addr, or -1 if any of them is not readable. */
static int peek(void *dst, const void *addr, size_t n)
{
	struct iovec local = { dst, n }, remote = { (void *)addr, n };
	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)n ? 0 : -1;
}

/* A NUL-terminated string of at most SCAN_MAX_STRING bytes at addr, copied
 * into buf[SCAN_MAX_STRING + 1]; read a byte at a time up to each page end
 * so that a string ending just before an unmapped page is fine. */
static int peek_string(char *buf, const char *addr)
{
	size_t n = 0;
	while (n <= SCAN_MAX_STRING) {
		uintptr_t a = (uintptr_t)addr + n;
		size_t chunk = 4096 - (a & 4095);
		if (chunk > SCAN_MAX_STRING + 1 - n)
			chunk = SCAN_MAX_STRING + 1 - n;
		if (peek(buf + n, (const void *)a, chunk) != 0) {
			/* partly readable: find what is, byte by byte */
			for (size_t i = 0; i < chunk; i++, n++) {
				if (peek(buf + n, (const void *)(a + i), 1) != 0)
					return -1;
				if (!buf[n])
					return 0;
			}
			continue;
		}
		void *z = memchr(buf + n, 0, chunk);
		if (z)
			return 0;
		n += chunk;
	}
	return -1;
}

static int reject(const char *fmt, const char *what)
{
	char msg[512];
	snprintf(msg, sizeof msg, fmt, what);
	scan_put(out, "status", "rejected");
	scan_put(out, "reason", msg);
	scan_put(out, "end", "");
	return 0;
}

static const char *string_field(const char *name, const char *p, char *buf)
{
	if (!p) {
		buf[0] = 0;
		return buf;
	}
	if (peek_string(buf, p) != 0)
		return NULL;
	(void)name;
	return buf;
}

/* Inside the plugin file's own mapping: a wild function pointer would
 * crash the host at its first call. */
static int in_plugin(const void *fn, const void *base)
{
	Dl_info di;
	return fn && dladdr(fn, &di) && di.dli_fbase == base;
}

int main(int argc, char **argv)
{
	out = stdout;
	if (argc != 2) {
		fprintf(stderr, "Usage: modelhost-plugin-scanner FILE.so\n"
				"Says what the modelhost plugin FILE is, or why it is rejected.\n");
		return 2;
	}
	/* the plugin's own output must not mix with the record */
	int fd = dup(STDOUT_FILENO);
	out = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!out || !freopen("/dev/null", "w", stdout))
		return 2;
	dlerror();
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		char msg[600];
		snprintf(msg, sizeof msg, "cannot load: %s", e ? e : "unknown error");
		return reject("%s", msg), fclose(out), 0;
	}
	const struct model_plugin *addr = dlsym(h, "model_plugin");
	Dl_info self;
	if (!addr || !dladdr(addr, &self))
		return reject("%s", "no model_plugin descriptor"), fclose(out), 0;
	struct model_plugin p;
	memset(&p, 0, sizeof p);
	if (peek(&p, addr, offsetof(struct model_plugin, name)) != 0)
		return reject("%s", "the model_plugin descriptor is not readable"), fclose(out), 0;
	char abi[64];
	snprintf(abi, sizeof abi, "%u %u", p.abi_major, p.abi_minor);
	scan_put(out, "abi", abi);
	if (p.abi_major != MODELHOST_ABI_MAJOR) {
		snprintf(abi, sizeof abi, "%u.%u (host: %d.%d)", p.abi_major, p.abi_minor,
			 MODELHOST_ABI_MAJOR, MODELHOST_ABI_MINOR);
		return reject("incompatible ABI %s: major version differs", abi), fclose(out), 0;
	}
	if (p.abi_minor > MODELHOST_ABI_MINOR) {
		snprintf(abi, sizeof abi, "%u.%u, newer than the host's %d.%d", p.abi_major,
			 p.abi_minor, MODELHOST_ABI_MAJOR, MODELHOST_ABI_MINOR);
		return reject("built for ABI %s", abi), fclose(out), 0;
	}
	size_t min = offsetof(struct model_plugin, reserved);
	if (p.struct_size < min) {
		snprintf(abi, sizeof abi, "%u bytes, smaller than ABI %d.0's %zu", p.struct_size,
			 MODELHOST_ABI_MAJOR, min);
		return reject("descriptor is %s", abi), fclose(out), 0;
	}
	/* the fields this host knows; a newer minor's extra ones are not read */
	size_t n = p.struct_size < sizeof p ? p.struct_size : sizeof p;
	if (peek(&p, addr, n) != 0)
		return reject("%s", "the model_plugin descriptor runs into unreadable memory"),
		       fclose(out), 0;
	static char s[4][SCAN_MAX_STRING + 1];
	const char *names[4] = { "name", "version", "description", "license" };
	const char *vals[4] = { p.name, p.version, p.description, p.license };
	for (int i = 0; i < 4; i++)
		if (!string_field(names[i], vals[i], s[i]))
			return reject("descriptor field '%s' is not a readable string of at most "
				      "1024 bytes", names[i]), fclose(out), 0;
	scan_put(out, "name", s[0]);
	scan_put(out, "version", s[1]);
	scan_put(out, "description", s[2]);
	scan_put(out, "license", s[3]);
	if (!s[0][0])
		return reject("%s", "descriptor has an empty name"), fclose(out), 0;
	static char arch[SCAN_MAX_ARCHS][SCAN_MAX_STRING + 1];
	int n_archs = 0;
	for (;; n_archs++) {
		const char *a;
		if (!p.architectures || peek(&a, p.architectures + n_archs, sizeof a) != 0)
			return reject("%s", p.architectures ? "the architectures array is not readable"
							    : "descriptor claims no architectures"),
			       fclose(out), 0;
		if (!a)
			break;
		if (n_archs == SCAN_MAX_ARCHS)
			return reject("the architectures array has no NULL within %s entries", "64"),
			       fclose(out), 0;
		if (peek_string(arch[n_archs], a) != 0)
			return reject("%s", "an architecture name is not a readable string"),
			       fclose(out), 0;
	}
	if (!n_archs)
		return reject("%s", "descriptor claims no architectures"), fclose(out), 0;
	for (int i = 0; i < n_archs; i++)
		scan_put(out, "arch", arch[i]);
	if (!p.load || !p.free || !p.info || !p.forward || !p.reset)
		return reject("%s", "descriptor lacks an entry point (load, free, info, forward, reset)"),
		       fclose(out), 0;
	const struct {
		const char *name;
		const void *fn;
	} fns[] = { { "probe", (const void *)p.probe }, { "load", (const void *)p.load },
		    { "free", (const void *)p.free }, { "info", (const void *)p.info },
		    { "forward", (const void *)p.forward }, { "reset", (const void *)p.reset } };
	for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
		if (fns[i].fn && !in_plugin(fns[i].fn, self.dli_fbase))
			return reject("entry point '%s' points outside the plugin", fns[i].name),
			       fclose(out), 0;
	scan_put(out, "status", "ok");
	scan_put(out, "end", "");
	return fclose(out) == 0 ? 0 : 2;
}
