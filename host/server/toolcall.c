/* SPDX-License-Identifier: MIT */
/* toolcall.c - see toolcall.h.  A streamed reply sends each call's id and
 * name once its name is complete and its arguments object has begun, and
 * then the arguments' text as it comes, as OpenAI does (so that the pieces
 * join into the model's own text of the arguments).  A call whose
 * arguments are not an object, or come before its name, and every call
 * after it, go out whole at the end (api.c). */
#include "server/toolcall.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static size_t skip_ws(const char *h, size_t n, size_t p)
{
	while (p < n && (h[p] == ' ' || h[p] == '\n' || h[p] == '\r' || h[p] == '\t'))
		p++;
	return p;
}

/* One JSON value's extent from *p: 1 complete (*p after it), 0 the text
 * ends first (*p = n), -1 not a value.  Nesting is followed, not checked. */
static int scan_value(const char *h, size_t n, size_t *p)
{
	size_t q = *p;
	if (q >= n)
		return 0;
	if (h[q] == '"' || h[q] == '{' || h[q] == '[') {
		int depth = 0, str = 0;
		for (; q < n; q++) {
			char ch = h[q];
			if (str) {
				if (ch == '\\')
					q++;
				else if (ch == '"')
					str = 0;
			} else if (ch == '"') {
				str = 1;
			} else if (ch == '{' || ch == '[') {
				depth++;
			} else if (ch == '}' || ch == ']') {
				depth--;
			}
			if (!str && depth == 0) {
				*p = q + 1;
				return 1;
			}
		}
		*p = n;
		return 0;
	}
	while (q < n && h[q] && strchr("+-.0123456789eEtruefalsn", h[q]))
		q++;
	if (q == *p)
		return -1;
	*p = q;
	return q < n;
}

/* the key h[at..at+len), quotes included, is name */
static int key_is(const char *h, size_t at, size_t len, const char *name)
{
	size_t k = strlen(name);
	return len == k + 2 && memcmp(h + at + 1, name, k) == 0;
}

int toolcall_scan(const char *h, size_t n, tc_span *out, int max, int *stop)
{
	int k = 0;
	size_t p = 0, lo = strlen(TOOL_OPEN), lc = strlen(TOOL_CLOSE);
	*stop = 0;
	while (k < max) {
		p = skip_ws(h, n, p);
		if (p == n)
			break;
		if (n - p < lo || memcmp(h + p, TOOL_OPEN, lo) != 0) {
			*stop = n - p >= lo || memcmp(h + p, TOOL_OPEN, n - p) != 0;
			break;
		}
		p = skip_ws(h, n, p + lo);
		if (p == n)
			break;
		if (h[p] != '{') {
			*stop = 1;
			break;
		}
		tc_span *c = &out[k++];
		memset(c, 0, sizeof *c);
		p++;
		for (;;) { /* members */
			p = skip_ws(h, n, p);
			if (p == n)
				return k;
			if (h[p] == '}') {
				p++;
				break;
			}
			size_t key = p;
			if (h[p] != '"' || scan_value(h, n, &p) != 1) {
				*stop = p < n;
				return k;
			}
			size_t klen = p - key;
			p = skip_ws(h, n, p);
			if (p == n)
				return k;
			if (h[p] != ':') {
				*stop = 1;
				return k;
			}
			p = skip_ws(h, n, p + 1);
			size_t v = p;
			/* the first "arguments" is the call's: a later one must not
			 * move what a stream has already sent */
			int args = key_is(h, key, klen, "arguments") && !c->a0;
			int r = scan_value(h, n, &p);
			if (args && v < n) {
				c->a0 = v;
				c->a1 = p;
				c->obj = h[v] == '{' && c->name;
			}
			if (r < 0)
				*stop = 1;
			if (r != 1)
				return k;
			if (key_is(h, key, klen, "name") && h[v] == '"' && !c->name) {
				cJSON *s = cJSON_ParseWithLength(h + v, p - v);
				if (cJSON_IsString(s))
					c->name = strdup(s->valuestring);
				cJSON_Delete(s);
			}
			p = skip_ws(h, n, p);
			if (p < n && h[p] == ',')
				p++;
			else if (p < n && h[p] != '}') {
				*stop = 1;
				return k;
			}
		}
		p = skip_ws(h, n, p);
		if (n - p < lc) {
			if (memcmp(h + p, TOOL_CLOSE, n - p) != 0)
				*stop = 1;
			return k;
		}
		if (memcmp(h + p, TOOL_CLOSE, lc) != 0) {
			*stop = 1;
			return k;
		}
		p += lc;
		c->complete = 1;
	}
	return k;
}

void toolcall_free(tc_span *s, int n)
{
	for (int i = 0; i < n; i++)
		free(s[i].name);
}
