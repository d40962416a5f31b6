/* SPDX-License-Identifier: MIT */
/* safetensors.h - read-only, validated access to one .safetensors file.
 *
 * The file is mmapped; every header entry is checked before use (known
 * dtype, shape x dtype size == byte range, range inside the data area, no
 * overlaps, no duplicates).  Tensors whose data is not aligned to their
 * element size (legal in the format) are copied once to aligned memory so
 * that every consumer may read them as typed arrays. */
#ifndef MH_SAFETENSORS_H
#define MH_SAFETENSORS_H

#include <stddef.h>
#include <sys/types.h>
#include <modelhost/plugin.h>

/* A header larger than this is refused (the reference implementation uses
 * 100 MB as well). */
#define ST_MAX_HEADER (100u << 20)

typedef struct st_file {
	char *path;
	void *map;
	size_t size;
	int n;               /* tensors */
	mh_tensor *tensors;  /* sorted by name */
	void **owned;        /* aligned copies of misaligned tensors */
	int n_owned;
	dev_t dev;           /* the file mapped, to tell a file changed in place */
	ino_t ino;           /* from one renamed over it (harmless) */
	int guard;           /* its SIGBUS guard slot + 1, 0 for none */
} st_file;

/* 0, or -1 with "PATH: problem" in err (MH_ERRLEN bytes). */
int st_open(st_file *f, const char *path, char *err);
/* st_open, but with ST_DEFER_SCALES the block scales of quantized tensors
 * are not read: the caller checks them (st_bad_scale) before any of their
 * data is used.  Opening then reads only the header. */
#define ST_DEFER_SCALES 1
int st_open_flags(st_file *f, const char *path, int flags, char *err);
/* The byte offset in quantized tensor t of the first block in bytes [from,
 * to) (whole blocks) whose F16 scale is Inf or NaN, or (size_t)-1. */
size_t st_bad_scale(const mh_tensor *t, size_t from, size_t to);
/* Fault the whole mapping in now (before the first forward pass). */
void st_populate(st_file *f);
/* The same for the pages of [p, p + n) (no-op outside the mapping), and
 * giving them back (whole pages inside the range only). */
void st_populate_range(st_file *f, const void *p, size_t n);
void st_drop_range(st_file *f, const void *p, size_t n);
void st_close(st_file *f);
const mh_tensor *st_find(const st_file *f, const char *name);
/* 1 with "PATH: changed while in use" in err when the mapped file was
 * truncated in place (reading it further would raise SIGBUS; st_open's
 * SIGBUS handler reports that case the same way and exits 1). */
int st_changed(const st_file *f, char *err);

/* Quantized tensors (ABI 1.2's Q8_0 / Q4_0) are stored as U8 [rows,
 * row bytes] with "modelhost.quant.NAME": "q8_0" (or "q4_0") in the
 * header's __metadata__; st_open gives them back as their block dtype
 * with shape [rows, cols], after checking the byte count and (unless
 * deferred) that every scale is a finite number. */
#define ST_QUANT_KEY "modelhost.quant."

/* Write tensors to path atomically (temp file + rename): on failure no
 * partial file is left.  data[i] holds tensors[i].nbytes bytes. */
int st_write(const char *path, const mh_tensor *tensors, int n, char *err);

#endif
