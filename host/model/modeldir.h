/* SPDX-License-Identifier: MIT */
/* host/model/: model files, a directory and its safetensors, validated and
 * mapped.  May include base/ and the SDK header. */
/* modeldir.h - a Hugging Face model directory: config.json (+
 * generation_config.json) and the weights, from model.safetensors or from
 * the shards named in model.safetensors.index.json.  This is the host side
 * of the SDK's opaque mh_dir. */
#ifndef MH_MODELDIR_H
#define MH_MODELDIR_H

#include "model/safetensors.h"
#include "base/util.h"

#include <cJSON.h>

/* A weight converted at load (host/plugin/quantize.c): quantized, or
 * dequantized for an old plugin, or transposed by weight_t (then maybe
 * quantized too), from index entry `src`; owned by the dir. */
typedef struct mh_conv {
	mh_tensor *t;
	int src;
	int transposed;
} mh_conv;

struct mh_dir {
	char *path;
	cJSON *config;
	cJSON *generation;  /* generation_config.json, or NULL */
	st_file *shards;
	int n_shards;
	const mh_tensor **index; /* every tensor, sorted by name */
	int *index_shard;        /* the shard each one lives in */
	int n_tensors;
	void **vec_copies;       /* vec_f32 conversions, freed with the dir */
	int n_vec_copies;
	/* --quant (host/plugin/quantize.c): the dtype for 2-D weights and for
	 * the embedding table and output layer (MH_F32: none, keep them) */
	mh_dtype quant, quant_io;
	int quant_ok;            /* the plugin takes quantized tensors (ABI >= 1.2) */
	int quant_notice;        /* "--quant ignored" said once */
	struct mh_conv *conv;    /* weights converted at load, owned */
	int n_conv;
	unsigned char *replaced; /* per index entry: its mapped bytes are no longer used */
	/* The shards are opened with ST_DEFER_SCALES: the block scales of
	 * stored Q8_0/Q4_0 tensors are checked before their data is first
	 * used (compute/scales.c, or quantize_check_scales), not at open. */
	int scales_checked;
	unsigned char *scale_state; /* per index entry, compute/scales.c */
	int scale_unchecked;
	void (*on_close)(mh_dir *d); /* called first by modeldir_close */
	char err[MH_ERRLEN];     /* first error recorded through the services */
};

/* Open and validate DIR (all but the block scales of quantized tensors,
 * above).  NULL + "DIR/FILE: problem" in err. */
mh_dir *modeldir_open(const char *path, char *err);
void modeldir_close(mh_dir *d);
/* 1 with "DIR/FILE: changed while in use" in err when a mapped shard was
 * truncated in place since it was opened (see st_changed). */
int modeldir_changed(const mh_dir *d, char *err);
/* Fault every shard's pages in now: once, before the first forward pass
 * (but not those of tensors replaced by a converted copy). */
void modeldir_populate(mh_dir *d);

const mh_tensor *modeldir_tensor(const mh_dir *d, const char *name);
/* Index of a tensor by name, -1 if none. */
int modeldir_find(const mh_dir *d, const char *name);
/* Give back the pages of index entry i's mapped bytes (a converted copy
 * replaces them); populate skips them from now on. */
void modeldir_drop(mh_dir *d, int i);
/* Give back the pages of part of index entry i's mapped bytes (a
 * conversion has read them), without marking the entry replaced. */
void modeldir_drop_part(mh_dir *d, int i, const void *p, size_t n);
/* Index entry src's conversion (transposed or not), or NULL. */
const mh_tensor *modeldir_conv(const mh_dir *d, int src, int transposed);
/* Keep conversion c of entry src (owned by d from now on) and give back
 * src's mapped pages.  -1 when out of memory (c is still the caller's). */
int modeldir_add_conv(mh_dir *d, mh_tensor *c, int src, int transposed);
/* The tensors that hold index entry i in memory now, as the plugin reads
 * them: its conversions, and its mapped bytes unless a conversion replaced
 * them.  Returns how many (at most 3) were stored in out. */
int modeldir_resident(const mh_dir *d, int i, const mh_tensor *out[3]);

/* The file (relative to the dir) a tensor came from. */
const char *modeldir_file_of(const mh_dir *d, const mh_tensor *t);

/* config.json by path ("rope_scaling.factor", "architectures.0"); NULL if
 * absent. */
const cJSON *modeldir_config(const mh_dir *d, const char *key);
/* The first of config.json "architectures", else model_type, else NULL. */
const char *modeldir_architecture(const mh_dir *d);

/* Record an error on the dir (first one wins). */
void modeldir_error(mh_dir *d, const char *file, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
