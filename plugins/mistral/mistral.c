/* SPDX-License-Identifier: MIT */
/* mistral.c - the mistral plugin.  MistralForCausalLM is the SDK's
 * Llama-style decoder (mh_llama_model) with sliding-window attention:
 * position i sees j with i - window < j <= i, and the host's cache keeps
 * only the slots a window can still see.  Anything this plugin cannot
 * honour is refused by name. */
#include <modelhost/plugin.h>

static mh_model *load(const mh_services *svc, mh_dir *dir, int32_t n_ctx)
{
	mh_llama_config c = { .hp = { .max_pos = 4096 * 32 } };
	if (mh_llama_config_read(svc, dir, n_ctx, 1e-6, &c) != 0 ||
	    mh_config_sliding_window(svc, dir, &c.window) != 0)
		return NULL;
	return mh_llama_model_new(svc, dir, &c);
}

static const char *const architectures[] = { "MistralForCausalLM", "mistral", NULL };

MODELHOST_PLUGIN_DEFINE("mistral", "1.0.0",
			"Mistral: sliding-window attention, GQA, tied or untied head",
			"MIT", architectures,
			.load = load,
			MH_DECODER_MODEL_ENTRIES);
