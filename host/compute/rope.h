/* SPDX-License-Identifier: MIT */
/* rope.h - rotary position embeddings as Hugging Face transformers computes
 * them (rotate-half layout), configured from config.json in either spelling:
 * transformers 5's "rope_parameters" or the older "rope_theta" /
 * "rope_scaling" / "partial_rotary_factor".  Types: default, linear,
 * dynamic (NTK), llama3.  Anything else is refused by name. */
#ifndef MH_ROPE_H
#define MH_ROPE_H

#include <modelhost/plugin.h>

mh_rope *rope_new(mh_dir *dir, int head_dim, int n_ctx);
void rope_free(mh_rope *r);
void rope_apply(const mh_rope *r, float *x, int n, int n_heads, int pos0);
int rope_rot_dim(const mh_rope *r);

#endif
