/* SPDX-License-Identifier: MIT */
/* host/base/: what every other host folder may use (errors, files, strings).
 * Includes only the C library. */
/* util.h - small helpers shared by the host: error buffers, files, strings. */
#ifndef MH_UTIL_H
#define MH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <modelhost/plugin.h>

/* Errors travel as one line in a caller-provided buffer of MH_ERRLEN bytes,
 * already prefixed with the file they are about: "dir/config.json: ...". */
#define MH_ERRLEN 512

void mh_errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Control bytes (a newline in a hostile config value, say) to spaces, so
 * that a message quoting a file stays one line; returns s. */
char *mh_one_line(char *s);

/* Files named by a model directory are read only when they are regular
 * files (symlinks followed): /dev/zero would never end, a FIFO would block
 * forever.  The caps are generous: real tokenizer.json files pass 30 MB. */
#define MH_READ_MAX ((size_t)256 << 20)   /* tokenizer.json and the default */
#define MH_READ_CONFIG_MAX ((size_t)64 << 20) /* config.json, index, generation */
struct stat;
/* open(O_RDONLY) that refuses anything but a regular file, without ever
 * blocking on a FIFO; the fd, or -1 with a reason (no path) in why. */
int mh_open_regular(const char *path, struct stat *st, char *why, size_t whylen);
/* A whole file of at most max bytes, NUL-terminated; with regular_only,
 * nothing but a regular file (model files); else pipes and devices too (a
 * file the user named: -f /dev/stdin), still capped.  NULL with a reason
 * (no path) in why. */
char *mh_slurp(const char *path, size_t max, int regular_only, size_t *len, char *why,
	       size_t whylen);
/* mh_slurp with "path: reason" in err (MH_ERRLEN): mh_read_file_max for
 * files a model directory names (regular only), mh_read_file for files
 * the user names (anything readable, capped at MH_READ_MAX). */
char *mh_read_file_max(const char *path, size_t max, size_t *len, char *err);
char *mh_read_file(const char *path, size_t *len, char *err);
/* a + "/" + b, malloc'd. */
char *mh_path_join(const char *a, const char *b);
int mh_is_dir(const char *path);
int mh_is_file(const char *path);

/* Element size of a dtype, 0 for an unknown one; names as in safetensors. */
size_t mh_dtype_size(mh_dtype t);
const char *mh_dtype_name(mh_dtype t);
int mh_dtype_from_name(const char *name, mh_dtype *out);
int mh_dtype_is_float(mh_dtype t);
/* Q8_0 or Q4_0 (since ABI 1.2): blocks of MH_QBLOCK weights along a row. */
int mh_dtype_is_quant(mh_dtype t);
/* "q8_0" / "q4_0" (any case) to the dtype; -1 for anything else. */
int mh_quant_from_name(const char *name, mh_dtype *out);
/* Bytes of a row of cols weights (for a block format, cols a multiple of
 * MH_QBLOCK). */
size_t mh_row_bytes(mh_dtype t, int64_t cols);

/* cp (at most U+10FFFF) as UTF-8 into out; the number of bytes, 1 to 4. */
static inline size_t mh_utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Scalar conversions. */
static inline float mh_bf16_to_f32(uint16_t h)
{
	union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
	return v.f;
}
float mh_f16_to_f32(uint16_t h);
uint16_t mh_f32_to_bf16(float f);  /* round to nearest even */
uint16_t mh_f32_to_f16(float f);   /* round to nearest even */

/* 0 and *out = v when v is a whole number in [lo, hi] (|lo|, |hi| <= 2^53),
 * else -1 with *out untouched: range first, so that no out-of-range double is ever converted
 * (undefined behaviour) on the way. */
int mh_whole(double v, int64_t lo, int64_t hi, int64_t *out);

/* Parse "1,2,3" into a malloc'd id array. -1 on a malformed list. */
int mh_parse_ids(const char *s, int32_t **ids, size_t *n);

double mh_now(void); /* monotonic seconds */

/* Zeroed, 64-byte aligned memory, released with mh_free.  Large blocks come
 * back as untouched pages, so a KV cache costs memory only as it fills. */
void *mh_alloc(size_t bytes);
void mh_free(void *p);
/* Scratch of at least want floats, 64-byte aligned, kept in *buf (of *len
 * floats) and grown on demand, so that no work allocates once the largest
 * has been seen; NULL (and nothing kept) when memory runs out.  Release
 * with free(). */
float *mh_scratch(float **buf, size_t *len, size_t want);

#endif
