/* model.c - the Llama forward pass over a KV cache, and the plugin
 * descriptor.  The host's decoder_forward runs the layers over the prompt in
 * chunks (matrix-matrix products) and then one token at a time. */
#include "llama.h"

#include <math.h>

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	llama_config cfg;
	if (llama_read_config(svc, dir, n_ctx, &cfg) != 0)
		return NULL;
	mh_model *m = llama_alloc(svc, dir, &cfg);
	if (m && llama_load_weights(m) != 0) {
		llama_free(m);
		return NULL;
	}
	return m;
}

static const mh_model_info *info(const mh_model *m)
{
	return &m->info;
}

static void reset(mh_model *m)
{
	(void)m; /* positions past the caller's pos are never read */
}

static void layer_forward(mh_model *m, int l, int n, int pos)
{
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	const llama_layer *L = &m->layers[l];
	mh_decoder *b = m->dec;
	float *k = mh_kv_k(b->kv, l) + mh_kv_at(b->kv, pos);
	float *v = mh_kv_v(b->kv, l) + mh_kv_at(b->kv, pos);

	svc->rmsnorm(b->xn, b->x, L->attn_norm, n, c->dim, eps);
	svc->matmul_n((float *[]){ b->q, k, v }, b->xn,
		      (const mh_tensor *[]){ L->wq, L->wk, L->wv },
		      (const float *[]){ L->bq, L->bk, L->bv }, 3, n);
	svc->rope_apply(m->rope, b->q, n, c->n_heads, pos);
	svc->rope_apply(m->rope, k, n, c->n_kv_heads, pos);
	svc->attention_kv(b->att, b->q, b->kv, l, n, pos, c->n_heads, c->head_dim, 0,
			  1.0f / sqrtf((float)c->head_dim));
	svc->matmul(b->tmp, b->att, L->wo, L->bo, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);

	svc->rmsnorm(b->xn, b->x, L->ffn_norm, n, c->dim, eps);
	svc->matmul_n((float *[]){ b->gate, b->up }, b->xn,
		      (const mh_tensor *[]){ L->w_gate, L->w_up },
		      (const float *[]){ L->b_gate, L->b_up }, 2, n);
	svc->silu_mul(b->gate, b->up, (size_t)n * c->ffn_dim);
	svc->matmul(b->tmp, b->gate, L->w_down, L->b_down, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);
}

/* The final norm and the output projection of n rows of x. */
static void head(mh_model *m, float *logits, const float *x, int n)
{
	m->svc->rmsnorm(m->dec->xn, x, m->norm, n, m->cfg.hp.dim, m->cfg.eps);
	m->svc->matmul(logits, m->dec->xn, m->lm_head, NULL, n);
}

static int forward(mh_model *m, const int32_t *ids, int n, int pos, float *logits, int flags)
{
	const mh_decoder_step step = { sizeof step, m, m->embed, layer_forward, head };
	return m->svc->decoder_forward(m->dec, m->dir, &step, ids, n, pos, logits, flags);
}

static const char *const architectures[] = { "LlamaForCausalLM", "llama", NULL };

MODELHOST_PLUGIN_DEFINE("llama", "1.0.0",
			"Llama family: GQA/MQA, tied or untied head, linear/dynamic/llama3 rope",
			"MIT", architectures,
			.load = load,
			.free = llama_free,
			.info = info,
			.forward = forward,
			.reset = reset);
