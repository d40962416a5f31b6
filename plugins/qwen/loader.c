/* loader.c - config.json and the safetensors weights into the qwen
 * components.  Anything this plugin cannot honour is refused by name. */
#include "qwen.h"

#include <stdio.h>
#include <string.h>

#define MAX_DIM (1 << 20)

static int get_dim(const mh_services *svc, mh_dir *dir, const char *key, int64_t def, int *out)
{
	int64_t v;
	int rc = svc->config_int(dir, key, def, &v);
	if (rc < 0)
		return -1;
	if (v <= 0 || v > MAX_DIM) {
		if (rc == 0)
			svc->error(dir, "config.json", "'%s' is missing", key);
		else
			svc->error(dir, "config.json", "'%s' is %lld, expected 1..%d", key,
				   (long long)v, MAX_DIM);
		return -1;
	}
	*out = (int)v;
	return 0;
}

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
	memset(c, 0, sizeof *c);
	const char *arch, *type;
	if (svc->config_string(dir, "architectures.0", "", &arch) < 0 ||
	    svc->config_string(dir, "model_type", "", &type) < 0)
		return -1;
	c->qwen3 = *arch ? strcmp(arch, "Qwen3ForCausalLM") == 0 : strcmp(type, "qwen3") == 0;
	if (get_dim(svc, dir, "vocab_size", 0, &c->vocab) || get_dim(svc, dir, "hidden_size", 0, &c->dim) ||
	    get_dim(svc, dir, "num_hidden_layers", 0, &c->n_layers) ||
	    get_dim(svc, dir, "num_attention_heads", 0, &c->n_heads) ||
	    get_dim(svc, dir, "intermediate_size", 0, &c->ffn_dim) ||
	    get_dim(svc, dir, "max_position_embeddings", 32768, &c->max_pos) ||
	    get_dim(svc, dir, "num_key_value_heads", c->n_heads, &c->n_kv_heads))
		return -1;
	int64_t hd;
	int has_hd = svc->config_int(dir, "head_dim", 0, &hd);
	if (has_hd < 0)
		return -1;
	if (!has_hd && c->dim % c->n_heads != 0) {
		svc->error(dir, "config.json", "hidden_size %d is not a multiple of "
			   "num_attention_heads %d and head_dim is not given", c->dim, c->n_heads);
		return -1;
	}
	if (get_dim(svc, dir, "head_dim", c->dim / c->n_heads, &c->head_dim))
		return -1;
	if (c->head_dim > 1024 || c->head_dim % 2) {
		svc->error(dir, "config.json", "head_dim %d is not supported (even, at most 1024)",
			   c->head_dim);
		return -1;
	}
	if (c->n_heads % c->n_kv_heads != 0) {
		svc->error(dir, "config.json", "num_attention_heads %d is not a multiple of "
			   "num_key_value_heads %d", c->n_heads, c->n_kv_heads);
		return -1;
	}
	if (check_full_attention(svc, dir, c->n_layers))
		return -1;
	double eps;
	const char *act;
	if (svc->config_float(dir, "rms_norm_eps", 1e-6, &eps) < 0 ||
	    svc->config_bool(dir, "tie_word_embeddings", 0, &c->tied) < 0 ||
	    svc->config_string(dir, "hidden_act", "silu", &act) < 0)
		return -1;
	c->eps = (float)eps;
	if (strcmp(act, "silu") != 0) {
		svc->error(dir, "config.json", "hidden_act '%s' is not supported (silu only)", act);
		return -1;
	}
	if (c->qwen3) {
		if (svc->config_bool(dir, "attention_bias", 0, &c->qkv_bias) < 0)
			return -1;
		c->o_bias = c->qkv_bias;
	} else {
		c->qkv_bias = 1;
	}
	int64_t bos;
	if (svc->config_int(dir, "bos_token_id", -1, &bos) < 0)
		return -1;
	c->bos = (int32_t)bos;
	c->n_eos = svc->config_ids(dir, "eos_token_id", c->eos, MH_MAX_EOS);
	if (c->n_eos < 0)
		return -1;
	if (n_ctx > 0 && n_ctx > c->max_pos)
		svc->log(MH_LOG_WARN, "context %d is longer than the model was trained for (%d)",
			 n_ctx, c->max_pos);
	c->n_ctx = n_ctx > 0 ? n_ctx : c->max_pos;
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
	const qwen_config *c = &m->cfg;
	const mh_services *svc = m->svc;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	int ok = 1;
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
		L->q_norm = vec(m, "model.layers.%d.self_attn.q_norm.weight", l, c->head_dim, c->qwen3, &ok);
		L->k_norm = vec(m, "model.layers.%d.self_attn.k_norm.weight", l, c->head_dim, c->qwen3, &ok);
		L->wq = w2(m, "model.layers.%d.self_attn.q_proj.weight", l, q_dim, c->dim);
		L->wk = w2(m, "model.layers.%d.self_attn.k_proj.weight", l, kv_dim, c->dim);
		L->wv = w2(m, "model.layers.%d.self_attn.v_proj.weight", l, kv_dim, c->dim);
		L->wo = w2(m, "model.layers.%d.self_attn.o_proj.weight", l, c->dim, q_dim);
		L->w_gate = w2(m, "model.layers.%d.mlp.gate_proj.weight", l, c->ffn_dim, c->dim);
		L->w_up = w2(m, "model.layers.%d.mlp.up_proj.weight", l, c->ffn_dim, c->dim);
		L->w_down = w2(m, "model.layers.%d.mlp.down_proj.weight", l, c->dim, c->ffn_dim);
		L->bq = vec(m, "model.layers.%d.self_attn.q_proj.bias", l, q_dim, c->qkv_bias, &ok);
		L->bk = vec(m, "model.layers.%d.self_attn.k_proj.bias", l, kv_dim, c->qkv_bias, &ok);
		L->bv = vec(m, "model.layers.%d.self_attn.v_proj.bias", l, kv_dim, c->qkv_bias, &ok);
		L->bo = vec(m, "model.layers.%d.self_attn.o_proj.bias", l, c->dim, c->o_bias, &ok);
		if (!L->wq || !L->wk || !L->wv || !L->wo || !L->w_gate || !L->w_up || !L->w_down)
			ok = 0;
	}
	if (!ok)
		return -1;
	m->rope = svc->rope_new(m->dir, c->head_dim, c->n_ctx);
	return m->rope ? 0 : -1;
}
