/* components.c - the qwen model's structs: allocation of the layer table,
 * the KV cache and the activation buffers, and their release. */
#include "qwen.h"

#define CHUNK 256 /* tokens per forward chunk */

mh_model *qwen_alloc(const mh_services *svc, mh_dir *dir, const qwen_config *cfg)
{
	mh_model *m = svc->alloc(sizeof *m);
	if (!m)
		return NULL;
	m->svc = svc;
	m->dir = dir;
	m->cfg = *cfg;
	const mh_decoder_config *hp = &cfg->hp;
	size_t q_dim = (size_t)hp->n_heads * hp->head_dim;
	int cap = hp->n_ctx < CHUNK ? hp->n_ctx : CHUNK;
	size_t wide = q_dim > (size_t)hp->dim ? q_dim : (size_t)hp->dim;
	m->layers = svc->alloc(hp->n_layers * sizeof *m->layers);
	m->kv = svc->kv_new(hp->n_layers, hp->n_ctx, hp->n_kv_heads * hp->head_dim);
	m->buf.cap = cap;
	m->buf.x = svc->alloc((size_t)cap * hp->dim * sizeof(float));
	m->buf.xn = svc->alloc((size_t)cap * hp->dim * sizeof(float));
	m->buf.q = svc->alloc((size_t)cap * q_dim * sizeof(float));
	m->buf.att = svc->alloc((size_t)cap * q_dim * sizeof(float));
	m->buf.tmp = svc->alloc((size_t)cap * wide * sizeof(float));
	m->buf.gate = svc->alloc((size_t)cap * hp->ffn_dim * sizeof(float));
	m->buf.up = svc->alloc((size_t)cap * hp->ffn_dim * sizeof(float));
	if (!m->layers || !m->kv || !m->buf.x || !m->buf.xn || !m->buf.q || !m->buf.att ||
	    !m->buf.tmp || !m->buf.gate || !m->buf.up) {
		svc->error(dir, NULL, "out of memory for a %d-token context", hp->n_ctx);
		qwen_free(m);
		return NULL;
	}
	mh_model_info_init(&m->info, hp, m->kv->bytes);
	return m;
}

void qwen_free(mh_model *m)
{
	if (!m)
		return;
	const mh_services *svc = m->svc;
	if (m->rope)
		svc->rope_free(m->rope);
	svc->free(m->layers);
	svc->kv_free(m->kv);
	svc->free(m->buf.x);
	svc->free(m->buf.xn);
	svc->free(m->buf.q);
	svc->free(m->buf.att);
	svc->free(m->buf.tmp);
	svc->free(m->buf.gate);
	svc->free(m->buf.up);
	svc->free(m);
}
