/* SPDX-License-Identifier: MIT */
/* decoder.h - the scaffolding of a standard decoder-only transformer that
 * the host lends to plugins (mh_services.decoder_new, decoder_free,
 * decoder_forward, kv_new, kv_free; since 1.2 decoder_seq_new, decoder_seq_free,
 * decoder_batch, decoder_attention; contracts in modelhost/plugin.h). */
#ifndef MH_DECODER_H
#define MH_DECODER_H

#include <modelhost/plugin.h>

mh_kv_cache *decoder_kv_new(int n_layers, int n_ctx, int kv_dim);
void decoder_kv_free(mh_kv_cache *c);
mh_decoder *decoder_new(mh_dir *dir, const mh_decoder_config *hp, int window);
void decoder_free(mh_decoder *d);
int decoder_forward(mh_decoder *d, mh_dir *dir, const mh_decoder_step *step, const int32_t *ids,
		    int n, int pos, float *logits, int flags);
int decoder_seq_new(mh_decoder *d, mh_dir *dir);
void decoder_seq_free(mh_decoder *d, int seq);
int decoder_batch(mh_decoder *d, mh_dir *dir, const mh_decoder_step *step,
		  const mh_batch_item *items, int n, float *logits);
void decoder_attention(mh_decoder *d, int layer, const mh_rope *rope, int window, float scale);

#endif
