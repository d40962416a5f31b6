/* SPDX-License-Identifier: MIT */
/* scan.c - see scan.h.  The scanner is found without a compiled-in build
 * path: $MODELHOST_PLUGIN_SCANNER (the test harness sets it), else beside
 * the running program (/proc/self/exe: the build tree keeps both at its
 * top), else the installed $(pkglibexecdir)/modelhost-plugin-scanner.
 * posix_spawn, not fork: the host may run threads (the pool, a server),
 * and a forked copy of a multithreaded process may only call
 * async-signal-safe functions before exec. */
#define _GNU_SOURCE
#include "plugin/scan.h"
#include "plugin/scanproto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SCANNER_NAME "modelhost-plugin-scanner"
#define DEFAULT_TIMEOUT_MS 10000
#define MAX_RECORD (1 << 20)

typedef struct {
	char *path;
	struct stat st;         /* the file scanned: a change of any of its identity rescans */
	scan_result r;
} cached;

static cached *cache;
static int n_cache, n_spawned;

static int same_file(const cached *c, const char *path, const struct stat *st)
{
	const struct stat *was = &c->st;
	return was->st_dev == st->st_dev && was->st_ino == st->st_ino && was->st_size == st->st_size &&
	       was->st_mtim.tv_sec == st->st_mtim.tv_sec && was->st_mtim.tv_nsec == st->st_mtim.tv_nsec &&
	       was->st_ctim.tv_sec == st->st_ctim.tv_sec && was->st_ctim.tv_nsec == st->st_ctim.tv_nsec &&
	       strcmp(c->path, path) == 0;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void copy_result(scan_result *to, const scan_result *from)
{
	*to = *from;
	to->name = dup_or_null(from->name);
	to->version = dup_or_null(from->version);
	to->description = dup_or_null(from->description);
	to->license = dup_or_null(from->license);
	to->archs = calloc(from->n_archs ? from->n_archs : 1, sizeof *to->archs);
	to->n_archs = 0;
	for (int i = 0; to->archs && i < from->n_archs; i++)
		if ((to->archs[to->n_archs] = strdup(from->archs[i])))
			to->n_archs++;
	if (to->n_archs != from->n_archs && to->ok) { /* out of memory: not usable */
		to->ok = 0;
		snprintf(to->reason, sizeof to->reason, "out of memory");
	}
}

void scan_result_free(scan_result *r)
{
	free(r->name);
	free(r->version);
	free(r->description);
	free(r->license);
	for (int i = 0; i < r->n_archs; i++)
		free(r->archs[i]);
	free(r->archs);
	memset(r, 0, sizeof *r);
}

void plugin_scan_forget(void)
{
	for (int i = 0; i < n_cache; i++) {
		free(cache[i].path);
		scan_result_free(&cache[i].r);
	}
	free(cache);
	cache = NULL;
	n_cache = 0;
}

int plugin_scan_count(void)
{
	return n_spawned;
}

static int executable(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

/* malloc'd path of the scanner, or NULL. */
static char *find_scanner(void)
{
	const char *env = secure_getenv("MODELHOST_PLUGIN_SCANNER");
	if (env && *env)
		return env[0] == '/' && executable(env) ? strdup(env) : NULL;
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash && (size_t)(slash - exe) + sizeof SCANNER_NAME + 1 < sizeof exe) {
			strcpy(slash + 1, SCANNER_NAME);
			if (executable(exe))
				return strdup(exe);
		}
	}
	return executable(MH_SCANNER) ? strdup(MH_SCANNER) : NULL;
}

static int timeout_ms(void)
{
	const char *env = secure_getenv("MODELHOST_PLUGIN_SCAN_TIMEOUT");
	char *end;
	double s = env ? strtod(env, &end) : 0;
	if (env && *env && !*end && s > 0 && s <= 3600)
		return (int)(s * 1000);
	return DEFAULT_TIMEOUT_MS;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void parse_record(char *buf, scan_result *r)
{
	int ended = 0, status = -1;
	char *save = NULL;
	char **archs = calloc(SCAN_MAX_ARCHS, sizeof *archs);
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(line, ' ');
		if (!v)
			continue;
		*v++ = 0;
		scan_unescape(v);
		if (strcmp(line, "status") == 0)
			status = strcmp(v, "ok") == 0;
		else if (strcmp(line, "reason") == 0)
			snprintf(r->reason, sizeof r->reason, "%s", v);
		else if (strcmp(line, "abi") == 0)
			sscanf(v, "%u %u", &r->abi_major, &r->abi_minor);
		else if (strcmp(line, "name") == 0 && !r->name)
			r->name = strdup(v);
		else if (strcmp(line, "version") == 0 && !r->version)
			r->version = strdup(v);
		else if (strcmp(line, "description") == 0 && !r->description)
			r->description = strdup(v);
		else if (strcmp(line, "license") == 0 && !r->license)
			r->license = strdup(v);
		else if (strcmp(line, "arch") == 0 && archs && r->n_archs < SCAN_MAX_ARCHS)
			archs[r->n_archs++] = strdup(v);
		else if (strcmp(line, "end") == 0)
			ended = 1;
	}
	r->archs = archs;
	int complete = archs && r->name && r->version && r->description && r->license;
	for (int i = 0; i < r->n_archs; i++)
		complete = complete && archs[i];
	if (!ended || status < 0) {
		r->ok = 0;
		if (!r->reason[0])
			snprintf(r->reason, sizeof r->reason, "the scanner gave no result");
	} else if (status == 1 && !complete) {
		r->ok = 0;
		snprintf(r->reason, sizeof r->reason, "out of memory");
	} else {
		r->ok = status;
	}
}

/* Run the scanner on path; fills r. */
static void run_scanner(const char *path, scan_result *r)
{
	memset(r, 0, sizeof *r);
	char *scanner = find_scanner();
	if (!scanner) {
		snprintf(r->reason, sizeof r->reason, "not scanned: %s not found (set "
			 "MODELHOST_PLUGIN_SCANNER, or install it beside modelhost)", SCANNER_NAME);
		return;
	}
	int pfd[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	pid_t pid = -1;
	char *buf = NULL;
	size_t len = 0;
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		snprintf(r->reason, sizeof r->reason, "not scanned: %s", strerror(errno));
		free(scanner);
		return;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_init(&at);
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGBUS);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setpgroup(&at, 0); /* its own group: a hang is killed whole */
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					      POSIX_SPAWN_SETPGROUP);
	char *argv[] = { scanner, (char *)path, NULL };
	int se = posix_spawn(&pid, scanner, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(pfd[1]);
	if (se != 0) {
		snprintf(r->reason, sizeof r->reason, "not scanned: cannot run %s: %s", scanner,
			 strerror(se));
		close(pfd[0]);
		free(scanner);
		return;
	}
	n_spawned++;
	long long deadline = now_ms() + timeout_ms();
	int timed_out = 0, too_long = 0;
	/* the record, until EOF */
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0) {
			timed_out = 1;
			break;
		}
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int pr = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		char chunk[4096];
		ssize_t k = read(pfd[0], chunk, sizeof chunk);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (len + (size_t)k > MAX_RECORD) {
			too_long = 1;
			break;
		}
		char *nb = realloc(buf, len + (size_t)k + 1);
		if (!nb) {
			too_long = 1;
			break;
		}
		buf = nb;
		memcpy(buf + len, chunk, (size_t)k);
		len += (size_t)k;
	}
	close(pfd[0]);
	/* then its exit, within the same deadline */
	int status = 0;
	pid_t w = 0;
	while (!timed_out && !too_long && (w = waitpid(pid, &status, WNOHANG)) == 0) {
		if (now_ms() >= deadline) {
			timed_out = 1;
			break;
		}
		struct timespec ms = { 0, 2000000 };
		nanosleep(&ms, NULL);
	}
	if (timed_out || too_long || w < 0) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	if (buf)
		buf[len] = 0;
	if (timed_out) {
		snprintf(r->reason, sizeof r->reason, "hung during the scan (killed after %.1f s)",
			 timeout_ms() / 1000.0);
	} else if (too_long) {
		snprintf(r->reason, sizeof r->reason, "the scanner's answer is too long");
	} else if (WIFSIGNALED(status)) {
		snprintf(r->reason, sizeof r->reason, "crashed during the scan (signal %d, %s)",
			 WTERMSIG(status), strsignal(WTERMSIG(status)));
	} else if (!buf || !strstr(buf, "\nend ")) {
		snprintf(r->reason, sizeof r->reason, "exited during the scan (status %d)",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	} else {
		parse_record(buf, r);
	}
	free(buf);
	free(scanner);
}

void plugin_scan(const char *path, const struct stat *st, scan_result *r)
{
	for (int i = 0; i < n_cache; i++)
		if (same_file(&cache[i], path, st)) {
			copy_result(r, &cache[i].r);
			return;
		}
	scan_result fresh;
	run_scanner(path, &fresh);
	copy_result(r, &fresh);
	/* remember it, replacing what was known of an older file at path */
	int slot = -1;
	for (int i = 0; i < n_cache && slot < 0; i++)
		if (strcmp(cache[i].path, path) == 0)
			slot = i;
	if (slot < 0) {
		cached *nc = realloc(cache, (n_cache + 1) * sizeof *nc);
		char *p = strdup(path);
		if (!nc || !p) {
			if (nc)
				cache = nc;
			free(p);
			scan_result_free(&fresh);
			return;
		}
		cache = nc;
		slot = n_cache++;
		cache[slot].path = p;
	} else {
		scan_result_free(&cache[slot].r);
	}
	cache[slot].st = *st;
	cache[slot].r = fresh;
}
