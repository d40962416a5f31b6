/* SPDX-License-Identifier: MIT */
/* loader.c - config.json and the safetensors weights into the qwen
 * components.  Anything this plugin cannot honour is refused by name. */
#include "qwen.h"

#include <stdio.h>
#include <string.h>

/* Sliding-window layers (use_sliding_window, or a layer_types entry other
 * than full_attention) are refused. */
static int check_full_attention(const mh_services *svc, mh_dir *dir, int n_layers)
{
	int swa;
	if (svc->config_bool(dir, "use_sliding_window", 0, &swa) < 0)
		return -1;
	if (swa) {
		svc->error(dir, "config.json", "'use_sliding_window' is true: sliding-window "
			   "attention is not supported for Qwen models");
		return -1;
	}
	for (int l = 0; l < n_layers; l++) {
		char key[64];
		const char *type;
		snprintf(key, sizeof key, "layer_types.%d", l);
		if (svc->config_string(dir, key, "full_attention", &type) < 0)
			return -1;
		if (strcmp(type, "full_attention") != 0) {
			svc->error(dir, "config.json", "'%s' is '%s': only full_attention layers "
				   "are supported", key, type);
			return -1;
		}
	}
	return 0;
}

static int read_config(const mh_services *svc, mh_dir *dir, int32_t n_ctx, qwen_config *c)
{
	*c = (qwen_config){ .hp = { .struct_size = sizeof c->hp, .max_pos = 32768 } };
	const char *arch, *type;
	if (svc->config_string(dir, "architectures.0", "", &arch) < 0 ||
	    svc->config_string(dir, "model_type", "", &type) < 0)
		return -1;
	c->qwen3 = *arch ? strcmp(arch, "Qwen3ForCausalLM") == 0 : strcmp(type, "qwen3") == 0;
	if (svc->decoder_config(dir, n_ctx, &c->hp) != 0 ||
	    check_full_attention(svc, dir, c->hp.n_layers))
		return -1;
	double eps;
	if (svc->config_float(dir, "rms_norm_eps", 1e-6, &eps) < 0)
		return -1;
	c->eps = (float)eps;
	if (strcmp(c->hp.hidden_act, "silu") != 0) {
		svc->error(dir, "config.json", "hidden_act '%s' is not supported (silu only)",
			   c->hp.hidden_act);
		return -1;
	}
	if (c->qwen3) {
		if (svc->config_bool(dir, "attention_bias", 0, &c->qkv_bias) < 0)
			return -1;
		c->o_bias = c->qkv_bias;
	} else {
		c->qkv_bias = 1;
	}
	return 0;
}

#define LAYER "model.layers.%d."

static int load_weights(mh_model *m)
{
	const mh_decoder_config *c = &m->cfg.hp;
	const mh_services *svc = m->base.svc;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	mh_loader ld = { svc, m->base.dir, 0, 1 };
	int qwen3 = m->cfg.qwen3, qkv_bias = m->cfg.qkv_bias, o_bias = m->cfg.o_bias;
	m->norm = mh_load_vector(&ld, "model.norm.weight", c->dim, 1);
	/* tied: the checkpoint usually stores the matrix once */
	mh_load_embed_head(&ld, c, &m->embed, &m->lm_head);
	if (!ld.ok)
		return -1;
	for (ld.layer = 0; ld.layer < c->n_layers && ld.ok; ld.layer++) {
		qwen_layer *L = &m->layers[ld.layer];
		L->attn_norm = mh_load_vector(&ld, LAYER "input_layernorm.weight", c->dim, 1);
		L->ffn_norm = mh_load_vector(&ld, LAYER "post_attention_layernorm.weight",
					     c->dim, 1);
		L->q_norm = mh_load_vector(&ld, LAYER "self_attn.q_norm.weight",
					   c->head_dim, qwen3);
		L->k_norm = mh_load_vector(&ld, LAYER "self_attn.k_norm.weight",
					   c->head_dim, qwen3);
		L->wq = mh_load_matrix(&ld, LAYER "self_attn.q_proj.weight", q_dim, c->dim);
		L->wk = mh_load_matrix(&ld, LAYER "self_attn.k_proj.weight", kv_dim, c->dim);
		L->wv = mh_load_matrix(&ld, LAYER "self_attn.v_proj.weight", kv_dim, c->dim);
		L->wo = mh_load_matrix(&ld, LAYER "self_attn.o_proj.weight", c->dim, q_dim);
		L->w_gate = mh_load_matrix(&ld, LAYER "mlp.gate_proj.weight", c->ffn_dim, c->dim);
		L->w_up = mh_load_matrix(&ld, LAYER "mlp.up_proj.weight", c->ffn_dim, c->dim);
		L->w_down = mh_load_matrix(&ld, LAYER "mlp.down_proj.weight", c->dim, c->ffn_dim);
		L->bq = mh_load_vector(&ld, LAYER "self_attn.q_proj.bias", q_dim, qkv_bias);
		L->bk = mh_load_vector(&ld, LAYER "self_attn.k_proj.bias", kv_dim, qkv_bias);
		L->bv = mh_load_vector(&ld, LAYER "self_attn.v_proj.bias", kv_dim, qkv_bias);
		L->bo = mh_load_vector(&ld, LAYER "self_attn.o_proj.bias", c->dim, o_bias);
	}
	if (!ld.ok)
		return -1;
	m->base.rope = svc->rope_new(m->base.dir, c->head_dim, c->n_ctx);
	return m->base.rope ? 0 : -1;
}

mh_model *qwen_load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	qwen_config cfg;
	if (read_config(svc, dir, n_ctx, &cfg) != 0)
		return NULL;
	mh_model *m = mh_decoder_model_new(svc, dir, &cfg.hp, 0, sizeof *m, sizeof *m->layers);
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
