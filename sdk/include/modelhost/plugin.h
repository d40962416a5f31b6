/* SPDX-License-Identifier: MIT */
/* modelhost/plugin.h - the one contract between the modelhost host and its
 * architecture plugins.
 *
 * A plugin is a shared object that exports exactly one symbol, `model_plugin`,
 * a const `struct model_plugin` filled in with MODELHOST_PLUGIN_DEFINE().  It
 * links nothing of the host: everything it needs (weights, config values,
 * tensor operations, threads, memory, error reporting) comes through the
 * `struct mh_services` table the host passes to every entry point.
 *
 * Versioning rules (never change them):
 *  - The first three fields of `struct model_plugin` and `struct mh_services`
 *    are `abi_major`, `abi_minor`, `struct_size`, forever.
 *  - The host loads a plugin when plugin.abi_major == MODELHOST_ABI_MAJOR and
 *    plugin.abi_minor <= the host's MODELHOST_ABI_MINOR.  Nothing past
 *    plugin.struct_size is ever read.
 *  - A minor release only appends fields at the end of these structs (using
 *    the reserved slots first, so struct_size may not change: test abi_minor,
 *    not struct_size, before using a newer field) and only appends enum
 *    values.  A plugin built against minor N may call any service of minor
 *    <= N; the host guarantees they are present.
 *  - Anything else is a major release.
 *
 * Lifetimes: the service table outlives every model, so a plugin keeps the
 * pointer it gets in load().  The mh_dir outlives the model loaded from it,
 * and so do the tensors and strings it hands out.
 *
 * Threading: the host calls a model's entry points from one thread at a time.
 * The tensor ops are called from that thread too (they parallelise inside);
 * parallel_for callbacks may use only the pure-computation services.
 */
#ifndef MODELHOST_PLUGIN_H
#define MODELHOST_PLUGIN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MODELHOST_ABI_MAJOR 1
#define MODELHOST_ABI_MINOR 2

#define MH_MAX_DIMS 8
#define MH_MAX_EOS 8

typedef enum mh_dtype {
	MH_F32 = 0,
	MH_F16,
	MH_BF16,
	MH_F64,
	MH_I64,
	MH_I32,
	MH_I16,
	MH_I8,
	MH_U8,
	MH_BOOL,
	/* since ABI 1.2: ggml's block formats, 32 weights along a row per
	 * block (see mh_block_q8_0, mh_block_q4_0) */
	MH_Q8_0,
	MH_Q4_0,
	MH_DTYPE_COUNT
} mh_dtype;

/* A tensor as stored in the checkpoint.  `data` points into the read-only
 * mapping of the file, aligned to the element size (the host copies the rare
 * misaligned tensor once at open), so F32 data can be read in place as a
 * float array.  The host's ops handle every float dtype.
 *
 * A plugin may fill an mh_tensor of its own (a view, or weights it computed
 * into memory it owns) and pass it to the ops: they read only the fields
 * above.  The struct has no struct_size and plugins allocate it, so it can
 * never grow: a new tensor property comes as a new service or a new
 * versioned struct, never as a field here. */
typedef struct mh_tensor {
	const char *name;
	mh_dtype dtype;
	int32_t ndim;
	int64_t shape[MH_MAX_DIMS];
	int64_t nelem;
	const void *data;
	size_t nbytes;
} mh_tensor;

/* Since ABI 1.2, weight() may hand a plugin built for 1.2 or later a 2-D
 * weight of a quantized dtype when the user asked for one (--quant): its
 * rows are cols / 32 blocks each, `data` is rows * cols / 32 blocks in row
 * order, nbytes their size, and nelem and shape count weights, as for a
 * float tensor.  The layouts are ggml's Q8_0 and Q4_0, byte for byte.  The
 * host's ops take them wherever they take a float weight (matmul,
 * matmul_n, embed, rows); a plugin that reads a weight's data itself must
 * check its dtype.  Plugins built for 1.0 or 1.1 only ever get floats. */
#define MH_QBLOCK 32
typedef struct mh_block_q8_0 {
	uint16_t d;             /* scale, F16 */
	int8_t qs[MH_QBLOCK];   /* weight i = d * qs[i] */
} mh_block_q8_0;
typedef struct mh_block_q4_0 {
	uint16_t d;             /* scale, F16 */
	/* weight i < 16 = d * ((qs[i] & 15) - 8), weight i + 16 = d * ((qs[i] >> 4) - 8) */
	uint8_t qs[MH_QBLOCK / 2];
} mh_block_q4_0;

/* An open model directory (config.json + safetensors), owned by the host.
 * It outlives the model loaded from it. */
typedef struct mh_dir mh_dir;

/* A model, defined privately by each plugin. */
typedef struct mh_model mh_model;

/* Rotary embedding tables, built by the host from config.json. */
typedef struct mh_rope mh_rope;

/* What a loaded model tells the host.  Filled by the plugin; the host reads
 * only fields below struct_size. */
typedef struct mh_model_info {
	uint32_t struct_size;
	int32_t vocab_size;
	int32_t n_ctx;          /* positions the KV cache holds */
	int32_t max_context;    /* the model's own limit (max_position_embeddings) */
	int32_t bos_id;         /* -1 if none */
	int32_t n_eos;
	int32_t eos_ids[MH_MAX_EOS];
	uint64_t kv_cache_bytes;
} mh_model_info;

/* The hyper-parameters every Hugging Face decoder-only transformer shares,
 * as mh_services.decoder_config reads them from config.json.  Everything an
 * architecture adds (norm epsilon, biases, sliding window...) the plugin
 * reads itself.  The caller sets the fields marked "in"; the rest are
 * output:
 *
 *   mh_decoder_config hp = { .struct_size = sizeof hp, .max_pos = 2048 };
 *   if (svc->decoder_config(dir, n_ctx, &hp) != 0)
 *           return NULL;
 */
typedef struct mh_decoder_config {
	uint32_t struct_size;   /* in: sizeof(mh_decoder_config) */
	int32_t vocab;          /* vocab_size */
	int32_t dim;            /* hidden_size */
	int32_t n_layers;       /* num_hidden_layers */
	int32_t n_heads;        /* num_attention_heads */
	int32_t n_kv_heads;     /* num_key_value_heads (default n_heads); divides n_heads */
	int32_t head_dim;       /* head_dim (default dim / n_heads); even, at most 1024 */
	int32_t ffn_dim;        /* intermediate_size */
	/* max_position_embeddings.  in: the architecture's default for a
	 * config without the key (0: the key is required). */
	int32_t max_pos;
	int32_t n_ctx;          /* the n_ctx asked for (if > 0), else max_pos */
	int32_t tied;           /* tie_word_embeddings (default false) */
	int32_t bos;            /* bos_token_id, -1 if absent */
	int32_t n_eos;          /* eos_token_id: one id or a list, at most MH_MAX_EOS */
	int32_t eos[MH_MAX_EOS];
	/* hidden_act, owned by the dir (the plugin checks that it implements
	 * it).  in: the default when absent (NULL: "silu"), then returned. */
	const char *hidden_act;
} mh_decoder_config;

/* A KV cache, from mh_services.kv_new or decoder_new: for each layer, the
 * keys and the values of n_ctx slots, [slot][kv_dim] (kv_dim = n_kv_heads *
 * head_dim), the layout mh_services.attention reads.  Position p lives in
 * slot p % n_ctx (mh_kv_at): a cache for sliding-window attention
 * (decoder_new with a window, since ABI 1.1) may hold fewer slots than the
 * model has positions, and reuses them as a ring. */
typedef struct mh_kv_cache {
	float *k, *v;           /* [n_layers][n_ctx][kv_dim] each */
	int32_t n_layers, n_ctx, kv_dim;
	uint64_t bytes;         /* k and v together */
} mh_kv_cache;

/* The [n_ctx][kv_dim] key (mh_kv_k) or value (mh_kv_v) block of a layer. */
static inline float *mh_kv_k(const mh_kv_cache *c, int layer)
{
	return c->k + (size_t)layer * (size_t)c->n_ctx * (size_t)c->kv_dim;
}

static inline float *mh_kv_v(const mh_kv_cache *c, int layer)
{
	return c->v + (size_t)layer * (size_t)c->n_ctx * (size_t)c->kv_dim;
}
/* Where position pos starts in a layer's block (in floats). */
static inline size_t mh_kv_at(const mh_kv_cache *c, int pos)
{
	return (size_t)(pos % c->n_ctx) * (size_t)c->kv_dim;
}

/* The working state of a standard decoder-only transformer (since ABI 1.1),
 * from mh_services.decoder_new: activation buffers for up to `cap` tokens
 * and the KV cache.  Longer prompts go through mh_services.decoder_forward
 * in chunks of at most `cap` tokens, cut so that a chunk's keys and values
 * never wrap around a ring cache: a layer writes them contiguously at
 * mh_kv_at(kv, pos).  q_dim = n_heads * head_dim. */
typedef struct mh_decoder {
	uint32_t struct_size;
	int32_t cap;            /* tokens per forward chunk (rows of the buffers) */
	float *x;               /* [cap, dim] the residual stream */
	float *xn;              /* [cap, dim] the normalized input of a block */
	float *q;               /* [cap, q_dim] queries */
	float *att;             /* [cap, q_dim] attention output */
	float *tmp;             /* [cap, max(dim, q_dim)] a projection's output */
	float *gate, *up;       /* [cap, ffn_dim] each */
	mh_kv_cache *kv;        /* n_layers x n_ctx positions: sequence 0's cache */
	/* --- since ABI 1.2 (test d->struct_size before reading) ---------- */
	/* The rows of the current forward chunk, which may belong to several
	 * sequences (mh_decoder_step.layer_rows): a layer projects their new
	 * keys and values here and mh_services.decoder_attention rotates them,
	 * stores them in each row's sequence cache and attends. */
	float *k, *v;           /* [cap, kv_dim] each */
	const int32_t *pos;     /* [cap] each row's position in its sequence */
} mh_decoder;

/* What mh_services.decoder_forward and decoder_batch call back into: the
 * plugin's layer (transforms d->x[0..n) in place, writing the layer's keys
 * and values into the cache) and head (final norm and output projection of
 * n rows of hidden states x into logits[n, vocab]).
 *
 * head may use d->xn, q, att, tmp, gate and up as scratch (x holds the rows
 * it is given); a layer may use every buffer but x for scratch.  Under the
 * scaffold a plugin's reset() has nothing to do: positions at or past the
 * caller's pos are never read (the cache is overwritten as it refills).
 *
 * ABI 1.1's `layer` sees one sequence (sequence 0, positions pos..) and
 * writes d->kv itself.  Since ABI 1.2 a plugin sets `layer_rows` instead:
 * the n rows may come from several sequences (d->pos gives each row's
 * position), the layer projects keys and values into d->k and d->v and
 * calls mh_services.decoder_attention, and it may fail (-1 + svc->error,
 * which ends the forward pass).  With layer_rows set, `layer` is never
 * called and may be NULL. */
typedef struct mh_decoder_step {
	uint32_t struct_size;   /* sizeof(mh_decoder_step) */
	mh_model *model;        /* passed back to the callbacks */
	const mh_tensor *embed; /* the token embedding table [vocab, dim] */
	void (*layer)(mh_model *m, int layer, int n, int pos);
	void (*head)(mh_model *m, float *logits, const float *x, int n);
	/* --- since ABI 1.2 ------------------------------------------------ */
	int (*layer_rows)(mh_model *m, int layer, int n);
	/* Optional: after the token embeddings are in x[0..n), add what the
	 * positions pos[0..n) contribute (a learned absolute position table).
	 * 0, or -1 + svc->error. */
	int (*positions)(mh_model *m, float *x, const int32_t *pos, int n);
	/* > 0: positions at or past this are refused with an error (the end of
	 * a learned position table), whatever the context size. */
	int32_t max_positions;
} mh_decoder_step;

/* One token of a batch (since ABI 1.2): the sequence it belongs to, its
 * position there, its id, and whether its logits are wanted (!= 0). */
typedef struct mh_batch_item {
	int32_t seq, pos, id, logits;
} mh_batch_item;

/* Config key names for mh_services.decoder_config_keys (since ABI 1.2), for
 * architectures that do not use the Llama-style names (GPT-2: n_embd,
 * n_layer, n_head, n_positions, n_inner).  NULL: the standard name (in the
 * comments of mh_decoder_config).  ffn_mult: when the ffn_dim key is absent
 * or null, ffn_dim = ffn_mult * dim (0: the key is required). */
typedef struct mh_decoder_keys {
	uint32_t struct_size;   /* sizeof(mh_decoder_keys) */
	const char *vocab, *dim, *n_layers, *n_heads, *n_kv_heads, *head_dim, *ffn_dim,
		*max_pos, *tied, *bos, *eos, *hidden_act;
	int32_t ffn_mult;
} mh_decoder_keys;

/* Fill a decoder's mh_model_info from its hyper-parameters. */
static inline void mh_model_info_init(mh_model_info *info, const mh_decoder_config *hp,
				      uint64_t kv_cache_bytes)
{
	info->struct_size = sizeof(mh_model_info);
	info->vocab_size = hp->vocab;
	info->n_ctx = hp->n_ctx;
	info->max_context = hp->max_pos;
	info->bos_id = hp->bos;
	info->n_eos = hp->n_eos;
	info->kv_cache_bytes = kv_cache_bytes;
	for (int i = 0; i < MH_MAX_EOS; i++)
		info->eos_ids[i] = hp->eos[i];
}

/* Log levels for mh_services.log. */
enum { MH_LOG_ERROR = 0, MH_LOG_WARN, MH_LOG_INFO, MH_LOG_DEBUG };

/* Flags for model_plugin.forward. */
enum {
	MH_LOGITS_LAST = 0,  /* logits for the last token only: [1, vocab] */
	MH_LOGITS_ALL = 1    /* logits for every token: [n, vocab] */
};

typedef void (*mh_range_fn)(void *ctx, int64_t begin, int64_t end, int thread);

typedef struct mh_services {
	uint32_t abi_major;
	uint32_t abi_minor;
	uint32_t struct_size;

	/* --- logging and errors ------------------------------------------ */
	void (*log)(int level, const char *fmt, ...)
		__attribute__((format(printf, 2, 3)));
	/* Record why loading or running failed.  dir is never NULL; `file`
	 * is relative to the model directory ("config.json") or NULL; the
	 * host prints "modelhost: DIR/FILE: message".  The first error
	 * recorded wins. */
	void (*error)(mh_dir *dir, const char *file, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));

	/* --- config.json ------------------------------------------------- */
	/* Keys are paths: "rope_scaling.factor", "architectures.0".
	 * Each getter returns 1 when the key holds a value, 0 when it is
	 * absent or null (*out = def), -1 when it holds the wrong type (an
	 * error naming the key is recorded, *out = def). */
	int (*config_int)(mh_dir *dir, const char *key, int64_t def, int64_t *out);
	int (*config_float)(mh_dir *dir, const char *key, double def, double *out);
	int (*config_bool)(mh_dir *dir, const char *key, int def, int *out);
	int (*config_string)(mh_dir *dir, const char *key, const char *def,
			     const char **out);
	/* An int or a list of ints ("eos_token_id": 2 or [2, 32000]).
	 * Returns how many were stored (at most max; further ids are
	 * ignored), 0 if absent, -1 on a wrong type. */
	int (*config_ids)(mh_dir *dir, const char *key, int32_t *out, int max);

	/* --- weights ----------------------------------------------------- */
	/* Look a tensor up by name; NULL if the checkpoint has none. */
	const mh_tensor *(*tensor)(mh_dir *dir, const char *name);
	/* A required float tensor (F32/F16/BF16) of the given shape.  d1 is
	 * ignored when ndim == 1.  Records an error naming the file and the
	 * tensor (missing, wrong dtype, wrong shape) and returns NULL. */
	const mh_tensor *(*weight)(mh_dir *dir, const char *name, int ndim,
				   int64_t d0, int64_t d1);
	/* The same, but NULL without an error when the tensor is absent
	 * (present with the wrong dtype or shape is still an error: check
	 * svc->tensor() first when absence means a fallback). */
	const mh_tensor *(*weight_opt)(mh_dir *dir, const char *name, int ndim,
				       int64_t d0, int64_t d1);
	/* Rows [first, first+count) of a 2-D tensor, as a tensor of its own
	 * (for fused projections such as qkv_proj).  Returns 0, or -1 when
	 * out of range (no error is recorded: the caller reports it). */
	int (*rows)(const mh_tensor *t, int64_t first, int64_t count,
		    mh_tensor *view);
	/* A small float tensor (a norm weight, a bias) as aligned F32: in
	 * place when possible, otherwise converted once and owned by dir. */
	const float *(*vec_f32)(mh_dir *dir, const mh_tensor *t);

	/* --- tensor ops (row-major float32 activations) ------------------- */
	/* y[n, w.rows] = x[n, w.cols] * w^T (+ bias).  Any float dtype of w,
	 * or (since 1.2) Q8_0 / Q4_0 as weight() hands them out. */
	void (*matmul)(float *y, const float *x, const mh_tensor *w,
		       const float *bias, int n);
	/* out[i, :] = table[ids[i], :] as F32.  -1 if an id is out of range
	 * (no error is recorded: the caller reports it). */
	int (*embed)(float *out, const mh_tensor *table, const int32_t *ids,
		     int n);
	void (*rmsnorm)(float *y, const float *x, const float *w, int n,
			int dim, float eps);
	void (*layernorm)(float *y, const float *x, const float *w,
			  const float *b, int n, int dim, float eps);
	/* Rotary embedding.  mh_rope reads rope_theta / rope_scaling /
	 * rope_parameters / partial_rotary_factor from config.json (either
	 * spelling) and refuses types it does not implement (NULL + error).
	 * rope_apply rotates x[n, n_heads * head_dim] for positions pos0..,
	 * rotate-half (Hugging Face) layout, over the first rot_dim dims of
	 * each head. */
	mh_rope *(*rope_new)(mh_dir *dir, int head_dim, int n_ctx);
	void (*rope_free)(mh_rope *r);
	void (*rope_apply)(const mh_rope *r, float *x, int n, int n_heads,
			   int pos0);
	/* Causal attention of n query tokens at positions pos0.. over a KV
	 * cache laid out [position][n_kv_heads * head_dim] that already holds
	 * positions 0 .. pos0+n-1.  Position i sees j with i - window < j <= i
	 * (window <= 0: all j <= i).  q and out are [n, n_heads * head_dim];
	 * scale is usually 1/sqrt(head_dim). */
	void (*attention)(float *out, const float *q, const float *k_cache,
			  const float *v_cache, int n, int pos0, int n_heads,
			  int n_kv_heads, int head_dim, int window,
			  float scale);
	void (*silu_mul)(float *gate, const float *up, size_t n); /* gate = silu(gate) * up */
	void (*gelu)(float *x, size_t n);      /* exact (erf) */
	void (*gelu_tanh)(float *x, size_t n); /* gelu_new / gelu_pytorch_tanh */
	void (*add)(float *y, const float *x, size_t n); /* y += x */
	void (*softmax)(float *x, int n);

	/* --- device ------------------------------------------------------ */
	void *(*alloc)(size_t bytes); /* 64-byte aligned, zeroed; NULL on failure */
	void (*free)(void *p);
	int (*n_threads)(void);
	/* Run fn over [0, n) in contiguous ranges on the host's persistent
	 * thread pool; returns when all are done.  Threads take ranges as
	 * they come free, so fn may be called several times with the same
	 * `thread` index (never at once): per-thread scratch indexed by
	 * `thread` is safe, one call per thread is not guaranteed.  A call
	 * from inside fn runs serially. */
	void (*parallel_for)(int64_t n, mh_range_fn fn, void *ctx);

	/* --- decoder building blocks -------------------------------------- */
	/* Read and check the standard decoder hyper-parameters (see
	 * mh_decoder_config; out->struct_size and the "in" fields set by the
	 * caller).  Every dimension must be 1..2^20; head_dim may be absent
	 * only when num_attention_heads divides hidden_size.  n_ctx is load()'s
	 * (0: max_pos; larger than max_pos is allowed, with a warning).
	 * 0, or -1 with an error naming config.json and the key. */
	int (*decoder_config)(mh_dir *dir, int32_t n_ctx, mh_decoder_config *out);
	/* A KV cache for n_layers x n_ctx positions of kv_dim floats (see
	 * mh_kv_cache), zeroed lazily so that it costs memory only as it
	 * fills.  NULL when out of memory or a size is not positive (no error
	 * is recorded: the caller reports it). */
	mh_kv_cache *(*kv_new)(int n_layers, int n_ctx, int kv_dim);
	void (*kv_free)(mh_kv_cache *c); /* NULL is fine */

	/* --- since ABI 1.1 ------------------------------------------------ */
	/* The buffers and KV cache of a standard decoder with hyper-parameters
	 * hp (see mh_decoder).  window > 0: every layer attends over at most
	 * that many positions, and the cache keeps only the slots that can
	 * still be seen (a ring of window + cap - 1).  NULL + an error naming
	 * the context size when out of memory. */
	mh_decoder *(*decoder_new)(mh_dir *dir, const mh_decoder_config *hp, int window);
	void (*decoder_free)(mh_decoder *d); /* NULL is fine */
	/* model_plugin.forward for a standard decoder: checks that positions
	 * pos..pos+n-1 fit the context and the ids the vocabulary, then for
	 * each chunk of up to d->cap tokens embeds them into d->x, runs every
	 * layer, and calls head on the rows whose logits are wanted (every row
	 * with MH_LOGITS_ALL, else only the last token's).  0, or -1 + error. */
	int (*decoder_forward)(mh_decoder *d, mh_dir *dir, const mh_decoder_step *step,
			       const int32_t *ids, int n, int pos, float *logits, int flags);
	/* Several matmuls of the same input in one pass over the thread pool
	 * (q/k/v, or gate/up): y[i] = x * w[i]^T (+ bias[i]) for i < count;
	 * bias may be NULL, and so may any bias[i].  Cheaper than count
	 * matmul calls when decoding. */
	void (*matmul_n)(float *const *y, const float *x, const mh_tensor *const *w,
			 const float *const *bias, int count, int n);
	/* attention over layer `layer` of cache c, ring or not: the keys and
	 * values of positions pos0..pos0+n-1 are already in place. */
	void (*attention_kv)(float *out, const float *q, const mh_kv_cache *c, int layer, int n,
			     int pos0, int n_heads, int head_dim, int window, float scale);

	/* --- since ABI 1.2 ------------------------------------------------ */
	/* Several sequences in one decoder, each with its own KV cache (zeroed
	 * lazily: it costs memory as it fills); sequence 0 is d->kv, the one
	 * decoder_forward runs.  decoder_seq_new: a new empty sequence's id
	 * (> 0), or -1 + an error naming the context size when out of memory. */
	int (*decoder_seq_new)(mh_decoder *d, mh_dir *dir);
	void (*decoder_seq_free)(mh_decoder *d, int seq); /* not 0; unknown ids are ignored */
	/* model_plugin.batch for a standard decoder whose step sets layer_rows:
	 * checks the items (known sequences, each sequence's items consecutive
	 * with contiguous positions inside the context, ids inside the
	 * vocabulary), cuts each sequence's items into pieces of at most d->cap
	 * tokens exactly as decoder_forward cuts one prompt, packs whole pieces
	 * into chunks, and runs embed, positions, the layers and head over
	 * them.  Writes the wanted rows' logits in item order to logits[k][vocab].
	 * A row's results do not depend on what else is in the batch (bit for
	 * bit: see docs/batching.md).  0, or -1 + error (the caches of the
	 * sequences may then hold garbage past their old lengths). */
	int (*decoder_batch)(mh_decoder *d, mh_dir *dir, const mh_decoder_step *step,
			     const mh_batch_item *items, int n, float *logits);
	/* A layer's attention over the rows of the current chunk: rotates the
	 * queries d->q and keys d->k by each row's position (rope NULL: no
	 * rotation), stores d->k and d->v in each row's sequence cache, and
	 * writes d->att [n, n_heads * head_dim].  window > 0: sliding window;
	 * scale: usually 1/sqrt(head_dim). */
	void (*decoder_attention)(mh_decoder *d, int layer, const mh_rope *rope, int window,
				  float scale);
	/* decoder_config with the architecture's own key names (keys NULL: the
	 * standard ones); the same checks and messages, naming the keys used. */
	int (*decoder_config_keys)(mh_dir *dir, int32_t n_ctx, const mh_decoder_keys *keys,
				   mh_decoder_config *out);
	/* weight() for a matrix stored transposed, [cols, rows] (GPT-2's
	 * Conv1D keeps [in, out]): the [rows, cols] tensor that matmul and
	 * matmul_n take.  The host transposes it once into a copy owned by
	 * dir (quantized there with --quant, as weight() would), gives back
	 * the mapped pages of the stored tensor, and counts the copy's bytes
	 * in what a token reads (bench); a second call returns the same copy.
	 * A checkpoint written by `modelhost quantize` stores the quantized
	 * copy, [rows, cols].  NULL + an error naming the tensor when it is
	 * missing, not F32/F16/BF16 or of another shape, or out of memory.
	 * Added to 1.2 after its first builds: a plugin that may meet a host
	 * built before it checks that the pointer is not NULL (reserved slots
	 * are NULL). */
	const mh_tensor *(*weight_t)(mh_dir *dir, const char *name, int64_t rows, int64_t cols);

	void *reserved[5];
} mh_services;

/* Loader shorthands over mh_services.weight and vec_f32, for tensors named
 * by a pattern with the current layer's index:
 *
 *   mh_loader ld = { svc, dir, 0, 1 };
 *   for (ld.layer = 0; ld.layer < n_layers; ld.layer++)
 *           L[ld.layer].wq = mh_load_matrix(&ld, "model.layers.%d.q_proj.weight", q, d);
 *   if (!ld.ok)
 *           return -1;   (the service has recorded what was wrong)
 */
typedef struct mh_loader {
	const mh_services *svc;
	mh_dir *dir;
	int layer;              /* fills the pattern's %d */
	int ok;                 /* cleared by the first failure */
} mh_loader;

static inline const mh_tensor *mh_load_matrix(mh_loader *ld, const char *fmt, int64_t rows,
					      int64_t cols)
{
	char name[256];
	snprintf(name, sizeof name, fmt, ld->layer);
	const mh_tensor *t = ld->svc->weight(ld->dir, name, 2, rows, cols);
	if (!t)
		ld->ok = 0;
	return t;
}

/* A vector (norm weight, bias) as F32; NULL without looking when !present. */
static inline const float *mh_load_vector(mh_loader *ld, const char *fmt, int64_t len,
					  int present)
{
	if (!present)
		return NULL;
	char name[256];
	snprintf(name, sizeof name, fmt, ld->layer);
	const mh_tensor *t = ld->svc->weight(ld->dir, name, 1, len, 0);
	const float *v = t ? ld->svc->vec_f32(ld->dir, t) : NULL;
	if (!v)
		ld->ok = 0;
	return v;
}

/* A table of weights for mh_load_weights (header only; since ABI 1.2): a
 * matrix [rows, cols] into *matrix, or (matrix NULL) a vector [rows] as F32
 * into *vector.  skip != 0: the checkpoint has no such tensor (a bias the
 * config turned off); the destination is set to NULL without looking. */
typedef struct mh_weight {
	const char *name;       /* a pattern: %d is the loader's layer */
	int64_t rows, cols;     /* cols: matrices only */
	const mh_tensor **matrix;
	const float **vector;
	int skip;
} mh_weight;

/* Every weight of the table, in order (the first failure is the error the
 * host reports; ld->ok tells whether all were found). */
static inline void mh_load_weights(mh_loader *ld, const mh_weight *w, int n)
{
	for (int i = 0; i < n; i++) {
		if (!w[i].matrix)
			*w[i].vector = mh_load_vector(ld, w[i].name, w[i].rows, !w[i].skip);
		else if (w[i].skip)
			*w[i].matrix = NULL;
		else
			*w[i].matrix = mh_load_matrix(ld, w[i].name, w[i].rows, w[i].cols);
	}
}

/* `modelhost verify -m DIR` checks a plugin against reference logits in
 * DIR/expected.safetensors (or --expected FILE), which must hold input_ids
 * (I64 [T]), logits (F32 [T, vocab]: every position of one forward pass),
 * greedy_prompt (I64 [P]) and greedy_ids (I64 [P+N]: the prompt and N
 * argmax tokens); other tensors are ignored. */
struct model_plugin {
	/* fixed forever */
	uint32_t abi_major;
	uint32_t abi_minor;
	uint32_t struct_size;

	const char *name;        /* unique, e.g. "llama" */
	const char *version;     /* the plugin's own version, e.g. "1.0.0" */
	const char *description;
	const char *license;
	/* NULL-terminated Hugging Face names this plugin claims: values of
	 * config.json "architectures" ("LlamaForCausalLM") or "model_type". */
	const char *const *architectures;

	/* Optional.  How well this plugin handles the model in dir: 0-100,
	 * negative to decline.  Plugins without probe score 50. */
	int (*probe)(const mh_services *svc, mh_dir *dir);
	/* Build a model from dir.  n_ctx is the number of positions to keep in
	 * the KV cache (0: the model's own limit; larger than the model's
	 * limit is allowed, with a warning).  NULL + svc->error on failure. */
	mh_model *(*load)(const mh_services *svc, mh_dir *dir, int32_t n_ctx);
	void (*free)(mh_model *m);
	const mh_model_info *(*info)(const mh_model *m);
	/* Run n tokens at positions pos..pos+n-1 and write logits (see
	 * MH_LOGITS_*).  The cache holds 0..pos-1 from earlier calls; pos may
	 * be lower than where the last call ended (a rewind: later positions
	 * are overwritten).  The host guarantees n >= 1, pos + n <= n_ctx and
	 * ids inside the vocabulary; plugins still must not crash otherwise.
	 * Flag bits other than MH_LOGITS_ALL are reserved and ignored.
	 * 0, or -1 + svc->error. */
	int (*forward)(mh_model *m, const int32_t *ids, int n, int pos,
		       float *logits, int flags);
	/* Forget the KV cache (the next forward starts at pos 0). */
	void (*reset)(mh_model *m);

	/* --- since ABI 1.2: several sequences in one forward pass ----------
	 * Optional (all three or none).  Without them the host serves several
	 * sequences by loading the model once per sequence (over the same
	 * mapped weights) and running them one after another.  Sequence 0 is
	 * the one forward() runs; seq_new returns another empty one (> 0), or
	 * -1 + svc->error.  batch runs n >= 1 items (see mh_batch_item; a
	 * sequence's items consecutive, positions contiguous, the host has
	 * checked them against n_ctx and the vocabulary) and writes the wanted
	 * rows' logits in item order.  0, or -1 + svc->error. */
	int (*seq_new)(mh_model *m);
	void (*seq_free)(mh_model *m, int seq);
	int (*batch)(mh_model *m, const mh_batch_item *items, int n, float *logits);

	void *reserved[5];
};

/* The token embeddings [vocab, dim] ("model.embed_tokens.weight") and the
 * output projection ("lm_head.weight"; with tie_word_embeddings and no such
 * tensor, the embeddings themselves), as Hugging Face decoders store them
 * (since ABI 1.2; header only). */
static inline void mh_load_embed_head(mh_loader *ld, const mh_decoder_config *hp,
				      const mh_tensor **embed, const mh_tensor **lm_head)
{
	const mh_services *svc = ld->svc;
	*embed = svc->weight(ld->dir, "model.embed_tokens.weight", 2, hp->vocab, hp->dim);
	*lm_head = hp->tied && !svc->tensor(ld->dir, "lm_head.weight")
			   ? *embed
			   : svc->weight(ld->dir, "lm_head.weight", 2, hp->vocab, hp->dim);
	if (!*embed || !*lm_head)
		ld->ok = 0;
}

/* ---- the standard decoder model (since ABI 1.2; header only) -------------
 * What every plugin built on the decoder scaffold would otherwise repeat:
 * allocation and release of the model, its layer table and the host's
 * decoder state, and the entry points that only hand over to the scaffold.
 * A plugin's struct mh_model begins with an mh_decoder_model:
 *
 *   struct mh_model { mh_decoder_model base; ...the architecture's fields };
 *
 *   mh_model *m = mh_decoder_model_new(svc, dir, &hp, window, sizeof *m,
 *                                      sizeof(my_layer));
 *   m->base.step.embed = ...; m->base.step.layer_rows = my_layer; m->base.step.head = my_head;
 *
 *   MODELHOST_PLUGIN_DEFINE("mine", "1.0.0", "...", "MIT", archs, .load = load,
 *                           MH_DECODER_MODEL_ENTRIES);
 *
 * The host never sees this struct: it is the plugin's memory, read by the
 * inline helpers compiled into the plugin. */
typedef struct mh_decoder_model {
	const mh_services *svc;
	mh_dir *dir;
	mh_decoder *dec;        /* the host's buffers and KV caches */
	mh_rope *rope;          /* freed with the model; NULL: none */
	void *layers;           /* n_layers zeroed layer structs */
	mh_model_info info;
	mh_decoder_step step;   /* model set; the plugin sets embed, layer_rows, head... */
} mh_decoder_model;

static inline void mh_decoder_model_free(mh_model *m)
{
	mh_decoder_model *b = (mh_decoder_model *)m;
	if (!b)
		return;
	if (b->rope)
		b->svc->rope_free(b->rope);
	b->svc->decoder_free(b->dec);
	b->svc->free(b->layers);
	b->svc->free(b);
}

/* A zeroed model of model_size bytes (beginning with mh_decoder_model), its
 * table of hp->n_layers zeroed layer structs of layer_size bytes, and a
 * decoder (window: see decoder_new).  NULL + an error on failure. */
static inline void *mh_decoder_model_new(const mh_services *svc, mh_dir *dir,
					 const mh_decoder_config *hp, int window,
					 size_t model_size, size_t layer_size)
{
	mh_decoder_model *b = (mh_decoder_model *)svc->alloc(model_size);
	if (b) {
		b->svc = svc;
		b->dir = dir;
		b->layers = svc->alloc((size_t)hp->n_layers * layer_size);
	}
	if (!b || !b->layers) {
		svc->error(dir, NULL, "out of memory");
		if (b)
			svc->free(b);
		return NULL;
	}
	b->dec = svc->decoder_new(dir, hp, window);
	if (!b->dec) {
		mh_decoder_model_free((mh_model *)b);
		return NULL;
	}
	mh_model_info_init(&b->info, hp, b->dec->kv->bytes);
	b->step.struct_size = sizeof b->step;
	b->step.model = (mh_model *)b;
	return b;
}

static inline const mh_model_info *mh_decoder_model_info(const mh_model *m)
{
	return &((const mh_decoder_model *)m)->info;
}

static inline int mh_decoder_model_forward(mh_model *m, const int32_t *ids, int n, int pos,
					   float *logits, int flags)
{
	mh_decoder_model *b = (mh_decoder_model *)m;
	return b->svc->decoder_forward(b->dec, b->dir, &b->step, ids, n, pos, logits, flags);
}

/* Under the scaffold there is nothing to forget: positions at or past the
 * caller's pos are never read. */
static inline void mh_decoder_model_reset(mh_model *m)
{
	(void)m;
}

static inline int mh_decoder_model_seq_new(mh_model *m)
{
	mh_decoder_model *b = (mh_decoder_model *)m;
	return b->svc->decoder_seq_new(b->dec, b->dir);
}

static inline void mh_decoder_model_seq_free(mh_model *m, int seq)
{
	mh_decoder_model *b = (mh_decoder_model *)m;
	b->svc->decoder_seq_free(b->dec, seq);
}

static inline int mh_decoder_model_batch(mh_model *m, const mh_batch_item *items, int n,
					 float *logits)
{
	mh_decoder_model *b = (mh_decoder_model *)m;
	return b->svc->decoder_batch(b->dec, b->dir, &b->step, items, n, logits);
}

/* The descriptor's entry points of a standard decoder model (all but load). */
#define MH_DECODER_MODEL_ENTRIES                                                  \
	.free = mh_decoder_model_free, .info = mh_decoder_model_info,            \
	.forward = mh_decoder_model_forward, .reset = mh_decoder_model_reset,    \
	.seq_new = mh_decoder_model_seq_new, .seq_free = mh_decoder_model_seq_free, \
	.batch = mh_decoder_model_batch

/* ---- config.json shorthands (header only; since ABI 1.2) ------------------ */

/* 1 when config.json names architecture `arch` ("Qwen3ForCausalLM") in
 * architectures[0], or, without an architectures list, model_type `type`
 * ("qwen3"); 0 when it names another; -1 + an error on a wrong type.  For a
 * plugin that claims several architectures and must tell them apart. */
static inline int mh_config_is(const mh_services *svc, mh_dir *dir, const char *arch,
			       const char *type)
{
	const char *a, *t;
	if (svc->config_string(dir, "architectures.0", "", &a) < 0 ||
	    svc->config_string(dir, "model_type", "", &t) < 0)
		return -1;
	return *a ? strcmp(a, arch) == 0 : strcmp(t, type) == 0;
}

/* sliding_window: a positive size, or null or absent for full attention
 * (*window = 0).  0, or -1 + an error naming config.json. */
static inline int mh_config_sliding_window(const mh_services *svc, mh_dir *dir, int *window)
{
	int64_t w;
	int rc = svc->config_int(dir, "sliding_window", 0, &w);
	if (rc < 0)
		return -1;
	if (rc > 0 && (w <= 0 || w > INT32_MAX)) {
		svc->error(dir, "config.json", "'sliding_window' is %lld, expected a positive "
			   "number or null", (long long)w);
		return -1;
	}
	*window = (int)w;
	return 0;
}

/* ---- the Llama-style decoder (header only; since ABI 1.2) -----------------
 * Most Hugging Face decoders are Llama with a difference or two: pre-norm
 * blocks with RMSNorm, rotary attention with grouped keys and values, a
 * SwiGLU MLP, a final RMSNorm and lm_head, under the names
 * LlamaForCausalLM gives them.  What varies between them is optional here
 * (mh_llama_config.parts: biases, per-head q/k norms; a sliding window), so
 * that such a plugin holds only what makes its architecture:
 *
 *   mh_llama_config c = { .hp = { .max_pos = 4096 } };
 *   if (mh_llama_config_read(svc, dir, n_ctx, 1e-6, &c) != 0 ||
 *       mh_config_sliding_window(svc, dir, &c.window) != 0)
 *           return NULL;
 *   return mh_llama_model_new(svc, dir, &c);
 *
 * A plugin whose names or blocks differ (fused projections, LayerNorm)
 * builds on the pieces: mh_llama_model_alloc, its own weights (a layer
 * struct beginning with mh_llama_layer), mh_llama_model_finish. */

/* Optional parts of a Llama-style layer (mh_llama_config.parts). */
enum {
	MH_LLAMA_QKV_BIAS = 1 << 0, /* q_proj, k_proj, v_proj biases */
	MH_LLAMA_O_BIAS = 1 << 1,   /* o_proj bias */
	MH_LLAMA_MLP_BIAS = 1 << 2, /* gate_proj, up_proj, down_proj biases */
	MH_LLAMA_QK_NORM = 1 << 3   /* RMSNorm of each head of q and k before rotary */
};

typedef struct mh_llama_config {
	mh_decoder_config hp;   /* the standard hyper-parameters */
	float eps;              /* rms_norm_eps */
	int window;             /* sliding window; 0: full attention */
	unsigned parts;         /* MH_LLAMA_* */
} mh_llama_config;

/* One layer's weights; what the config leaves out is NULL. */
typedef struct mh_llama_layer {
	const float *attn_norm, *ffn_norm; /* input_layernorm, post_attention_layernorm */
	const float *q_norm, *k_norm;      /* [head_dim] (MH_LLAMA_QK_NORM) */
	const mh_tensor *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
	const float *bq, *bk, *bv, *bo, *b_gate, *b_up, *b_down;
} mh_llama_layer;

/* The model (a plugin's struct mh_model may begin with it).  base.layers
 * holds hp.n_layers structs of layer_size bytes, each beginning with an
 * mh_llama_layer (mh_llama_layer_at). */
typedef struct mh_llama_model {
	mh_decoder_model base;
	mh_llama_config cfg;
	const mh_tensor *embed, *lm_head;
	const float *norm;      /* model.norm */
	size_t layer_size;
} mh_llama_model;

static inline mh_llama_layer *mh_llama_layer_at(const mh_llama_model *m, int layer)
{
	return (mh_llama_layer *)((char *)m->base.layers + (size_t)layer * m->layer_size);
}

/* config.json into c: svc->decoder_config (c->hp's "in" fields as the
 * caller set them), rms_norm_eps (default eps) and hidden_act, which must be
 * silu.  window and parts are the caller's.  0, or -1 + an error. */
static inline int mh_llama_config_read(const mh_services *svc, mh_dir *dir, int32_t n_ctx,
				       double eps, mh_llama_config *c)
{
	c->hp.struct_size = sizeof c->hp;
	if (svc->decoder_config(dir, n_ctx, &c->hp) != 0 ||
	    svc->config_float(dir, "rms_norm_eps", eps, &eps) < 0)
		return -1;
	c->eps = (float)eps;
	if (strcmp(c->hp.hidden_act, "silu") != 0) {
		svc->error(dir, "config.json", "hidden_act '%s' is not supported (silu only)",
			   c->hp.hidden_act);
		return -1;
	}
	return 0;
}

/* The weights of layer ld->layer under LlamaForCausalLM's names, with the
 * optional ones that `parts` asks for. */
static inline void mh_load_llama_layer(mh_loader *ld, const mh_decoder_config *hp,
				       unsigned parts, mh_llama_layer *L)
{
	const int64_t d = hp->dim, f = hp->ffn_dim, hd = hp->head_dim;
	const int64_t q = hd * hp->n_heads, kv = hd * hp->n_kv_heads;
	const int no_qk = !(parts & MH_LLAMA_QK_NORM), no_qkv_b = !(parts & MH_LLAMA_QKV_BIAS),
		  no_o_b = !(parts & MH_LLAMA_O_BIAS), no_mlp_b = !(parts & MH_LLAMA_MLP_BIAS);
#define MH_L_ "model.layers.%d."
	const mh_weight w[] = {
		{ MH_L_ "input_layernorm.weight", d, 0, NULL, &L->attn_norm, 0 },
		{ MH_L_ "post_attention_layernorm.weight", d, 0, NULL, &L->ffn_norm, 0 },
		{ MH_L_ "self_attn.q_norm.weight", hd, 0, NULL, &L->q_norm, no_qk },
		{ MH_L_ "self_attn.k_norm.weight", hd, 0, NULL, &L->k_norm, no_qk },
		{ MH_L_ "self_attn.q_proj.weight", q, d, &L->wq, NULL, 0 },
		{ MH_L_ "self_attn.k_proj.weight", kv, d, &L->wk, NULL, 0 },
		{ MH_L_ "self_attn.v_proj.weight", kv, d, &L->wv, NULL, 0 },
		{ MH_L_ "self_attn.o_proj.weight", d, q, &L->wo, NULL, 0 },
		{ MH_L_ "mlp.gate_proj.weight", f, d, &L->w_gate, NULL, 0 },
		{ MH_L_ "mlp.up_proj.weight", f, d, &L->w_up, NULL, 0 },
		{ MH_L_ "mlp.down_proj.weight", d, f, &L->w_down, NULL, 0 },
		{ MH_L_ "self_attn.q_proj.bias", q, 0, NULL, &L->bq, no_qkv_b },
		{ MH_L_ "self_attn.k_proj.bias", kv, 0, NULL, &L->bk, no_qkv_b },
		{ MH_L_ "self_attn.v_proj.bias", kv, 0, NULL, &L->bv, no_qkv_b },
		{ MH_L_ "self_attn.o_proj.bias", d, 0, NULL, &L->bo, no_o_b },
		{ MH_L_ "mlp.gate_proj.bias", f, 0, NULL, &L->b_gate, no_mlp_b },
		{ MH_L_ "mlp.up_proj.bias", f, 0, NULL, &L->b_up, no_mlp_b },
		{ MH_L_ "mlp.down_proj.bias", d, 0, NULL, &L->b_down, no_mlp_b },
	};
#undef MH_L_
	mh_load_weights(ld, w, (int)(sizeof w / sizeof *w));
}

/* A zeroed model of model_size bytes (beginning with mh_llama_model) with
 * its config, hp.n_layers zeroed layer structs of layer_size bytes and the
 * decoder (mh_decoder_model_new with the config's window).  NULL + an error
 * on failure. */
static inline void *mh_llama_model_alloc(const mh_services *svc, mh_dir *dir,
					 const mh_llama_config *c, size_t model_size,
					 size_t layer_size)
{
	mh_llama_model *m = (mh_llama_model *)mh_decoder_model_new(svc, dir, &c->hp, c->window,
								   model_size, layer_size);
	if (m) {
		m->cfg = *c;
		m->layer_size = layer_size;
	}
	return m;
}

/* The blocks of a layer over the rows x[0..n) of the current chunk, for a
 * plugin that assembles its own layer.  q, k, v = xn * wq, wk, wv (+ biases),
 * in one pool job. */
static inline void mh_llama_qkv(mh_llama_model *m, const mh_llama_layer *L, int n)
{
	mh_decoder *d = m->base.dec;
	float *y[3] = { d->q, d->k, d->v };
	const mh_tensor *w[3] = { L->wq, L->wk, L->wv };
	const float *b[3] = { L->bq, L->bk, L->bv };
	m->base.svc->matmul_n(y, d->xn, w, b, 3, n);
}

/* Rotary, the cache and attention of q, k, v (decoder_attention, with the
 * config's window), then x += att * wo (+ bo). */
static inline void mh_llama_attend(mh_llama_model *m, const mh_llama_layer *L, int layer, int n)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *hp = &m->cfg.hp;
	mh_decoder *d = m->base.dec;
	svc->decoder_attention(d, layer, m->base.rope, m->cfg.window,
			       1.0f / sqrtf((float)hp->head_dim));
	svc->matmul(d->tmp, d->att, L->wo, L->bo, n);
	svc->add(d->x, d->tmp, (size_t)n * hp->dim);
}

/* The attention block: xn = rmsnorm(x), q, k, v, their per-head norms
 * (when the layer has them), then mh_llama_attend. */
static inline void mh_llama_attention(mh_llama_model *m, const mh_llama_layer *L, int layer,
				      int n)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *hp = &m->cfg.hp;
	mh_decoder *d = m->base.dec;
	svc->rmsnorm(d->xn, d->x, L->attn_norm, n, hp->dim, m->cfg.eps);
	mh_llama_qkv(m, L, n);
	if (L->q_norm) {
		svc->rmsnorm(d->q, d->q, L->q_norm, n * hp->n_heads, hp->head_dim, m->cfg.eps);
		svc->rmsnorm(d->k, d->k, L->k_norm, n * hp->n_kv_heads, hp->head_dim, m->cfg.eps);
	}
	mh_llama_attend(m, L, layer, n);
}

/* The SwiGLU MLP block: x += down(silu(gate(xn)) * up(xn)), xn = rmsnorm(x). */
static inline void mh_llama_mlp(mh_llama_model *m, const mh_llama_layer *L, int n)
{
	const mh_services *svc = m->base.svc;
	const mh_decoder_config *hp = &m->cfg.hp;
	mh_decoder *d = m->base.dec;
	float *y[2] = { d->gate, d->up };
	const mh_tensor *w[2] = { L->w_gate, L->w_up };
	const float *b[2] = { L->b_gate, L->b_up };
	svc->rmsnorm(d->xn, d->x, L->ffn_norm, n, hp->dim, m->cfg.eps);
	svc->matmul_n(y, d->xn, w, b, 2, n);
	svc->silu_mul(d->gate, d->up, (size_t)n * hp->ffn_dim);
	svc->matmul(d->tmp, d->gate, L->w_down, L->b_down, n);
	svc->add(d->x, d->tmp, (size_t)n * hp->dim);
}

/* mh_decoder_step.layer_rows of a Llama-style model: both blocks. */
static inline int mh_llama_layer_rows(mh_model *model, int layer, int n)
{
	mh_llama_model *m = (mh_llama_model *)model;
	const mh_llama_layer *L = mh_llama_layer_at(m, layer);
	mh_llama_attention(m, L, layer, n);
	mh_llama_mlp(m, L, n);
	return 0;
}

/* mh_decoder_step.head: the final RMSNorm and lm_head of n rows of x. */
static inline void mh_llama_head(mh_model *model, float *logits, const float *x, int n)
{
	mh_llama_model *m = (mh_llama_model *)model;
	mh_decoder *d = m->base.dec;
	m->base.svc->rmsnorm(d->xn, x, m->norm, n, m->cfg.hp.dim, m->cfg.eps);
	m->base.svc->matmul(logits, d->xn, m->lm_head, NULL, n);
}

/* After the weights: the rotary tables (rope_new: either config spelling)
 * and the scaffold's step with the embeddings, mh_llama_layer_rows and
 * mh_llama_head (a plugin may set its own after).  0, or -1 + an error. */
static inline int mh_llama_model_finish(mh_llama_model *m)
{
	m->base.rope = m->base.svc->rope_new(m->base.dir, m->cfg.hp.head_dim, m->cfg.hp.n_ctx);
	m->base.step.embed = m->embed;
	m->base.step.layer_rows = mh_llama_layer_rows;
	m->base.step.head = mh_llama_head;
	return m->base.rope ? 0 : -1;
}

/* model.norm, the embeddings and lm_head (mh_load_embed_head), every layer
 * (mh_load_llama_layer), then mh_llama_model_finish.  0, or -1 + an error. */
static inline int mh_llama_model_load(mh_llama_model *m)
{
	const mh_decoder_config *hp = &m->cfg.hp;
	mh_loader ld = { m->base.svc, m->base.dir, 0, 1 };
	m->norm = mh_load_vector(&ld, "model.norm.weight", hp->dim, 1);
	/* tied: the checkpoint usually stores the matrix once */
	mh_load_embed_head(&ld, hp, &m->embed, &m->lm_head);
	for (ld.layer = 0; ld.layer < hp->n_layers && ld.ok; ld.layer++)
		mh_load_llama_layer(&ld, hp, m->cfg.parts, mh_llama_layer_at(m, ld.layer));
	return ld.ok ? mh_llama_model_finish(m) : -1;
}

/* A Llama-style model of config c, loaded whole: mh_llama_model_alloc of an
 * mh_llama_model with mh_llama_layer layers, then mh_llama_model_load.  NULL
 * + an error on failure. */
static inline void *mh_llama_model_new(const mh_services *svc, mh_dir *dir,
				       const mh_llama_config *c)
{
	mh_llama_model *m = (mh_llama_model *)mh_llama_model_alloc(
		svc, dir, c, sizeof(mh_llama_model), sizeof(mh_llama_layer));
	if (m && mh_llama_model_load(m) != 0) {
		mh_decoder_model_free((mh_model *)m);
		return NULL;
	}
	return m;
}

#if defined(__GNUC__)
#define MODELHOST_EXPORT __attribute__((visibility("default")))
#else
#define MODELHOST_EXPORT
#endif

/* Define the plugin's descriptor with the ABI fields filled in:
 *
 *   static const char *const archs[] = { "LlamaForCausalLM", "llama", NULL };
 *   MODELHOST_PLUGIN_DEFINE("llama", "1.0.0", "Llama family", "MIT", archs,
 *       .probe = NULL, .load = load, .free = model_free, .info = info,
 *       .forward = forward, .reset = reset);
 */
#define MODELHOST_PLUGIN_DEFINE(NAME, VERSION, DESCRIPTION, LICENSE, ARCHS, ...) \
	MODELHOST_EXPORT extern const struct model_plugin model_plugin;               \
	const struct model_plugin model_plugin = {                                     \
		.abi_major = MODELHOST_ABI_MAJOR,                               \
		.abi_minor = MODELHOST_ABI_MINOR,                               \
		.struct_size = sizeof(struct model_plugin),                            \
		.name = NAME,                                                   \
		.version = VERSION,                                             \
		.description = DESCRIPTION,                                     \
		.license = LICENSE,                                             \
		.architectures = ARCHS,                                         \
		__VA_ARGS__                                                     \
	}

#ifdef __cplusplus
}
#endif

#endif /* MODELHOST_PLUGIN_H */
