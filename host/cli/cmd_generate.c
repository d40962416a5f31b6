/* SPDX-License-Identifier: MIT */
/* cmd_generate.c - `modelhost generate`: prompt in one batched pass, then
 * sample token by token through the KV cache, streaming text as it comes;
 * with -i, a prompt per line of stdin, and plugins reloaded on request. */
#include "cli/cli.h"
#include "model/modeldir.h"
#include "plugin/paths.h"
#include "text/constrain.h"
#include "text/sampler.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
	"Usage: modelhost generate [-m DIR] [-p TEXT | --ids 1,2,3] [-n N] [OPTIONS]\n"
	"Generate text.  Without -m, the bundled model (stories260K) writes a story.\n\n"
	"  -m, --model DIR         Hugging Face model directory\n"
	"  -p, --prompt TEXT       prompt (default: empty, i.e. just BOS)\n"
	"      --ids LIST          prompt as token ids instead of text\n"
	"      --tokenizer FILE    tokenizer.json to use (default: DIR/tokenizer.json;\n"
	"                          without one, ids are printed instead of text)\n"
	"  -n, --n-predict N       tokens to generate (default: until the text is 64\n"
	"                          tokens long, prompt included, BOS not counted;\n"
	"                          64 more when the prompt is longer)\n"
	"      --temp T            temperature, 0 = greedy (default 0.8)\n"
	"      --top-k K           keep the K most likely tokens, 0 = off (default 40)\n"
	"      --top-p P           nucleus sampling, 1 = off (default 0.95)\n"
	"      --min-p P           drop tokens below P x the best one, 0 = off (default 0.05)\n"
	"      --repeat-penalty R  penalise repeated tokens, 1 = off (default 1)\n"
	"      --repeat-last-n N   how far back the penalty looks (default 64, 0 = all)\n"
	"      --seed S            random seed for reproducible runs (default: time)\n"
	"      --json              the text is one JSON object (held to it token by token)\n"
	"      --json-schema FILE  one JSON object that the JSON Schema in FILE allows\n"
	"  -t, --threads N         worker threads (default: all cores)\n"
	"  -c, --ctx-size N        KV cache positions (default: the model's context)\n"
	"      --plugin NAME       force a plugin; --plugin-dir DIR adds a plugin directory\n"
	"  -i, --interactive       read prompts from stdin, one per line (token ids when\n"
	"                          there is no tokenizer); /reload (or SIGHUP) rescans the\n"
	"                          plugin directories and moves the model to the plugin\n"
	"                          that should now serve it; /plugins, /quit\n\n"
	"Generation stops at an end-of-sequence token, after N tokens, when the\n"
	"context is full, or with --json when the object closes.  A line of timings\n"
	"goes to stderr.\n";

enum { OPT_HELD_JSON = OPT_FIRST_COMMAND_OPT, OPT_SCHEMA };

typedef struct {
	const char *model, *prompt, *ids, *tokenizer;
	int json;               /* --json, or --json-schema FILE */
	const char *schema;
	int n_predict;
	mh_sampler_params sp;
	int seed_given;
	int interactive;
} gen_opts;

static int gen_opt(void *ctx, int c, const char *arg)
{
	gen_opts *g = ctx;
	const char *cmd = "generate";
	switch (c) {
	case 'm': g->model = arg; return 0;
	case 'i': g->interactive = 1; return 0;
	case 'p': g->prompt = arg; return 0;
	case OPT_IDS: g->ids = arg; return 0;
	case OPT_TOKENIZER: g->tokenizer = arg; return 0;
	case OPT_HELD_JSON: g->json = 1; return 0;
	case OPT_SCHEMA: g->json = 1; g->schema = arg; return 0;
	case 'n': return cli_int(cmd, "-n", arg, 0, 1 << 24, &g->n_predict);
	}
	int r = cli_sampling_opt(cmd, &g->sp, &g->seed_given, c, arg);
	return r == 1 ? 0 : -1;
}

static int parse_generate(cli_common *o, gen_opts *g, int argc, char **argv)
{
	static const struct option lo[] = {
		COMMON_LONG_OPTIONS,
		{ "model", required_argument, NULL, 'm' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "n-predict", required_argument, NULL, 'n' },
		{ "ids", required_argument, NULL, OPT_IDS },
		{ "tokenizer", required_argument, NULL, OPT_TOKENIZER },
		SAMPLING_LONG_OPTIONS,
		{ "json", no_argument, NULL, OPT_HELD_JSON },
		{ "json-schema", required_argument, NULL, OPT_SCHEMA },
		{ "interactive", no_argument, NULL, 'i' },
		{ 0 },
	};
	int status = cli_parse_dir(o, argc, argv, "m:p:n:i", lo, gen_opt, g, help, NULL);
	if (status != CLI_CONTINUE)
		return status;
	if (g->prompt && g->ids)
		return cli_fail("generate: give either -p or --ids, not both");
	if (g->interactive && (g->prompt || g->ids))
		return cli_fail("generate: --interactive reads its prompts from stdin: drop -p/--ids");
	const char *bad = sampler_params_check(&g->sp);
	if (bad)
		return cli_fail("generate: %s", bad);
	return CLI_CONTINUE;
}

/* The prompt as ids: --ids, or the text through the tokenizer, or BOS. */
static int prompt_ids(const gen_opts *g, mh_tokenizer *tk, const mh_session *s, int32_t **ids,
		      size_t *n)
{
	if (g->ids) {
		if (mh_parse_ids(g->ids, ids, n) != 0)
			return cli_fail("generate: --ids '%s' is not a comma-separated list of token ids",
					g->ids);
		return 0;
	}
	if (tk) {
		const char *p = g->prompt ? g->prompt : "";
		size_t len = strlen(p), ok = tokenizer_utf8_valid_prefix(p, len);
		if (ok < len)
			return cli_fail("generate: the prompt is not valid UTF-8 (byte %zu)", ok + 1);
		/* stops past the context: a long prompt costs little more */
		int rc = tokenizer_encode_n(tk, p, len, 1, (size_t)s->info->n_ctx, ids, n);
		if (rc == TOKENIZER_ETOOLONG)
			return cli_fail("generate: the prompt is longer than the context (%d tokens)",
					s->info->n_ctx);
		if (rc != 0)
			return cli_fail("generate: tokenizing the prompt: %s", tokenizer_strerror(rc));
		if (*n > 0)
			return 0;
		free(*ids);
	} else if (g->prompt) {
		return cli_fail("generate: %s has no tokenizer.json: give --tokenizer FILE or --ids",
				s->dir->path);
	}
	if (s->info->bos_id < 0)
		return cli_fail("generate: the model has no BOS token: give a prompt");
	*ids = malloc(sizeof **ids);
	if (!*ids)
		return cli_fail("out of memory");
	(*ids)[0] = s->info->bos_id;
	*n = 1;
	return 0;
}

#define DEFAULT_LENGTH 64

static int hist_is_bos(const mh_session *s, int32_t id)
{
	return s->info->bos_id >= 0 && id == s->info->bos_id;
}

static int emit(const char *text, size_t len)
{
	if (len && fwrite(text, 1, len, stdout) != len)
		return -1;
	return fflush(stdout);
}

/* --json: the form a reply is held to, and the vocabulary's pieces. */
typedef struct held {
	cn_grammar *g;
	cn_vocab *v;
} held;

/* --json / --json-schema FILE: 0, or 1 after printing why not. */
static int held_open(const gen_opts *g, const mh_tokenizer *tk, held *h)
{
	char err[MH_ERRLEN];
	cJSON *schema = NULL;
	if (!tk)
		return cli_fail("generate: --json needs the model's tokenizer.json (or --tokenizer)");
	if (g->schema) {
		char *text = mh_read_file(g->schema, NULL, err);
		if (!text)
			return cli_fail("generate: --json-schema: %s", err);
		const char *end = NULL;
		schema = cJSON_ParseWithOpts(text, &end, 1);
		if (!schema) {
			cli_fail("generate: --json-schema %s: not JSON (byte %td)", g->schema,
				 end ? end - text + 1 : (ptrdiff_t)0);
			free(text);
			return 1;
		}
		free(text);
	}
	h->g = cn_grammar_json(schema, err, sizeof err);
	cJSON_Delete(schema);
	if (!h->g)
		return g->schema ? cli_fail("generate: --json-schema %s: %s", g->schema, err)
				 : cli_fail("generate: --json: %s", err);
	if (!(h->v = cn_vocab_new(tk)))
		return cli_fail("out of memory");
	return 0;
}

/* One generation: the prompt in one batched pass, then token by token from
 * sm (held to h's form, if any), streamed to stdout; a line of timings on
 * stderr.  0, or 1 after printing the error; -1 when stdout cannot be
 * written. */
static int generate_once(mh_session *s, mh_tokenizer *tk, mh_sampler *sm, const held *h,
			 int n_predict, const int32_t *prompt, size_t n_prompt)
{
	char err[MH_ERRLEN] = "";
	if (n_predict < 0) { /* a short text: 64 tokens after BOS, as llama2.c's steps */
		size_t have = n_prompt - (n_prompt && hist_is_bos(s, prompt[0]));
		n_predict = have < DEFAULT_LENGTH ? (int)(DEFAULT_LENGTH - have) : DEFAULT_LENGTH;
	}
	if (n_prompt > (size_t)s->info->n_ctx)
		return cli_fail("generate: the prompt has %zu tokens, more than the context length of %d",
				n_prompt, s->info->n_ctx);
	int rc = 1;
	size_t cap = n_prompt + (size_t)n_predict;
	int32_t *hist = malloc(cap * sizeof *hist), vocab = s->info->vocab_size;
	float *logits = malloc((size_t)vocab * sizeof *logits);
	float *scratch = h ? malloc((size_t)vocab * sizeof *scratch) : NULL;
	mh_constraint *cn = h ? constraint_new(h->v, h->g) : NULL;
	mh_detok_stream *ds = tk ? tokenizer_stream_new(tk, 1) : NULL;
	if (!hist || !logits || (tk && !ds) || (h && (!scratch || !cn))) {
		cli_fail("out of memory");
		goto out;
	}
	memcpy(hist, prompt, n_prompt * sizeof *hist);
	session_reset(s);
	/* echo the prompt, then stream the continuation */
	size_t len;
	for (size_t i = 0; ds && i < n_prompt; i++) {
		const char *piece = tokenizer_stream_push(ds, hist[i], &len);
		if (emit(piece, len) != 0)
			goto write_error;
	}
	double t0 = mh_now();
	if (session_forward(s, hist, (int)n_prompt, logits, MH_LOGITS_LAST, err) != 0) {
		cli_fail("%s", err);
		goto out;
	}
	double t1 = mh_now();
	size_t n = n_prompt, generated = 0;
	const char *stop = NULL;
	while (!stop) {
		if (generated == (size_t)n_predict) {
			stop = "length";
			break;
		}
		int32_t next = cn ? constraint_sample(cn, sm, logits, scratch, vocab, hist, n, s->eos,
						      s->n_eos)
				  : sampler_sample(sm, logits, hist, n);
		if (next < 0) {
			cli_fail("generate: no token of the vocabulary can continue the JSON");
			goto out;
		}
		hist[n++] = next;
		generated++;
		if (session_is_eos(s, next)) {
			stop = "eos";
			break;
		}
		if (cn && constraint_feed(cn, next) == 1)
			stop = "the JSON is complete"; /* printed, then the loop ends */
		if (ds) {
			const char *piece = tokenizer_stream_push(ds, next, &len);
			if (emit(piece, len) != 0)
				goto write_error;
		} else if (printf("%s%d", generated > 1 ? " " : "", next) < 0 || fflush(stdout) != 0) {
			goto write_error;
		}
		if (stop || generated == (size_t)n_predict)
			continue;
		if (s->pos >= s->info->n_ctx) {
			stop = "context full";
			break;
		}
		if (session_forward(s, &next, 1, logits, MH_LOGITS_LAST, err) != 0) {
			cli_fail("%s", err);
			goto out;
		}
	}
	double t2 = mh_now();
	if (ds) {
		const char *rest = tokenizer_stream_flush(ds, &len);
		if (emit(rest, len) != 0)
			goto write_error;
	}
	if (emit("\n", 1) != 0)
		goto write_error;
	fprintf(stderr, "modelhost: prompt %zu tokens (%.1f t/s), generated %zu tokens", n_prompt,
		n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9), generated);
	if (generated > 1) /* the first comes from the prompt's pass */
		fprintf(stderr, " (%.1f t/s)", (generated - 1) / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
	fprintf(stderr, ", stopped: %s\n", stop);
	rc = 0;
	goto out;
write_error:
	cli_stdout_failed("generate");
	rc = -1;
out:
	tokenizer_stream_free(ds);
	constraint_free(cn);
	free(scratch);
	free(logits);
	free(hist);
	return rc;
}

/* ---- interactive mode: a prompt per line, plugins swapped without a restart */

static int interactive(cli_common *o, mh_registry *r, const char *dir, mh_session **s,
		       mh_tokenizer *tk, mh_sampler **sm, const held *h, int n_predict)
{
	char b[600];
	fprintf(stderr,
		"modelhost: %s served by %s; a prompt per line (%s), or /reload, "
		"/plugins, /quit; SIGHUP reloads too\n",
		dir, cli_served_by(*s, b, sizeof b), tk ? "text" : "token ids, e.g. 1,2,3");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0, refused = 0, lineno = 0, tty = isatty(STDIN_FILENO);
	for (;;) {
		if (tty)
			fputs("> ", stderr);
		if ((len = getline(&line, &cap, stdin)) < 0)
			break;
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (cli_take_hup())
			cli_reload(o, r, dir, s);
		if (strcmp(line, "/quit") == 0)
			break;
		if (strcmp(line, "/reload") == 0) {
			cli_reload(o, r, dir, s);
			continue;
		}
		if (strcmp(line, "/plugins") == 0) {
			cli_print_plugins(stdout, r);
			fflush(stdout);
			continue;
		}
		if (line[0] == '/') {
			cli_fail("generate: unknown command '%s' (/reload, /plugins, /quit)", line);
			refused = 1;
			continue;
		}
		if (!tk && !*line)
			continue;
		int32_t *prompt;
		size_t n_prompt;
		if (!tk && mh_parse_ids(line, &prompt, &n_prompt) != 0) {
			/* without a tokenizer a line is token ids */
			cli_fail("generate: input line %d, '%s', is not a comma-separated list of token "
				 "ids (the model has no tokenizer)", lineno, line);
			refused = 1;
			continue;
		}
		gen_opts one = { .prompt = line };
		if (tk && prompt_ids(&one, tk, *s, &prompt, &n_prompt) != 0) {
			refused = 1;
			continue;
		}
		if (sampler_refit(sm, (*s)->info->vocab_size) != 0) { /* after a reload */
			cli_fail("out of memory");
			free(prompt);
			rc = 1;
			break;
		}
		int g = generate_once(*s, tk, *sm, h, n_predict, prompt, n_prompt);
		free(prompt);
		if (g < 0) {
			rc = 1;
			break;
		}
	}
	free(line);
	return rc ? rc : refused; /* a refused line still fails the run, after the others */
}

int cmd_generate(int argc, char **argv)
{
	cli_common o = { .cmd = "generate" };
	gen_opts g = { .n_predict = -1 };
	sampler_params_default(&g.sp);
	int status = parse_generate(&o, &g, argc, argv);
	if (status != CLI_CONTINUE)
		return status;
	if (g.interactive)
		cli_watch_hup(); /* before the load: an early SIGHUP must not end us */
	char *def = g.model ? NULL : paths_default_model();
	const char *dir = g.model ? g.model : def;
	int rc = 1;
	mh_registry *r = cli_registry(&o);
	mh_session *s = r ? cli_open_model(&o, r, dir) : NULL;
	mh_tokenizer *tk = NULL;
	mh_sampler *sm = NULL;
	held h = { 0 };
	int32_t *prompt = NULL;
	size_t n_prompt = 0;
	if (!s)
		goto out;
	if (cli_tokenizer_if_any(dir, g.tokenizer, &tk) != 0)
		goto out;
	if (!(sm = sampler_new(&g.sp, s->info->vocab_size))) {
		cli_fail("out of memory");
		goto out;
	}
	if (g.json && held_open(&g, tk, &h) != 0)
		goto out;
	if (g.interactive) {
		rc = interactive(&o, r, dir, &s, tk, &sm, g.json ? &h : NULL, g.n_predict);
	} else if (prompt_ids(&g, tk, s, &prompt, &n_prompt) == 0) {
		rc = generate_once(s, tk, sm, g.json ? &h : NULL, g.n_predict, prompt, n_prompt) == 0
			     ? 0
			     : 1;
	}
out:
	cn_grammar_free(h.g);
	cn_vocab_free(h.v);
	free(prompt);
	tokenizer_free(tk);
	sampler_free(sm);
	session_close(s);
	registry_free(r);
	free(def);
	return rc;
}
