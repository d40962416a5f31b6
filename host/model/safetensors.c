/* SPDX-License-Identifier: MIT */
/* safetensors.c - see safetensors.h.  Format: 8-byte little-endian header
 * length N, N bytes of JSON {name: {dtype, shape, data_offsets: [b, e]}},
 * then the data area; offsets are relative to the data area. */
#include "model/safetensors.h"
#include "base/util.h"

#include <cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A tensor name from an untrusted header, fit for a one-line message:
 * control bytes escaped, long names cut. */
static const char *printable(const char *name, char *buf, size_t len)
{
	size_t k = 0;
	for (const unsigned char *p = (const unsigned char *)name; *p && k + 8 < len; p++) {
		if (*p < 0x20 || *p == 0x7f)
			k += (size_t)snprintf(buf + k, len - k, "\\x%02x", *p);
		else
			buf[k++] = (char)*p;
	}
	buf[k] = 0;
	return buf;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const mh_tensor *)a)->name, ((const mh_tensor *)b)->name);
}

typedef struct {
	uint64_t begin, end;
	const char *name;
} range;

static int by_begin(const void *a, const void *b)
{
	const range *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static int get_u64(const cJSON *j, uint64_t *out)
{
	if (!cJSON_IsNumber(j))
		return -1;
	double d = j->valuedouble;
	if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d)
		return -1;
	*out = (uint64_t)d;
	return 0;
}

/* Parse one header entry into t; "" or a problem description. */
static const char *parse_entry(const cJSON *e, uint64_t data_size, mh_tensor *t,
			       uint64_t *begin, uint64_t *end)
{
	if (!cJSON_IsObject(e))
		return "is not an object";
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	if (!cJSON_IsString(dt))
		return "has no dtype";
	if (mh_dtype_from_name(dt->valuestring, &t->dtype) != 0)
		return "has an unknown dtype";
	if (!cJSON_IsArray(sh))
		return "has no shape";
	int nd = cJSON_GetArraySize(sh);
	if (nd > MH_MAX_DIMS)
		return "has too many dimensions";
	t->ndim = nd;
	uint64_t nelem = 1;
	int i = 0;
	const cJSON *d;
	cJSON_ArrayForEach(d, sh) {
		uint64_t v;
		if (get_u64(d, &v) != 0 || v > INT64_MAX)
			return "has a malformed shape";
		t->shape[i++] = (int64_t)v;
		if (v && nelem > UINT64_MAX / v)
			return "has a shape too large";
		nelem *= v;
	}
	if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
	    get_u64(cJSON_GetArrayItem(of, 0), begin) != 0 ||
	    get_u64(cJSON_GetArrayItem(of, 1), end) != 0)
		return "has malformed data_offsets";
	if (*end < *begin)
		return "has data_offsets that end before they begin";
	if (*end > data_size)
		return "ends past the end of the file";
	size_t es = mh_dtype_size(t->dtype);
	if (nelem > UINT64_MAX / es || nelem * es != *end - *begin)
		return "has a byte range that does not match its shape and dtype";
	t->nelem = (int64_t)nelem;
	t->nbytes = (size_t)(*end - *begin);
	return "";
}

/* The block bytes of a quantized dtype. */
static size_t block_bytes(mh_dtype t)
{
	return t == MH_Q8_0 ? sizeof(mh_block_q8_0) : sizeof(mh_block_q4_0);
}

/* Turn the U8 tensors that __metadata__ marks as quantized into their
 * block dtype (safetensors.h); "" or a problem, naming the tensor in nb. */
size_t st_bad_scale(const mh_tensor *t, size_t from, size_t to)
{
	size_t bs = block_bytes(t->dtype), step = 64 * bs;
	const unsigned char *p = (const unsigned char *)t->data + 1; /* a scale's high byte */
	for (size_t b = from; b < to; b += step) {
		size_t e = to - b < step ? to : b + step;
		unsigned bad = 0;
		/* no branch per block: the loop runs at the speed of memory */
		for (size_t k = b; k < e; k += bs)
			bad |= (p[k] & 0x7c) == 0x7c; /* F16 exponent all ones: Inf or NaN */
		if (bad)
			for (size_t k = b; k < e; k += bs)
				if ((p[k] & 0x7c) == 0x7c)
					return k;
	}
	return (size_t)-1;
}

static const char *apply_quant(st_file *f, const cJSON *meta, int flags, char *nb, size_t len)
{
	const cJSON *e;
	size_t kl = strlen(ST_QUANT_KEY);
	cJSON_ArrayForEach(e, meta) {
		if (!e->string || strncmp(e->string, ST_QUANT_KEY, kl) != 0)
			continue;
		printable(e->string + kl, nb, len);
		mh_tensor *t = (mh_tensor *)st_find(f, e->string + kl);
		mh_dtype q;
		if (!t)
			return "is marked quantized in __metadata__ but is not in the file";
		if (!cJSON_IsString(e) || mh_quant_from_name(e->valuestring, &q) != 0)
			return "has an unknown quantization format (expected q8_0 or q4_0)";
		if (t->dtype != MH_U8 || t->ndim != 2)
			return "is marked quantized but is not stored as U8 [rows, row bytes]";
		size_t bs = block_bytes(q);
		if (t->shape[1] == 0 || t->shape[1] % (int64_t)bs != 0)
			return q == MH_Q8_0 ? "has a byte count per row that is not a multiple of 34 (Q8_0 blocks)"
					    : "has a byte count per row that is not a multiple of 18 (Q4_0 blocks)";
		t->dtype = q;
		if (!(flags & ST_DEFER_SCALES)) {
			/* every page is read here: fault them in at once (the
			 * forward pass would anyway), not one at a time */
			st_populate_range(f, t->data, t->nbytes);
			if (st_bad_scale(t, 0, t->nbytes) != (size_t)-1)
				return "has a block scale that is not a finite number";
		}
		t->shape[1] = t->shape[1] / (int64_t)bs * MH_QBLOCK;
		t->nelem = t->shape[0] * t->shape[1];
	}
	return "";
}

/* ---- files that change under their mapping --------------------------------
 * A mapped file truncated (or rewritten shorter) in place makes the next
 * read of a vanished page raise SIGBUS, in whichever thread reads it: the
 * pool's workers read the weights too.  Every mapping is listed here; the
 * handler looks the faulting address up and, if it is ours, says which file
 * changed and exits 1, from any thread (write(2) and _exit(2) are
 * async-signal-safe).  A fault elsewhere goes to the handler that was there
 * before.  st_changed() catches the common case (changed between calls)
 * without a signal. */
#define GUARD_SLOTS 1024

static struct guard {
	_Atomic(const char *) msg; /* published last, cleared first */
	const char *start;
	size_t len, msglen;
} guards[GUARD_SLOTS];
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction old_bus;
static int guard_installed;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	const char *a = si->si_addr;
	for (int i = 0; i < GUARD_SLOTS; i++) {
		const char *msg = atomic_load(&guards[i].msg);
		if (msg && a >= guards[i].start && a < guards[i].start + guards[i].len) {
			ssize_t w = write(STDERR_FILENO, msg, guards[i].msglen);
			(void)w;
			_exit(1);
		}
	}
	/* not ours: as if we had never been here */
	if (old_bus.sa_flags & SA_SIGINFO) {
		old_bus.sa_sigaction(sig, si, uc);
	} else if (old_bus.sa_handler != SIG_IGN && old_bus.sa_handler != SIG_DFL) {
		old_bus.sa_handler(sig);
	} else {
		signal(SIGBUS, SIG_DFL); /* the fault repeats on return, now fatal */
	}
}

static void guard_add(st_file *f)
{
	static const char fmt[] = "modelhost: %s: changed while in use (truncated or rewritten "
				  "in place; install new model files by renaming them into place)\n";
	size_t len = strlen(fmt) + strlen(f->path);
	char *msg = malloc(len);
	if (!msg)
		return;
	snprintf(msg, len, fmt, f->path);
	mh_one_line(msg)[strlen(msg) - 1] = '\n';
	pthread_mutex_lock(&guard_lock);
	if (!guard_installed) {
		struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_ONSTACK };
		sigemptyset(&sa.sa_mask);
		guard_installed = sigaction(SIGBUS, &sa, &old_bus) == 0;
	}
	for (int i = 0; i < GUARD_SLOTS; i++)
		if (!atomic_load(&guards[i].msg)) {
			guards[i].start = f->map;
			guards[i].len = f->size;
			guards[i].msglen = strlen(msg);
			atomic_store(&guards[i].msg, msg);
			f->guard = i + 1;
			msg = NULL;
			break;
		}
	pthread_mutex_unlock(&guard_lock);
	free(msg); /* no slot: a bare SIGBUS, as before */
}

static void guard_remove(st_file *f)
{
	if (!f->guard)
		return;
	pthread_mutex_lock(&guard_lock);
	struct guard *g = &guards[f->guard - 1];
	char *msg = (char *)atomic_exchange(&g->msg, NULL);
	pthread_mutex_unlock(&guard_lock);
	free(msg);
	f->guard = 0;
}

int st_changed(const st_file *f, char *err)
{
	struct stat st;
	if (!f->map || stat(f->path, &st) != 0 || st.st_dev != f->dev || st.st_ino != f->ino)
		return 0; /* gone or renamed over: our mapping still holds the old file */
	if ((size_t)st.st_size >= f->size)
		return 0;
	mh_errf(err, "%s: changed while in use (now %jd bytes, was %zu; install new model files "
		"by renaming them into place)", f->path, (intmax_t)st.st_size, f->size);
	return 1;
}

int st_open(st_file *f, const char *path, char *err)
{
	return st_open_flags(f, path, 0, err);
}

int st_open_flags(st_file *f, const char *path, int flags, char *err)
{
	memset(f, 0, sizeof *f);
	cJSON *hdr = NULL;
	range *ranges = NULL;
	struct stat st;
	char oerr[256];
	int fd = mh_open_regular(path, &st, oerr, sizeof oerr); /* never blocks on a FIFO */
	if (fd < 0) {
		mh_errf(err, "%s: %s", path, oerr);
		return -1;
	}
	f->path = strdup(path);
	f->size = (size_t)st.st_size;
	if (f->size < 8) {
		mh_errf(err, "%s: too short to be a safetensors file (%zu bytes)", path, f->size);
		close(fd);
		goto fail;
	}
	/* not populated here: opening (info, validation) touches only the
	 * header; st_populate() maps the rest once a forward pass will run */
	f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (f->map == MAP_FAILED) {
		f->map = NULL;
		mh_errf(err, "%s: cannot map: %s", path, strerror(errno));
		goto fail;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	if (f->path)
		guard_add(f); /* before the first read of the mapping */
#ifdef MADV_HUGEPAGE
	/* Before the first touch: pages not yet cached are then read in as
	 * 2 MiB folios and mapped whole, also after the header's fault.
	 * Decoding streams every weight per token, and from 4 KiB pages it
	 * reads measurably slower (DEVELOPERS.md); pages already cached stay
	 * as they are.  Without THP this does nothing. */
	madvise(f->map, f->size, MADV_HUGEPAGE);
#endif
	const unsigned char *b = f->map;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | b[i];
	if (hlen > ST_MAX_HEADER) {
		mh_errf(err, "%s: header length %llu is larger than the %u-byte limit", path,
			(unsigned long long)hlen, ST_MAX_HEADER);
		goto fail;
	}
	if (hlen > f->size - 8) {
		mh_errf(err, "%s: header length %llu runs past the end of the file (%zu bytes)",
			path, (unsigned long long)hlen, f->size);
		goto fail;
	}
	const char *json = (const char *)b + 8;
	if (hlen == 0 || json[0] != '{') {
		mh_errf(err, "%s: header is not a JSON object", path);
		goto fail;
	}
	hdr = cJSON_ParseWithLength(json, (size_t)hlen);
	if (!cJSON_IsObject(hdr)) {
		mh_errf(err, "%s: header is not valid JSON", path);
		goto fail;
	}
	uint64_t data_size = f->size - 8 - hlen;
	const unsigned char *data = b + 8 + hlen;
	int n = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, hdr) n++;
	f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
	ranges = calloc(n ? n : 1, sizeof *ranges);
	if (!f->tensors || !ranges) {
		mh_errf(err, "%s: out of memory", path);
		goto fail;
	}
	cJSON_ArrayForEach(e, hdr) {
		if (!e->string) {
			mh_errf(err, "%s: header entry without a name", path);
			goto fail;
		}
		if (strcmp(e->string, "__metadata__") == 0)
			continue;
		mh_tensor *t = &f->tensors[f->n];
		uint64_t begin, end;
		const char *why = parse_entry(e, data_size, t, &begin, &end);
		if (*why) {
			char nb[128];
			mh_errf(err, "%s: tensor '%s' %s", path, printable(e->string, nb, sizeof nb), why);
			goto fail;
		}
		t->name = strdup(e->string);
		t->data = data + begin;
		ranges[f->n] = (range){ begin, end, t->name };
		f->n++;
	}
	qsort(ranges, f->n, sizeof *ranges, by_begin);
	for (int i = 1; i < f->n; i++)
		if (ranges[i].begin < ranges[i - 1].end) {
			char n1[128], n2[128];
			mh_errf(err, "%s: tensors '%s' and '%s' overlap", path,
				printable(ranges[i - 1].name, n1, sizeof n1),
				printable(ranges[i].name, n2, sizeof n2));
			goto fail;
		}
	qsort(f->tensors, f->n, sizeof *f->tensors, by_name);
	for (int i = 1; i < f->n; i++)
		if (strcmp(f->tensors[i].name, f->tensors[i - 1].name) == 0) {
			char nb[128];
			mh_errf(err, "%s: tensor '%s' appears twice", path,
				printable(f->tensors[i].name, nb, sizeof nb));
			goto fail;
		}
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
	if (meta) {
		char nb[128] = "";
		const char *why = apply_quant(f, meta, flags, nb, sizeof nb);
		if (*why) {
			mh_errf(err, "%s: tensor '%s' %s", path, nb, why);
			goto fail;
		}
	}
	/* Misaligned data is legal: give those tensors an aligned copy. */
	for (int i = 0; i < f->n; i++) {
		mh_tensor *t = &f->tensors[i];
		size_t es = mh_dtype_is_quant(t->dtype) ? 2 : mh_dtype_size(t->dtype);
		if ((uintptr_t)t->data % es == 0 || t->nbytes == 0)
			continue;
		void *copy = NULL;
		void **no = realloc(f->owned, (f->n_owned + 1) * sizeof *no);
		if (no)
			f->owned = no;
		if (!no || posix_memalign(&copy, 64, t->nbytes) != 0) {
			mh_errf(err, "%s: out of memory", path);
			goto fail;
		}
		memcpy(copy, t->data, t->nbytes);
		f->owned[f->n_owned++] = copy;
		t->data = copy;
	}
	free(ranges);
	cJSON_Delete(hdr);
	return 0;
fail:
	free(ranges);
	cJSON_Delete(hdr);
	st_close(f);
	return -1;
}

void st_close(st_file *f)
{
	guard_remove(f);
	if (f->map)
		munmap(f->map, f->size);
	for (int i = 0; i < f->n; i++)
		free((char *)f->tensors[i].name);
	for (int i = 0; i < f->n_owned; i++)
		free(f->owned[i]);
	free(f->owned);
	free(f->tensors);
	free(f->path);
	memset(f, 0, sizeof *f);
}

const mh_tensor *st_find(const st_file *f, const char *name)
{
	if (!f->n)
		return NULL;
	mh_tensor key = { .name = name };
	return bsearch(&key, f->tensors, f->n, sizeof key, by_name);
}

int st_write(const char *path, const mh_tensor *tensors, int n, char *err)
{
	cJSON *hdr = cJSON_CreateObject();
	cJSON *meta = NULL;
	uint64_t off = 0;
	for (int i = 0; i < n && hdr; i++) {
		const mh_tensor *t = &tensors[i];
		int q = mh_dtype_is_quant(t->dtype);
		if (q && !meta) {
			meta = cJSON_AddObjectToObject(hdr, "__metadata__");
			cJSON_AddStringToObject(meta, "format", "pt");
		}
		if (q) {
			char key[512];
			snprintf(key, sizeof key, "%s%s", ST_QUANT_KEY, t->name);
			cJSON_AddStringToObject(meta, key, t->dtype == MH_Q8_0 ? "q8_0" : "q4_0");
		}
		cJSON *e = cJSON_AddObjectToObject(hdr, t->name);
		if (!e)
			break;
		cJSON_AddStringToObject(e, "dtype", mh_dtype_name(q ? MH_U8 : t->dtype));
		cJSON *sh = cJSON_AddArrayToObject(e, "shape");
		for (int d = 0; d < t->ndim; d++)
			cJSON_AddItemToArray(sh, cJSON_CreateNumber(
				(double)(q && d == 1 ? (int64_t)mh_row_bytes(t->dtype, t->shape[1])
						     : t->shape[d])));
		cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
		off += t->nbytes;
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
	}
	char *json = hdr ? cJSON_PrintUnformatted(hdr) : NULL;
	cJSON_Delete(hdr);
	if (!json) {
		mh_errf(err, "%s: out of memory", path);
		return -1;
	}
	size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7;
	/* A regular file (or a new one) is replaced atomically: written beside
	 * it and renamed over it, so that a failure leaves no partial file.  A
	 * symlink's target is replaced, the link kept; anything else (a FIFO,
	 * /dev/null, a terminal) is written into, never replaced. */
	char *real = NULL;
	const char *dest = path;
	struct stat st;
	int in_place = 0;
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && (real = realpath(path, NULL)))
		dest = real;
	if (stat(dest, &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			mh_errf(err, "%s: cannot write: is a directory", path);
			free(real);
			free(json);
			return -1;
		}
		in_place = !S_ISREG(st.st_mode);
	}
	size_t tl = strlen(dest);
	char *tmp = malloc(tl + 16);
	if (!tmp) {
		free(real);
		free(json);
		mh_errf(err, "%s: out of memory", path);
		return -1;
	}
	int fd;
	if (in_place) {
		snprintf(tmp, tl + 16, "%s", dest);
		fd = open(dest, O_WRONLY | O_CLOEXEC);
	} else {
		snprintf(tmp, tl + 16, "%s.tmpXXXXXX", dest);
		fd = mkstemp(tmp);
		if (fd >= 0)
			fchmod(fd, 0644);
	}
	FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
	int ok = fp != NULL;
	if (ok) {
		unsigned char len8[8];
		for (int i = 0; i < 8; i++)
			len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
		ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(json, 1, jl, fp) == jl;
		for (size_t i = jl; ok && i < padded; i++)
			ok = fputc(' ', fp) != EOF;
		for (int i = 0; ok && i < n; i++)
			ok = fwrite(tensors[i].data, 1, tensors[i].nbytes, fp) == tensors[i].nbytes;
		ok = (fclose(fp) == 0) && ok;
	} else if (fd >= 0) {
		close(fd);
	}
	if (ok && !in_place && rename(tmp, dest) != 0)
		ok = 0;
	if (!ok) {
		mh_errf(err, "%s: cannot write: %s", path, strerror(errno));
		if (fd >= 0 && !in_place)
			unlink(tmp);
	}
	free(tmp);
	free(real);
	free(json);
	return ok ? 0 : -1;
}

/* Map every page now, in one go, rather than one fault at a time during
 * the first forward pass (about 0.5 s for 4 GB).  Kernels before 5.14 lack
 * MADV_POPULATE_READ: they get read-ahead, and fault as before. */
void st_populate(st_file *f)
{
	if (!f->map)
		return;
#ifdef MADV_POPULATE_READ
	if (madvise(f->map, f->size, MADV_POPULATE_READ) == 0)
		return;
#endif
	madvise(f->map, f->size, MADV_WILLNEED);
}

void st_populate_range(st_file *f, const void *p, size_t n)
{
	const char *m = f->map, *c = p;
	if (!m || c < m || c + n > m + f->size || n == 0)
		return;
	uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t b = (uintptr_t)c / ps * ps, e = ((uintptr_t)c + n + ps - 1) / ps * ps;
#ifdef MADV_POPULATE_READ
	if (madvise((void *)b, e - b, MADV_POPULATE_READ) == 0)
		return;
#endif
	madvise((void *)b, e - b, MADV_WILLNEED);
}

void st_drop_range(st_file *f, const void *p, size_t n)
{
	const char *m = f->map, *c = p;
	if (!m || c < m || c + n > m + f->size)
		return;
	uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t b = ((uintptr_t)c + ps - 1) / ps * ps, e = ((uintptr_t)c + n) / ps * ps;
	if (e > b)
		madvise((void *)b, e - b, MADV_DONTNEED);
}
