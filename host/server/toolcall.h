/* SPDX-License-Identifier: MIT */
/* toolcall.h - tool calls in a reply as the model writes them: the
 * <tool_call>{"name": ..., "arguments": ...}</tool_call> blocks that
 * Qwen2.5's and Hermes' templates teach, followed over a text that is
 * still growing, so that a stream can send each call's name, and its
 * arguments' text piece by piece, before the reply ends (api.c).
 * Self-contained (libc and cJSON): tests/fuzz/fuzz_toolcall.c builds it
 * alone. */
#ifndef MH_TOOLCALL_H
#define MH_TOOLCALL_H

#include "text/constrain.h"

#include <stddef.h>

#define TOOL_OPEN CN_TOOL_OPEN /* the tags held replies are written with */
#define TOOL_CLOSE CN_TOOL_CLOSE

typedef struct tc_span {
	char *name;     /* malloc'd, once its string is complete, or NULL */
	size_t a0, a1;  /* the arguments' text in the scanned text, so far */
	int obj;        /* the arguments are an object and came after the name */
	int complete;   /* the whole call, </tool_call> and all, is there */
} tc_span;

#define TC_MAX 16

/* The calls in h[0..n) so far, at most max into out (free them with
 * toolcall_free); *stop is set when the text can no longer be tool calls.
 * For a longer text that starts with h[0..n), the calls complete in
 * h[0..n) are the same, and each call's name, a0 and obj, once set, stay;
 * a1 only grows.  JSON nesting and strings are followed, not validated. */
int toolcall_scan(const char *h, size_t n, tc_span *out, int max, int *stop);
void toolcall_free(tc_span *s, int n);

#endif
