/* SPDX-License-Identifier: MIT */
/* readprobe.h - how fast this machine delivers given bytes at this moment:
 * one pool job reads a list of memory spans with no arithmetic (kern_read),
 * in 256 KiB blocks handed out as decoding hands out its rows (shrinking
 * ranges, the threads finishing together).  Pointed at a model's own
 * mapping, it measures those very pages with their page sizes: bench's
 * decode limit, and what tools/mmprobe compares the kernels against. */
#ifndef MH_READPROBE_H
#define MH_READPROBE_H

#include <stdint.h>

typedef struct readprobe readprobe;

readprobe *readprobe_new(void); /* NULL when out of memory */
void readprobe_free(readprobe *p);
/* Add a span (any alignment); -1 when out of memory. */
int readprobe_add(readprobe *p, const void *ptr, int64_t bytes);
double readprobe_bytes(const readprobe *p); /* total of the spans */
/* Seconds for one pass over every span, on the ops' pool: the fastest of
 * one for each way kern_read has of going through bytes. */
double readprobe_pass(readprobe *p);

#endif
