/* SPDX-License-Identifier: MIT */
/* lexer.c - template text to tokens, with Jinja2 3.1's whitespace rules as
 * transformers configures them (trim_blocks, lstrip_blocks):
 *  - line breaks (\r\n, \r, \n) become \n, and one trailing newline is dropped;
 *  - "{%-", "{{-", "{#-" strip all whitespace before the tag, "-%}", "-}}",
 *    "-#}" all whitespace after it;
 *  - trim_blocks: a single \n right after "%}" or "#}" goes (not after "+%}");
 *  - lstrip_blocks: spaces and tabs between the start of a line and "{%" or
 *    "{#" go (not before "{%+" nor before "{{").  "The start of a line" is
 *    also the start of the template or just after a tag that ended in \n.
 * Comments vanish here; {% raw %} becomes data. */
#include "text/template/tpl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static void push(tpl_env *e, tpl_tokens *t, tpl_token k)
{
	if (t->n == t->cap) {
		int cap = t->cap ? 2 * t->cap : 256;
		tpl_token *v = tpl_alloc(e, (size_t)cap * sizeof *v);
		if (t->n)
			memcpy(v, t->v, (size_t)t->n * sizeof *v);
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n++] = k;
}

/* Python's \s in a str regex (the whitespace "-" strips). */
static size_t ws_len(const char *s, size_t n, size_t i)
{
	unsigned char c = (unsigned char)s[i];
	if (c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f))
		return 1;
	if (c < 0x80)
		return 0;
	size_t j = i;
	uint32_t cp = u8_next(s, n, &j);
	return py_isspace(cp) ? j - i : 0;
}

/* Length of s[0..n) with trailing whitespace removed (str.rstrip()). */
static size_t rstrip_len(const char *s, size_t n)
{
	size_t end = 0, i = 0;
	while (i < n) {
		size_t w = ws_len(s, n, i);
		if (w) {
			i += w;
		} else {
			size_t j = i;
			u8_next(s, n, &j);
			i = j;
			end = i;
		}
	}
	return end;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	size_t w;
	while (i < n && (w = ws_len(s, n, i)))
		i += w;
	return i;
}

static int count_nl(const char *s, size_t n)
{
	int k = 0;
	for (size_t i = 0; i < n; i++)
		k += s[i] == '\n';
	return k;
}

/* skip_ws, counting the lines it passes into *line. */
static size_t skip_ws_lines(const char *s, size_t n, size_t i, int *line)
{
	size_t k = skip_ws(s, n, i);
	*line += count_nl(s + i, k - i);
	return k;
}

/* Past the end of a tag at i: its '-' strips the white space after it,
 * else with trim (trim_blocks: a block, not '+') one newline goes. */
static size_t past_tag_end(const char *s, size_t n, size_t i, int minus, int trim, int *line)
{
	if (minus)
		return skip_ws_lines(s, n, i, line);
	if (trim && i < n && s[i] == '\n') {
		++*line;
		return i + 1;
	}
	return i;
}

/* Python's unicode-escape decoding of a string literal's body. */
static void unescape(tpl_env *e, int line, const char *s, size_t n, tpl_token *t)
{
	tpl_buf b;
	buf_init(&b, e, line);
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 == n) {
			buf_addc(&b, s[i]);
			continue;
		}
		char c = s[++i];
		int hex = 0;
		switch (c) {
		case '\n': break;
		case '\\': buf_addc(&b, '\\'); break;
		case '\'': buf_addc(&b, '\''); break;
		case '"': buf_addc(&b, '"'); break;
		case 'a': buf_addc(&b, '\a'); break;
		case 'b': buf_addc(&b, '\b'); break;
		case 'f': buf_addc(&b, '\f'); break;
		case 'n': buf_addc(&b, '\n'); break;
		case 'r': buf_addc(&b, '\r'); break;
		case 't': buf_addc(&b, '\t'); break;
		case 'v': buf_addc(&b, '\v'); break;
		case 'x': hex = 2; break;
		case 'u': hex = 4; break;
		case 'U': hex = 8; break;
		case 'N': tpl_fail(e, line, "\\N{...} escapes are not supported");
		default:
			if (c >= '0' && c <= '7') {
				uint32_t v = 0;
				int k = 0;
				while (k < 3 && i < n && s[i] >= '0' && s[i] <= '7') {
					v = v * 8 + (uint32_t)(s[i++] - '0');
					k++;
				}
				i--;
				buf_cp(&b, v);
			} else {
				buf_addc(&b, '\\');
				buf_addc(&b, c);
			}
		}
		if (hex) {
			uint32_t v = 0;
			for (int k = 0; k < hex; k++) {
				if (i + 1 >= n || !isxdigit((unsigned char)s[i + 1]))
					tpl_fail(e, line, "truncated \\%c escape in a string", c);
				char h = s[++i];
				v = v * 16 + (uint32_t)(isdigit((unsigned char)h) ? h - '0' : (h | 0x20) - 'a' + 10);
			}
			if (v > 0x10ffff)
				tpl_fail(e, line, "illegal Unicode character in a string");
			buf_cp(&b, v);
		}
	}
	buf_addc(&b, 0);
	t->p = b.p;
	t->n = b.n - 1;
}

static const char *ops2[] = { "//", "**", "==", "!=", "<=", ">=" };

/* Tokens of one tag's inside, up to its end marker (end = '}' or '%').
 * Returns the position after the end marker (and the whitespace "-" eats,
 * and trim_blocks' newline); *ends_nl: that text ended in \n. */
static size_t lex_tag(tpl_env *e, const char *s, size_t n, size_t i, int *line, char end,
		      tpl_tokens *out, int *ends_nl)
{
	char stack[64];
	int depth = 0;
	int start_line = *line;
	for (;;) {
		i = skip_ws_lines(s, n, i, line);
		if (i >= n)
			tpl_fail(e, start_line, "unexpected end of template: missing '%c}'", end);
		/* the end marker, unless brackets are open */
		if (!depth) {
			size_t j = i;
			int minus = 0, plus = 0;
			if (s[j] == '-' && j + 1 < n && s[j + 1] == end)
				minus = 1, j++;
			else if (end == '%' && s[j] == '+' && j + 1 < n && s[j + 1] == end)
				plus = 1, j++;
			if (j + 1 < n && s[j] == end && s[j + 1] == '}') {
				j += 2;
				push(e, out, (tpl_token){ .type = end == '}' ? T_VAR_END : T_BLOCK_END,
							  .line = *line });
				j = past_tag_end(s, n, j, minus, end == '%' && !plus, line);
				*ends_nl = j > 0 && s[j - 1] == '\n';
				return j;
			}
		}
		tpl_token t = { .line = *line };
		unsigned char c = (unsigned char)s[i];
		if (isdigit(c)) {
			size_t j = i;
			while (j < n && (isdigit((unsigned char)s[j]) || s[j] == '_'))
				j++;
			int is_float = 0;
			int after_dot = i > 0 && s[i - 1] == '.';
			if (!after_dot && j + 1 < n && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
				is_float = 1;
				j++;
				while (j < n && (isdigit((unsigned char)s[j]) || s[j] == '_'))
					j++;
			}
			if (!after_dot && j < n && (s[j] == 'e' || s[j] == 'E')) {
				size_t k = j + 1;
				if (k < n && (s[k] == '+' || s[k] == '-'))
					k++;
				if (k < n && isdigit((unsigned char)s[k])) {
					is_float = 1;
					j = k;
					while (j < n && (isdigit((unsigned char)s[j]) || s[j] == '_'))
						j++;
				}
			}
			char numtxt[64];
			size_t m = 0;
			for (size_t k = i; k < j && m < sizeof numtxt - 1; k++)
				if (s[k] != '_')
					numtxt[m++] = s[k];
			numtxt[m] = 0;
			if (j - i >= sizeof numtxt - 1)
				tpl_fail(e, *line, "number too long");
			if (is_float) {
				t.type = T_FLOAT;
				t.f = strtod(numtxt, NULL);
			} else {
				t.type = T_INT;
				char *endp;
				unsigned long long v = strtoull(numtxt, &endp, 10);
				if (m > 18 && (m > 19 || v > (unsigned long long)9223372036854775807LL))
					tpl_fail(e, *line, "integer literal too large");
				t.i = (long long)v;
			}
			i = j;
		} else if (isalpha(c) || c == '_') {
			size_t j = i;
			while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_'))
				j++;
			t.type = T_NAME;
			t.p = s + i;
			t.n = j - i;
			i = j;
		} else if (c == '\'' || c == '"') {
			size_t j = i + 1;
			while (j < n && s[j] != (char)c) {
				if (s[j] == '\\' && j + 1 < n)
					j++;
				j++;
			}
			if (j >= n)
				tpl_fail(e, *line, "unterminated string");
			t.type = T_STRING;
			unescape(e, *line, s + i + 1, j - i - 1, &t);
			*line += count_nl(s + i, j - i);
			i = j + 1;
		} else {
			size_t len = 0;
			for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
				if (i + 1 < n && s[i] == ops2[k][0] && s[i + 1] == ops2[k][1])
					len = 2;
			if (!len && strchr("+-/*%~[](){}<>=.:|,;", c) && c)
				len = 1;
			if (!len)
				tpl_fail(e, *line, "unexpected char '%c'", c < 0x20 || c >= 0x7f ? '?' : c);
			if (len == 1 && strchr("([{", c)) {
				if (depth == (int)sizeof stack)
					tpl_fail(e, *line, "brackets nested too deeply");
				stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
			} else if (len == 1 && strchr(")]}", c)) {
				if (!depth)
					tpl_fail(e, *line, "unexpected '%c'", c);
				if (stack[--depth] != (char)c)
					tpl_fail(e, *line, "unexpected '%c', expected '%c'", c, stack[depth]);
			}
			t.type = T_OP;
			t.p = s + i;
			t.n = len;
			i += len;
		}
		push(e, out, t);
	}
}

/* Where the next "{{", "{%" or "{#" starts, or n. */
static size_t next_tag(const char *s, size_t n, size_t i)
{
	for (; i + 1 < n; i++) {
		const char *p = memchr(s + i, '{', n - i - 1);
		if (!p)
			return n;
		i = (size_t)(p - s);
		if (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')
			return i;
	}
	return n;
}

/* {% raw %} at s+i (after "{%" and its sign)?  Returns the end of the tag. */
static size_t raw_begin(const char *s, size_t n, size_t i, int *minus_after)
{
	size_t j = skip_ws(s, n, i);
	if (j + 3 > n || memcmp(s + j, "raw", 3) != 0)
		return 0;
	j = skip_ws(s, n, j + 3);
	*minus_after = 0;
	if (j + 2 < n && s[j] == '-' && s[j + 1] == '%' && s[j + 2] == '}') {
		*minus_after = 1;
		return j + 3;
	}
	if (j + 1 < n && s[j] == '%' && s[j + 1] == '}')
		return j + 2;
	return 0;
}

void tpl_lex(tpl_env *e, const char *src, size_t srclen, tpl_tokens *out)
{
	/* newlines normalised, one trailing newline dropped */
	char *s = tpl_alloc(e, srclen + 1);
	size_t n = 0;
	for (size_t i = 0; i < srclen; i++) {
		if (src[i] == '\r') {
			s[n++] = '\n';
			if (i + 1 < srclen && src[i + 1] == '\n')
				i++;
		} else
			s[n++] = src[i];
	}
	if (n && s[n - 1] == '\n')
		n--;
	int line = 1, line_starting = 1;
	size_t i = 0;
	while (i < n) {
		size_t at = next_tag(s, n, i);
		size_t textlen = at - i;
		if (at >= n) {
			push(e, out, (tpl_token){ .type = T_DATA, .line = line, .p = s + i, .n = textlen });
			line += count_nl(s + i, textlen);
			break;
		}
		char kind = s[at + 1];
		size_t j = at + 2;
		char sign = j < n && (s[j] == '-' || s[j] == '+') ? s[j] : 0;
		if (sign)
			j++;
		int minus_after = 0;
		size_t raw_end = kind == '%' ? raw_begin(s, n, j, &minus_after) : 0;
		/* whitespace control of the text before the tag */
		if (sign == '-') {
			textlen = rstrip_len(s + i, textlen);
		} else if (sign != '+' && kind != '{') {
			size_t lpos = textlen;
			while (lpos > 0 && s[i + lpos - 1] != '\n')
				lpos--;
			if (lpos > 0 || line_starting) {
				size_t k = lpos;
				while (k < textlen && ws_len(s, i + textlen, i + k))
					k += ws_len(s, i + textlen, i + k);
				if (k == textlen)
					textlen = lpos;
			}
		}
		if (textlen)
			push(e, out, (tpl_token){ .type = T_DATA, .line = line, .p = s + i, .n = textlen });
		line += count_nl(s + i, at - i);
		if (raw_end) {
			/* data up to {% endraw %} */
			size_t k = raw_end, body = raw_end;
			if (minus_after)
				body = k = skip_ws(s, n, k);
			for (;;) {
				k = next_tag(s, n, k);
				if (k >= n)
					tpl_fail(e, line, "missing end of raw directive");
				if (s[k + 1] != '%') {
					k += 2;
					continue;
				}
				size_t q = k + 2;
				char sg = q < n && (s[q] == '-' || s[q] == '+') ? s[q] : 0;
				if (sg)
					q++;
				q = skip_ws(s, n, q);
				if (q + 6 <= n && memcmp(s + q, "endraw", 6) == 0) {
					q = skip_ws(s, n, q + 6);
					int m = 0, p = 0;
					if (q < n && s[q] == '-')
						m = 1, q++;
					else if (q < n && s[q] == '+')
						p = 1, q++;
					if (q + 1 < n && s[q] == '%' && s[q + 1] == '}') {
						size_t tl = k - body;
						if (sg == '-')
							tl = rstrip_len(s + body, tl);
						else if (sg != '+') {
							size_t lp = tl;
							while (lp > 0 && s[body + lp - 1] != '\n')
								lp--;
							size_t z = lp;
							while (z < tl && (s[body + z] == ' ' || s[body + z] == '\t'))
								z++;
							if (z == tl && lp > 0)
								tl = lp;
						}
						if (tl)
							push(e, out, (tpl_token){ .type = T_DATA, .line = line,
										  .p = s + body, .n = tl });
						line += count_nl(s + raw_end, q + 2 - raw_end);
						q += 2;
						q = past_tag_end(s, n, q, m, !p, &line);
						line_starting = s[q - 1] == '\n';
						i = q;
						break;
					}
				}
				k += 2;
			}
			continue;
		}
		if (kind == '#') {
			/* a comment: up to the first "#}" */
			size_t k = j;
			while (k + 1 < n && !(s[k] == '#' && s[k + 1] == '}'))
				k++;
			if (k + 1 >= n)
				tpl_fail(e, line, "missing end of comment tag");
			int minus = k > j && s[k - 1] == '-';
			int plus = k > j && s[k - 1] == '+';
			line += count_nl(s + j, k - j);
			k += 2;
			k = past_tag_end(s, n, k, minus, !plus, &line);
			line_starting = s[k - 1] == '\n';
			i = k;
			continue;
		}
		push(e, out, (tpl_token){ .type = kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, .line = line });
		i = lex_tag(e, s, n, j, &line, kind == '{' ? '}' : '%', out, &line_starting);
	}
	push(e, out, (tpl_token){ .type = T_EOF, .line = line });
}
