/* SPDX-License-Identifier: MIT */
/* fuzz_toolcall.c - libFuzzer target: any bytes as a model's reply, read
 * by toolcall_scan as a stream reads it, prefix by prefix.  No span may
 * reach past the text it was given, and what a prefix said must hold for
 * the whole text (a stream has sent it): its complete calls the same,
 * each name and start of arguments the same, arguments only growing, and
 * an end of tool calls an end.
 * Build and run: tests/fuzz/run.sh toolcall [SECONDS]. */
#include "server/toolcall.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 2048)
		return 0;
	const char *h = (const char *)data;
	tc_span all[TC_MAX], part[TC_MAX];
	int stop, k = toolcall_scan(h, size, all, TC_MAX, &stop);
	for (size_t n = 0; n <= size; n++) {
		int st, j = toolcall_scan(h, n, part, TC_MAX, &st);
		if (j > k || (st && (!stop || j != k)))
			abort();
		for (int i = 0; i < j; i++) {
			const tc_span *p = &part[i], *a = &all[i];
			if (p->a0 > p->a1 || p->a1 > n)
				abort();
			if (p->complete && (!a->complete || !same(p->name, a->name) ||
					    p->a0 != a->a0 || p->a1 != a->a1 || p->obj != a->obj))
				abort();
			if (p->name && !same(p->name, a->name))
				abort();
			if (p->obj && (!a->obj || p->a0 != a->a0 || p->a1 > a->a1))
				abort();
		}
		toolcall_free(part, j);
	}
	toolcall_free(all, k);
	return 0;
}
