/* SPDX-License-Identifier: MIT */
/* util.c - see util.h. */
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int mh_whole(double v, int64_t lo, int64_t hi, int64_t *out)
{
	if (!(v >= (double)lo && v <= (double)hi) || v != (double)(int64_t)v)
		return -1;
	*out = (int64_t)v;
	return 0;
}

char *mh_one_line(char *s)
{
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return s;
}

void mh_errf(char *err, const char *fmt, ...)
{
	if (!err)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, MH_ERRLEN, fmt, ap);
	va_end(ap);
	mh_one_line(err);
}

/* Open for reading without blocking: a FIFO named as a model file would
 * otherwise wait for a writer forever; only regular files are read. */
int mh_open_regular(const char *path, struct stat *st, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		snprintf(why, whylen, "not a regular file");
		close(fd);
		return -1;
	}
	/* back to blocking reads (a regular file never blocks anyway) */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

char *mh_slurp(const char *path, size_t max, int regular_only, size_t *len, char *why,
	       size_t whylen)
{
	struct stat st;
	int fd = regular_only ? mh_open_regular(path, &st, why, whylen)
			      : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && !regular_only)
		snprintf(why, whylen, "%s", strerror(errno));
	if (fd < 0)
		return NULL;
	if (!regular_only && (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode))) {
		snprintf(why, whylen, "%s", S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
		st.st_size = 0; /* a pipe or device: read up to the cap */
	if ((uintmax_t)st.st_size > max) {
		snprintf(why, whylen, "%jd bytes, more than the %zu-byte limit for this file",
			 (intmax_t)st.st_size, max);
		close(fd);
		return NULL;
	}
	/* the size from fstat, plus room to notice a file that grows */
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (!buf) {
			snprintf(why, whylen, "out of memory");
			break;
		}
		if (n == cap) {
			if (cap > max) {
				snprintf(why, whylen, "more than the %zu-byte limit for this file", max);
				break;
			}
			char *nb = realloc(buf, 2 * cap + 1);
			if (!nb) {
				snprintf(why, whylen, "out of memory");
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(why, whylen, "read error: %s", strerror(errno));
			break;
		}
		if (got == 0) {
			if (n > max) {
				snprintf(why, whylen, "more than the %zu-byte limit for this file", max);
				break;
			}
			close(fd);
			buf[n] = 0;
			if (len)
				*len = n;
			return buf;
		}
		n += (size_t)got;
	}
	free(buf);
	close(fd);
	return NULL;
}

char *mh_read_file_max(const char *path, size_t max, size_t *len, char *err)
{
	char why[MH_ERRLEN / 2];
	char *text = mh_slurp(path, max, 1, len, why, sizeof why);
	if (!text)
		mh_errf(err, "%s: %s", path, why);
	return text;
}

char *mh_read_file(const char *path, size_t *len, char *err)
{
	char why[MH_ERRLEN / 2];
	char *text = mh_slurp(path, MH_READ_MAX, 0, len, why, sizeof why);
	if (!text)
		mh_errf(err, "%s: %s", path, why);
	return text;
}

char *mh_path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);
	if (!p)
		return NULL;
	memcpy(p, a, la);
	size_t k = la;
	if (la && a[la - 1] != '/')
		p[k++] = '/';
	memcpy(p + k, b, lb + 1);
	return p;
}

int mh_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int mh_is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const struct {
	const char *name;
	size_t size;
} dtypes[MH_DTYPE_COUNT] = {
	[MH_F32] = { "F32", 4 },  [MH_F16] = { "F16", 2 },  [MH_BF16] = { "BF16", 2 },
	[MH_F64] = { "F64", 8 },  [MH_I64] = { "I64", 8 },  [MH_I32] = { "I32", 4 },
	[MH_I16] = { "I16", 2 },  [MH_I8] = { "I8", 1 },    [MH_U8] = { "U8", 1 },
	[MH_BOOL] = { "BOOL", 1 },
	/* block formats: no element size (mh_row_bytes), and no safetensors
	 * dtype of their own (a quantized file stores them as U8) */
	[MH_Q8_0] = { "Q8_0", 0 }, [MH_Q4_0] = { "Q4_0", 0 },
};

size_t mh_dtype_size(mh_dtype t)
{
	return (unsigned)t < MH_DTYPE_COUNT ? dtypes[t].size : 0;
}

const char *mh_dtype_name(mh_dtype t)
{
	return (unsigned)t < MH_DTYPE_COUNT ? dtypes[t].name : "?";
}

int mh_dtype_from_name(const char *name, mh_dtype *out)
{
	for (int i = 0; i < MH_DTYPE_COUNT; i++)
		if (dtypes[i].size && strcmp(name, dtypes[i].name) == 0) {
			*out = (mh_dtype)i;
			return 0;
		}
	return -1;
}

int mh_dtype_is_quant(mh_dtype t)
{
	return t == MH_Q8_0 || t == MH_Q4_0;
}

int mh_quant_from_name(const char *name, mh_dtype *out)
{
	if (strcasecmp(name, "q8_0") == 0)
		*out = MH_Q8_0;
	else if (strcasecmp(name, "q4_0") == 0)
		*out = MH_Q4_0;
	else
		return -1;
	return 0;
}

size_t mh_row_bytes(mh_dtype t, int64_t cols)
{
	if (t == MH_Q8_0)
		return (size_t)(cols / MH_QBLOCK) * sizeof(mh_block_q8_0);
	if (t == MH_Q4_0)
		return (size_t)(cols / MH_QBLOCK) * sizeof(mh_block_q4_0);
	return (size_t)cols * mh_dtype_size(t);
}

int mh_dtype_is_float(mh_dtype t)
{
	return t == MH_F32 || t == MH_F16 || t == MH_BF16;
}

float mh_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0) {
		if (man == 0) {
			bits = sign;
		} else { /* subnormal: renormalise */
			exp = 127 - 15 + 1;
			while (!(man & 0x400)) {
				man <<= 1;
				exp--;
			}
			bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
		}
	} else if (exp == 31) {
		bits = sign | 0x7f800000u | (man << 13);
	} else {
		bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	union { uint32_t u; float f; } v = { .u = bits };
	return v.f;
}

uint16_t mh_f32_to_bf16(float f)
{
	union { float f; uint32_t u; } v = { .f = f };
	if ((v.u & 0x7fffffff) > 0x7f800000) /* NaN stays NaN */
		return (uint16_t)((v.u >> 16) | 0x40);
	v.u += 0x7fff + ((v.u >> 16) & 1);
	return (uint16_t)(v.u >> 16);
}

uint16_t mh_f32_to_f16(float f)
{
	union { float f; uint32_t u; } v = { .f = f };
	uint32_t sign = (v.u >> 16) & 0x8000;
	uint32_t a = v.u & 0x7fffffff;
	if (a > 0x7f800000)
		return (uint16_t)(sign | 0x7e00);
	if (a >= 0x477ff000) /* rounds to >= 65520: infinity */
		return (uint16_t)(sign | 0x7c00);
	if (a < 0x38800000) { /* subnormal or zero in half */
		union { uint32_t u; float f; } t = { .u = a };
		float scaled = t.f * 16777216.0f; /* 2^24: units of the smallest subnormal */
		uint32_t m = (uint32_t)scaled;
		float rem = scaled - (float)m;
		if (rem > 0.5f || (rem == 0.5f && (m & 1)))
			m++;
		return (uint16_t)(sign | m);
	}
	uint32_t e = (a >> 23) - 127 + 15, man = a & 0x7fffff;
	uint32_t h = (e << 10) | (man >> 13);
	uint32_t rest = man & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

int mh_parse_ids(const char *s, int32_t **ids, size_t *n)
{
	size_t cap = 16, k = 0;
	int32_t *v = malloc(cap * sizeof *v);
	if (!v)
		return -1;
	const char *p = s;
	while (*p) {
		char *end;
		errno = 0;
		long x = strtol(p, &end, 10);
		if (end == p || errno || x < 0 || x > INT32_MAX)
			goto bad;
		if (k == cap) {
			int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
			if (!nv)
				goto bad;
			v = nv;
		}
		v[k++] = (int32_t)x;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
	}
	if (k == 0)
		goto bad;
	*ids = v;
	*n = k;
	return 0;
bad:
	free(v);
	return -1;
}

double mh_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* calloc hands back untouched (lazily zeroed) pages for large blocks; we
 * align by hand and keep the original pointer just before the block. */
void *mh_alloc(size_t bytes)
{
	if (bytes > SIZE_MAX - 128)
		return NULL;
	char *raw = calloc(1, bytes + 128);
	if (!raw)
		return NULL;
	uintptr_t p = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
	((void **)p)[-1] = raw;
	return (void *)p;
}

void mh_free(void *p)
{
	if (p)
		free(((void **)p)[-1]);
}

float *mh_scratch(float **buf, size_t *len, size_t want)
{
	if (*len < want) {
		free(*buf);
		*buf = NULL;
		*len = 0;
		if (posix_memalign((void **)buf, 64, want * sizeof(float)) != 0) {
			*buf = NULL;
			return NULL;
		}
		*len = want;
	}
	return *buf;
}
