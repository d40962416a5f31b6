/* SPDX-License-Identifier: MIT */
/* mistral.h - private to the mistral plugin: the model's structs
 * (the SDK's mh_decoder_model holds what every decoder shares), how config.json and the weights fill them (loader.c), and
 * the forward pass with sliding-window attention (model.c).  Only the SDK is
 * visible from here. */
#ifndef MISTRAL_H
#define MISTRAL_H

#include <modelhost/plugin.h>

typedef struct mistral_config {
	mh_decoder_config hp; /* the standard hyper-parameters */
	int window; /* sliding_window; 0 = full attention */
	float eps;
} mistral_config;

typedef struct mistral_layer {
	const float *attn_norm, *ffn_norm;
	const mh_tensor *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
} mistral_layer;

struct mh_model {
	mh_decoder_model base; /* first: the SDK's helpers run the model through it */
	mistral_config cfg;
	const mh_tensor *embed, *lm_head;
	const float *norm;
	mistral_layer *layers; /* base.layers */
};

/* loader.c: the model from config.json and the weights, or NULL + error */
mh_model *mistral_load(const mh_services *svc, mh_dir *dir, int32_t n_ctx);

#endif
