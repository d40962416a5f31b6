/* mistral.h - private to the mistral plugin: the model's structs
 * (components.c), how config.json and the weights fill them (loader.c), and
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
	const mh_services *svc;
	mh_dir *dir;
	mistral_config cfg;
	const mh_tensor *embed, *lm_head;
	const float *norm;
	mistral_layer *layers;
	mh_rope *rope;
	mh_decoder *dec; /* the host's buffers and KV cache */
	mh_model_info info;
};

/* components.c */
mh_model *mistral_alloc(const mh_services *svc, mh_dir *dir, const mistral_config *cfg);
void mistral_free(mh_model *m);

/* loader.c */
int mistral_read_config(const mh_services *svc, mh_dir *dir, int32_t n_ctx, mistral_config *cfg);
int mistral_load_weights(mh_model *m);

#endif
