/* SPDX-License-Identifier: MIT */
/* fuzz_template.c - libFuzzer target: any bytes as a chat template, parsed
 * and rendered over a small conversation with tighter limits than the
 * host's, so that runaway templates end quickly.  Parsing and rendering must
 * either succeed or fail with one line naming the template; never crash,
 * hang or exhaust memory.
 * Build and run: tests/fuzz/run.sh template [SECONDS]. */
#include "text/template/tpl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static val str(tpl_env *e, const char *s) { return v_cstr(e, s); }

static val message(tpl_env *e, const char *role, const char *content)
{
	val m = v_dict(e);
	dict_set(e, m.d, str(e, "role"), str(e, role));
	dict_set(e, m.d, str(e, "content"), str(e, content));
	return m;
}

static val context(tpl_env *e)
{
	val vars = v_dict(e), msgs = v_list(e), tools = v_list(e), tool = v_dict(e);
	list_push(e, msgs.l, message(e, "system", "Be brief."));
	list_push(e, msgs.l, message(e, "user", " Hi\n{{ x }} \xc3\xa9"));
	list_push(e, msgs.l, message(e, "assistant", "<think>a</think>ok"));
	list_push(e, msgs.l, message(e, "user", ""));
	dict_set(e, tool.d, str(e, "name"), str(e, "f"));
	dict_set(e, tool.d, str(e, "parameters"), v_dict(e));
	list_push(e, tools.l, tool);
	dict_set(e, vars.d, str(e, "messages"), msgs);
	dict_set(e, vars.d, str(e, "tools"), tools);
	dict_set(e, vars.d, str(e, "add_generation_prompt"), v_bool(1));
	dict_set(e, vars.d, str(e, "bos_token"), str(e, "<s>"));
	dict_set(e, vars.d, str(e, "eos_token"), str(e, "</s>"));
	return vars;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static tpl_env e;
	static char err[512];
	memset(&e, 0, sizeof e);
	e.lim = (tpl_limits){ .memory = 64 << 20, .output = 1 << 20, .steps = 200000, .depth = 100 };
	e.name = "fuzz";
	e.err = err;
	e.errlen = sizeof err;
	err[0] = 0;
	if (setjmp(e.jb)) {
		if (strncmp(err, "fuzz: ", 6) != 0 || strchr(err, '\n'))
			abort(); /* one line, naming the template */
		tpl_arena_free(&e);
		return 0;
	}
	tpl_tokens t = { 0 };
	tpl_lex(&e, (const char *)data, size, &t);
	node *root = tpl_parse(&e, &t);
	val out = tpl_render_tree(&e, root, context(&e), 1721995200);
	if (out.s.n > e.lim.output)
		abort();
	tpl_arena_free(&e);
	return 0;
}
