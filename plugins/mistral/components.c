/* components.c - the mistral model's structs: allocation of the layer table,
 * the host's decoder state (activation buffers, KV cache), and their release. */
#include "mistral.h"

mh_model *mistral_alloc(const mh_services *svc, mh_dir *dir, const mistral_config *cfg)
{
	const mh_decoder_config *hp = &cfg->hp;
	mh_model *m = svc->alloc(sizeof *m);
	if (m) {
		m->svc = svc;
		m->dir = dir;
		m->cfg = *cfg;
		m->layers = svc->alloc(hp->n_layers * sizeof *m->layers);
	}
	if (!m || !m->layers) {
		svc->error(dir, NULL, "out of memory");
		mistral_free(m);
		return NULL;
	}
	m->dec = svc->decoder_new(dir, hp, cfg->window);
	if (!m->dec) {
		mistral_free(m);
		return NULL;
	}
	mh_model_info_init(&m->info, hp, m->dec->kv->bytes);
	return m;
}

void mistral_free(mh_model *m)
{
	if (!m)
		return;
	const mh_services *svc = m->svc;
	if (m->rope)
		svc->rope_free(m->rope);
	svc->decoder_free(m->dec);
	svc->free(m->layers);
	svc->free(m);
}
