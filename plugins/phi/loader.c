/* SPDX-License-Identifier: MIT */
/* loader.c - config.json and the safetensors weights into the phi
 * components, for Phi-2 (PhiForCausalLM) and Phi-3 (Phi3ForCausalLM).
 * Anything this plugin cannot honour is refused by name. */
#include "phi.h"

#include <stdio.h>
#include <string.h>

/* Phi-2: layer_norm_eps, hidden_act (a GELU) and qk_layernorm. */
static int read_phi2(const mh_services *svc, mh_dir *dir, phi_config *c)
{
	const char *act = c->hp.hidden_act;
	double eps;
	if (svc->config_float(dir, "layer_norm_eps", 1e-5, &eps) < 0 ||
	    svc->config_bool(dir, "qk_layernorm", 0, &c->qk_layernorm) < 0)
		return -1;
	c->eps = (float)eps;
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

/* Phi-3: rms_norm_eps, hidden_act (silu only) and sliding_window (null:
 * full attention). */
static int read_phi3(const mh_services *svc, mh_dir *dir, phi_config *c)
{
	const char *act = c->hp.hidden_act;
	double eps;
	int64_t window;
	if (svc->config_float(dir, "rms_norm_eps", 1e-5, &eps) < 0)
		return -1;
	c->eps = (float)eps;
	if (strcmp(act, "silu") != 0) {
		svc->error(dir, "config.json", "hidden_act '%s' is not supported (silu only)", act);
		return -1;
	}
	int rc = svc->config_int(dir, "sliding_window", 0, &window);
	if (rc < 0)
		return -1;
	if (rc > 0 && (window <= 0 || window > INT32_MAX)) {
		svc->error(dir, "config.json", "'sliding_window' is %lld, expected a positive "
			   "number or null", (long long)window);
		return -1;
	}
	c->window = (int)window;
	return 0;
}

static int read_config(const mh_services *svc, mh_dir *dir, int32_t n_ctx, phi_config *c)
{
	*c = (phi_config){ 0 };
	const char *arch, *type;
	if (svc->config_string(dir, "architectures.0", "", &arch) < 0 ||
	    svc->config_string(dir, "model_type", "", &type) < 0)
		return -1;
	c->phi3 = *arch ? strcmp(arch, "Phi3ForCausalLM") == 0 : strcmp(type, "phi3") == 0;
	c->hp = (mh_decoder_config){ .struct_size = sizeof c->hp,
				     .max_pos = c->phi3 ? 4096 : 2048,
				     .hidden_act = c->phi3 ? "silu" : "gelu_new" };
	if (svc->decoder_config(dir, n_ctx, &c->hp) != 0 ||
	    (c->phi3 ? read_phi3 : read_phi2)(svc, dir, c))
		return -1;
	return 0;
}

#define LAYER "model.layers.%d."

static void load_phi2_layer(mh_model *m, mh_loader *ld, phi_layer *L)
{
	const mh_decoder_config *c = &m->cfg.hp;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	int qk = m->cfg.qk_layernorm;
	L->ln_w = mh_load_vector(ld, LAYER "input_layernorm.weight", c->dim, 1);
	L->ln_b = mh_load_vector(ld, LAYER "input_layernorm.bias", c->dim, 1);
	L->q_ln_w = mh_load_vector(ld, LAYER "self_attn.q_layernorm.weight", c->head_dim, qk);
	L->q_ln_b = mh_load_vector(ld, LAYER "self_attn.q_layernorm.bias", c->head_dim, qk);
	L->k_ln_w = mh_load_vector(ld, LAYER "self_attn.k_layernorm.weight", c->head_dim, qk);
	L->k_ln_b = mh_load_vector(ld, LAYER "self_attn.k_layernorm.bias", c->head_dim, qk);
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
static void load_phi3_layer(mh_model *m, mh_loader *ld, phi_layer *L)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *c = &m->cfg.hp;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	L->ln_w = mh_load_vector(ld, LAYER "input_layernorm.weight", c->dim, 1);
	L->post_ln_w = mh_load_vector(ld, LAYER "post_attention_layernorm.weight", c->dim, 1);
	const mh_tensor *qkv = mh_load_matrix(ld, LAYER "self_attn.qkv_proj.weight",
					      q_dim + 2 * kv_dim, c->dim);
	const mh_tensor *gate_up = mh_load_matrix(ld, LAYER "mlp.gate_up_proj.weight",
						  2 * (int64_t)c->ffn_dim, c->dim);
	L->wo = mh_load_matrix(ld, LAYER "self_attn.o_proj.weight", c->dim, q_dim);
	L->w_down = mh_load_matrix(ld, LAYER "mlp.down_proj.weight", c->dim, c->ffn_dim);
	if (!ld->ok)
		return;
	/* the shapes were checked above, so the views are in range */
	svc->rows(qkv, 0, q_dim, &L->q_view);
	svc->rows(qkv, q_dim, kv_dim, &L->k_view);
	svc->rows(qkv, q_dim + kv_dim, kv_dim, &L->v_view);
	svc->rows(gate_up, 0, c->ffn_dim, &L->gate_view);
	svc->rows(gate_up, c->ffn_dim, c->ffn_dim, &L->up_view);
	L->wq = &L->q_view;
	L->wk = &L->k_view;
	L->wv = &L->v_view;
	L->w_gate = &L->gate_view;
	L->w_up = &L->up_view;
}

static int load_weights(mh_model *m)
{
	const mh_decoder_config *c = &m->cfg.hp;
	const mh_services *svc = m->base.svc;
	mh_loader ld = { svc, m->base.dir, 0, 1 };
	int phi3 = m->cfg.phi3;
	if (phi3) {
		m->norm_w = mh_load_vector(&ld, "model.norm.weight", c->dim, 1);
	} else {
		m->norm_w = mh_load_vector(&ld, "model.final_layernorm.weight", c->dim, 1);
		m->norm_b = mh_load_vector(&ld, "model.final_layernorm.bias", c->dim, 1);
		m->lm_head_b = mh_load_vector(&ld, "lm_head.bias", c->vocab, 1);
	}
	/* tied: the checkpoint usually stores the matrix once */
	mh_load_embed_head(&ld, c, &m->embed, &m->lm_head);
	if (!ld.ok)
		return -1;
	for (ld.layer = 0; ld.layer < c->n_layers && ld.ok; ld.layer++)
		(phi3 ? load_phi3_layer : load_phi2_layer)(m, &ld, &m->layers[ld.layer]);
	if (!ld.ok)
		return -1;
	m->base.rope = svc->rope_new(m->base.dir, c->head_dim, c->n_ctx);
	return m->base.rope ? 0 : -1;
}

mh_model *phi_load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	phi_config cfg;
	if (read_config(svc, dir, n_ctx, &cfg) != 0)
		return NULL;
	mh_model *m = mh_decoder_model_new(svc, dir, &cfg.hp, cfg.window, sizeof *m, sizeof *m->layers);
	if (!m)
		return NULL;
	m->cfg = cfg;
	m->layers = m->base.layers;
	if (load_weights(m) != 0) {
		mh_decoder_model_free(m);
		return NULL;
	}
	return m;
}
