/* decoder.c - see decoder.h.  What every standard decoder-only plugin would
 * otherwise repeat: its activation buffers and KV cache, and the forward
 * loop that feeds a prompt through in chunks and computes logits only for
 * the positions that are wanted. */
#include "compute/decoder.h"
#include "model/modeldir.h"
#include "compute/ops.h"
#include "base/util.h"

#include <stdlib.h>

/* Tokens per forward chunk: enough for SGEMM to run at full speed, few
 * enough that the buffers stay small next to the weights. */
#define CHUNK 256

/* The public struct, and what the host keeps beside it. */
typedef struct {
	mh_decoder pub;
	int vocab, dim, n_ctx; /* n_ctx: positions (the cache may hold fewer) */
} decoder;

void decoder_kv_free(mh_kv_cache *c)
{
	if (!c)
		return;
	mh_free(c->k);
	mh_free(c->v);
	mh_free(c);
}

/* Zeroed lazily: the pages cost memory only once the cache fills. */
mh_kv_cache *decoder_kv_new(int n_layers, int n_ctx, int kv_dim)
{
	if (n_layers <= 0 || n_ctx <= 0 || kv_dim <= 0 ||
	    (uint64_t)n_layers * (uint64_t)n_ctx > SIZE_MAX / sizeof(float) / 2 / (size_t)kv_dim)
		return NULL;
	size_t elems = (size_t)n_layers * n_ctx * kv_dim;
	mh_kv_cache *c = mh_alloc(sizeof *c);
	if (!c)
		return NULL;
	*c = (mh_kv_cache){ .k = mh_alloc(elems * sizeof(float)),
			    .v = mh_alloc(elems * sizeof(float)),
			    .n_layers = n_layers, .n_ctx = n_ctx, .kv_dim = kv_dim,
			    .bytes = 2 * (uint64_t)elems * sizeof(float) };
	if (!c->k || !c->v) {
		decoder_kv_free(c);
		return NULL;
	}
	return c;
}

void decoder_free(mh_decoder *d)
{
	if (!d)
		return;
	mh_free(d->x);
	mh_free(d->xn);
	mh_free(d->q);
	mh_free(d->att);
	mh_free(d->tmp);
	mh_free(d->gate);
	mh_free(d->up);
	decoder_kv_free(d->kv);
	free((decoder *)d); /* pub is the first member */
}

static float *buf(size_t rows, size_t cols)
{
	return mh_alloc(rows * cols * sizeof(float));
}

mh_decoder *decoder_new(mh_dir *dir, const mh_decoder_config *hp, int window)
{
	decoder *dd = calloc(1, sizeof *dd);
	if (!dd) {
		modeldir_error(dir, NULL, "out of memory");
		return NULL;
	}
	mh_decoder *d = &dd->pub;
	dd->vocab = hp->vocab;
	dd->dim = hp->dim;
	dd->n_ctx = hp->n_ctx;
	size_t q_dim = (size_t)hp->n_heads * hp->head_dim, dim = (size_t)hp->dim;
	size_t cap = hp->n_ctx < CHUNK ? (size_t)hp->n_ctx : CHUNK;
	d->struct_size = sizeof *d;
	d->cap = (int32_t)cap;
	d->x = buf(cap, dim);
	d->xn = buf(cap, dim);
	d->q = buf(cap, q_dim);
	d->att = buf(cap, q_dim);
	d->tmp = buf(cap, q_dim > dim ? q_dim : dim);
	d->gate = buf(cap, (size_t)hp->ffn_dim);
	d->up = buf(cap, (size_t)hp->ffn_dim);
	/* With a window, a chunk's first query still sees window - 1 older
	 * positions while the chunk's cap - 1 later ones are written. */
	int slots = hp->n_ctx;
	if (window > 0 && (int64_t)window + (int64_t)cap - 1 < slots)
		slots = window + (int)cap - 1;
	d->kv = decoder_kv_new(hp->n_layers, slots, hp->n_kv_heads * hp->head_dim);
	if (!d->x || !d->xn || !d->q || !d->att || !d->tmp || !d->gate || !d->up || !d->kv) {
		modeldir_error(dir, NULL, "out of memory for a %d-token context", hp->n_ctx);
		decoder_free(d);
		return NULL;
	}
	return d;
}

int decoder_forward(mh_decoder *d, mh_dir *dir, const mh_decoder_step *s, const int32_t *ids,
		    int n, int pos, float *logits, int flags)
{
	const decoder *dd = (const decoder *)d;
	int vocab = dd->vocab, n_ctx = dd->n_ctx, slots = d->kv->n_ctx;
	if (n <= 0 || pos < 0 || pos > n_ctx - n) {
		modeldir_error(dir, NULL, "positions %d..%d are outside the %d-token context", pos,
			       pos + n - 1, n_ctx);
		return -1;
	}
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= vocab) {
			modeldir_error(dir, NULL, "token id %d is outside the vocabulary (0..%d)",
				       ids[i], vocab - 1);
			return -1;
		}
	for (int done = 0; done < n;) {
		int k = n - done < d->cap ? n - done : d->cap;
		int room = slots - (pos + done) % slots; /* before the ring wraps */
		if (k > room)
			k = room;
		if (ops_embed(d->x, s->embed, ids + done, k) != 0) {
			modeldir_error(dir, NULL, "the embedding table has fewer rows than the "
				       "vocabulary (%d)", vocab);
			return -1;
		}
		for (int l = 0; l < d->kv->n_layers; l++)
			s->layer(s->model, l, k, pos + done);
		if (flags & MH_LOGITS_ALL)
			s->head(s->model, logits + (size_t)done * vocab, d->x, k);
		else if (done + k == n) /* only the last position's logits are wanted */
			s->head(s->model, logits, d->x + (size_t)(k - 1) * dd->dim, 1);
		done += k;
	}
	return 0;
}
