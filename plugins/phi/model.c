/* SPDX-License-Identifier: MIT */
/* model.c - the Phi-2 and Phi-3 layers and head, and the plugin
 * descriptor.  The host's decoder scaffold does the rest: prompts in chunks
 * (matrix-matrix products), several sequences in one pass, each row's
 * position, cache and attention (decoder_attention). */
#include "phi.h"

#include <math.h>

/* Attention of the n rows of b->xn (already normalized) into b->att:
 * projections, Phi-2's optional per-head q/k LayerNorm, rotary, and the
 * cached attention.  The output projection is left to the caller. */
static void attend(mh_model *m, const phi_layer *L, int l, int n)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	mh_decoder *b = m->base.dec;

	svc->matmul_n((float *[]){ b->q, b->k, b->v }, b->xn,
		      (const mh_tensor *[]){ L->wq, L->wk, L->wv },
		      (const float *[]){ L->bq, L->bk, L->bv }, 3, n);
	if (L->q_ln_w) {
		svc->layernorm(b->q, b->q, L->q_ln_w, L->q_ln_b, n * c->n_heads, c->head_dim, eps);
		svc->layernorm(b->k, b->k, L->k_ln_w, L->k_ln_b, n * c->n_kv_heads, c->head_dim,
			       eps);
	}
	svc->decoder_attention(b, l, m->base.rope, m->cfg.window,
			       1.0f / sqrtf((float)c->head_dim));
}

/* Phi-2: h = x + dense(attn(ln(x))) + fc2(act(fc1(ln(x)))). */
static void phi2_layer(mh_model *m, const phi_layer *L, int l, int n)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	mh_decoder *b = m->base.dec;
	size_t ffn = (size_t)n * c->ffn_dim;

	svc->layernorm(b->xn, b->x, L->ln_w, L->ln_b, n, c->dim, eps);
	attend(m, L, l, n);
	svc->matmul(b->tmp, b->att, L->wo, L->bo, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);

	svc->matmul(b->up, b->xn, L->w_up, L->b_up, n);
	if (m->cfg.act == PHI_GELU_TANH)
		svc->gelu_tanh(b->up, ffn);
	else
		svc->gelu(b->up, ffn);
	svc->matmul(b->tmp, b->up, L->w_down, L->b_down, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);
}

/* Phi-3: pre-norm attention then pre-norm SwiGLU MLP. */
static void phi3_layer(mh_model *m, const phi_layer *L, int l, int n)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	mh_decoder *b = m->base.dec;

	svc->rmsnorm(b->xn, b->x, L->ln_w, n, c->dim, eps);
	attend(m, L, l, n);
	svc->matmul(b->tmp, b->att, L->wo, NULL, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);

	svc->rmsnorm(b->xn, b->x, L->post_ln_w, n, c->dim, eps);
	svc->matmul_n((float *[]){ b->gate, b->up }, b->xn,
		      (const mh_tensor *[]){ L->w_gate, L->w_up }, NULL, 2, n);
	svc->silu_mul(b->gate, b->up, (size_t)n * c->ffn_dim);
	svc->matmul(b->tmp, b->gate, L->w_down, NULL, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);
}

/* The final norm and lm_head over n rows of x. */
static void head(mh_model *m, float *logits, const float *x, int n)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	if (m->cfg.phi3)
		svc->rmsnorm(m->base.dec->xn, x, m->norm_w, n, c->dim, eps);
	else
		svc->layernorm(m->base.dec->xn, x, m->norm_w, m->norm_b, n, c->dim, eps);
	svc->matmul(logits, m->base.dec->xn, m->lm_head, m->lm_head_b, n);
}

static int layer(mh_model *m, int l, int n)
{
	(m->cfg.phi3 ? phi3_layer : phi2_layer)(m, &m->layers[l], l, n);
	return 0;
}

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	mh_model *m = phi_load(svc, dir, n_ctx);
	if (m) {
		m->base.step.embed = m->embed;
		m->base.step.layer_rows = layer;
		m->base.step.head = head;
	}
	return m;
}

static const char *const architectures[] = { "PhiForCausalLM", "phi", "Phi3ForCausalLM", "phi3",
					     NULL };

MODELHOST_PLUGIN_DEFINE("phi", "1.0.0",
			"Phi-2 (parallel attention+MLP, LayerNorm, partial rotary) and Phi-3 "
			"(fused qkv/gate_up, sliding window)",
			"MIT", architectures,
			.load = load,
			MH_DECODER_MODEL_ENTRIES);
