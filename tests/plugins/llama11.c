/* SPDX-License-Identifier: MIT */
/* llama11.c - a Llama plugin built against the ABI 1.1 header kept in
 * tests/sdk-1.1 (as an old, out-of-tree plugin would have been): no batch
 * entry points, one KV cache per model.  check_batch serves several
 * sequences with it (the host loads it once per sequence over the same
 * mapped weights) and compares them with the first-party llama plugin.
 * Untied checkpoints without biases only (the llama fixture). */
#include <modelhost/plugin.h>

#include <math.h>

#if MODELHOST_ABI_MINOR != 1
#error "llama11 must be built against the ABI 1.1 header (tests/sdk-1.1)"
#endif

typedef struct {
	const float *attn_norm, *ffn_norm;
	const mh_tensor *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
} layer_w;

struct mh_model {
	const mh_services *svc;
	mh_dir *dir;
	mh_decoder_config hp;
	double eps;
	const mh_tensor *embed, *lm_head;
	const float *norm;
	layer_w *layers;
	mh_rope *rope;
	mh_decoder *dec;
	mh_model_info info;
};

static void model_free(mh_model *m)
{
	if (!m)
		return;
	if (m->rope)
		m->svc->rope_free(m->rope);
	m->svc->decoder_free(m->dec);
	m->svc->free(m->layers);
	m->svc->free(m);
}

#define LAYER "model.layers.%d."

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	mh_model *m = svc->alloc(sizeof *m);
	if (!m)
		return NULL;
	m->svc = svc;
	m->dir = dir;
	m->hp = (mh_decoder_config){ .struct_size = sizeof m->hp, .max_pos = 2048 };
	if (svc->decoder_config(dir, n_ctx, &m->hp) != 0 ||
	    svc->config_float(dir, "rms_norm_eps", 1e-6, &m->eps) < 0)
		goto fail;
	const mh_decoder_config *c = &m->hp;
	int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
	m->layers = svc->alloc(c->n_layers * sizeof *m->layers);
	m->dec = m->layers ? svc->decoder_new(dir, c, 0) : NULL;
	if (!m->dec)
		goto fail;
	mh_loader ld = { svc, dir, 0, 1 };
	m->embed = mh_load_matrix(&ld, "model.embed_tokens.weight", c->vocab, c->dim);
	m->lm_head = mh_load_matrix(&ld, "lm_head.weight", c->vocab, c->dim);
	m->norm = mh_load_vector(&ld, "model.norm.weight", c->dim, 1);
	for (ld.layer = 0; ld.layer < c->n_layers && ld.ok; ld.layer++) {
		layer_w *L = &m->layers[ld.layer];
		L->attn_norm = mh_load_vector(&ld, LAYER "input_layernorm.weight", c->dim, 1);
		L->ffn_norm = mh_load_vector(&ld, LAYER "post_attention_layernorm.weight", c->dim, 1);
		L->wq = mh_load_matrix(&ld, LAYER "self_attn.q_proj.weight", q, c->dim);
		L->wk = mh_load_matrix(&ld, LAYER "self_attn.k_proj.weight", kv, c->dim);
		L->wv = mh_load_matrix(&ld, LAYER "self_attn.v_proj.weight", kv, c->dim);
		L->wo = mh_load_matrix(&ld, LAYER "self_attn.o_proj.weight", c->dim, q);
		L->w_gate = mh_load_matrix(&ld, LAYER "mlp.gate_proj.weight", c->ffn_dim, c->dim);
		L->w_up = mh_load_matrix(&ld, LAYER "mlp.up_proj.weight", c->ffn_dim, c->dim);
		L->w_down = mh_load_matrix(&ld, LAYER "mlp.down_proj.weight", c->dim, c->ffn_dim);
	}
	if (!ld.ok || !(m->rope = svc->rope_new(dir, c->head_dim, c->n_ctx)))
		goto fail;
	mh_model_info_init(&m->info, c, m->dec->kv->bytes);
	return m;
fail:
	model_free(m);
	return NULL;
}

static const mh_model_info *info(const mh_model *m)
{
	return &m->info;
}

static void reset(mh_model *m)
{
	(void)m;
}

static void layer(mh_model *m, int l, int n, int pos)
{
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->hp;
	const layer_w *L = &m->layers[l];
	mh_decoder *b = m->dec;
	float eps = (float)m->eps;
	float *k = mh_kv_k(b->kv, l) + mh_kv_at(b->kv, pos);
	float *v = mh_kv_v(b->kv, l) + mh_kv_at(b->kv, pos);

	svc->rmsnorm(b->xn, b->x, L->attn_norm, n, c->dim, eps);
	svc->matmul_n((float *[]){ b->q, k, v }, b->xn,
		      (const mh_tensor *[]){ L->wq, L->wk, L->wv }, NULL, 3, n);
	svc->rope_apply(m->rope, b->q, n, c->n_heads, pos);
	svc->rope_apply(m->rope, k, n, c->n_kv_heads, pos);
	svc->attention_kv(b->att, b->q, b->kv, l, n, pos, c->n_heads, c->head_dim, 0,
			  1.0f / sqrtf((float)c->head_dim));
	svc->matmul(b->tmp, b->att, L->wo, NULL, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);
	svc->rmsnorm(b->xn, b->x, L->ffn_norm, n, c->dim, eps);
	svc->matmul_n((float *[]){ b->gate, b->up }, b->xn,
		      (const mh_tensor *[]){ L->w_gate, L->w_up }, NULL, 2, n);
	svc->silu_mul(b->gate, b->up, (size_t)n * c->ffn_dim);
	svc->matmul(b->tmp, b->gate, L->w_down, NULL, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);
}

static void head(mh_model *m, float *logits, const float *x, int n)
{
	m->svc->rmsnorm(m->dec->xn, x, m->norm, n, m->hp.dim, (float)m->eps);
	m->svc->matmul(logits, m->dec->xn, m->lm_head, NULL, n);
}

static int forward(mh_model *m, const int32_t *ids, int n, int pos, float *logits, int flags)
{
	const mh_decoder_step step = { sizeof step, m, m->embed, layer, head };
	return m->svc->decoder_forward(m->dec, m->dir, &step, ids, n, pos, logits, flags);
}

static const char *const archs[] = { "LlamaForCausalLM", NULL };

MODELHOST_PLUGIN_DEFINE("llama11", "1.1.0", "a Llama plugin built against SDK 1.1 (tests)",
			"MIT", archs, .probe = NULL, .load = load, .free = model_free,
			.info = info, .forward = forward, .reset = reset);
