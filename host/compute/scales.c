/* SPDX-License-Identifier: MIT */
/* scales.c - see scales.h. */
#include "compute/scales.h"
#include "compute/ops.h"
#include "compute/threadpool.h"
#include "model/safetensors.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The dirs with tensors not checked yet.  Forward passes of different
 * models may run on different threads (a server reload), so the list is
 * under a lock; `pending` lets every op after the first pass skip it. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static mh_dir **dirs;
static int n_dirs, cap_dirs;
static int pending;

enum { UNCHECKED = 1, BAD = 2 }; /* mh_dir.scale_state; 0: not watched or good */

#define CHUNK_BLOCKS 4096

typedef struct {
	const mh_tensor *t;
	size_t step;
	unsigned char *bad;
} chunk_job;

static void check_chunks(void *ctx, int64_t b, int64_t e, int thread)
{
	const chunk_job *j = ctx;
	(void)thread;
	for (int64_t k = b; k < e; k++) {
		size_t from = (size_t)k * j->step, to = from + j->step;
		j->bad[k] = st_bad_scale(j->t, from, to < j->t->nbytes ? to : j->t->nbytes) != (size_t)-1;
	}
}

/* 1 when a scale of t is Inf or NaN, over the pool; -1 out of memory. */
static int bad_scale(const mh_tensor *t)
{
	size_t step = CHUNK_BLOCKS * mh_row_bytes(t->dtype, MH_QBLOCK);
	int64_t n = (int64_t)((t->nbytes + step - 1) / step);
	unsigned char *bad = calloc(n ? (size_t)n : 1, 1);
	if (!bad)
		return -1;
	chunk_job j = { t, step, bad };
	pool_run(ops_pool(), n, check_chunks, &j);
	int rc = memchr(bad, 1, (size_t)n) != NULL;
	free(bad);
	return rc;
}

static void forget(mh_dir *d)
{
	pthread_mutex_lock(&mu);
	for (int k = 0; k < n_dirs; k++)
		if (dirs[k] == d) {
			dirs[k] = dirs[--n_dirs];
			break;
		}
	__atomic_store_n(&pending, n_dirs, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&mu);
	free(d->scale_state);
	d->scale_state = NULL;
}

int scales_watch(mh_dir *d)
{
	if (d->scales_checked || d->scale_state)
		return 0;
	int n = 0;
	for (int i = 0; i < d->n_tensors; i++)
		n += mh_dtype_is_quant(d->index[i]->dtype);
	if (n == 0) {
		d->scales_checked = 1;
		return 0;
	}
	d->scale_state = calloc((size_t)d->n_tensors, 1);
	pthread_mutex_lock(&mu);
	if (d->scale_state && n_dirs == cap_dirs) {
		int nc = cap_dirs ? 2 * cap_dirs : 4;
		mh_dir **nd = realloc(dirs, (size_t)nc * sizeof *nd);
		if (nd) {
			dirs = nd;
			cap_dirs = nc;
		}
	}
	int ok = d->scale_state && n_dirs < cap_dirs;
	if (ok) {
		for (int i = 0; i < d->n_tensors; i++)
			d->scale_state[i] = mh_dtype_is_quant(d->index[i]->dtype) ? UNCHECKED : 0;
		d->scale_unchecked = n;
		d->on_close = forget;
		dirs[n_dirs++] = d;
		__atomic_store_n(&pending, n_dirs, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&mu);
	if (!ok) {
		free(d->scale_state);
		d->scale_state = NULL;
		return -1;
	}
	return 0;
}

/* Check entry i of d, which holds the data w reads; lock held. */
static int check_entry(mh_dir *d, int i)
{
	const mh_tensor *t = d->index[i];
	if (d->scale_state[i] == UNCHECKED) {
		int bad = bad_scale(t);
		if (bad < 0) {
			modeldir_error(d, modeldir_file_of(d, t), "out of memory checking tensor '%s'",
				       t->name);
			return -1;
		}
		d->scale_state[i] = bad ? BAD : 0;
		if (!bad && --d->scale_unchecked == 0) {
			d->scales_checked = 1;
			for (int k = 0; k < n_dirs; k++)
				if (dirs[k] == d) {
					dirs[k] = dirs[--n_dirs];
					break;
				}
			__atomic_store_n(&pending, n_dirs, __ATOMIC_RELEASE);
		}
	}
	if (d->scale_state[i] != BAD)
		return 0;
	modeldir_error(d, modeldir_file_of(d, t), "tensor '%s' has a block scale that is not a "
		       "finite number", t->name);
	return -1;
}

int scales_check_use(const mh_tensor *w)
{
	if (!w || !mh_dtype_is_quant(w->dtype) || !__atomic_load_n(&pending, __ATOMIC_ACQUIRE))
		return 0;
	const char *p = w->data;
	int rc = 0;
	pthread_mutex_lock(&mu);
	for (int k = 0; k < n_dirs; k++) {
		mh_dir *d = dirs[k];
		for (int i = 0; i < d->n_tensors; i++) {
			const mh_tensor *t = d->index[i];
			if (d->scale_state[i] && p >= (const char *)t->data &&
			    p < (const char *)t->data + t->nbytes) {
				rc = check_entry(d, i);
				goto out;
			}
		}
	}
out:
	pthread_mutex_unlock(&mu);
	return rc;
}
