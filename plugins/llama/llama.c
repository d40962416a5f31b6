/* SPDX-License-Identifier: MIT */
/* llama.c - the llama plugin.  LlamaForCausalLM is the SDK's Llama-style
 * decoder as it stands (mh_llama_model: weights, layer, head; the host's
 * scaffold does chunks, batches, caches and attention); what is Llama's own
 * is config.json's optional biases.  Anything this plugin cannot honour is
 * refused by name. */
#include <modelhost/plugin.h>

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	mh_llama_config c = { .hp = { .max_pos = 2048 } };
	int attn_bias, mlp_bias;
	if (mh_llama_config_read(svc, dir, n_ctx, 1e-6, &c) != 0 ||
	    svc->config_bool(dir, "attention_bias", 0, &attn_bias) < 0 ||
	    svc->config_bool(dir, "mlp_bias", 0, &mlp_bias) < 0)
		return NULL;
	if (attn_bias)
		c.parts |= MH_LLAMA_QKV_BIAS | MH_LLAMA_O_BIAS;
	if (mlp_bias)
		c.parts |= MH_LLAMA_MLP_BIAS;
	return mh_llama_model_new(svc, dir, &c);
}

static const char *const architectures[] = { "LlamaForCausalLM", "llama", NULL };

MODELHOST_PLUGIN_DEFINE("llama", "1.0.0",
			"Llama family: GQA/MQA, tied or untied head, linear/dynamic/llama3 rope",
			"MIT", architectures,
			.load = load,
			MH_DECODER_MODEL_ENTRIES);
