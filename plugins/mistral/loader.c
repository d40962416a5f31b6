/* loader.c - config.json and the safetensors weights into the mistral
 * components.  Anything this plugin cannot honour is refused by name. */
#include "mistral.h"

#include <stdio.h>
#include <string.h>

int mistral_read_config(const mh_services *svc, mh_dir *dir, int32_t n_ctx, mistral_config *c)
{
	*c = (mistral_config){ .hp = { .struct_size = sizeof c->hp, .max_pos = 4096 * 32 } };
	if (svc->decoder_config(dir, n_ctx, &c->hp) != 0)
		return -1;
	/* null or absent: full attention */
	int64_t window;
	int rc = svc->config_int(dir, "sliding_window", 0, &window);
	if (rc < 0)
		return -1;
	if (rc > 0 && (window <= 0 || window > INT32_MAX)) {
		svc->error(dir, "config.json", "'sliding_window' is %lld, expected a positive "
			   "number or null", (long long)window);
		return -1;
	}
	c->window = (int)window;
	double eps;
	if (svc->config_float(dir, "rms_norm_eps", 1e-6, &eps) < 0)
		return -1;
	c->eps = (float)eps;
	if (strcmp(c->hp.hidden_act, "silu") != 0) {
		svc->error(dir, "config.json", "hidden_act '%s' is not supported (silu only)",
			   c->hp.hidden_act);
		return -1;
	}
	return 0;
}

static const mh_tensor *w2(mh_model *m, const char *fmt, int layer, int64_t d0, int64_t d1)
{
	char name[256];
	snprintf(name, sizeof name, fmt, layer);
	return m->svc->weight(m->dir, name, 2, d0, d1);
}

static const float *norm(mh_model *m, const char *fmt, int layer, int64_t d0, int *ok)
{
	char name[256];
	snprintf(name, sizeof name, fmt, layer);
	const mh_tensor *t = m->svc->weight(m->dir, name, 1, d0, 0);
	const float *v = t ? m->svc->vec_f32(m->dir, t) : NULL;
	if (!v)
		*ok = 0;
	return v;
}

int mistral_load_weights(mh_model *m)
{
	const mh_decoder_config *c = &m->cfg.hp;
	const mh_services *svc = m->svc;
	int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
	int ok = 1;
	m->embed = svc->weight(m->dir, "model.embed_tokens.weight", 2, c->vocab, c->dim);
	m->norm = norm(m, "model.norm.weight", 0, c->dim, &ok);
	/* tied: the checkpoint may store the matrix once, as the embedding */
	m->lm_head = c->tied && !svc->tensor(m->dir, "lm_head.weight")
			     ? m->embed
			     : svc->weight(m->dir, "lm_head.weight", 2, c->vocab, c->dim);
	if (!m->embed || !m->lm_head || !ok)
		return -1;
	for (int l = 0; l < c->n_layers && ok; l++) {
		mistral_layer *L = &m->layers[l];
		L->attn_norm = norm(m, "model.layers.%d.input_layernorm.weight", l, c->dim, &ok);
		L->ffn_norm = norm(m, "model.layers.%d.post_attention_layernorm.weight", l, c->dim, &ok);
		L->wq = w2(m, "model.layers.%d.self_attn.q_proj.weight", l, q_dim, c->dim);
		L->wk = w2(m, "model.layers.%d.self_attn.k_proj.weight", l, kv_dim, c->dim);
		L->wv = w2(m, "model.layers.%d.self_attn.v_proj.weight", l, kv_dim, c->dim);
		L->wo = w2(m, "model.layers.%d.self_attn.o_proj.weight", l, c->dim, q_dim);
		L->w_gate = w2(m, "model.layers.%d.mlp.gate_proj.weight", l, c->ffn_dim, c->dim);
		L->w_up = w2(m, "model.layers.%d.mlp.up_proj.weight", l, c->ffn_dim, c->dim);
		L->w_down = w2(m, "model.layers.%d.mlp.down_proj.weight", l, c->dim, c->ffn_dim);
		if (!L->wq || !L->wk || !L->wv || !L->wo || !L->w_gate || !L->w_up || !L->w_down)
			ok = 0;
	}
	if (!ok)
		return -1;
	m->rope = svc->rope_new(m->dir, c->head_dim, c->n_ctx);
	return m->rope ? 0 : -1;
}
