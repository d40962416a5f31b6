/* SPDX-License-Identifier: MIT */
/* check_template.c - the chat template engine: the lexer's whitespace rules,
 * the parser's precedence and errors, the evaluator against renderings by
 * Jinja2 3.1 itself, the limits, the API, and every case of the reference
 * templates in ../shared/fixtures/chat/templates.json. */
#include "text/chat_template.h"
#include "text/template/tpl.h"
#include "base/util.h"
#include "testutil.h"

#include <check.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* 2024-07-26 12:00:00 local time, the fixtures' pinned "now" */
static time_t pinned_now(void)
{
	struct tm tm = { .tm_year = 124, .tm_mon = 6, .tm_mday = 26, .tm_hour = 12, .tm_isdst = -1 };
	return mktime(&tm);
}

/* Render src with the JSON context ctx; NULL and err on failure. */
static char *render(const char *src, const char *ctx, char *err, size_t errlen)
{
	mh_chat_template *t = chat_template_from_string(src, strlen(src), "test", NULL, err, errlen);
	if (!t)
		return NULL;
	cJSON *c = cJSON_Parse(ctx);
	ck_assert_ptr_nonnull(c);
	char *out = chat_template_render(t, c, pinned_now(), err, errlen);
	cJSON_Delete(c);
	chat_template_free(t);
	return out;
}

static void expect_render(const char *src, const char *ctx, const char *want)
{
	char err[MH_ERRLEN] = "";
	char *out = render(src, ctx, err, sizeof err);
	if (!out)
		ck_abort_msg("%s: failed: %s", src, err);
	if (strcmp(out, want) != 0)
		ck_abort_msg("%s:\n got  [%s]\n want [%s]", src, out, want);
	free(out);
}

static void expect_error(const char *src, const char *ctx, const char *want)
{
	char err[MH_ERRLEN] = "";
	char *out = render(src, ctx, err, sizeof err);
	if (out)
		ck_abort_msg("%s: rendered [%s], expected an error", src, out);
	ck_assert_msg(strstr(err, want) != NULL, "%s: error '%s' lacks '%s'", src, err, want);
	ck_assert_msg(strchr(err, '\n') == NULL, "error not one line: %s", err);
	ck_assert_msg(strncmp(err, "test: ", 6) == 0, "error does not name the template: %s", err);
}

#define NOCTX "{\"messages\": []}"

/* ---- lexer ------------------------------------------------------------------- */
/* The data tokens of src joined with '|' (the text whitespace control leaves). */
static char *lex_data(const char *src)
{
	static char out[4096];
	tpl_env e = { .lim = tpl_default_limits, .name = "test" };
	char err[MH_ERRLEN];
	e.err = err;
	e.errlen = sizeof err;
	out[0] = 0;
	if (setjmp(e.jb)) {
		snprintf(out, sizeof out, "ERROR %s", err);
		tpl_arena_free(&e);
		return out;
	}
	tpl_tokens t = { 0 };
	tpl_lex(&e, src, strlen(src), &t);
	for (int i = 0; i < t.n; i++)
		if (t.v[i].type == T_DATA) {
			strncat(out, t.v[i].p, t.v[i].n);
			strcat(out, "|");
		}
	tpl_arena_free(&e);
	return out;
}

START_TEST(lex_whitespace)
{
	/* trim_blocks: the newline after a block tag goes; lstrip_blocks: the
	 * indentation before it */
	ck_assert_str_eq(lex_data("a\n  {% if x %}\n  b\n  {% endif %}\nc"), "a\n|  b\n|c|");
	/* not for variables */
	ck_assert_str_eq(lex_data("a\n  {{ x }}\nb"), "a\n  |\nb|");
	/* "-" strips every kind of whitespace, newlines included */
	ck_assert_str_eq(lex_data("a \n\t {%- if x -%} \n b{% endif %}"), "a|b|");
	/* "+" keeps the indentation, and after "%}" the newline */
	ck_assert_str_eq(lex_data("  {%+ if x +%}\nb{% endif %}"), "  |\nb|");
	/* lstrip only from the start of a line: here text precedes the tag */
	ck_assert_str_eq(lex_data("x  {% if y %}z{% endif %}"), "x  |z|");
	/* ...and the start of the template, or after a tag that ended in \n */
	ck_assert_str_eq(lex_data("  {% if y %}z{% endif %}"), "z|");
	ck_assert_str_eq(lex_data("{{ a }}  {% if y %}z{% endif %}"), "  |z|");
	/* comments vanish, with trim_blocks and lstrip like blocks */
	ck_assert_str_eq(lex_data("a\n  {# c #}\nb"), "a\n|b|");
	/* \r\n and \r become \n; one trailing newline is dropped */
	ck_assert_str_eq(lex_data("a\r\nb\rc\n\n"), "a\nb\nc\n|");
	/* raw: tags inside are text */
	ck_assert_str_eq(lex_data("{% raw %}{{ x }}{% endraw %}"), "{{ x }}|");
}
END_TEST

START_TEST(lex_tokens)
{
	tpl_env e = { .lim = tpl_default_limits, .name = "test" };
	char err[MH_ERRLEN];
	e.err = err;
	e.errlen = sizeof err;
	ck_assert_int_eq(setjmp(e.jb), 0);
	tpl_tokens t = { 0 };
	const char *src = "{{ a.b[1] | f(x=1.5e2) ~ 'q\\n\\'' // 2 ** 3 != 1_000 }}";
	tpl_lex(&e, src, strlen(src), &t);
	static const int types[] = { T_VAR_BEGIN, T_NAME, T_OP, T_NAME, T_OP, T_INT, T_OP, T_OP,
				     T_NAME, T_OP, T_NAME, T_OP, T_FLOAT, T_OP, T_OP, T_STRING, T_OP,
				     T_INT, T_OP, T_INT, T_OP, T_INT, T_VAR_END, T_EOF };
	ck_assert_int_eq(t.n, (int)(sizeof types / sizeof *types));
	for (int i = 0; i < t.n; i++)
		ck_assert_int_eq(t.v[i].type, types[i]);
	ck_assert(t.v[12].f == 150.0);
	ck_assert_int_eq((int)t.v[15].n, 3);
	ck_assert(memcmp(t.v[15].p, "q\n'", 3) == 0);
	ck_assert_int_eq((int)t.v[16].n, 2); /* // */
	ck_assert_int_eq((int)t.v[21].i, 1000);
	tpl_arena_free(&e);
	/* line numbers in errors */
	ck_assert_str_eq(lex_data("a\n\n{{ 'open }}"), "ERROR test: line 3: unterminated string");
	ck_assert_str_eq(lex_data("a\n{# never closed"), "ERROR test: line 2: missing end of comment tag");
	ck_assert_str_eq(lex_data("{{ (1 ]}}"), "ERROR test: line 1: unexpected ']', expected ')'");
	ck_assert_str_eq(lex_data("x\n{% if"), "ERROR test: line 2: unexpected end of template: missing '%}'");
}
END_TEST

/* ---- parser -------------------------------------------------------------------- */
static node *parse_expr(tpl_env *e, const char *expr)
{
	char src[512];
	snprintf(src, sizeof src, "{{ %s }}", expr);
	tpl_tokens t = { 0 };
	tpl_lex(e, src, strlen(src), &t);
	node *root = tpl_parse(e, &t);
	ck_assert_int_eq(root->list.n, 1);
	ck_assert_int_eq(root->list.v[0]->kind, N_OUTPUT);
	return root->list.v[0]->a;
}

START_TEST(parse_precedence)
{
	tpl_env e = { .lim = tpl_default_limits, .name = "test" };
	char err[MH_ERRLEN];
	e.err = err;
	e.errlen = sizeof err;
	ck_assert_int_eq(setjmp(e.jb), 0);
	/* filters bind tighter than operators */
	node *n = parse_expr(&e, "a + b | trim");
	ck_assert_int_eq(n->kind, E_BIN);
	ck_assert_int_eq(n->op, OP_ADD);
	ck_assert_int_eq(n->b->kind, E_FILTER);
	ck_assert_str_eq(n->b->name, "trim");
	/* not x is defined: not (x is defined) */
	n = parse_expr(&e, "not x is defined");
	ck_assert_int_eq(n->kind, E_NOT);
	ck_assert_int_eq(n->a->kind, E_TEST);
	/* is not none: a negated test */
	n = parse_expr(&e, "x is not none");
	ck_assert_int_eq(n->kind, E_TEST);
	ck_assert_int_eq(n->op, 1);
	ck_assert_str_eq(n->name, "none");
	/* * over +, ** over unary minus's operand, ~ between them */
	n = parse_expr(&e, "1 + 2 * 3");
	ck_assert_int_eq(n->op, OP_ADD);
	ck_assert_int_eq(n->b->op, OP_MUL);
	n = parse_expr(&e, "a ~ b + c");
	ck_assert_int_eq(n->kind, E_BIN);
	ck_assert_int_eq(n->a->kind, E_CONCAT);
	/* comparisons chain; and over or; the conditional is loosest */
	n = parse_expr(&e, "a < b < c");
	ck_assert_int_eq(n->kind, E_CMP);
	ck_assert_int_eq(n->list.n, 2);
	n = parse_expr(&e, "a or b and c");
	ck_assert_int_eq(n->kind, E_OR);
	ck_assert_int_eq(n->b->kind, E_AND);
	n = parse_expr(&e, "a if b or c else d");
	ck_assert_int_eq(n->kind, E_COND);
	ck_assert_int_eq(n->b->kind, E_OR);
	/* postfix: attribute, subscript, slice, call */
	n = parse_expr(&e, "m.c[1:][::-1].f(1, k=2)");
	ck_assert_int_eq(n->kind, E_CALL);
	ck_assert_int_eq(n->args.n, 1);
	ck_assert_int_eq(n->kwargs.n, 1);
	ck_assert_str_eq(n->knames[0], "k");
	ck_assert_int_eq(n->a->kind, E_ATTR);
	ck_assert_int_eq(n->a->a->kind, E_SLICE);
	ck_assert_ptr_null(n->a->a->b);
	ck_assert_int_eq(n->a->a->a->kind, E_SLICE);
	/* a tuple without parentheses */
	n = parse_expr(&e, "1, 2");
	ck_assert_int_eq(n->kind, E_TUPLE);
	tpl_arena_free(&e);
}
END_TEST

START_TEST(parse_errors)
{
	expect_error("{% if x %}a", NOCTX, "line 1: syntax error: unexpected end of template, expected 'endif'");
	expect_error("a\n{% for x in y %}\n{% endif %}", NOCTX, "line 3: syntax error: unexpected 'endif'");
	expect_error("{{ }}", NOCTX, "syntax error");
	expect_error("{{ 1 + }}", NOCTX, "syntax error: unexpected '}}'");
	expect_error("{% frobnicate %}", NOCTX, "unknown tag 'frobnicate'");
	expect_error("{% include 'x' %}", NOCTX, "'include' is not supported");
	expect_error("{% break %}", NOCTX, "'break' outside of a loop");
	expect_error("{% for x in y recursive %}{% endfor %}", NOCTX, "not supported");
	expect_error("{% macro f(a=1, b) %}{% endmacro %}", NOCTX, "non-default argument");
	expect_error("{{ x is defined is defined }}", NOCTX, "syntax error");
}
END_TEST

/* ---- evaluator ------------------------------------------------------------------- */
static const char CTX1[] = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \" Hi there \\n\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"\303\234n\303\257 \360\237\231\202 'q' \\\"d\\\"\"}], \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";
static const char CTX2[] = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nhmm\\n</think>\\n\\nHello!\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1, \"y\": \"\303\251\"}}}]}, {\"role\": \"tool\", \"content\": \"{\\\"r\\\": 2}\"}, {\"role\": \"user\", \"content\": \"again\"}], \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"does f\", \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"integer\"}}, \"required\": [\"x\"]}}}]}";
static const char CTX3[] = "{\"messages\": [{\"role\": \"system\", \"content\": \"  Be brief. \"}, {\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nlet me see\\n</think>\\n\\nChecking.\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2], \"opts\": {\"u\": \"c\"}, \"n\": 3, \"f\": 2.5, \"b\": true, \"z\": null}}}]}, {\"role\": \"tool\", \"content\": \"{\\\"t\\\": 21}\"}, {\"role\": \"tool\", \"content\": \"second\"}, {\"role\": \"assistant\", \"content\": \"It is 21.\"}, {\"role\": \"user\", \"content\": \"<tool_response>x</tool_response>\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}], \"add_generation_prompt\": true}";
static const char CTX4[] = "{\"messages\": [{\"role\": \"user\", \"content\": \"\343\200\200 wide\302\240space \342\200\203\"}], \"x\": null, \"n\": 3, \"s\": \"a\342\200\250b\302\205c\\u000bd\\fe\\u001cf\\r\\ng\"}";
static const char CTX5[] = "{\"messages\": []}";
/* template, expected: rendered by Jinja2 3.1.6 in transformers' environment */
static const struct { const char *ctx, *src, *out; } renders[] = {
	{ CTX1, "a\n  {% if true %}\n  x\n  {% endif %}\n  b\n",
	  "a\n  x\n  b" },
	{ CTX1, "  {% if true %}x{% endif %}  \n{% if true %}  y  {% endif %}",
	  "x  \n  y  " },
	{ CTX1, "a  {%- if true -%}  b  {%- endif -%}  c",
	  "abc" },
	{ CTX1, "{{ 'x' }}\n  {{ 'y' }}\n{# c #}\n  {# d #}\nz",
	  "x\n  y\nz" },
	{ CTX1, "a {#- c -#} b {#+ k +#}\n c",
	  "ab \n c" },
	{ CTX1, "  {%+ if true %}x{% endif %}\n  {% if true +%}\ny{% endif %}",
	  "  x\ny" },
	{ CTX1, "{% raw %}{{ x }}{% endraw %}\n  {% raw -%}  a {{ b }}  {%- endraw %} c",
	  "{{ x }}a {{ b }} c" },
	{ CTX1, "line1\r\nline2\rline3\n\n",
	  "line1\nline2\nline3\n" },
	{ CTX1, "{{ messages|length }} {{ messages[0].role }} {{ messages[-1]['content'] }}",
	  "4 system \303\234n\303\257 \360\237\231\202 'q' \"d\"" },
	{ CTX1, "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}:{{ m.role }}{% if loop.previtem %}<{{ loop.previtem.role }}{% endif %}{% if loop.nextitem is defined %}>{{ loop.nextitem.role }}{% endif %}\n{% endfor %}",
	  "1/0/4/3/True/False/4:system>user2/1/3/2/False/False/4:user<system>assistant3/2/2/1/False/False/4:assistant<user>user4/3/1/0/False/True/4:user<assistant" },
	{ CTX1, "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{% else %}none{% endfor %}",
	  "1user2assistant3user" },
	{ CTX1, "{% for m in [] %}x{% else %}empty{% endfor %}",
	  "empty" },
	{ CTX1, "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
	  "0134" },
	{ CTX1, "{% set x = 1 %}{% for i in range(3) %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}",
	  "1212121" },
	{ CTX1, "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.n }} {{ ns.s }}",
	  "4 suau" },
	{ CTX1, "{% macro f(a, b='B', c=none) %}[{{ a }}|{{ b }}|{{ c }}|{{ varargs }}|{{ kwargs }}]{% endmacro %}{{ f(1) }}{{ f(1, 2) }}{{ f(1, c=3) }}{{ f(1,2,3,4,5) }}{{ f(1, z=9) }}",
	  "[1|B|None|()|{}][1|2|None|()|{}][1|B|3|()|{}][1|2|3|(4, 5)|{}][1|B|None|()|{'z': 9}]" },
	{ CTX1, "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(5) }}",
	  "54321" },
	{ CTX1, "{% macro w(x) %}<{{ caller(x) }}>{% endmacro %}{% call(y) w(3) %}got {{ y }}{% endcall %}",
	  "<got 3>" },
	{ CTX1, "{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}body{% endcall %}",
	  "<body>" },
	{ CTX1, "{% filter upper %}hello {{ 'x' }}{% endfilter %}",
	  "HELLO X" },
	{ CTX1, "{% set b %}  block {{ 1 + 2 }}  {% endset %}[{{ b }}]",
	  "[  block 3  ]" },
	{ CTX1, "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (1, 'a') %}{{ t }}",
	  "12(1, 'a')" },
	{ CTX1, "{% with a = 5 %}{{ a }}{% endwith %}{{ a is defined }}",
	  "5False" },
	{ CTX1, "{{ 1 + 2 * 3 - 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 1.5 + 1 }} {{ 10 / 4 }} {{ 3 * 'ab' }}",
	  "5.0 3 -4 1 2 1024 0.5 2.5 2.5 ababab" },
	{ CTX1, "{{ 'a' ~ 1 ~ none ~ true ~ undefined_var }} {{ [1, 'a', none, true, 1.5] }} {{ {'a': 1, 'b': [2]} }} {{ (1,) }} {{ () }}",
	  "a1NoneTrue [1, 'a', None, True, 1.5] {'a': 1, 'b': [2]} (1,) ()" },
	{ CTX1, "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1,2] < [1,3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' in 'cat' }} {{ 2 in [1,2] }} {{ 'k' in {'k':1} }} {{ 'z' not in 'cat' }}",
	  "True True True True False True True True True" },
	{ CTX1, "{{ true and 'x' }} {{ false or 'y' }} {{ none or 0 }} {{ not none }} {{ 'a' if false }}|{{ 'a' if false else 'b' }}",
	  "x y 0 True |b" },
	{ CTX1, "{{ messages[1:] | length }} {{ messages[::-1][0].role }} {{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ 'hello'[-2:] }} {{ [1,2,3,4,5][1:-1] }} {{ [1,2,3,4,5][::2] }} {{ 'h\303\251llo'[1] }}",
	  "3 user el olleh lo [2, 3, 4] [1, 3, 5] \303\251" },
	{ CTX1, "{{ '  x y  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Hello World' | upper }}|{{ '\303\204B' | lower }}|{{ 'hello world' | capitalize }}|{{ 'hello-world foo(bar) [x] <y>' | title }}|{{ \"they're bill's\" | title }}",
	  "x y|hi|HELLO WORLD|\303\244b|Hello world|Hello-World Foo(Bar) [X] <Y>|They're Bill's" },
	{ CTX1, "{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'abc' | replace('', '-') }} {{ [1,2,3] | join(', ') }} {{ messages | join('|', attribute='role') }}",
	  "bbb bba -a-b-c- 1, 2, 3 system|user|assistant|user" },
	{ CTX1, "{{ [3,1,2] | first }} {{ [3,1,2] | last }} {{ [] | first }}|{{ undefined_x | default('d') }} {{ '' | default('e', true) }} {{ none | default('f') }} {{ 0 | d('g', boolean=true) }}",
	  "3 2 |d e None g" },
	{ CTX1, "{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}{% for k, v in {'a': 1}.items() %}{{ k }}{{ v }}{% endfor %}{{ {'x':1}.keys() | list }} {{ {'x':1}.values() | list }} {{ {'x':1}.get('x') }} {{ {'x':1}.get('y') }} {{ {'x':1}.get('y', 3) }}",
	  "a=1;b=2;a1['x'] [1] 1 None 3" },
	{ CTX1, "{{ 'abc' | list }} {{ {'a':1,'b':2} | list }} {{ 42 | string }} {{ '42' | int + 1 }} {{ '4.7' | int }} {{ 'x' | int }} {{ '3.5' | float }} {{ 3 | float }} {{ '0x1A' | int(base=16) }} {{ 'zz' | float(1.5) }}",
	  "['a', 'b', 'c'] ['a', 'b'] 42 43 4 0 3.5 3.0 26 1.5" },
	{ CTX1, "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'equalto', 'user') | map(attribute='role') | join(',') }} {{ [1, 0, 2, none] | select | list }} {{ [1,2,3,4] | reject('odd') | list }} {{ [1,2,3] | map('string') | join('') }}",
	  "2 system,assistant [1, 2] [2, 4] 123" },
	{ CTX1, "{{ ['a', 'A', 'b', 'a'] | unique | list }} {{ ['a', 'A', 'b'] | unique(case_sensitive=true) | list }} {{ messages | map(attribute='role') | unique | join(',') }}",
	  "['a', 'b'] ['a', 'A', 'b'] system,user,assistant" },
	{ CTX1, "{{ 'a\nb\n\nc' | indent }}|{{ 'a\nb\n\nc' | indent(2, true) }}|{{ 'a\nb\n\nc' | indent(width='> ', first=true, blank=true) }}|{{ '' | indent(first=true) }}",
	  "a\n    b\n\n    c|  a\n  b\n\n  c|> a\n> b\n> \n> c|    " },
	{ CTX1, "{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 1.23456 | round(3, 'floor') }} {{ 1.2 | round(0, 'ceil') }} {{ 5 | round }} {{ -2.5 | round }}",
	  "2.0 4.0 2.67 1.234 2.0 5 -2.0" },
	{ CTX1, "{{ '<b>' | safe }} {{ '<a href=\"x\">&' | e }} {{ -3 | abs }} {{ [1,2,3] | reverse | list }} {{ 'abc' | reverse }} {{ [3,1,2] | sort }} {{ ['b','A','c'] | sort }} {{ [3,1,2] | sort(reverse=true) }} {{ [1,2,3] | sum }} {{ [3,1,2] | min }} {{ [3,1,2] | max }}",
	  "<b> &lt;a href=&#34;x&#34;&gt;&amp; 3 [3, 2, 1] cba [1, 2, 3] ['A', 'b', 'c'] [3, 2, 1] 6 1 3" },
	{ CTX1, "{{ messages | sort(attribute='role') | map(attribute='role') | join(',') }} {{ {'b':1,'a':2} | dictsort }} {{ 'one two  three' | wordcount }} {{ '%s-%d' | format('a', 3) }}",
	  "assistant,system,user,user [('a', 2), ('b', 1)] 3 a-3" },
	{ CTX1, "{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ 1 is number }} {{ 1.0 is number }} {{ true is boolean }} {{ 1 is boolean }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 1 is integer }} {{ 1.0 is float }} {{ x is undefined }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ 1 is eq 1 }} {{ 2 is gt 1 }} {{ 1 is in [1] }} {{ none is sameas none }} {{ true is true }}",
	  "False True True True True True False True True True False True True True True True True True True True True True True True" },
	{ CTX1, "{{ ' a b '.strip() }}|{{ 'xax'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'Ab'.upper() }}{{ 'Ab'.lower() }} {{ 'aXa'.replace('a', 'b') }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ ', '.join(['a','b']) }} {{ 'banana'.count('an') }} {{ 'banana'.find('n') }} {{ 'a\nb'.splitlines() }}",
	  "a b|a|a|a|['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c'] True True ABab bXb Hello World Hello a, b 2 2 ['a', 'b']" },
	{ CTX1, "{{ strftime_now('%Y-%m-%d %H:%M %b %A') }}",
	  "2024-07-26 12:00 Jul Friday" },
	{ CTX1, "{{ {'a': '\303\251', 'b': [1, 2.5, true, none], 'c': {'d': '\"\\\\\n\t\001'}} | tojson }}",
	  "{\"a\": \"\303\251\", \"b\": [1, 2.5, true, null], \"c\": {\"d\": \"\\\"\\\\\\n\\t\\u0001\"}}" },
	{ CTX1, "{{ {'a': 1, 'b': [1, {'c': []}], 'd': {}} | tojson(indent=2) }}",
	  "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    {\n      \"c\": []\n    }\n  ],\n  \"d\": {}\n}" },
	{ CTX1, "{{ messages[0] | tojson }} {{ 'x\342\200\250y' | tojson }} {{ 1.0 | tojson }} {{ 1e20 | tojson }} {{ 0.1 | tojson }} {{ 1e-5 }} {{ 123456789012345678.0 }} {{ 1/3 }}",
	  "{\"role\": \"system\", \"content\": \"Be brief.\"} \"x\342\200\250y\" 1.0 1e+20 0.1 1e-05 1.2345678901234568e+17 0.3333333333333333" },
	{ CTX1, "{{ messages[10] }}|{{ messages[0].nope }}|{{ 'x'.nope }}|{{ none.x }}",
	  "|||" },
	{ CTX1, "{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }}{% set d = {} %}",
	  "1" },
	{ CTX1, "{{ 'a' 'b' }} {{ \"x\\ty\" }} {{ 'it\\'s' }} {{ '\\u00e9\\x41\\101' }} {{ '\\d' }}",
	  "ab x\ty it's \303\251AA \\d" },
	{ CTX1, "{{ 1_000 }} {{ 1.5e3 }} {{ 0.5 }} {{ 10 }} {{ 1e2 }}",
	  "1000 1500.0 0.5 10 100.0" },
	{ CTX1, "{{ messages[0]['content'] + '!' if messages else 'none' }}",
	  "Be brief.!" },
	{ CTX1, "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set messages = messages[1:] %}{% endif %}{{ sys }}:{{ messages | length }}",
	  "Be brief.:3" },
	{ CTX1, "{% for m in messages %}{% set outer = loop %}{% for c in m.role %}{{ outer.index }}{{ loop.index }}{% endfor %};{% endfor %}",
	  "111213141516;21222324;313233343536373839;41424344;" },
	{ CTX1, "{{ loop }}",
	  "" },
	{ CTX1, "{% for a in [[1,2],[3,4]] %}{% for b in a %}{{ b }}{% endfor %}{% endfor %}{% for a, b in [[1,2],[3,4]] %}{{ a + b }}{% endfor %}",
	  "123437" },
	{ CTX1, "{{ [1,2,3][1] }}{{ messages.0.role }}{{ (messages|first).role }}",
	  "2systemsystem" },
	{ CTX1, "{{ tools is not defined }} {{ tools | default([]) | length }}",
	  "True 0" },
	{ CTX1, "{%- for message in messages -%}\n  {{- message.role -}}\n{%- endfor -%}\n",
	  "systemuserassistantuser" },
	{ CTX1, "{% if true %}\n    indented\n{% endif %}\n",
	  "    indented\n" },
	{ CTX1, "{% for i in range(3) %}\n  {{ i }}\n{% endfor %}\n",
	  "  0\n  1\n  2\n" },
	{ CTX1, "{{ 'x' }}   {% if true %}y{% endif %}",
	  "x   y" },
	{ CTX1, "\n  {% if true %}x{% endif %}",
	  "\nx" },
	{ CTX1, "{% if true %}a{% elif false %}b{% else %}c{% endif %}{% if false %}a{% elif true %}b{% else %}c{% endif %}{% if false %}a{% elif false %}b{% else %}c{% endif %}",
	  "abc" },
	{ CTX1, "{{ ['a\\'b', \"c\\\"d\", 'e\\nf', '\303\251'] }} {{ {'k': none} }}",
	  "[\"a'b\", 'c\"d', 'e\\nf', '\303\251'] {'k': None}" },
	{ CTX1, "{{ messages | map(attribute='nope', default='D') | list }} {{ messages | map(attribute='role') | first }}",
	  "['D', 'D', 'D', 'D'] system" },
	{ CTX1, "{% set j = joiner('-') %}{% for i in range(3) %}{{ j() }}{{ i }}{% endfor %}",
	  "0-1-2" },
	{ CTX1, "{% for i in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}",
	  "abab" },
	{ CTX1, "{{ dict(a=1, b=2) }} {{ namespace(x=1).x }}",
	  "{'a': 1, 'b': 2} 1" },
	{ CTX1, "{{ 'abc' | length }} {{ {'a': 1} | length }} {{ undefined_v | length }} {{ 'h\303\251llo' | length }}",
	  "3 1 0 5" },
	{ CTX1, "{{ messages[0] == messages[0] }} {{ messages[0] != messages[1] }} {{ [1] == [1] }} {{ {'a':1} == {'a':1} }}",
	  "True True True True" },
	{ CTX1, "{% if messages | selectattr('role', 'equalto', 'tool') | list %}tools{% else %}none{% endif %}",
	  "none" },
	{ CTX1, "{{ range(3) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }}",
	  "[0, 1, 2] [1, 4, 7] [5, 3, 1]" },
	{ CTX2, "a\n\t {% if true %}\n\tb\n {%- endif %}\n",
	  "a\n\tb" },
	{ CTX2, "x {% if true %}\n\n{% endif %}\ny",
	  "x \ny" },
	{ CTX2, "{% if true %}a{% endif %}\n{% if true %}b{% endif %}\n\n",
	  "ab" },
	{ CTX2, "{%- if true %}\n  a\n{%- endif %}",
	  "  a" },
	{ CTX2, "  {{- 'a' }}  \n  {{ 'b' -}}  \n  c",
	  "a  \n  bc" },
	{ CTX2, "{# comment\nspanning #}\n  {# x #}  \nz",
	  "  \nz" },
	{ CTX2, "{{ 'a' }}{# c #}\n{{ 'b' }}",
	  "ab" },
	{ CTX2, "a\n\n  {%- set x = 1 %}\n\n  b",
	  "a\n  b" },
	{ CTX2, "{% set x = 1 -%}\n\n   {{ x }}",
	  "1" },
	{ CTX2, "{{ '{{' }} {{ '}}' }} {{ {'a': {'b': 1}} }}",
	  "{{ }} {'a': {'b': 1}}" },
	{ CTX2, "{{ {'a':1}}}",
	  "{'a': 1}" },
	{ CTX2, "{% for m in messages %}\n{%- if m.role == 'user' %}\nU: {{ m.content }}\n{%- elif m.role == 'assistant' %}\nA: {{ m.content }}\n{% endif %}\n{% endfor %}",
	  "U: HiA: <think>\nhmm\n</think>\n\nHello!\nU: again" },
	{ CTX2, "{%- for tool in tools %}\n{{- tool | tojson(indent=4) }}\n{%- endfor %}",
	  "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"f\",\n        \"description\": \"does f\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n                \"x\": {\n                    \"type\": \"integer\"\n                }\n            },\n            \"required\": [\n                \"x\"\n            ]\n        }\n    }\n}" },
	{ CTX2, "{%- for m in messages %}{%- if m.tool_calls %}{%- for tc in m.tool_calls %}{{ tc.function.name }}({{ tc.function.arguments | tojson }}){% endfor %}{% endif %}{% endfor %}",
	  "f({\"x\": 1, \"y\": \"\303\251\"})" },
	{ CTX2, "{% set content = messages[2].content %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1].lstrip('\\n') %}{% endif %}[{{ content }}]{{ messages[2].content.split('<think>')[-1].split('</think>')[0].strip('\\n') }}",
	  "[Hello!]hmm" },
	{ CTX2, "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}{%- if ns.multi_step_tool and message.role == 'user' and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}{{ ns.last_query_index }}",
	  "4" },
	{ CTX2, "{{ messages[0].content if messages[0].role == 'system' else '' }}",
	  "Be brief." },
	{ CTX2, "{% if messages[0].role is defined and messages[0].role in ['system', 'developer'] %}yes{% endif %}",
	  "yes" },
	{ CTX2, "{{ (messages | length) > 2 }} {{ messages | length > 2 }}",
	  "True True" },
	{ CTX2, "{{ not messages[0].role == 'user' }} {{ -1 | abs }} {{ - 2 ** 2 }}",
	  "True 1 4" },
	{ CTX2, "{{ messages[0].role.upper() }}{{ messages[0]['role'].title() }}",
	  "SYSTEMSystem" },
	{ CTX2, "{% macro m(x) -%}\n  [{{ x }}]\n{%- endmacro %}\n{{ m(1) }}\n{{ m(2) }}",
	  "[1]\n[2]" },
	{ CTX2, "{% for i in range(3) %}{% set ns = namespace(a=i) %}{{ ns.a }}{% endfor %}",
	  "012" },
	{ CTX2, "{{ tools[0].function.parameters.properties | items | list }}",
	  "[('x', {'type': 'integer'})]" },
	{ CTX2, "{% for name, spec in tools[0].function.parameters.properties.items() %}{{ name }}:{{ spec.type }}{% endfor %}",
	  "x:integer" },
	{ CTX2, "{{ messages | selectattr('tool_calls', 'defined') | list | length }} {{ messages | selectattr('tool_calls') | list | length }}",
	  "1 1" },
	{ CTX2, "{{ messages | rejectattr('tool_calls', 'undefined') | map(attribute='role') | list }}",
	  "['assistant']" },
	{ CTX2, "{{ messages[-1]['content'] | trim | length }}",
	  "5" },
	{ CTX2, "{{ messages | first | tojson }}",
	  "{\"role\": \"system\", \"content\": \"Be brief.\"}" },
	{ CTX2, "{{ '%-' }}",
	  "%-" },
	{ CTX2, "{% set x %}{% for m in messages %}{{ m.role }},{% endfor %}{% endset %}{{ x | trim(',') }}",
	  "system,user,assistant,tool,user" },
	{ CTX2, "{% set x | upper %}abc{% endset %}{{ x }}",
	  "ABC" },
	{ CTX2, "{{ 'abc' is string and 'abc' is not mapping }}",
	  "True" },
	{ CTX2, "{{ 1 if true else 2 if false else 3 }} {{ [1, 2] if messages }}",
	  "1 [1, 2]" },
	{ CTX2, "{{ messages[1:3] | map(attribute='role') | join }} {{ messages[:1][0].role }} {{ messages[5:] }}",
	  "userassistant system []" },
	{ CTX2, "{% for c in 'a\303\261b' %}[{{ c }}]{% endfor %}{{ 'a\303\261b'[1:] }}{{ 'a\303\261b' | upper }}",
	  "[a][\303\261][b]\303\261bA\303\221B" },
	{ CTX2, "{{ '\360\237\231\202x'[0] }} {{ 'ab\360\237\231\202'[-1] }} {{ '\360\237\231\202ab'[::-1] }}",
	  "\360\237\231\202 \360\237\231\202 ba\360\237\231\202" },
	{ CTX2, "{{ 'a' * -1 }}|{{ [1] * 3 }}",
	  "|[1, 1, 1]" },
	{ CTX2, "{{ 'x' | default }}|{{ none | default }}|{{ nope | default }}|",
	  "x|None||" },
	{ CTX2, "{{ messages[0].get('role') }}{{ messages[0].get('nope', 'd') }}",
	  "systemd" },
	{ CTX2, "{{ tools | length }}{% if tools %}T{% endif %}{% if documents %}D{% endif %}",
	  "1T" },
	{ CTX2, "{%- if add_generation_prompt is defined and add_generation_prompt %}gen{% endif %}",
	  "gen" },
	{ CTX2, "{{ bos_token }}{% for message in messages %}{{ message['role'] | capitalize }}{% endfor %}{{ eos_token }}",
	  "<s>SystemUserAssistantToolUser</s>" },
	{ CTX2, "{{ messages[0]['content'][:3] }}..{{ messages[0]['content'][-3:] }}",
	  "Be ..ef." },
	{ CTX2, "{{ {'a': 1, 'b': 2}['b'] }} {{ {'a': 1}.a }} {{ {'items': 5}['items'] }} {{ {'items': 5}.items() | list }}",
	  "2 1 5 [('items', 5)]" },
	{ CTX2, "{{ true + 1 }} {{ true == 1 }} {{ 1.0 == true }} {{ [true] | sum }}",
	  "2 True True 1" },
	{ CTX2, "{{ 'a,b' .split(',') }}",
	  "['a', 'b']" },
	{ CTX2, "{{ 'x' ~ 3.0 }} {{ 3.10 }} {{ 2.5e-3 }} {{ 1.0e10 }}",
	  "x3.0 3.1 0.0025 10000000000.0" },
	{ CTX2, "{% set x = [1, 2] %}{% set y = x + [3] %}{{ y }}{{ x }}",
	  "[1, 2, 3][1, 2]" },
	{ CTX2, "{{ [] | join(',') }}|{{ [none, 1] | join(',') }}|{{ ['a'] | join }}",
	  "|None,1|a" },
	{ CTX2, "{{ 'A-b c' | title }} {{ 'ABC DEF' | capitalize }}",
	  "A-B C Abc def" },
	{ CTX2, "{%- for m in messages -%}{%- if loop.index0 == 0 -%}first{%- endif -%}{%- endfor -%}",
	  "first" },
	{ CTX2, "{% for x in [1,2,3] %}{{ x }}{% if not loop.last %}, {% endif %}{% endfor %}",
	  "1, 2, 3" },
	{ CTX2, "{{ messages | length is even }}",
	  "False" },
	{ CTX2, "{{ (1, 2) + (3,) }} {{ [1, 2][0:1] }} {{ ('a', 'b') | join }}",
	  "(1, 2, 3) [1] ab" },
	{ CTX2, "{{ ['x', 'y'] | tojson }} {{ ('x', 1) | tojson }} {{ none | tojson }} {{ '\303\251' | tojson }}",
	  "[\"x\", \"y\"] [\"x\", 1] null \"\303\251\"" },
	{ CTX3, "{% macro f() %}{{ x }}{% endmacro %}{% set x = 1 %}{{ f() }}{% set x = 2 %}{{ f() }}",
	  "12" },
	{ CTX3, "{% set x = 'outer' %}{% macro g(x) %}{{ x }}{% endmacro %}{{ g('arg') }}{{ x }}",
	  "argouter" },
	{ CTX3, "{% for i in [1,2] %}{% macro h() %}{{ i }}{% endmacro %}{{ h() }}{% endfor %}",
	  "12" },
	{ CTX3, "{% macro m() %}{% set y = 5 %}{{ y }}{% endmacro %}{{ m() }}{{ y is defined }}",
	  "5False" },
	{ CTX3, "{% macro t(a) %}{{ caller(a * 2) }}|{{ caller(a) }}{% endmacro %}{% call(v) t(3) %}<{{ v }}>{% endcall %}",
	  "<6>|<3>" },
	{ CTX3, "{% set ns = namespace(items=[]) %}{% for i in range(3) %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.items }}",
	  "[0, 1, 2]" },
	{ CTX3, "{% if true %}{% set z = 3 %}{% endif %}{{ z }}",
	  "3" },
	{ CTX3, "{% for m in messages %}{% if loop.first %}{% set first = m %}{% endif %}{% endfor %}{{ first is defined }}",
	  "False" },
	{ CTX3, "{{ messages | map(attribute='role') | select('equalto', 'tool') | list | length }}",
	  "2" },
	{ CTX3, "{{ (messages | selectattr('role', 'in', ['tool', 'user']) | list)[0].content }}",
	  "Weather?" },
	{ CTX3, "{{ messages[2].tool_calls[0].function.arguments | tojson(indent=2) }}",
	  "{\n  \"city\": \"Paris\",\n  \"days\": [\n    1,\n    2\n  ],\n  \"opts\": {\n    \"u\": \"c\"\n  },\n  \"n\": 3,\n  \"f\": 2.5,\n  \"b\": true,\n  \"z\": null\n}" },
	{ CTX3, "{{ messages[2].tool_calls[0].function.arguments | items | list }}",
	  "[('city', 'Paris'), ('days', [1, 2]), ('opts', {'u': 'c'}), ('n', 3), ('f', 2.5), ('b', True), ('z', None)]" },
	{ CTX3, "{{ messages[2].tool_calls[0].function.arguments.days is sequence }} {{ 'x' is sequence }} {{ 3 is sequence }}",
	  "True True False" },
	{ CTX3, "{% for k in messages[2].tool_calls[0].function.arguments %}{{ k }},{% endfor %}",
	  "city,days,opts,n,f,b,z," },
	{ CTX3, "{{ enable_thinking is defined and enable_thinking is false }}",
	  "False" },
	{ CTX3, "{%- set x = 'a' %}{{- x -}}  \n  {%- set y = 'b' -%}  {{ y }}",
	  "ab" },
	{ CTX3, "{% for m in messages %}{{ m.role }}{% if m.role == 'tool' %}{% continue %}{% endif %}!{% endfor %}",
	  "system!user!assistant!tooltoolassistant!user!" },
	{ CTX3, "{% for m in messages|reverse %}{{ loop.index }}{{ m.role[0] }}{% endfor %}",
	  "1u2a3t4t5a6u7s" },
	{ CTX3, "{{ 'a' if 'b' in 'abc' else 'c' }} {{ 'x' ~ ('y' if false) ~ 'z' }}",
	  "a xz" },
	{ CTX3, "{{ {'a': 1} | tojson }}{{ [{'a': [1, {'b': {}}]}] | tojson(indent=1) }}",
	  "{\"a\": 1}[\n {\n  \"a\": [\n   1,\n   {\n    \"b\": {}\n   }\n  ]\n }\n]" },
	{ CTX3, "{{ '\303\251\344\270\255' | tojson }} {{ 'tab\there' | tojson }} {{ '' | tojson }}",
	  "\"\303\251\344\270\255\" \"tab\\there\" \"\"" },
	{ CTX3, "{% set d = {'b': 1, 'a': 2} %}{% for k, v in d | dictsort %}{{ k }}{{ v }}{% endfor %}{% for k, v in d.items() | sort %}{{ k }}{% endfor %}",
	  "a2b1ab" },
	{ CTX3, "{{ messages[-1].content[15:-16] }}",
	  "x" },
	{ CTX3, "{{ messages[0].content | trim | length }} {{ messages[0]['content'].strip() | upper }}",
	  "9 BE BRIEF." },
	{ CTX3, "{%- for tool in tools %}{{ tool.function.name }}{% endfor %}",
	  "get_weather" },
	{ CTX3, "{{ tools | tojson }}",
	  "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}]" },
	{ CTX3, "{% set content = messages[2].content %}{{ content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}",
	  "let me see" },
	{ CTX3, "{{ 'a b c'.split(' ') | join('-') }} {{ 'a-b'.split('-', 1) }} {{ 'x'.split('y') }}",
	  "a-b-c ['a', 'b'] ['x']" },
	{ CTX3, "{{ 1.5 | int }} {{ -1.5 | int }} {{ '  12  ' | int }} {{ '1_000' | int }} {{ true | int }} {{ none | int }}",
	  "1 -1 12 1000 1 0" },
	{ CTX3, "{{ 0.1 + 0.2 }} {{ 1e300 * 1e10 }} {{ 2 ** 62 }} {{ 3.0 // 2 }} {{ 7.5 % 2 }}",
	  "0.30000000000000004 inf 4611686018427387904 1.0 1.5" },
	{ CTX3, "{{ 'abc' < 'abd' }} {{ [1, 2] == [1, 2] }} {{ (1, 2) == [1, 2] }} {{ none == none }} {{ none == false }}",
	  "True True False True False" },
	{ CTX3, "{{ messages[0] is mapping }} {{ messages is sequence }} {{ messages is iterable }} {{ none is iterable }}",
	  "True True True False" },
	{ CTX3, "{{ x | default(none) is none }}",
	  "True" },
	{ CTX3, "{% for i in range(3) %}{{ loop.previtem | default('-') }}{{ loop.nextitem | default('-') }};{% endfor %}",
	  "-1;02;1-;" },
	{ CTX3, "{{ 'Hello' | replace('l', 'L', 1) }} {{ 'Hello'.replace('l', '') }}",
	  "HeLlo Heo" },
	{ CTX3, "{{ [3, 1, 2] | sort | first }} {{ ['b', 'a'] | sort(reverse=true) | join }} {{ messages | map(attribute='role') | unique | sort | join(',') }}",
	  "1 ba assistant,system,tool,user" },
	{ CTX3, "{{ 42 | string | length }} {{ [1, 2] | string }} {{ none | string }} {{ 1.0 | string }}",
	  "2 [1, 2] None 1.0" },
	{ CTX3, "{% for k, v in messages[2].tool_calls[0].function.arguments|items %}{% set v = v | tojson | safe if v is mapping or (v is sequence and v is not string) else v | string %}{{ k }}={{ v }};{% endfor %}",
	  "city=Paris;days=[1, 2];opts={\"u\": \"c\"};n=3;f=2.5;b=True;z=None;" },
	{ CTX3, "{%- if tools and tools is iterable and tools is not mapping %}T{% endif %}{{ messages[1:] | map(attribute='content') | map('trim') | join('|') }}",
	  "TWeather?|<think>\nlet me see\n</think>\n\nChecking.|{\"t\": 21}|second|It is 21.|<tool_response>x</tool_response>" },
	{ CTX3, "{{ messages[2].tool_calls | length }} {{ messages[2].tool_calls[0]['function']['name'] }}",
	  "1 get_weather" },
	{ CTX4, "{%- if true %}a{% endif -%}\n\n",
	  "a" },
	{ CTX4, "\n{%- if true %}a{% endif %}\n",
	  "a" },
	{ CTX4, "{{- 'a' -}}\n\n{{- 'b' -}}",
	  "ab" },
	{ CTX4, "a{#- c -#}b{# d -#}  c  {#- e #}d",
	  "abcd" },
	{ CTX4, "  {# c #}  x",
	  "  x" },
	{ CTX4, "{% raw %}a{% endraw %}{%- raw -%}  b  {%- endraw -%}  c",
	  "abc" },
	{ CTX4, "{{ messages[0].content | trim }}|{{ messages[0].content.strip() }}|{{ messages[0].content.split() }}|{{ messages[0].content | wordcount }}",
	  "wide\302\240space|wide\302\240space|['wide', 'space']|2" },
	{ CTX4, "{{ s.splitlines() }} {{ s | indent(2) }}",
	  "['a', 'b', 'c', 'd', 'e', 'f', 'g'] a\n  b\n  c\n  d\n  e\n  f\n  g" },
	{ CTX4, "{{ s | length }} {{ s | tojson }} {{ [s] }}",
	  "14 \"a\342\200\250b\302\205c\\u000bd\\fe\\u001cf\\r\\ng\" ['a\\u2028b\\x85c\\x0bd\\x0ce\\x1cf\\r\\ng']" },
	{ CTX4, "{% if x is not defined or x is none %}none{% endif %}",
	  "none" },
	{ CTX4, "{{ '\\x41\\u00e9\\U0001F642\\101\\n\\t\\\\' }}",
	  "A\303\251\360\237\231\202A\n\t\\" },
	{ CTX4, "{{ 'a\\\nb' }}",
	  "ab" },
	{ CTX4, "{{ n * 'ab' }} {{ n - 5 }} {{ n / 2 }} {{ n // 2 }} {{ n ** 2 }} {{ n % 2 }} {{ -n }} {{ +n }}",
	  "ababab -2 1.5 1 9 1 -3 3" },
	{ CTX4, "{% for i in range(n) %}{% if loop.index is even %}{{ i }}{% endif %}{% endfor %}",
	  "1" },
	{ CTX4, "{% for a, b in [('x', 1), ('y', 2)] %}{{ a }}{{ b }}{% endfor %}",
	  "x1y2" },
	{ CTX4, "{% for c in 'ab' %}{% for d in 'cd' %}{% if d == 'd' %}{% break %}{% endif %}{{ c }}{{ d }}{% endfor %}{% endfor %}",
	  "acbc" },
	{ CTX4, "{{ [1, 2, 3] | select('>', 1) | list }} {{ [1, 2, 3] | reject('==', 2) | list }} {{ ['a', 'B'] | select('lower') | list }}",
	  "[2, 3] [1, 3] ['a']" },
	{ CTX4, "{{ {'a': 1} | items | first }} {{ 'x' | first }} {{ [] | last }}|{{ none | default('n', true) }}",
	  "('a', 1) x |n" },
	{ CTX4, "{{ messages.0.content[0] }}",
	  "\343\200\200" },
	{ CTX4, "{{ 1 if none }}|{{ (1 if none) is defined }}",
	  "|False" },
	{ CTX4, "{% macro f(a, b) %}{{ a }}{{ b }}{% endmacro %}{{ f(b=2, a=1) }}{{ f(1) }}",
	  "121" },
	{ CTX4, "{{ '\303\251' < 'z' }} {{ 'Z' < 'a' }} {{ 'abc' > 'ab' }}",
	  "False True True" },
	{ CTX4, "{% filter trim | upper %}  hi  {% endfilter %}",
	  "HI" },
	{ CTX4, "{{ [1, 2] | map('string') | map('int') | sum }}",
	  "3" },
	{ CTX4, "{{ 3 | round(1) }} {{ 2.345 | round(2) }} {{ 1234.5 | round(-2) }} {{ -0.5 | round }}",
	  "3 2.35 1200.0 -0.0" },
	{ CTX4, "{{ '%s=%r' | format('k', 'v') }} {{ '%.2f%%' | format(3.14159) }} {{ '%d' | format(3.9) }}",
	  "k='v' 3.14% 3" },
	{ CTX5, "{{ 'a,b,,c'.rsplit(',', 1) }} {{ 'a,b,c'.rsplit(',') }} {{ ' a b '.rsplit() }} {{ 'abab'.rsplit('ab', 1) }} {{ 'x'.rsplit('y', 2) }} {{ 'a::b::c'.rsplit('::', 5) }}",
	  "['a,b,', 'c'] ['a', 'b', 'c'] ['a', 'b'] ['ab', ''] ['x'] ['a', 'b', 'c']" },
	{ CTX5, "{{ 'prefix-x'.removeprefix('prefix-') }} {{ 'x.txt'.removesuffix('.txt') }} {{ 'abc'.removeprefix('z') }} {{ 'ab'.removesuffix('') }}",
	  "x x abc ab" },
};
/* templates Jinja2 refuses too (a type error, an undefined value, a syntax error...) */
static const struct { const char *ctx, *src; } failures[] = {
	{ CTX1, "{{ raise_exception('boom ' ~ 1) }}" },
	{ CTX1, "{{ foo.bar }}" },
	{ CTX1, "{{ messages[10].role }}" },
	{ CTX1, "{{ 1 + 'a' }}" },
	{ CTX1, "{{ undefined_thing + 1 }}" },
	{ CTX1, "{% for x in none %}{% endfor %}" },
	{ CTX1, "{% if %}" },
	{ CTX1, "{% endfor %}" },
	{ CTX1, "{% for x in y %}" },
	{ CTX1, "{{ 'unterminated }}" },
	{ CTX1, "{{ x | nosuchfilter }}" },
	{ CTX1, "{% set d = {'a': 1} %}{% set d.a = 2 %}" },
	{ CTX2, "{{ 'a' + 'b' | upper }} {{ ('a' + 'b') | upper }} {{ 1 + 2 | string }}" },
	{ CTX2, "{{ x.y is defined }}" },
	{ CTX2, "{{ message }}{{ message.content }}" },
	{ CTX2, "{{ 10 // 3 * 3 + 10 % 3 }} {{ 2 ** 3 ** 2 }} {{ 1 - - 1 }} {{ 'a' ~ 1 + 2 }}" },
	{ CTX2, "{{ 1 < 'a' }}" },
	{ CTX2, "{{ 5 / 0 }}" },
	{ CTX2, "{% for x in range(100001) %}{% endfor %}" },
	{ CTX2, "{{ 'a' is nosuchtest }}" },
	{ CTX2, "{{ caller() }}" },
	{ CTX2, "{% break %}" },
	{ CTX3, "{{ messages|length - 1 }} {{ (messages|length) // 2 }} {{ -messages|length }}" },
	{ CTX4, "{% set a = b = 1 %}" },
	{ CTX4, "{% set x = [] %}{{ x.append(1) }}" },
	{ CTX4, "{{ ''.join(['a', 1]) }}" },
};

START_TEST(eval_against_jinja2)
{
	for (size_t i = 0; i < sizeof renders / sizeof *renders; i++)
		expect_render(renders[i].src, renders[i].ctx, renders[i].out);
}
END_TEST

START_TEST(eval_failures)
{
	for (size_t i = 0; i < sizeof failures / sizeof *failures; i++)
		expect_error(failures[i].src, failures[i].ctx, "test: line ");
}
END_TEST

START_TEST(eval_messages)
{
	/* raise_exception's message, verbatim, with the line */
	expect_error("\n\n{{ raise_exception('Roles must alternate') }}", NOCTX,
		     "test: line 3: Roles must alternate");
	expect_error("{{ foo.bar }}", NOCTX, "'foo' is undefined");
	expect_error("{{ messages[0]['role'] }}", NOCTX, "'list object' has no element 0");
	expect_error("{{ 'a' + 1 }}", NOCTX, "unsupported operand type(s) for +: 'str' and 'int'");
	expect_error("{% for x in 5 %}{% endfor %}", NOCTX, "'int' object is not iterable");
	expect_error("{{ x | frob }}", NOCTX, "no filter named 'frob'");
	/* transformers' {% generation %} marks assistant text; it renders its body */
	expect_render("a{% generation %}b{{ 1 }}{% endgeneration %}c", NOCTX, "ab1c");
	/* an unknown filter in a branch never taken costs nothing */
	expect_render("{% if false %}{{ x | frob }}{% endif %}ok", NOCTX, "ok");
}
END_TEST

START_TEST(eval_context)
{
	/* variables from the context, including overrides of the defaults */
	expect_render("{{ bos_token }}|{{ add_generation_prompt }}|{{ tools | length }}|{{ documents[0].t }}",
		      "{\"messages\": [], \"bos_token\": \"<B>\", \"add_generation_prompt\": false,"
		      " \"tools\": [1, 2], \"documents\": [{\"t\": \"d\"}]}", "<B>|False|2|d");
	/* JSON numbers: whole ones are ints, others floats */
	expect_render("{{ a }} {{ b }} {{ c }} {{ d | tojson }}",
		      "{\"a\": 3, \"b\": 2.5, \"c\": 1e300, \"d\": [1, 0.1, null, true]}",
		      "3 2.5 1e+300 [1, 0.1, null, true]");
	/* strftime_now sees the pinned time */
	expect_render("{{ strftime_now('%d %b %Y %H:%M') }}", NOCTX, "26 Jul 2024 12:00");
}
END_TEST

/* ---- limits --------------------------------------------------------------------------- */
START_TEST(limits)
{
	expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NOCTX, "nested deeper than");
	expect_error("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
		     NOCTX, "would exceed");
	/* a runaway loop, under a small step limit (the default is 10 million) */
	tpl_env e = { .name = "test" };
	char err[MH_ERRLEN] = "";
	e.lim = tpl_default_limits;
	e.lim.steps = 100000;
	e.err = err;
	e.errlen = sizeof err;
	const char *loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
	if (setjmp(e.jb) == 0) {
		tpl_tokens t = { 0 };
		tpl_lex(&e, loop, strlen(loop), &t);
		tpl_render_tree(&e, tpl_parse(&e, &t), v_dict(&e), 0);
		ck_abort_msg("the loop ran to its end");
	}
	tpl_arena_free(&e);
	ck_assert_str_eq(err, "test: line 1: the template ran for more than 100000 steps");
	ck_assert_int_eq((int)tpl_default_limits.steps, 10000000);
	expect_error("{{ range(100001) | length }}", NOCTX, "Range too big");
	expect_error("{{ 'ab' * 100000000 }}", NOCTX, "would exceed");
	char *deep = malloc(40000);
	strcpy(deep, "{{ ");
	for (int i = 0; i < 3000; i++)
		strcat(deep, "[");
	strcat(deep, "1");
	for (int i = 0; i < 3000; i++)
		strcat(deep, "]");
	strcat(deep, " }}");
	expect_error(deep, NOCTX, "nested too deeply");
	strcpy(deep, "");
	for (int i = 0; i < 3000; i++)
		strcat(deep, "{% if 1 %}");
	expect_error(deep, NOCTX, "nested too deeply");
	strcpy(deep, "{{ ");
	for (int i = 0; i < 3000; i++)
		strcat(deep, "not ");
	strcat(deep, "1 }}");
	expect_error(deep, NOCTX, "nested too deeply");
	free(deep);
}
END_TEST

/* ---- the API ---------------------------------------------------------------------------- */
START_TEST(api_from_dir)
{
	char err[MH_ERRLEN];
	char *dir = tu_tmpdir();
	/* no template: the error names the file */
	tu_write(dir, "tokenizer_config.json", "{\"bos_token\": \"<s>\"}");
	ck_assert_ptr_null(chat_template_from_dir(dir, err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, "tokenizer_config.json"));
	ck_assert_ptr_nonnull(strstr(err, "no chat template"));
	/* a list of named templates: "default" wins; AddedToken objects as special tokens */
	tu_write(dir, "tokenizer_config.json",
		 "{\"bos_token\": {\"content\": \"<B>\", \"lstrip\": false}, \"eos_token\": \"<E>\","
		 " \"pad_token\": null, \"additional_special_tokens\": [\"<x>\"],"
		 " \"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
		 " {\"name\": \"default\", \"template\": \"{{ bos_token }}{{ messages[0].content }}"
		 "{{ eos_token }}{{ pad_token is defined }}{{ additional_special_tokens }}\"}]}");
	mh_chat_template *t = chat_template_from_dir(dir, err, sizeof err);
	ck_assert_msg(t != NULL, "%s", err);
	cJSON *ctx = cJSON_Parse("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
	char *out = chat_template_render(t, ctx, 0, err, sizeof err);
	ck_assert_str_eq(out, "<B>hi<E>False['<x>']");
	free(out);
	ck_assert_str_eq(chat_template_eos(t), "<E>");
	/* the context overrides the file's tokens */
	cJSON_AddStringToObject(ctx, "eos_token", "!");
	out = chat_template_render(t, ctx, 0, err, sizeof err);
	ck_assert_str_eq(out, "<B>hi!False['<x>']");
	free(out);
	chat_template_free(t);
	/* the first when none is "default"; a syntax error names the file and line */
	tu_write(dir, "tokenizer_config.json",
		 "{\"chat_template\": [{\"name\": \"a\", \"template\": \"\\n{% if %}\"}]}");
	ck_assert_ptr_null(chat_template_from_dir(dir, err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, "tokenizer_config.json: chat_template: line 2: syntax error"));
	/* a template file, with the directory's special tokens; eos from the markers it writes */
	tu_write(dir, "tokenizer_config.json", "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
	tu_write(dir, "t.jinja", "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}");
	char path[4200];
	snprintf(path, sizeof path, "%s/t.jinja", dir);
	t = chat_template_from_file(path, dir, err, sizeof err);
	ck_assert_msg(t != NULL, "%s", err);
	ck_assert_str_eq(chat_template_eos(t), "<|im_end|>");
	out = chat_template_render(t, ctx, 0, err, sizeof err);
	ck_assert_str_eq(out, "<s><|im_start|>hi<|im_end|>");
	free(out);
	chat_template_free(t);
	/* transformers 4.43+ may save the template beside the config */
	tu_write(dir, "chat_template.jinja", "[{{ bos_token }}{{ messages | length }}]");
	t = chat_template_from_dir(dir, err, sizeof err);
	ck_assert_msg(t != NULL, "%s", err);
	out = chat_template_render(t, ctx, 0, err, sizeof err);
	ck_assert_str_eq(out, "[<s>1]");
	free(out);
	chat_template_free(t);
	ck_assert_ptr_null(chat_template_from_file("/nonexistent/t.jinja", NULL, err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/t.jinja"));
	cJSON_Delete(ctx);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

/* ---- the reference templates ------------------------------------------------------------- */
/* Every case of a templates.json file; the number of templates. */
static int run_fixtures(const char *path)
{
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	struct stat st;
	ck_assert_int_eq(fstat(fileno(f), &st), 0);
	char *text = malloc((size_t)st.st_size + 1);
	ck_assert_int_eq(fread(text, 1, (size_t)st.st_size, f), (size_t)st.st_size);
	text[st.st_size] = 0;
	fclose(f);
	cJSON *root = cJSON_Parse(text);
	free(text);
	ck_assert_ptr_nonnull(root);
	int cases = 0, templates = 0;
	const cJSON *tpl;
	cJSON_ArrayForEach(tpl, cJSON_GetObjectItem(root, "templates")) {
		char err[MH_ERRLEN];
		const char *src = cJSON_GetObjectItem(tpl, "template")->valuestring;
		mh_chat_template *t = chat_template_from_string(src, strlen(src), tpl->string, NULL, err, sizeof err);
		ck_assert_msg(t != NULL, "%s", err);
		templates++;
		const cJSON *c;
		int n = 0;
		cJSON_ArrayForEach(c, cJSON_GetObjectItem(tpl, "cases")) {
			const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
			const cJSON *want = cJSON_GetObjectItem(c, "expected");
			const cJSON *fail = cJSON_GetObjectItem(c, "error");
			cJSON *ctx = cJSON_Duplicate(c, 1);
			cJSON_DeleteItemFromObject(ctx, "name");
			cJSON_DeleteItemFromObject(ctx, "expected");
			cJSON_DeleteItemFromObject(ctx, "error");
			char *out = chat_template_render(t, ctx, pinned_now(), err, sizeof err);
			if (want) {
				ck_assert_msg(out != NULL, "%s/%s: %s", tpl->string, name, err);
				ck_assert_msg(strcmp(out, want->valuestring) == 0,
					      "%s/%s:\n got  [%s]\n want [%s]", tpl->string, name, out,
					      want->valuestring);
			} else {
				ck_assert_msg(out == NULL, "%s/%s: rendered, expected '%s'", tpl->string,
					      name, fail->valuestring);
				ck_assert_msg(strstr(err, fail->valuestring) != NULL,
					      "%s/%s: '%s' lacks '%s'", tpl->string, name, err,
					      fail->valuestring);
			}
			free(out);
			cJSON_Delete(ctx);
			n++;
		}
		ck_assert_int_ge(n, 9);
		cases += n;
		chat_template_free(t);
	}
	cJSON_Delete(root);
	printf("%s: %d templates, %d cases, all as Jinja2 renders them\n", path, templates, cases);
	return templates;
}

/* The templates whose licences let the tarball carry them (Qwen2.5, Mistral
 * Nemo, Phi-3.5, DeepSeek-R1-Distill) */
START_TEST(fixtures_open)
{
	char *path = tu_data_path("fixtures/chat/templates-open.json");
	ck_assert_int_eq(run_fixtures(path), 4);
	free(path);
}
END_TEST

/* Qwen3-Coder's template, XML tool calls from tool arguments as objects
 * (and as strings), over conversations written for this project */
START_TEST(fixtures_qwen3_coder)
{
	char *path = tu_data_path("fixtures/chat/qwen3-coder.json");
	ck_assert_int_eq(run_fixtures(path), 1);
	free(path);
}
END_TEST

/* All eight, Llama 3.1/3.2, Gemma 2 and Hermes 2 Pro too, from ../shared */
START_TEST(fixtures_all)
{
	char *path = tu_data_optional("fixtures/chat/templates.json");
	if (!path)
		return;
	ck_assert_int_eq(run_fixtures(path), 8);
	free(path);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("template");
	TCase *tc = tcase_create("lexer");
	tcase_add_test(tc, lex_whitespace);
	tcase_add_test(tc, lex_tokens);
	suite_add_tcase(s, tc);
	tc = tcase_create("parser");
	tcase_add_test(tc, parse_precedence);
	tcase_add_test(tc, parse_errors);
	suite_add_tcase(s, tc);
	tc = tcase_create("evaluator");
	tcase_set_timeout(tc, 300); /* seconds of CPU are few, but the machine may be busy */
	tcase_add_test(tc, eval_against_jinja2);
	tcase_add_test(tc, eval_failures);
	tcase_add_test(tc, eval_messages);
	tcase_add_test(tc, eval_context);
	tcase_add_test(tc, limits);
	suite_add_tcase(s, tc);
	tc = tcase_create("api");
	tcase_add_test(tc, api_from_dir);
	tcase_add_test(tc, fixtures_open);
	tcase_add_test(tc, fixtures_qwen3_coder);
	tcase_add_test(tc, fixtures_all);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
