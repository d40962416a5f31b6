/* llama.h - private to the llama plugin: the model's structs (components.c),
 * how config.json and the weights fill them (loader.c), and the forward
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
	const mh_services *svc;
	mh_dir *dir;
	llama_config cfg;
	const mh_tensor *embed, *lm_head;
	const float *norm;
	llama_layer *layers;
	mh_rope *rope;
	mh_decoder *dec; /* the host's buffers and KV cache */
	mh_model_info info;
};

/* components.c */
mh_model *llama_alloc(const mh_services *svc, mh_dir *dir, const llama_config *cfg);
void llama_free(mh_model *m);

/* loader.c */
int llama_read_config(const mh_services *svc, mh_dir *dir, int32_t n_ctx, llama_config *cfg);
int llama_load_weights(mh_model *m);

#endif
