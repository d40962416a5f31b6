/* SPDX-License-Identifier: MIT */
/* scanproto.h - what modelhost-plugin-scanner says about one plugin file,
 * read by host/plugin/scan.c.  One line per field, "key value", values
 * escaped so that nothing a plugin puts in a string can add a line or a
 * field: \\ \n \t and \xHH for other control bytes.  The record ends with
 * "end"; without it (the scanner crashed or was killed mid-way) nothing
 * of it is believed.
 *
 *   status ok | rejected
 *   reason TEXT               (rejected)
 *   abi MAJOR MINOR
 *   name, version, description, license TEXT
 *   arch TEXT                 (once per architecture, in order)
 *   end
 *
 * Header-only: the scanner links nothing of the host. */
#ifndef MH_SCANPROTO_H
#define MH_SCANPROTO_H

#include <stdio.h>
#include <string.h>

#define SCAN_MAX_STRING 1024  /* longest descriptor string accepted */
#define SCAN_MAX_ARCHS 64     /* architectures per plugin */

static inline void scan_put(FILE *f, const char *key, const char *v)
{
	fputs(key, f);
	fputc(' ', f);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p == '\t')
			fputs("\\t", f);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
	fputc('\n', f);
}

/* Undo scan_put's escapes in place. */
static inline void scan_unescape(char *s)
{
	char *o = s;
	for (const char *p = s; *p; p++) {
		if (*p != '\\' || !p[1]) {
			*o++ = *p;
			continue;
		}
		p++;
		if (*p == 'n') {
			*o++ = '\n';
		} else if (*p == 't') {
			*o++ = '\t';
		} else if (*p == 'x' && p[1] && p[2]) {
			unsigned v = 0;
			for (int i = 1; i <= 2; i++) {
				char c = p[i];
				v = v * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
			}
			*o++ = (char)(v & 0xff);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
}

#endif
