/* model.c - the Mistral forward pass over a KV cache (sliding-window
 * attention: position i sees j with i - window < j <= i), and the plugin
 * descriptor.  Prompts go through as matrix-matrix products (in chunks of
 * buf.cap tokens), decoding one token at a time. */
#include "mistral.h"

#include <math.h>

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	mistral_config cfg;
	if (mistral_read_config(svc, dir, n_ctx, &cfg) != 0)
		return NULL;
	mh_model *m = mistral_alloc(svc, dir, &cfg);
	if (m && mistral_load_weights(m) != 0) {
		mistral_free(m);
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

static void layer_forward(mh_model *m, int l, int n, int pos)
{
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	const mistral_layer *L = &m->layers[l];
	mistral_buffers *b = &m->buf;
	size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim;
	float *kc = mh_kv_k(m->kv, l), *vc = mh_kv_v(m->kv, l);

	svc->rmsnorm(b->xn, b->x, L->attn_norm, n, c->dim, eps);
	svc->matmul(b->q, b->xn, L->wq, NULL, n);
	svc->matmul(kc + pos * kv_dim, b->xn, L->wk, NULL, n);
	svc->matmul(vc + pos * kv_dim, b->xn, L->wv, NULL, n);
	svc->rope_apply(m->rope, b->q, n, c->n_heads, pos);
	svc->rope_apply(m->rope, kc + pos * kv_dim, n, c->n_kv_heads, pos);
	svc->attention(b->att, b->q, kc, vc, n, pos, c->n_heads, c->n_kv_heads, c->head_dim,
		       m->cfg.window, 1.0f / sqrtf((float)c->head_dim));
	svc->matmul(b->tmp, b->att, L->wo, NULL, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);

	svc->rmsnorm(b->xn, b->x, L->ffn_norm, n, c->dim, eps);
	svc->matmul(b->gate, b->xn, L->w_gate, NULL, n);
	svc->matmul(b->up, b->xn, L->w_up, NULL, n);
	svc->silu_mul(b->gate, b->up, (size_t)n * c->ffn_dim);
	svc->matmul(b->tmp, b->gate, L->w_down, NULL, n);
	svc->add(b->x, b->tmp, (size_t)n * c->dim);
}

static int forward(mh_model *m, const int32_t *ids, int n, int pos, float *logits, int flags)
{
	const mh_services *svc = m->svc;
	const mh_decoder_config *c = &m->cfg.hp;
	const float eps = m->cfg.eps;
	if (n <= 0 || pos < 0 || pos + n > c->n_ctx) {
		svc->error(m->dir, NULL, "positions %d..%d are outside the %d-token context", pos,
			   pos + n - 1, c->n_ctx);
		return -1;
	}
	for (int done = 0; done < n;) {
		int k = n - done < m->buf.cap ? n - done : m->buf.cap;
		if (svc->embed(m->buf.x, m->embed, ids + done, k) != 0) {
			svc->error(m->dir, NULL, "token id out of range 0..%d", c->vocab - 1);
			return -1;
		}
		for (int l = 0; l < c->n_layers; l++)
			layer_forward(m, l, k, pos + done);
		if (flags & MH_LOGITS_ALL) {
			svc->rmsnorm(m->buf.xn, m->buf.x, m->norm, k, c->dim, eps);
			svc->matmul(logits + (size_t)done * c->vocab, m->buf.xn, m->lm_head, NULL, k);
		} else if (done + k == n) {
			/* only the last position's logits are wanted */
			svc->rmsnorm(m->buf.xn, m->buf.x + (size_t)(k - 1) * c->dim, m->norm, 1, c->dim,
				     eps);
			svc->matmul(logits, m->buf.xn, m->lm_head, NULL, 1);
		}
		done += k;
	}
	return 0;
}

static const char *const architectures[] = { "MistralForCausalLM", "mistral", NULL };

MODELHOST_PLUGIN_DEFINE("mistral", "1.0.0",
			"Mistral: sliding-window attention, GQA, tied or untied head",
			"MIT", architectures,
			.load = load,
			.free = mistral_free,
			.info = info,
			.forward = forward,
			.reset = reset);
