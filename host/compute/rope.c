/* SPDX-License-Identifier: MIT */
/* rope.c - see rope.h. */
#include "compute/rope.h"
#include "model/modeldir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum rope_type { ROPE_DEFAULT, ROPE_LINEAR, ROPE_DYNAMIC, ROPE_LLAMA3 };

struct mh_rope {
	enum rope_type type;
	int head_dim, rot_dim;
	double base, factor;
	int orig_max;        /* dynamic: positions before scaling starts */
	float *inv_freq;     /* rot_dim / 2 */
};

/* Number from the rope object first, then from the top level. */
static int num(mh_dir *d, const char *obj, const char *key, double *out)
{
	char path[128];
	const cJSON *j = NULL;
	if (obj) {
		snprintf(path, sizeof path, "%s.%s", obj, key);
		j = modeldir_config(d, path);
	}
	if (!j)
		j = modeldir_config(d, key);
	if (!j)
		return 0;
	if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble)) { /* -1e999 parses as -inf */
		modeldir_error(d, "config.json", "'%s' should be a finite number", key);
		return -1;
	}
	*out = j->valuedouble;
	return 1;
}

static void base_inv_freq(float *inv, int rot_dim, double base)
{
	for (int i = 0; i < rot_dim / 2; i++)
		inv[i] = 1.0f / powf((float)base, (float)(2 * i) / (float)rot_dim);
}

/* transformers' _compute_llama3_parameters */
static void llama3_adjust(float *inv, int half, double factor, double low, double high, double orig)
{
	double low_wavelen = orig / low, high_wavelen = orig / high;
	for (int i = 0; i < half; i++) {
		double wavelen = 2 * M_PI / inv[i];
		float f = inv[i];
		if (wavelen > low_wavelen) {
			f = (float)(inv[i] / factor);
		} else if (wavelen >= high_wavelen) {
			double smooth = (orig / wavelen - low) / (high - low);
			f = (float)((1 - smooth) * inv[i] / factor + smooth * inv[i]);
		}
		inv[i] = f;
	}
}

mh_rope *rope_new(mh_dir *d, int head_dim, int n_ctx)
{
	const char *obj = modeldir_config(d, "rope_parameters") ? "rope_parameters"
			  : modeldir_config(d, "rope_scaling") ? "rope_scaling" : NULL;
	if (obj && !cJSON_IsObject(modeldir_config(d, obj))) {
		modeldir_error(d, "config.json", "'%s' should be an object", obj);
		return NULL;
	}
	const char *type = "default";
	char path[128];
	const cJSON *t = NULL;
	if (obj) {
		snprintf(path, sizeof path, "%s.rope_type", obj);
		t = modeldir_config(d, path);
		if (!t) {
			snprintf(path, sizeof path, "%s.type", obj);
			t = modeldir_config(d, path);
		}
		if (t && !cJSON_IsString(t)) {
			modeldir_error(d, "config.json", "'%s' should be a string", path);
			return NULL;
		}
		if (t)
			type = t->valuestring;
	}
	mh_rope *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->head_dim = head_dim;
	r->base = 10000.0;
	r->factor = 1.0;
	double partial = 1.0, maxpos = n_ctx;
	if (num(d, obj, "rope_theta", &r->base) < 0 ||
	    num(d, obj, "partial_rotary_factor", &partial) < 0 ||
	    num(d, NULL, "max_position_embeddings", &maxpos) < 0)
		goto fail;
	if (!(partial > 0 && partial <= 1)) {
		modeldir_error(d, "config.json", "partial_rotary_factor %g is not in (0, 1]", partial);
		goto fail;
	}
	if (!(r->base > 1)) {
		modeldir_error(d, "config.json", "rope_theta %g must be greater than 1", r->base);
		goto fail;
	}
	r->rot_dim = (int)(head_dim * partial);
	r->rot_dim &= ~1;
	if (r->rot_dim < 2) {
		modeldir_error(d, "config.json", "rotary dimension %d is too small", r->rot_dim);
		goto fail;
	}
	r->inv_freq = calloc(r->rot_dim / 2, sizeof *r->inv_freq);
	if (!r->inv_freq)
		goto fail;
	base_inv_freq(r->inv_freq, r->rot_dim, r->base);
	if (strcmp(type, "default") == 0) {
		r->type = ROPE_DEFAULT;
		return r;
	}
	if (strcmp(type, "linear") && strcmp(type, "dynamic") && strcmp(type, "llama3")) {
		modeldir_error(d, "config.json", "rope type '%s' (%s) is not supported", type, path);
		goto fail;
	}
	if (num(d, obj, "factor", &r->factor) <= 0 || !(r->factor >= 1)) {
		modeldir_error(d, "config.json", "rope type '%s' needs a 'factor' >= 1", type);
		goto fail;
	}
	if (strcmp(type, "linear") == 0) {
		r->type = ROPE_LINEAR;
		for (int i = 0; i < r->rot_dim / 2; i++)
			r->inv_freq[i] = (float)(r->inv_freq[i] / r->factor);
	} else if (strcmp(type, "dynamic") == 0) {
		double orig = maxpos;
		int64_t om;
		if (num(d, obj, "original_max_position_embeddings", &orig) < 0)
			goto fail;
		if (mh_whole(orig, 1, 1 << 24, &om) != 0) { /* (int)1e300 is undefined */
			modeldir_error(d, "config.json", "original_max_position_embeddings %g is not "
				       "a whole number from 1 to %d", orig, 1 << 24);
			goto fail;
		}
		r->type = ROPE_DYNAMIC;
		r->orig_max = (int)om;
	} else { /* llama3 */
		double low = 0, high = 0, orig = 0;
		if (num(d, obj, "low_freq_factor", &low) <= 0 ||
		    num(d, obj, "high_freq_factor", &high) <= 0 ||
		    num(d, obj, "original_max_position_embeddings", &orig) <= 0 || !(high > low) ||
		    !(low > 0) || !(orig > 0)) {
			modeldir_error(d, "config.json", "rope type 'llama3' needs low_freq_factor < "
				       "high_freq_factor and original_max_position_embeddings");
			goto fail;
		}
		r->type = ROPE_LLAMA3;
		llama3_adjust(r->inv_freq, r->rot_dim / 2, r->factor, low, high, orig);
	}
	return r;
fail:
	rope_free(r);
	return NULL;
}

void rope_free(mh_rope *r)
{
	if (r) {
		free(r->inv_freq);
		free(r);
	}
}

int rope_rot_dim(const mh_rope *r)
{
	return r->rot_dim;
}

void rope_apply(const mh_rope *r, float *x, int n, int n_heads, int pos0)
{
	int half = r->rot_dim / 2;
	float inv[512], cs[512], sn[512];
	if (half > 512)
		return; /* head_dim > 1024 is refused by the plugins' loaders */
	memcpy(inv, r->inv_freq, half * sizeof *inv);
	int seq_len = pos0 + n;
	if (r->type == ROPE_DYNAMIC && seq_len > r->orig_max) {
		/* transformers' _compute_dynamic_ntk_parameters */
		double base = r->base * pow(r->factor * seq_len / r->orig_max - (r->factor - 1),
					    (double)r->rot_dim / (r->rot_dim - 2));
		base_inv_freq(inv, r->rot_dim, base);
	}
	for (int t = 0; t < n; t++) {
		float p = (float)(pos0 + t);
		for (int i = 0; i < half; i++) {
			float a = p * inv[i];
			cs[i] = cosf(a);
			sn[i] = sinf(a);
		}
		for (int h = 0; h < n_heads; h++) {
			float *v = x + ((size_t)t * n_heads + h) * r->head_dim;
			for (int i = 0; i < half; i++) {
				float a = v[i], b = v[i + half];
				v[i] = a * cs[i] - b * sn[i];
				v[i + half] = b * cs[i] + a * sn[i];
			}
		}
	}
}
