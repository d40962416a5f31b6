/* SPDX-License-Identifier: MIT */
/* phi.h - private to the phi plugin (Phi-2 and Phi-3): the model's structs
 * (the SDK's mh_decoder_model holds what every decoder shares), how config.json and the weights fill them (loader.c), and
 * the forward passes (model.c).  Only the SDK is visible from here.
 *
 * Phi-2: LayerNorm with bias, one norm feeding attention and MLP in parallel
 * (h = x + attn(ln(x)) + mlp(ln(x))), biases everywhere, partial rotary,
 * GELU MLP (fc1/fc2), optional per-head q/k LayerNorm.
 * Phi-3: Llama-like (RMSNorm, SwiGLU) with fused qkv_proj and gate_up_proj,
 * optional sliding-window attention. */
#ifndef PHI_H
#define PHI_H

#include <modelhost/plugin.h>

enum phi_act { PHI_GELU, PHI_GELU_TANH };

typedef struct phi_config {
	mh_decoder_config hp; /* the standard hyper-parameters */
	int phi3; /* 0: Phi-2, 1: Phi-3 */
	int window;      /* Phi-3 sliding_window; 0 = full attention */
	float eps;       /* layer_norm_eps (Phi-2) or rms_norm_eps (Phi-3) */
	enum phi_act act;  /* Phi-2 MLP activation */
	int qk_layernorm;  /* Phi-2 */
} phi_config;

typedef struct phi_layer {
	/* Phi-2: input_layernorm weight + bias.  Phi-3: input_layernorm and
	 * post_attention_layernorm (RMSNorm, no bias). */
	const float *ln_w, *ln_b, *post_ln_w;
	const float *q_ln_w, *q_ln_b, *k_ln_w, *k_ln_b; /* Phi-2 qk_layernorm */
	/* wq/wk/wv and w_gate/w_up point at the views below in Phi-3 */
	const mh_tensor *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
	const float *bq, *bk, *bv, *bo, *b_up, *b_down; /* Phi-2 */
	mh_tensor q_view, k_view, v_view, gate_view, up_view;
} phi_layer;

struct mh_model {
	mh_decoder_model base; /* first: the SDK's helpers run the model through it */
	phi_config cfg;
	const mh_tensor *embed, *lm_head;
	const float *norm_w, *norm_b, *lm_head_b; /* norm_b, lm_head_b: Phi-2 */
	phi_layer *layers; /* base.layers */
};

/* loader.c: the model from config.json and the weights, or NULL + error */
mh_model *phi_load(const mh_services *svc, mh_dir *dir, int32_t n_ctx);

#endif
