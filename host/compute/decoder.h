/* decoder.h - the scaffolding of a standard decoder-only transformer that
 * the host lends to plugins (mh_services.decoder_new, decoder_free,
 * decoder_forward, kv_new, kv_free; contracts in modelhost/plugin.h). */
#ifndef MH_DECODER_H
#define MH_DECODER_H

#include <modelhost/plugin.h>

mh_kv_cache *decoder_kv_new(int n_layers, int n_ctx, int kv_dim);
void decoder_kv_free(mh_kv_cache *c);
mh_decoder *decoder_new(mh_dir *dir, const mh_decoder_config *hp, int window);
void decoder_free(mh_decoder *d);
int decoder_forward(mh_decoder *d, mh_dir *dir, const mh_decoder_step *step, const int32_t *ids,
		    int n, int pos, float *logits, int flags);

#endif
