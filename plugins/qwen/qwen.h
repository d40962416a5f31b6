/* SPDX-License-Identifier: MIT */
/* qwen.h - private to the qwen plugin (Qwen2 and Qwen3): the model's structs
 * (the SDK's mh_decoder_model holds what every decoder shares), how config.json and the weights fill them (loader.c), and
 * the forward pass (model.c).  Only the SDK is visible from here. */
#ifndef QWEN_H
#define QWEN_H

#include <modelhost/plugin.h>

typedef struct qwen_config {
	mh_decoder_config hp; /* the standard hyper-parameters */
	float eps;
	int qwen3;     /* per-head q_norm / k_norm before rotary */
	int qkv_bias;  /* Qwen2: always; Qwen3: attention_bias */
	int o_bias;    /* Qwen3: attention_bias */
} qwen_config;

typedef struct qwen_layer {
	const float *attn_norm, *ffn_norm;
	const float *q_norm, *k_norm; /* [head_dim], Qwen3 only */
	const mh_tensor *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
	const float *bq, *bk, *bv, *bo; /* NULL when absent */
} qwen_layer;

struct mh_model {
	mh_decoder_model base; /* first: the SDK's helpers run the model through it */
	qwen_config cfg;
	const mh_tensor *embed, *lm_head;
	const float *norm;
	qwen_layer *layers; /* base.layers */
};

/* loader.c: the model from config.json and the weights, or NULL + error */
mh_model *qwen_load(const mh_services *svc, mh_dir *dir, int32_t n_ctx);

#endif
