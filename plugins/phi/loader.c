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

int phi_read_config(const mh_services *svc, mh_dir *dir, int32_t n_ctx, phi_config *c)
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

#define LAYER "model.layers.%d."

static int load_phi2_layer(mh_model *m, int l, phi_layer *L)
{
	const mh_decoder_config *c = &m->cfg.hp;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	int ok = 1, qk = m->cfg.qk_layernorm;
	L->ln_w = vec(m, LAYER "input_layernorm.weight", l, c->dim, 1, &ok);
	L->ln_b = vec(m, LAYER "input_layernorm.bias", l, c->dim, 1, &ok);
	L->q_ln_w = vec(m, LAYER "self_attn.q_layernorm.weight", l, c->head_dim, qk, &ok);
	L->q_ln_b = vec(m, LAYER "self_attn.q_layernorm.bias", l, c->head_dim, qk, &ok);
	L->k_ln_w = vec(m, LAYER "self_attn.k_layernorm.weight", l, c->head_dim, qk, &ok);
	L->k_ln_b = vec(m, LAYER "self_attn.k_layernorm.bias", l, c->head_dim, qk, &ok);
	L->wq = w2(m, LAYER "self_attn.q_proj.weight", l, q_dim, c->dim);
	L->wk = w2(m, LAYER "self_attn.k_proj.weight", l, kv_dim, c->dim);
	L->wv = w2(m, LAYER "self_attn.v_proj.weight", l, kv_dim, c->dim);
	L->wo = w2(m, LAYER "self_attn.dense.weight", l, c->dim, q_dim);
	L->w_up = w2(m, LAYER "mlp.fc1.weight", l, c->ffn_dim, c->dim);
	L->w_down = w2(m, LAYER "mlp.fc2.weight", l, c->dim, c->ffn_dim);
	L->bq = vec(m, LAYER "self_attn.q_proj.bias", l, q_dim, 1, &ok);
	L->bk = vec(m, LAYER "self_attn.k_proj.bias", l, kv_dim, 1, &ok);
	L->bv = vec(m, LAYER "self_attn.v_proj.bias", l, kv_dim, 1, &ok);
	L->bo = vec(m, LAYER "self_attn.dense.bias", l, c->dim, 1, &ok);
	L->b_up = vec(m, LAYER "mlp.fc1.bias", l, c->ffn_dim, 1, &ok);
	L->b_down = vec(m, LAYER "mlp.fc2.bias", l, c->dim, 1, &ok);
	return ok && L->wq && L->wk && L->wv && L->wo && L->w_up && L->w_down ? 0 : -1;
}

/* Phi-3's fused projections are split into row views: qkv_proj = q | k | v,
 * gate_up_proj = gate | up. */
static int load_phi3_layer(mh_model *m, int l, phi_layer *L)
{
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->cfg.hp;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	int ok = 1;
	L->ln_w = vec(m, LAYER "input_layernorm.weight", l, c->dim, 1, &ok);
	L->post_ln_w = vec(m, LAYER "post_attention_layernorm.weight", l, c->dim, 1, &ok);
	const mh_tensor *qkv = w2(m, LAYER "self_attn.qkv_proj.weight", l, q_dim + 2 * kv_dim, c->dim);
	const mh_tensor *gate_up = w2(m, LAYER "mlp.gate_up_proj.weight", l, 2 * (int64_t)c->ffn_dim, c->dim);
	L->wo = w2(m, LAYER "self_attn.o_proj.weight", l, c->dim, q_dim);
	L->w_down = w2(m, LAYER "mlp.down_proj.weight", l, c->dim, c->ffn_dim);
	if (!ok || !qkv || !gate_up || !L->wo || !L->w_down)
		return -1;
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
	return 0;
}

int phi_load_weights(mh_model *m)
{
	const mh_decoder_config *c = &m->cfg.hp;
	const mh_services *svc = m->svc;
	int ok = 1, phi3 = m->cfg.phi3;
	m->embed = svc->weight(m->dir, "model.embed_tokens.weight", 2, c->vocab, c->dim);
	if (phi3) {
		m->norm_w = vec(m, "model.norm.weight", 0, c->dim, 1, &ok);
	} else {
		m->norm_w = vec(m, "model.final_layernorm.weight", 0, c->dim, 1, &ok);
		m->norm_b = vec(m, "model.final_layernorm.bias", 0, c->dim, 1, &ok);
		m->lm_head_b = vec(m, "lm_head.bias", 0, c->vocab, 1, &ok);
	}
	/* tied: the checkpoint may store the matrix once, as the embedding */
	m->lm_head = c->tied && !svc->tensor(m->dir, "lm_head.weight")
			     ? m->embed
			     : svc->weight(m->dir, "lm_head.weight", 2, c->vocab, c->dim);
	if (!m->embed || !m->lm_head || !ok)
		return -1;
	for (int l = 0; l < c->n_layers; l++)
		if ((phi3 ? load_phi3_layer : load_phi2_layer)(m, l, &m->layers[l]))
			return -1;
	m->rope = svc->rope_new(m->dir, c->head_dim, c->n_ctx);
	return m->rope ? 0 : -1;
}
