/* components.c - the phi model's structs: allocation of the layer table,
 * the KV cache and the activation buffers, and their release. */
#include "phi.h"

#include <string.h>

#define CHUNK 256 /* tokens per forward chunk */

mh_model *phi_alloc(const mh_services *svc, mh_dir *dir, const phi_config *cfg)
{
	mh_model *m = svc->alloc(sizeof *m);
	if (!m)
		return NULL;
	m->svc = svc;
	m->dir = dir;
	m->cfg = *cfg;
	size_t kv_dim = (size_t)cfg->n_kv_heads * cfg->head_dim;
	size_t q_dim = (size_t)cfg->n_heads * cfg->head_dim;
	size_t cache = (size_t)cfg->n_layers * cfg->n_ctx * kv_dim;
	int cap = cfg->n_ctx < CHUNK ? cfg->n_ctx : CHUNK;
	size_t wide = q_dim > (size_t)cfg->dim ? q_dim : (size_t)cfg->dim;
	m->layers = svc->alloc(cfg->n_layers * sizeof *m->layers);
	m->k_cache = svc->alloc(cache * sizeof(float));
	m->v_cache = svc->alloc(cache * sizeof(float));
	m->buf.cap = cap;
	m->buf.x = svc->alloc((size_t)cap * cfg->dim * sizeof(float));
	m->buf.xn = svc->alloc((size_t)cap * cfg->dim * sizeof(float));
	m->buf.q = svc->alloc((size_t)cap * q_dim * sizeof(float));
	m->buf.att = svc->alloc((size_t)cap * q_dim * sizeof(float));
	m->buf.tmp = svc->alloc((size_t)cap * wide * sizeof(float));
	if (cfg->phi3)
		m->buf.gate = svc->alloc((size_t)cap * cfg->ffn_dim * sizeof(float));
	m->buf.up = svc->alloc((size_t)cap * cfg->ffn_dim * sizeof(float));
	if (!m->layers || !m->k_cache || !m->v_cache || !m->buf.x || !m->buf.xn || !m->buf.q ||
	    !m->buf.att || !m->buf.tmp || (cfg->phi3 && !m->buf.gate) || !m->buf.up) {
		svc->error(dir, NULL, "out of memory for a %d-token context", cfg->n_ctx);
		phi_free(m);
		return NULL;
	}
	m->info = (mh_model_info){
		.struct_size = sizeof(mh_model_info),
		.vocab_size = cfg->vocab,
		.n_ctx = cfg->n_ctx,
		.max_context = cfg->max_pos,
		.bos_id = cfg->bos,
		.n_eos = cfg->n_eos,
		.kv_cache_bytes = 2 * cache * sizeof(float),
	};
	memcpy(m->info.eos_ids, cfg->eos, sizeof cfg->eos);
	return m;
}

void phi_free(mh_model *m)
{
	if (!m)
		return;
	const mh_services *svc = m->svc;
	if (m->rope)
		svc->rope_free(m->rope);
	svc->free(m->layers);
	svc->free(m->k_cache);
	svc->free(m->v_cache);
	svc->free(m->buf.x);
	svc->free(m->buf.xn);
	svc->free(m->buf.q);
	svc->free(m->buf.att);
	svc->free(m->buf.tmp);
	svc->free(m->buf.gate);
	svc->free(m->buf.up);
	svc->free(m);
}
