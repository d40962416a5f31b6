/* model.c - the Phi-2 and Phi-3 forward passes over a KV cache, and the
 * plugin descriptor.  The host's decoder_forward runs the layers over the
 * prompt in chunks (matrix-matrix products) and then one token at a time. */
#include "phi.h"

#include <math.h>

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	phi_config cfg;
	if (phi_read_config(svc, dir, n_ctx, &cfg) != 0)
		return NULL;
	mh_model *m = phi_alloc(svc, dir, &cfg);
	if (m && phi_load_weights(m) != 0) {
		phi_free(m);
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

/* Attention of n tokens at pos over b->xn (already normalized) into b->att:
 * projections, Phi-2's optional per-head q/k LayerNorm, rotary, and the
 * cached attention.  The output projection is left to the caller. */
static void attend(mh_model *m, const phi_layer *L, int l, int n, int pos)
{
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	mh_decoder *b = m->dec;
	float *k = mh_kv_k(b->kv, l) + mh_kv_at(b->kv, pos);
	float *v = mh_kv_v(b->kv, l) + mh_kv_at(b->kv, pos);

	svc->matmul_n((float *[]){ b->q, k, v }, b->xn,
		      (const mh_tensor *[]){ L->wq, L->wk, L->wv },
		      (const float *[]){ L->bq, L->bk, L->bv }, 3, n);
	if (L->q_ln_w) {
		svc->layernorm(b->q, b->q, L->q_ln_w, L->q_ln_b, n * c->n_heads, c->head_dim, eps);
		svc->layernorm(k, k, L->k_ln_w, L->k_ln_b, n * c->n_kv_heads, c->head_dim, eps);
	}
	svc->rope_apply(m->rope, b->q, n, c->n_heads, pos);
	svc->rope_apply(m->rope, k, n, c->n_kv_heads, pos);
	svc->attention_kv(b->att, b->q, b->kv, l, n, pos, c->n_heads, c->head_dim, m->cfg.window,
			  1.0f / sqrtf((float)c->head_dim));
}

/* Phi-2: h = x + dense(attn(ln(x))) + fc2(act(fc1(ln(x)))). */
static void phi2_layer(mh_model *m, const phi_layer *L, int l, int n, int pos)
{
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	mh_decoder *b = m->dec;
	size_t ffn = (size_t)n * c->ffn_dim;

	svc->layernorm(b->xn, b->x, L->ln_w, L->ln_b, n, c->dim, eps);
	attend(m, L, l, n, pos);
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
static void phi3_layer(mh_model *m, const phi_layer *L, int l, int n, int pos)
{
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	mh_decoder *b = m->dec;

	svc->rmsnorm(b->xn, b->x, L->ln_w, n, c->dim, eps);
	attend(m, L, l, n, pos);
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
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	if (m->cfg.phi3)
		svc->rmsnorm(m->dec->xn, x, m->norm_w, n, c->dim, eps);
	else
		svc->layernorm(m->dec->xn, x, m->norm_w, m->norm_b, n, c->dim, eps);
	svc->matmul(logits, m->dec->xn, m->lm_head, m->lm_head_b, n);
}

static void layer(mh_model *m, int l, int n, int pos)
{
	(m->cfg.phi3 ? phi3_layer : phi2_layer)(m, &m->layers[l], l, n, pos);
}

static int forward(mh_model *m, const int32_t *ids, int n, int pos, float *logits, int flags)
{
	const mh_decoder_step step = { sizeof step, m, m->embed, layer, head };
	return m->svc->decoder_forward(m->dec, m->dir, &step, ids, n, pos, logits, flags);
}

static const char *const architectures[] = { "PhiForCausalLM", "phi", "Phi3ForCausalLM", "phi3",
					     NULL };

MODELHOST_PLUGIN_DEFINE("phi", "1.0.0",
			"Phi-2 (parallel attention+MLP, LayerNorm, partial rotary) and Phi-3 "
			"(fused qkv/gate_up, sliding window)",
			"MIT", architectures,
			.load = load,
			.free = phi_free,
			.info = info,
			.forward = forward,
			.reset = reset);
