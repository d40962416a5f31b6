/* SPDX-License-Identifier: MIT */
/* threadpool.h - one persistent pool of worker threads for the whole
 * process.  pool_run() splits [0, n) into contiguous ranges (one per thread
 * by default) and returns when all are done.  The caller's thread works
 * too; each thread works through its own part of [0, n) front to back,
 * and one with nothing left takes over the back of another's, so a thread
 * that the OS keeps off the CPU only leaves its part to the others: fn may
 * be called more than once with the same thread index, never
 * concurrently.  No allocation or thread creation per call. */
#ifndef MH_THREADPOOL_H
#define MH_THREADPOOL_H

#include <modelhost/plugin.h>

typedef struct mh_pool mh_pool;

mh_pool *pool_new(int n_threads);
void pool_free(mh_pool *p);
int pool_size(const mh_pool *p);
void pool_run(mh_pool *p, int64_t n, mh_range_fn fn, void *ctx);
/* The same, with every range but the last a multiple of align items. */
void pool_run_aligned(mh_pool *p, int64_t n, int64_t align, mh_range_fn fn, void *ctx);
/* Ranges that shrink as the job nears its end, none smaller than about
 * n / chunks items (chunks <= 0: one range per thread), each a multiple of
 * align items but the last. */
void pool_run_chunks(mh_pool *p, int64_t n, int64_t align, int chunks, mh_range_fn fn,
		     void *ctx);
/* A pool_run from inside a job (any thread of the pool) does not deadlock:
 * it runs the whole range on the calling thread. */
/* The calling thread's index while it runs part of a job, else 0 (the
 * thread that posts jobs): per-thread scratch for work that may also be
 * called from inside a job. */
int pool_thread(void);

#endif
