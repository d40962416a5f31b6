/* SPDX-License-Identifier: MIT */
/* decoder.c - see decoder.h.  What every standard decoder-only plugin would
 * otherwise repeat: its activation buffers and KV cache, and the forward
 * loop that feeds a prompt through in chunks and computes logits only for
 * the positions that are wanted. */
#include "compute/decoder.h"
#include "model/modeldir.h"
#include "compute/ops.h"
#include "compute/rope.h"
#include "compute/scales.h"
#include "base/util.h"

#include <stddef.h>
#include <string.h>

#include <stdlib.h>

/* Tokens per forward chunk: enough for SGEMM to run at full speed, few
 * enough that the buffers stay small next to the weights. */
#define CHUNK 256

/* A run of one sequence's rows in the current chunk: rows [row, row + n)
 * at positions pos.., cut as decoder_forward cuts a prompt (at most cap
 * tokens, never across the ring's wrap). */
typedef struct {
	int seq, row, n, pos;
} piece;

/* The public struct, and what the host keeps beside it. */
typedef struct {
	mh_decoder pub;
	int vocab, dim, n_ctx; /* n_ctx: positions (the cache may hold fewer) */
	int n_layers, slots, kv_dim, n_heads, head_dim;
	mh_kv_cache **seq;     /* by sequence id; seq[0] is pub.kv; NULL: free */
	int n_seq;
	/* the chunk's per-row arrays: one block, runs at its start */
	ops_attn_run *runs;    /* [cap] the pieces' attention */
	piece *pieces;         /* [cap] of the current chunk */
	int n_pieces;
	int32_t *pos;          /* [cap] pub.pos */
	int *seg;              /* [cap] rows per piece, for ops_set_rows */
	unsigned *seen, epoch; /* [n_seq] batch checks: a sequence's items consecutive */
	int window;            /* > 0: the cache is a ring of `slots` */
	int32_t **slot_pos;    /* [n_seq][slots] of a ring: the position each slot holds */
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
	mh_free(d->k);
	mh_free(d->v);
	decoder *dd = (decoder *)d; /* pub is the first member */
	for (int i = 1; i < dd->n_seq; i++)
		decoder_kv_free(dd->seq[i]);
	for (int i = 0; dd->slot_pos && i < dd->n_seq; i++)
		free(dd->slot_pos[i]);
	free(dd->slot_pos);
	free(dd->seq);
	free(dd->seen);
	mh_free(dd->runs); /* and the chunk's other rows */
	decoder_kv_free(d->kv);
	free(dd);
}

/* A ring's record of which position each slot holds: none yet. */
static int32_t *ring_new(int slots)
{
	int32_t *r = malloc((size_t)slots * sizeof *r);
	for (int i = 0; r && i < slots; i++)
		r[i] = -1;
	return r;
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
	dd->n_layers = hp->n_layers;
	dd->kv_dim = hp->n_kv_heads * hp->head_dim;
	dd->n_heads = hp->n_heads;
	dd->head_dim = hp->head_dim;
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
	dd->slots = slots;
	dd->window = slots < hp->n_ctx ? window : 0;
	d->kv = decoder_kv_new(hp->n_layers, slots, dd->kv_dim);
	d->k = buf(cap, (size_t)dd->kv_dim);
	d->v = buf(cap, (size_t)dd->kv_dim);
	/* the widest alignment first: each array's size keeps the next aligned */
	dd->runs = mh_alloc(cap * (sizeof *dd->runs + sizeof *dd->pieces + sizeof *dd->pos +
				   sizeof *dd->seg));
	if (dd->runs) {
		dd->pieces = (piece *)(dd->runs + cap);
		dd->pos = (int32_t *)(dd->pieces + cap);
		dd->seg = (int *)(dd->pos + cap);
	}
	d->pos = dd->pos;
	dd->seq = calloc(1, sizeof *dd->seq);
	dd->seen = calloc(1, sizeof *dd->seen);
	dd->slot_pos = calloc(1, sizeof *dd->slot_pos);
	if (dd->slot_pos && dd->window)
		dd->slot_pos[0] = ring_new(slots);
	dd->n_seq = 1;
	if (dd->seq)
		dd->seq[0] = d->kv;
	if (!d->x || !d->xn || !d->q || !d->att || !d->tmp || !d->gate || !d->up || !d->kv ||
	    !d->k || !d->v || !dd->runs || !dd->seq || !dd->seen ||
	    !dd->slot_pos || (dd->window && !dd->slot_pos[0])) {
		modeldir_error(dir, NULL, "out of memory for a %d-token context", hp->n_ctx);
		decoder_free(d);
		return NULL;
	}
	return d;
}

int decoder_seq_new(mh_decoder *d, mh_dir *dir)
{
	decoder *dd = (decoder *)d;
	int id = 1;
	while (id < dd->n_seq && dd->seq[id])
		id++;
	if (id == dd->n_seq) {
		mh_kv_cache **ns = realloc(dd->seq, (size_t)(id + 1) * sizeof *ns);
		if (ns)
			dd->seq = ns;
		unsigned *nm = ns ? realloc(dd->seen, (size_t)(id + 1) * sizeof *nm) : NULL;
		if (nm)
			dd->seen = nm;
		int32_t **nr = nm ? realloc(dd->slot_pos, (size_t)(id + 1) * sizeof *nr) : NULL;
		if (nr)
			dd->slot_pos = nr;
		if (!ns || !nm || !nr) {
			modeldir_error(dir, NULL, "out of memory for another sequence");
			return -1;
		}
		dd->seq[id] = NULL;
		dd->seen[id] = 0;
		dd->slot_pos[id] = NULL;
		dd->n_seq++;
	}
	dd->seq[id] = decoder_kv_new(dd->n_layers, dd->slots, dd->kv_dim);
	if (dd->window) {
		free(dd->slot_pos[id]);
		dd->slot_pos[id] = ring_new(dd->slots);
	}
	if (!dd->seq[id] || (dd->window && !dd->slot_pos[id])) {
		decoder_kv_free(dd->seq[id]);
		dd->seq[id] = NULL;
		modeldir_error(dir, NULL, "out of memory for another %d-token context", dd->n_ctx);
		return -1;
	}
	return id;
}

void decoder_seq_free(mh_decoder *d, int seq)
{
	decoder *dd = (decoder *)d;
	if (seq <= 0 || seq >= dd->n_seq)
		return;
	decoder_kv_free(dd->seq[seq]);
	dd->seq[seq] = NULL;
}

/* The batch's items against the decoder: known sequences, each one's items
 * consecutive with contiguous positions inside the context, known ids. */
static int check_items(decoder *dd, mh_dir *dir, const mh_decoder_step *s,
		       const mh_batch_item *it, int n)
{
	if (n <= 0) {
		modeldir_error(dir, NULL, "an empty batch");
		return -1;
	}
	if (++dd->epoch == 0) { /* wrapped: forget every old mark */
		for (int i = 0; i < dd->n_seq; i++)
			dd->seen[i] = 0;
		dd->epoch = 1;
	}
	int max_pos = s->struct_size > offsetof(mh_decoder_step, max_positions)
			      ? s->max_positions : 0;
	for (int i = 0; i < n; i++) {
		int q = it[i].seq, p = it[i].pos;
		if (q < 0 || q >= dd->n_seq || !dd->seq[q]) {
			modeldir_error(dir, NULL, "item %d: sequence %d is not open", i, q);
			return -1;
		}
		if (i > 0 && it[i - 1].seq == q) {
			if (p != it[i - 1].pos + 1) {
				modeldir_error(dir, NULL, "item %d: sequence %d's positions jump from %d "
					       "to %d", i, q, it[i - 1].pos, p);
				return -1;
			}
		} else if (dd->seen[q] == dd->epoch) {
			modeldir_error(dir, NULL, "item %d: sequence %d's items are not consecutive",
				       i, q);
			return -1;
		} else if (dd->window && p > 0) {
			/* a rewind on a ring: the window before p must still be there */
			int r = p - dd->window + 1 > 0 ? p - dd->window + 1 : 0;
			for (; r < p; r++)
				if (dd->slot_pos[q][r % dd->slots] != r) {
					modeldir_error(dir, NULL, "item %d: sequence %d no longer holds "
						       "position %d (its sliding-window cache has moved "
						       "past it)", i, q, r);
					return -1;
				}
		}
		dd->seen[q] = dd->epoch;
		if (p < 0 || p >= dd->n_ctx) {
			modeldir_error(dir, NULL, "item %d: position %d is outside the %d-token "
				       "context", i, p, dd->n_ctx);
			return -1;
		}
		if (max_pos > 0 && p >= max_pos) {
			modeldir_error(dir, NULL, "item %d: position %d is past the model's %d "
				       "learned positions", i, p, max_pos);
			return -1;
		}
		if (it[i].id < 0 || it[i].id >= dd->vocab) {
			modeldir_error(dir, NULL, "token id %d is outside the vocabulary (0..%d)",
				       it[i].id, dd->vocab - 1);
			return -1;
		}
	}
	return 0;
}

/* Embed, layers and head over the chunk dd->pieces (rows of items from
 * `first` on); logits of its wanted rows at *out. */
static int run_chunk(decoder *dd, mh_dir *dir, const mh_decoder_step *s,
		     const mh_batch_item *it, float *logits, int *out)
{
	mh_decoder *d = &dd->pub;
	int rows = 0;
	for (int p = 0; p < dd->n_pieces; p++) {
		const piece *pc = &dd->pieces[p];
		for (int r = 0; r < pc->n; r++) {
			const mh_batch_item *t = &it[pc->row + r];
			if (scales_check_use(s->embed) != 0)
				return -1;
			if (ops_embed(d->x + (size_t)(rows + r) * dd->dim, s->embed, &t->id, 1) != 0) {
				modeldir_error(dir, NULL, "the embedding table has fewer rows than "
					       "the vocabulary (%d)", dd->vocab);
				return -1;
			}
			dd->pos[rows + r] = t->pos;
			if (dd->window)
				dd->slot_pos[pc->seq][t->pos % dd->slots] = t->pos;
		}
		dd->seg[p] = pc->n;
		rows += pc->n;
	}
	int has_pos = s->struct_size > offsetof(mh_decoder_step, positions) && s->positions;
	if (has_pos && s->positions(s->model, d->x, dd->pos, rows) != 0)
		return -1;
	/* the pieces' rows are the matmuls' independent runs (ops_set_rows) */
	ops_set_rows(dd->seg, dd->n_pieces);
	for (int l = 0; l < dd->n_layers; l++)
		if (s->layer_rows(s->model, l, rows) != 0) {
			ops_set_rows(NULL, 0);
			return -1;
		}
	/* the wanted rows to the front of x, each piece's a run of its own */
	int w = 0, nseg = 0, row = 0;
	for (int p = 0; p < dd->n_pieces; p++) {
		const piece *pc = &dd->pieces[p];
		int before = w;
		for (int r = 0; r < pc->n; r++, row++)
			if (it[pc->row + r].logits) {
				if (w != row)
					memcpy(d->x + (size_t)w * dd->dim, d->x + (size_t)row * dd->dim,
					       (size_t)dd->dim * sizeof(float));
				w++;
			}
		if (w > before)
			dd->seg[nseg++] = w - before;
	}
	if (w > 0) {
		ops_set_rows(dd->seg, nseg);
		s->head(s->model, logits + (size_t)*out * dd->vocab, d->x, w);
		*out += w;
	}
	ops_set_rows(NULL, 0);
	return 0;
}

int decoder_batch(mh_decoder *d, mh_dir *dir, const mh_decoder_step *s,
		  const mh_batch_item *it, int n, float *logits)
{
	decoder *dd = (decoder *)d;
	if (s->struct_size <= offsetof(mh_decoder_step, layer_rows) || !s->layer_rows) {
		modeldir_error(dir, NULL, "decoder_batch needs the step's layer_rows");
		return -1;
	}
	if (check_items(dd, dir, s, it, n) != 0)
		return -1;
	int out = 0, i = 0;
	while (i < n) {
		int rows = 0;
		dd->n_pieces = 0;
		while (i < n) {
			int end = i + 1; /* the rest of this sequence's items */
			while (end < n && it[end].seq == it[i].seq)
				end++;
			/* cut as decoder_forward cuts a prompt: at most cap
			 * tokens, never across the ring's wrap */
			int k = end - i < d->cap ? end - i : d->cap;
			int room = dd->slots - it[i].pos % dd->slots;
			if (k > room)
				k = room;
			if (rows + k > d->cap)
				break;
			dd->pieces[dd->n_pieces++] = (piece){ it[i].seq, i, k, it[i].pos };
			rows += k;
			i += k;
		}
		if (run_chunk(dd, dir, s, it, logits, &out) != 0)
			return -1;
	}
	return 0;
}

void decoder_attention(mh_decoder *d, int layer, const mh_rope *rope, int window, float scale)
{
	decoder *dd = (decoder *)d;
	int q_dim = dd->n_heads * dd->head_dim, kvd = dd->kv_dim, row = 0;
	for (int p = 0; p < dd->n_pieces; row += dd->pieces[p++].n) {
		const piece *pc = &dd->pieces[p];
		float *q = d->q + (size_t)row * q_dim, *k = d->k + (size_t)row * kvd;
		const float *v = d->v + (size_t)row * kvd;
		mh_kv_cache *c = dd->seq[pc->seq];
		if (rope) {
			rope_apply(rope, q, pc->n, dd->n_heads, pc->pos);
			rope_apply(rope, k, pc->n, kvd / dd->head_dim, pc->pos);
		}
		size_t at = mh_kv_at(c, pc->pos), bytes = (size_t)pc->n * kvd * sizeof(float);
		memcpy(mh_kv_k(c, layer) + at, k, bytes);
		memcpy(mh_kv_v(c, layer) + at, v, bytes);
		dd->runs[p] = (ops_attn_run){ d->att + (size_t)row * q_dim, q, c, pc->n, pc->pos };
	}
	ops_attention_runs(dd->runs, dd->n_pieces, layer, dd->n_heads, dd->head_dim, window, scale);
}

int decoder_forward(mh_decoder *d, mh_dir *dir, const mh_decoder_step *s, const int32_t *ids,
		    int n, int pos, float *logits, int flags)
{
	const decoder *dd = (const decoder *)d;
	int vocab = dd->vocab, n_ctx = dd->n_ctx, slots = d->kv->n_ctx;
	if (s->struct_size > offsetof(mh_decoder_step, layer_rows) && s->layer_rows) {
		/* a 1.2 step: sequence 0 as a batch of its own (the same pieces) */
		if (n <= 0 || pos < 0 || pos > n_ctx - n) {
			modeldir_error(dir, NULL, "positions %d..%d are outside the %d-token context",
				       pos, pos + n - 1, n_ctx);
			return -1;
		}
		mh_batch_item *it = malloc((size_t)n * sizeof *it);
		if (!it) {
			modeldir_error(dir, NULL, "out of memory");
			return -1;
		}
		for (int i = 0; i < n; i++)
			it[i] = (mh_batch_item){ 0, pos + i, ids[i],
						 (flags & MH_LOGITS_ALL) || i == n - 1 };
		int rc = decoder_batch(d, dir, s, it, n, logits);
		free(it);
		return rc;
	}
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
		if (scales_check_use(s->embed) != 0)
			return -1;
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
