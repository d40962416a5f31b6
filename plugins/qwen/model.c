/* SPDX-License-Identifier: MIT */
/* model.c - the Qwen2/Qwen3 layer and head, and the plugin descriptor.  The
 * host's decoder scaffold does the rest: prompts in chunks (matrix-matrix
 * products), several sequences in one pass, each row's position, cache and
 * attention (decoder_attention). */
#include "qwen.h"

#include <math.h>

/* Rows x[0..n) of the current chunk through layer l. */
static int layer(mh_model *m, int l, int n)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	const qwen_layer *L = &m->layers[l];
	mh_decoder *b = m->base.dec;

	svc->rmsnorm(b->xn, b->x, L->attn_norm, n, c->dim, eps);
	svc->matmul_n((float *[]){ b->q, b->k, b->v }, b->xn,
		      (const mh_tensor *[]){ L->wq, L->wk, L->wv },
		      (const float *[]){ L->bq, L->bk, L->bv }, 3, n);
	if (m->cfg.qwen3) { /* per-head RMSNorm on q and k, before rotary */
		svc->rmsnorm(b->q, b->q, L->q_norm, n * c->n_heads, c->head_dim, eps);
		svc->rmsnorm(b->k, b->k, L->k_norm, n * c->n_kv_heads, c->head_dim, eps);
	}
	svc->decoder_attention(b, l, m->base.rope, 0, 1.0f / sqrtf((float)c->head_dim));
	svc->matmul(b->tmp, b->att, L->wo, L->bo, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);

	svc->rmsnorm(b->xn, b->x, L->ffn_norm, n, c->dim, eps);
	svc->matmul_n((float *[]){ b->gate, b->up }, b->xn,
		      (const mh_tensor *[]){ L->w_gate, L->w_up }, NULL, 2, n);
	svc->silu_mul(b->gate, b->up, (size_t)n * c->ffn_dim);
	svc->matmul(b->tmp, b->gate, L->w_down, NULL, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);
	return 0;
}

/* The final norm and the output projection of n rows of x. */
static void head(mh_model *m, float *logits, const float *x, int n)
{
	m->base.svc->rmsnorm(m->base.dec->xn, x, m->norm, n, m->cfg.hp.dim, m->cfg.eps);
	m->base.svc->matmul(logits, m->base.dec->xn, m->lm_head, NULL, n);
}

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	mh_model *m = qwen_load(svc, dir, n_ctx);
	if (m) {
		m->base.step.embed = m->embed;
		m->base.step.layer_rows = layer;
		m->base.step.head = head;
	}
	return m;
}

static const char *const architectures[] = { "Qwen2ForCausalLM", "qwen2", "Qwen3ForCausalLM",
					     "qwen3", NULL };

MODELHOST_PLUGIN_DEFINE("qwen", "1.0.0",
			"Qwen2 (q/k/v biases) and Qwen3 (q/k norms, explicit head_dim)",
			"MIT", architectures,
			.load = load,
			MH_DECODER_MODEL_ENTRIES);
