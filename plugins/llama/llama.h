/* SPDX-License-Identifier: MIT */
/* llama.h - private to the llama plugin: the model's structs (the SDK's
 * mh_decoder_model holds what every decoder shares), how config.json and the weights fill them (loader.c), and the forward
 * pass (model.c).  Only the SDK is visible from here. */
#ifndef LLAMA_H
#define LLAMA_H

#include <modelhost/plugin.h>

typedef struct llama_config {
	mh_decoder_config hp; /* the standard hyper-parameters */
	float eps;
	int attn_bias, mlp_bias;
} llama_config;

typedef struct llama_layer {
	const float *attn_norm, *ffn_norm;
	const mh_tensor *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
	const float *bq, *bk, *bv, *bo, *b_gate, *b_up, *b_down; /* NULL when absent */
} llama_layer;

struct mh_model {
	mh_decoder_model base; /* first: the SDK's helpers run the model through it */
	llama_config cfg;
	const mh_tensor *embed, *lm_head;
	const float *norm;
	llama_layer *layers; /* base.layers */
};

/* loader.c: the model from config.json and the weights, or NULL + error */
mh_model *llama_load(const mh_services *svc, mh_dir *dir, int32_t n_ctx);

#endif
