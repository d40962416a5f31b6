/* threadpool.h - one persistent pool of worker threads for the whole
 * process.  pool_run() splits [0, n) into one contiguous range per thread
 * (the caller's thread takes the first) and returns when all are done.
 * No allocation or thread creation per call. */
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
/* A pool_run from inside a job (any thread of the pool) does not deadlock:
 * it runs the whole range on the calling thread. */

#endif
