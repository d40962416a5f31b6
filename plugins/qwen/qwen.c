/* SPDX-License-Identifier: MIT */
/* qwen.c - the qwen plugin.  Qwen2 and Qwen3 are the SDK's Llama-style
 * decoder (mh_llama_model) with their own parts: Qwen2 has q/k/v biases,
 * Qwen3 RMSNorms each head of q and k before rotary and has biases only
 * with attention_bias.  Anything this plugin cannot honour is refused by
 * name. */
#include <modelhost/plugin.h>

#include <stdio.h>
#include <string.h>

/* Sliding-window layers (use_sliding_window, or a layer_types entry other
 * than full_attention) are refused. */
static int check_full_attention(const mh_services *svc, mh_dir *dir, int n_layers)
{
	int swa;
	if (svc->config_bool(dir, "use_sliding_window", 0, &swa) < 0)
		return -1;
	if (swa) {
		svc->error(dir, "config.json", "'use_sliding_window' is true: sliding-window "
			   "attention is not supported for Qwen models");
		return -1;
	}
	for (int l = 0; l < n_layers; l++) {
		char key[64];
		const char *type;
		snprintf(key, sizeof key, "layer_types.%d", l);
		if (svc->config_string(dir, key, "full_attention", &type) < 0)
			return -1;
		if (strcmp(type, "full_attention") != 0) {
			svc->error(dir, "config.json", "'%s' is '%s': only full_attention layers "
				   "are supported", key, type);
			return -1;
		}
	}
	return 0;
}

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	mh_llama_config c = { .hp = { .max_pos = 32768 } };
	int qwen3 = mh_config_is(svc, dir, "Qwen3ForCausalLM", "qwen3"), bias = 1;
	if (qwen3 < 0 || mh_llama_config_read(svc, dir, n_ctx, 1e-6, &c) != 0 ||
	    check_full_attention(svc, dir, c.hp.n_layers) != 0)
		return NULL;
	if (!qwen3) {
		c.parts = MH_LLAMA_QKV_BIAS;
	} else {
		if (svc->config_bool(dir, "attention_bias", 0, &bias) < 0)
			return NULL;
		c.parts = MH_LLAMA_QK_NORM | (bias ? MH_LLAMA_QKV_BIAS | MH_LLAMA_O_BIAS : 0);
	}
	return mh_llama_model_new(svc, dir, &c);
}

static const char *const architectures[] = { "Qwen2ForCausalLM", "qwen2", "Qwen3ForCausalLM",
					     "qwen3", NULL };

MODELHOST_PLUGIN_DEFINE("qwen", "1.0.0",
			"Qwen2 (q/k/v biases) and Qwen3 (q/k norms, explicit head_dim)",
			"MIT", architectures,
			.load = load,
			MH_DECODER_MODEL_ENTRIES);
