/* SPDX-License-Identifier: MIT */
/* fuzz_safetensors.c - libFuzzer target: any bytes as a .safetensors file.
 * st_open must either refuse them with one line naming the file, or give
 * tensors whose every byte lies inside the mapping (all are read here).
 * Build and run: tests/fuzz/run.sh safetensors [SECONDS]. */
#define _GNU_SOURCE
#include "model/safetensors.h"
#include "base/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint64_t sink; /* keeps the reads of every tensor */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	static int fd = -1;
	if (fd < 0) {
		fd = memfd_create("fuzz.safetensors", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	st_file f;
	char err[MH_ERRLEN];
	if (st_open(&f, path, err) != 0) {
		if (!strstr(err, path) || strchr(err, '\n'))
			abort(); /* the message must name the file, on one line */
		return 0;
	}
	uint64_t sum = 0;
	for (int i = 0; i < f.n; i++) {
		const mh_tensor *t = &f.tensors[i];
		const unsigned char *p = t->data;
		for (size_t k = 0; k < t->nbytes; k++)
			sum += p[k];
		if (st_find(&f, t->name) != t)
			abort();
	}
	sink += sum;
	st_close(&f);
	return 0;
}
