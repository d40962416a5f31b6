/* SPDX-License-Identifier: MIT */
/* phi.c - the phi plugin: Phi-2 (PhiForCausalLM) and Phi-3
 * (Phi3ForCausalLM), built on the SDK's Llama-style decoder
 * (mh_llama_model).  Anything this plugin cannot honour is refused by name.
 *
 * Phi-3 is Llama-like (RMSNorm, SwiGLU, optional sliding window): the SDK's
 * layer and head, over row views of its fused qkv_proj and gate_up_proj.
 * Phi-2 keeps the SDK's projections and attention but has a layer of its
 * own: LayerNorm with bias, one norm feeding attention and MLP in parallel
 * (h = x + attn(ln(x)) + mlp(ln(x))), biases everywhere, partial rotary, a
 * GELU MLP (fc1/fc2), optional per-head q/k LayerNorm. */
#include <modelhost/plugin.h>

#include <string.h>

enum phi_act { PHI_GELU, PHI_GELU_TANH };

typedef struct phi_config {
	int phi3;         /* 0: Phi-2, 1: Phi-3 */
	enum phi_act act; /* Phi-2 MLP activation */
	int qk_layernorm; /* Phi-2 */
} phi_config;

/* Phi-2 keeps input_layernorm's weight in std.attn_norm, dense in std.wo,
 * fc1 and fc2 in std.w_up and std.w_down; Phi-3's std.wq..w_up point at the
 * views of its fused projections. */
typedef struct phi_layer {
	mh_llama_layer std;
	const float *ln_b;                              /* Phi-2 */
	const float *q_ln_w, *q_ln_b, *k_ln_w, *k_ln_b; /* Phi-2 qk_layernorm */
	mh_tensor q_view, k_view, v_view, gate_view, up_view;
} phi_layer;

struct mh_model {
	mh_llama_model llama; /* first: the SDK's helpers run the model through it */
	phi_config cfg;
	const float *norm_b, *lm_head_b; /* Phi-2 */
};

/* Phi-2: layer_norm_eps, hidden_act (a GELU) and qk_layernorm. */
static int read_phi2(const mh_services *svc, mh_dir *dir, mh_llama_config *lc, phi_config *c)
{
	const char *act = lc->hp.hidden_act;
	double eps;
	if (svc->config_float(dir, "layer_norm_eps", 1e-5, &eps) < 0 ||
	    svc->config_bool(dir, "qk_layernorm", 0, &c->qk_layernorm) < 0)
		return -1;
	lc->eps = (float)eps;
	if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0) {
		c->act = PHI_GELU_TANH;
	} else if (strcmp(act, "gelu") == 0) {
		c->act = PHI_GELU;
	} else {
		svc->error(dir, "config.json", "hidden_act '%s' is not supported (gelu_new, "
			   "gelu_pytorch_tanh or gelu)", act);
		return -1;
	}
	return 0;
}

static int read_config(const mh_services *svc, mh_dir *dir, int32_t n_ctx, mh_llama_config *lc,
		       phi_config *c)
{
	*c = (phi_config){ 0 };
	c->phi3 = mh_config_is(svc, dir, "Phi3ForCausalLM", "phi3");
	if (c->phi3 < 0)
		return -1;
	*lc = (mh_llama_config){ .hp = { .struct_size = sizeof lc->hp,
					 .max_pos = c->phi3 ? 4096 : 2048,
					 .hidden_act = c->phi3 ? "silu" : "gelu_new" } };
	/* Phi-3: rms_norm_eps, silu and sliding_window (null: full attention) */
	int fail = c->phi3 ? mh_llama_config_read(svc, dir, n_ctx, 1e-5, lc) ||
				     mh_config_sliding_window(svc, dir, &lc->window)
			   : svc->decoder_config(dir, n_ctx, &lc->hp) || read_phi2(svc, dir, lc, c);
	return fail ? -1 : 0;
}

#define LAYER "model.layers.%d."

static void load_phi2_layer(mh_model *m, mh_loader *ld, phi_layer *P)
{
	const mh_decoder_config *c = &m->llama.cfg.hp;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	int qk = m->cfg.qk_layernorm;
	mh_llama_layer *L = &P->std;
	L->attn_norm = mh_load_vector(ld, LAYER "input_layernorm.weight", c->dim, 1);
	P->ln_b = mh_load_vector(ld, LAYER "input_layernorm.bias", c->dim, 1);
	P->q_ln_w = mh_load_vector(ld, LAYER "self_attn.q_layernorm.weight", c->head_dim, qk);
	P->q_ln_b = mh_load_vector(ld, LAYER "self_attn.q_layernorm.bias", c->head_dim, qk);
	P->k_ln_w = mh_load_vector(ld, LAYER "self_attn.k_layernorm.weight", c->head_dim, qk);
	P->k_ln_b = mh_load_vector(ld, LAYER "self_attn.k_layernorm.bias", c->head_dim, qk);
	L->wq = mh_load_matrix(ld, LAYER "self_attn.q_proj.weight", q_dim, c->dim);
	L->wk = mh_load_matrix(ld, LAYER "self_attn.k_proj.weight", kv_dim, c->dim);
	L->wv = mh_load_matrix(ld, LAYER "self_attn.v_proj.weight", kv_dim, c->dim);
	L->wo = mh_load_matrix(ld, LAYER "self_attn.dense.weight", c->dim, q_dim);
	L->w_up = mh_load_matrix(ld, LAYER "mlp.fc1.weight", c->ffn_dim, c->dim);
	L->w_down = mh_load_matrix(ld, LAYER "mlp.fc2.weight", c->dim, c->ffn_dim);
	L->bq = mh_load_vector(ld, LAYER "self_attn.q_proj.bias", q_dim, 1);
	L->bk = mh_load_vector(ld, LAYER "self_attn.k_proj.bias", kv_dim, 1);
	L->bv = mh_load_vector(ld, LAYER "self_attn.v_proj.bias", kv_dim, 1);
	L->bo = mh_load_vector(ld, LAYER "self_attn.dense.bias", c->dim, 1);
	L->b_up = mh_load_vector(ld, LAYER "mlp.fc1.bias", c->ffn_dim, 1);
	L->b_down = mh_load_vector(ld, LAYER "mlp.fc2.bias", c->dim, 1);
}

/* Phi-3's fused projections are split into row views: qkv_proj = q | k | v,
 * gate_up_proj = gate | up. */
static void load_phi3_layer(mh_model *m, mh_loader *ld, phi_layer *P)
{
	const mh_services *svc = ld->svc;
	const mh_decoder_config *c = &m->llama.cfg.hp;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	mh_llama_layer *L = &P->std;
	L->attn_norm = mh_load_vector(ld, LAYER "input_layernorm.weight", c->dim, 1);
	L->ffn_norm = mh_load_vector(ld, LAYER "post_attention_layernorm.weight", c->dim, 1);
	const mh_tensor *qkv = mh_load_matrix(ld, LAYER "self_attn.qkv_proj.weight",
					      q_dim + 2 * kv_dim, c->dim);
	const mh_tensor *gate_up = mh_load_matrix(ld, LAYER "mlp.gate_up_proj.weight",
						  2 * (int64_t)c->ffn_dim, c->dim);
	L->wo = mh_load_matrix(ld, LAYER "self_attn.o_proj.weight", c->dim, q_dim);
	L->w_down = mh_load_matrix(ld, LAYER "mlp.down_proj.weight", c->dim, c->ffn_dim);
	if (!ld->ok)
		return;
	/* the shapes were checked above, so the views are in range */
	svc->rows(qkv, 0, q_dim, &P->q_view);
	svc->rows(qkv, q_dim, kv_dim, &P->k_view);
	svc->rows(qkv, q_dim + kv_dim, kv_dim, &P->v_view);
	svc->rows(gate_up, 0, c->ffn_dim, &P->gate_view);
	svc->rows(gate_up, c->ffn_dim, c->ffn_dim, &P->up_view);
	L->wq = &P->q_view;
	L->wk = &P->k_view;
	L->wv = &P->v_view;
	L->w_gate = &P->gate_view;
	L->w_up = &P->up_view;
}

static int load_weights(mh_model *m)
{
	mh_llama_model *s = &m->llama;
	const mh_decoder_config *c = &s->cfg.hp;
	mh_loader ld = { s->base.svc, s->base.dir, 0, 1 };
	int phi3 = m->cfg.phi3;
	if (phi3) {
		s->norm = mh_load_vector(&ld, "model.norm.weight", c->dim, 1);
	} else {
		s->norm = mh_load_vector(&ld, "model.final_layernorm.weight", c->dim, 1);
		m->norm_b = mh_load_vector(&ld, "model.final_layernorm.bias", c->dim, 1);
		m->lm_head_b = mh_load_vector(&ld, "lm_head.bias", c->vocab, 1);
	}
	/* tied: the checkpoint usually stores the matrix once */
	mh_load_embed_head(&ld, c, &s->embed, &s->lm_head);
	for (ld.layer = 0; ld.layer < c->n_layers && ld.ok; ld.layer++)
		(phi3 ? load_phi3_layer : load_phi2_layer)(m, &ld,
							   (phi_layer *)mh_llama_layer_at(s, ld.layer));
	return ld.ok ? mh_llama_model_finish(s) : -1;
}

/* Phi-2: h = x + dense(attn(ln(x))) + fc2(act(fc1(ln(x)))). */
static int phi2_layer(mh_model *m, int l, int n)
{
	mh_llama_model *s = &m->llama;
	const mh_services *svc = s->base.svc;
	const mh_decoder_config *c = &s->cfg.hp;
	const float eps = s->cfg.eps;
	const phi_layer *P = (const phi_layer *)mh_llama_layer_at(s, l);
	const mh_llama_layer *L = &P->std;
	mh_decoder *b = s->base.dec;
	size_t ffn = (size_t)n * c->ffn_dim;

	svc->layernorm(b->xn, b->x, L->attn_norm, P->ln_b, n, c->dim, eps);
	mh_llama_qkv(s, L, n);
	if (P->q_ln_w) {
		svc->layernorm(b->q, b->q, P->q_ln_w, P->q_ln_b, n * c->n_heads, c->head_dim, eps);
		svc->layernorm(b->k, b->k, P->k_ln_w, P->k_ln_b, n * c->n_kv_heads, c->head_dim,
			       eps);
	}
	mh_llama_attend(s, L, l, n);

	svc->matmul(b->up, b->xn, L->w_up, L->b_up, n);
	if (m->cfg.act == PHI_GELU_TANH)
		svc->gelu_tanh(b->up, ffn);
	else
		svc->gelu(b->up, ffn);
	svc->matmul(b->tmp, b->up, L->w_down, L->b_down, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);
	return 0;
}

/* Phi-2: the final LayerNorm and lm_head, both with biases, over n rows of x. */
static void phi2_head(mh_model *m, float *logits, const float *x, int n)
{
	mh_llama_model *s = &m->llama;
	s->base.svc->layernorm(s->base.dec->xn, x, s->norm, m->norm_b, n, s->cfg.hp.dim,
			       s->cfg.eps);
	s->base.svc->matmul(logits, s->base.dec->xn, s->lm_head, m->lm_head_b, n);
}

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	mh_llama_config lc;
	phi_config cfg;
	if (read_config(svc, dir, n_ctx, &lc, &cfg) != 0)
		return NULL;
	mh_model *m = mh_llama_model_alloc(svc, dir, &lc, sizeof *m, sizeof(phi_layer));
	if (!m)
		return NULL;
	m->cfg = cfg;
	if (load_weights(m) != 0) {
		mh_decoder_model_free(m);
		return NULL;
	}
	if (!cfg.phi3) {
		m->llama.base.step.layer_rows = phi2_layer;
		m->llama.base.step.head = phi2_head;
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
