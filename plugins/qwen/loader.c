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

int qwen_read_config(const mh_services *svc, mh_dir *dir, int32_t n_ctx, qwen_config *c)
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

static const mh_tensor *w2(mh_model *m, const char *fmt, int layer, int64_t d0, int64_t d1)
{
	char name[256];
	snprintf(name, sizeof name, fmt, layer);
	return m->svc->weight(m->dir, name, 2, d0, d1);
}

/* A vector (norm weight or bias): required when `present`. */
static const float *vec(mh_model *m, const char *fmt, int layer, int64_t d0, int present, int *ok)
{
	if (!present)
		return NULL;
	char name[256];
	snprintf(name, sizeof name, fmt, layer);
	const mh_tensor *t = m->svc->weight(m->dir, name, 1, d0, 0);
	const float *v = t ? m->svc->vec_f32(m->dir, t) : NULL;
	if (!v)
		*ok = 0;
	return v;
}

int qwen_load_weights(mh_model *m)
{
	const mh_decoder_config *c = &m->cfg.hp;
	const mh_services *svc = m->svc;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	int ok = 1, qwen3 = m->cfg.qwen3, qkv_bias = m->cfg.qkv_bias, o_bias = m->cfg.o_bias;
	m->embed = svc->weight(m->dir, "model.embed_tokens.weight", 2, c->vocab, c->dim);
	m->norm = vec(m, "model.norm.weight", 0, c->dim, 1, &ok);
	/* tied: the checkpoint may store the matrix once, as the embedding */
	m->lm_head = c->tied && !svc->tensor(m->dir, "lm_head.weight")
			     ? m->embed
			     : svc->weight(m->dir, "lm_head.weight", 2, c->vocab, c->dim);
	if (!m->embed || !m->lm_head || !ok)
		return -1;
	for (int l = 0; l < c->n_layers && ok; l++) {
		qwen_layer *L = &m->layers[l];
		L->attn_norm = vec(m, "model.layers.%d.input_layernorm.weight", l, c->dim, 1, &ok);
		L->ffn_norm = vec(m, "model.layers.%d.post_attention_layernorm.weight", l, c->dim, 1, &ok);
		L->q_norm = vec(m, "model.layers.%d.self_attn.q_norm.weight", l, c->head_dim, qwen3, &ok);
		L->k_norm = vec(m, "model.layers.%d.self_attn.k_norm.weight", l, c->head_dim, qwen3, &ok);
		L->wq = w2(m, "model.layers.%d.self_attn.q_proj.weight", l, q_dim, c->dim);
		L->wk = w2(m, "model.layers.%d.self_attn.k_proj.weight", l, kv_dim, c->dim);
		L->wv = w2(m, "model.layers.%d.self_attn.v_proj.weight", l, kv_dim, c->dim);
		L->wo = w2(m, "model.layers.%d.self_attn.o_proj.weight", l, c->dim, q_dim);
		L->w_gate = w2(m, "model.layers.%d.mlp.gate_proj.weight", l, c->ffn_dim, c->dim);
		L->w_up = w2(m, "model.layers.%d.mlp.up_proj.weight", l, c->ffn_dim, c->dim);
		L->w_down = w2(m, "model.layers.%d.mlp.down_proj.weight", l, c->dim, c->ffn_dim);
		L->bq = vec(m, "model.layers.%d.self_attn.q_proj.bias", l, q_dim, qkv_bias, &ok);
		L->bk = vec(m, "model.layers.%d.self_attn.k_proj.bias", l, kv_dim, qkv_bias, &ok);
		L->bv = vec(m, "model.layers.%d.self_attn.v_proj.bias", l, kv_dim, qkv_bias, &ok);
		L->bo = vec(m, "model.layers.%d.self_attn.o_proj.bias", l, c->dim, o_bias, &ok);
		if (!L->wq || !L->wk || !L->wv || !L->wo || !L->w_gate || !L->w_up || !L->w_down)
			ok = 0;
	}
	if (!ok)
		return -1;
	m->rope = svc->rope_new(m->dir, c->head_dim, c->n_ctx);
	return m->rope ? 0 : -1;
}
